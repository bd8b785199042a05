"""What the publishing steps cost against extraction, per document on one core: PII anonymisation, benchmark
decontamination (the lookup in an index of every benchmark of ../shared/fixtures/evals), the URL word rules and
C4's bad words; and building that index.

    .venv/bin/python bench/bench_publish.py [--pages 1000] [--repeats 3] [--real]
    .venv/bin/python bench/bench_publish.py --lines [--pages 3000] [--repeats 3] [--real]

Pages: generated article pages, or (`--real`) real pages from ../shared/fixtures/warc repeated under new URLs, as
bench_commoncrawl.py makes them. Each page is extracted with trafilatura, then each step runs on every extracted
text, interleaved --repeats times in this process; medians. Goal: the decontamination lookup ≤ 3% of extraction.

`--lines`: CCNet's boilerplate lines on the benchmark crawl: `python -m pipeline commoncrawl` (2 workers, dedup on) with
and without `--line-dedup`, interleaved; the bytes, lines and documents it removed, and its cost in wall time.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_commoncrawl import fixture_eval_specs, real_warc, synthetic_warc  # noqa: E402

from pipeline.common import contamination  # noqa: E402
from pipeline.common.schema import Document  # noqa: E402
from pipeline.sources import commoncrawl  # noqa: E402
from pipeline.steps import decontam, extract, html, pii, wordlists  # noqa: E402

# A stand-in list of the size of LDNOOBW's English one (~400 entries): the cost is the pattern's, not the words'.
BADWORDS = [f"badword{number}" for number in range(400)]


def text_bytes(output: pathlib.Path) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(output.glob("part-*.parquet")), columns=["text"])
    return int(pc.sum(pc.binary_length(table.column("text").cast("binary"))).as_py() or 0)


def bytes_key(edits: dict) -> str:
    return next((key for key in edits if key.endswith(".bytes")), "")


def lines_main(args) -> None:
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        warc = folder / "bench.warc.gz"
        (real_warc if args.real else synthetic_warc)(warc, args.pages)
        runs: dict[str, list[float]] = {"without": [], "with": []}
        stats: dict[str, dict] = {}
        for repeat in range(args.repeats):
            for name, flags in (("without", []), ("with", ["--line-dedup"])):
                output = folder / f"{name}-{repeat}"
                command = [sys.executable, "-m", "pipeline", "commoncrawl", "--warcs", str(warc), *flags,
                           "--output", str(output), "--direct_num_workers=2"]  # fmt: skip
                started = time.perf_counter()
                subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                runs[name].append(time.perf_counter() - started)
                stats[name] = json.loads((output / "stats.json").read_text())
                stats[name]["text_bytes"] = text_bytes(output)
    edits = {key: value for key, value in stats["with"]["edits"].items() if key.startswith("line_dedup.")}
    seconds = {name: statistics.median(values) for name, values in runs.items()}
    print(json.dumps({
        "input": "real pages (../shared)" if args.real else "synthetic pages",
        "pages": args.pages,
        "kept": {name: found["kept"] for name, found in stats.items()},
        "line_dedup": edits,
        "dropped_after_lines": {k: v for k, v in stats["with"]["dropped"].items() if k.startswith("line_dedup.")},
        "kept_text_bytes": {name: found["text_bytes"] for name, found in stats.items()},
        "removed_share_of_text": round(edits.get(bytes_key(edits), 0) / max(1, stats["without"]["text_bytes"]), 4),
        "seconds": {name: round(value, 2) for name, value in seconds.items()},
        "with_over_without": round(seconds["with"] / seconds["without"], 3),
    }, indent=2))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="real pages from ../shared/fixtures")
    parser.add_argument("--lines", action="store_true", help="CCNet's boilerplate lines on the benchmark crawl")
    args = parser.parse_args()
    if args.lines:
        lines_main(args)
        return
    specs = fixture_eval_specs()
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        started = time.perf_counter()
        index = contamination.NgramIndex.build(specs)
        build_seconds = time.perf_counter() - started
        (folder / "evals.npz").write_bytes(index.to_bytes())
        (folder / "en.txt").write_text("\n".join(BADWORDS))
        warc = folder / "bench.warc.gz"
        (real_warc if args.real else synthetic_warc)(warc, args.pages)
        pages = [item for item in commoncrawl.read_warc(str(warc)) if isinstance(item, commoncrawl.HtmlPage)]
        documents = [(commoncrawl.page_html(page, html.DEFAULT_MAX_HTML_BYTES), page.url) for page in pages]
        steps = {
            "pii": pii.PiiStep(),
            "decontamination": decontam.DecontaminationStep(str(folder / "evals.npz")),
            "badwords": wordlists.BadWords({"en": str(folder / "en.txt")}),
        }
        url_filter = wordlists.UrlFilter([], ["casino", "porn"], ["hot", "girls", "sexy"], ["pornhub", "xxx"])
        extract.extract_text("<html><body><p>warm up</p></body></html>")
        times: dict[str, list[float]] = {name: [] for name in ["extract", *steps, "url_filter"]}
        for _ in range(args.repeats):
            started = time.perf_counter()
            texts = [text for text in (extract.extract_text(page, url) for page, url in documents) if text]
            times["extract"].append(time.perf_counter() - started)
            for name, step in steps.items():
                docs = [Document(id=str(n), text=text, source="web", language="en") for n, text in enumerate(texts)]
                started = time.perf_counter()
                for doc in docs:
                    step(doc)
                times[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            for _, url in documents:
                url_filter.rule(url)
            times["url_filter"].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "input": "real pages (../shared)" if args.real else "synthetic pages",
        "html_pages": len(documents),
        "extracted": len(texts),
        "index": {
            "tasks": len(specs),
            "ngrams": len(index),
            "bytes": len(index.to_bytes()),
            "build_seconds": round(build_seconds, 3),
        },  # fmt: skip
        "extract_docs_per_second": round(len(documents) / medians["extract"], 1),
        "share_of_extract": {
            name: round(medians[name] / medians["extract"], 4) for name in medians if name != "extract"
        },
        "docs_per_second": {name: round(len(texts) / medians[name]) for name in medians if name != "extract"},
        "pii_replacements": dict(steps["pii"].changes),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
