"""Common Crawl pipeline throughput: each stage alone versus the whole Beam pipeline, on one core.

    .venv/bin/python bench/bench_commoncrawl.py [--pages 3000] [--repeats 3] [--real] [--baseline DIR]

Writes a WARC of synthetic article pages (`--real`: real pages from ../shared/fixtures/warc, repeated under
new URLs, at least 500 of them), times every per-document stage in this process (WARC parse + decode,
trafilatura extraction, fastText language ID, the FineWeb filters), then times `python -m pipeline
commoncrawl` on the same file with one DirectRunner worker (its default mode for one worker). Reports documents per second per core and the
ratio pipeline / sum of stages (goal ≤ 1.25). Medians over --repeats runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.common import synthetic  # noqa: E402
from pipeline.common.schema import Document  # noqa: E402
from pipeline.sources import commoncrawl  # noqa: E402
from pipeline.steps import extract, filters, html  # noqa: E402
from pipeline.steps.langid import LanguageIdentifier  # noqa: E402


def synthetic_warc(path: pathlib.Path, pages: int) -> None:
    synthetic.write_sample_warc(str(path), pages=pages, seed=42)


def real_warc(path: pathlib.Path, pages: int) -> None:
    """Real HTML pages from the shared fixtures, repeated under new URLs until there are `pages`."""
    fixtures = REPO.parent / "shared" / "fixtures" / "warc"
    originals = []
    for name in ("dolma-sample-0000.warc.gz", "clueweb12-single-gzip-member.warc.gz"):
        for item in commoncrawl.read_warc(str(fixtures / name)):
            if isinstance(item, commoncrawl.HtmlPage):
                body = commoncrawl.page_html(item, html.DEFAULT_MAX_HTML_BYTES).encode("utf-8")
                originals.append(body)
    responses = [
        synthetic.Response(f"https://mirror{i}.example/page", body=originals[i % len(originals)]) for i in range(pages)
    ]
    with open(path, "wb") as stream:
        synthetic.write_warc(stream, responses)


def time_stages(warc: str) -> dict:
    times = {}
    start = time.perf_counter()
    pages = [item for item in commoncrawl.read_warc(warc) if isinstance(item, commoncrawl.HtmlPage)]
    html_texts = [(commoncrawl.page_html(p, html.DEFAULT_MAX_HTML_BYTES), p.url) for p in pages]
    times["parse_decode"] = time.perf_counter() - start

    extract.extract_text("<html><body><p>warm up</p></body></html>")  # import cost is not per page
    start = time.perf_counter()
    texts = [extract.extract_text(text, url) for text, url in html_texts]
    times["extract"] = time.perf_counter() - start
    texts = [t for t in texts if t]

    identifier = LanguageIdentifier()
    start = time.perf_counter()
    languages = [identifier.identify(t) for t in texts]
    times["langid"] = time.perf_counter() - start

    chain = filters.build_filters(filters.WEB_FILTERS)
    docs = [
        Document(id=str(i), text=t, source="bench", language=lang)
        for i, (t, (lang, _)) in enumerate(zip(texts, languages))
    ]
    start = time.perf_counter()
    kept = sum(filters.apply_filters(chain, copy.copy(doc)) is None for doc in docs)
    times["filters"] = time.perf_counter() - start
    return {"times": times, "html_pages": len(pages), "extracted": len(texts), "kept_by_filters": kept}


def time_pipeline(warc: str, workdir: pathlib.Path, code: pathlib.Path = REPO) -> tuple[float, dict]:
    """The whole command on `warc`, with the `pipeline` package of `code` (this checkout, or --baseline's)."""
    output = workdir / f"out-{time.monotonic_ns()}"
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "commoncrawl",
            "--warcs",
            warc,
            "--output",
            str(output),
            "--direct_num_workers=1",
        ],
        cwd=code,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    return seconds, json.loads((output / "stats.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--real", action="store_true", help="real pages from ../shared/fixtures instead of synthetic ones"
    )
    parser.add_argument(
        "--baseline",
        type=pathlib.Path,
        help="a checkout of another version (git worktree add DIR COMMIT): its whole command runs too, interleaved, "
        "and the report gives this version's pipeline time over its",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        warc = workdir / "bench.warc.gz"
        (real_warc if args.real else synthetic_warc)(warc, args.pages)
        stage_runs, pipeline_runs, baseline_runs = [], [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            stage_runs.append(time_stages(str(warc)))
            pipeline_runs.append(time_pipeline(str(warc), workdir))
            if args.baseline:
                baseline_runs.append(time_pipeline(str(warc), workdir, args.baseline.resolve()))
        stages = {name: statistics.median(run["times"][name] for run in stage_runs) for name in stage_runs[0]["times"]}
        stage_sum = sum(stages.values())
        pipeline_seconds = statistics.median(seconds for seconds, _ in pipeline_runs)
        stats = pipeline_runs[0][1]
        pages = stage_runs[0]["html_pages"]
        report = {
            "input": "real pages (../shared)" if args.real else "synthetic pages",
            "warc_bytes": warc.stat().st_size,
            "html_pages": pages,
            "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
            "stage_sum_seconds": round(stage_sum, 3),
            "pipeline_seconds": round(pipeline_seconds, 3),
            "ratio_pipeline_over_stages": round(pipeline_seconds / stage_sum, 3),
            "pipeline_docs_per_second_per_core": round(pages / pipeline_seconds, 1),
            "stages_docs_per_second_per_core": round(pages / stage_sum, 1),
            "pipeline_kept": stats["kept"],
            "repeats": args.repeats,
        }
        if baseline_runs:
            baseline = statistics.median(seconds for seconds, _ in baseline_runs)
            report["baseline_pipeline_seconds"] = round(baseline, 3)
            report["baseline_ratio_pipeline_over_stages"] = round(baseline / stage_sum, 3)
            report["pipeline_over_baseline"] = round(pipeline_seconds / baseline, 3)
            report["baseline_kept"] = baseline_runs[0][1]["kept"]
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
