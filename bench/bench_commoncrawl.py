"""Common Crawl pipeline throughput: each stage alone versus the whole Beam pipeline, on one core; or lmforge against
datatrove's FineWeb stage (`--peer datatrove`).

    .venv/bin/python bench/bench_commoncrawl.py [--pages 3000] [--repeats 3] [--real] [--baseline DIR]
    .venv/bin/python bench/bench_commoncrawl.py --peer datatrove [--pages 2000] [--workers 2] [--repeats 3] [--decontaminate]
        [--english-only]

Writes a WARC of synthetic article pages (`--real`: real pages from ../shared/fixtures/warc, repeated under
new URLs, at least 500 of them), times every per-document stage in this process (WARC parse + decode,
trafilatura extraction, fastText language ID, the FineWeb filters), then times `python -m pipeline
commoncrawl` on the same file with one DirectRunner worker (its default mode for one worker). Reports documents per second per core and the
ratio pipeline / sum of stages (goal ≤ 1.25). Medians over --repeats runs.

`--peer datatrove`: installs datatrove (PyPI, with spaCy for its word tokenizer) into a venv of its own under
bench/results/peer-datatrove/ (once), writes --pages pages into --workers WARC files (with ../shared: real pages,
45% English as in Common Crawl and the rest rewritten into 13 other languages with real sentences; else generated
pages), and
runs, interleaved --repeats times, datatrove's FineWeb first stage (bench/datatrove_fineweb.py) and `python -m
pipeline commoncrawl --no-dedup` with the same workers, for every language and for English only (lmforge's English
run with its cascade; and once without it, `--no-prefilter`, to count the documents the cascade loses and check
that the others are byte-identical). Reports pages per second per core for both and the ratio; and each tool's
start-up (the same command on a WARC of two pages a worker, English only), with the ratio of the seconds past it,
which is the ratio a crawl-sized input approaches. `--english-only` leaves out the every-language runs, for inputs the
size of a crawl's WARCs.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATATROVE_VERSION = "0.10.1"
LABELS = {"all": "all languages", "en": "English only"}

from pipeline.common import synthetic  # noqa: E402
from pipeline.common.schema import Document  # noqa: E402
from pipeline.sources import commoncrawl  # noqa: E402
from pipeline.steps import extract, filters, html  # noqa: E402
from pipeline.steps.langid import LanguageIdentifier  # noqa: E402


def fixture_eval_specs() -> list:
    """Every benchmark of ../shared/fixtures/evals (the suite's list, tests/conftest.py)."""
    from pipeline.common import tasks
    from tests.conftest import fixture_eval_specs as specs

    return [tasks.parse_spec(spec) for spec in specs()]


def synthetic_warc(path: pathlib.Path, pages: int) -> None:
    synthetic.write_sample_warc(str(path), pages=pages, seed=42)


def real_responses(pages: int) -> list:
    """Real HTML pages from the shared fixtures, repeated under new URLs until there are `pages`."""
    fixtures = REPO.parent / "shared" / "fixtures" / "warc"
    originals = []
    for name in ("dolma-sample-0000.warc.gz", "clueweb12-single-gzip-member.warc.gz"):
        for item in commoncrawl.read_warc(str(fixtures / name)):
            if isinstance(item, commoncrawl.HtmlPage):
                body = commoncrawl.page_html(item, html.DEFAULT_MAX_HTML_BYTES).encode("utf-8")
                originals.append(body)
    return [
        synthetic.Response(f"https://mirror{i}.example/page", body=originals[i % len(originals)]) for i in range(pages)
    ]


def real_warc(path: pathlib.Path, pages: int) -> None:
    with open(path, "wb") as stream:
        synthetic.write_warc(stream, real_responses(pages))


def in_language(page: bytes, sentences: list[str], rng: random.Random) -> bytes:
    """A real page with every run of text of 3 words or more replaced by sentences of another language: the same
    DOM, so it costs an extractor what the original does, in that language."""
    import lxml.html

    tree = lxml.html.fromstring(page.decode("utf-8", "replace"))
    for element in tree.iter():
        if element.tag in ("script", "style") or not isinstance(element.tag, str):
            continue
        for field in ("text", "tail"):
            value = getattr(element, field)
            if value and len(value.split()) >= 3:
                words, replacement = len(value.split()), []
                while sum(len(sentence.split()) for sentence in replacement) < words:
                    replacement.append(rng.choice(sentences))
                setattr(element, field, " ".join(replacement))
    return lxml.html.tostring(tree, encoding="utf-8")


def mixed_warcs(folder: pathlib.Path, pages: int, files: int) -> list[str]:
    """`files` WARCs of `pages` pages in all, as a crawl's mix of languages: 45% English, 55% in 13 other languages.
    With ../shared, every page is a real page (../shared/fixtures/warc, repeated), the non-English ones with their
    text replaced by real sentences of their language (../shared/fixtures/langid), so that every page costs an
    extractor what a real one does; else generated pages. Shuffled."""
    fixtures = REPO.parent / "shared" / "fixtures"
    if not fixtures.is_dir():
        responses = synthetic.sample_responses(pages, seed=42)
    else:
        rng = random.Random(42)
        responses = real_responses(pages)
        sentences = {  # the lines lxml can hold (no control characters)
            language.name: [
                line
                for line in (language / "sentences.txt").read_text(encoding="utf-8").splitlines()
                if line.isprintable()
            ]
            for language in sorted((fixtures / "langid").iterdir())
            if language.name != "en"
        }
        languages = sorted(sentences)
        for number in range(pages * 45 // 100, pages):
            language = languages[number % len(languages)]
            body = in_language(responses[number].body, sentences[language], rng)
            responses[number] = synthetic.Response(f"https://{language}.example.org/{number}", body=body)
        rng.shuffle(responses)
    paths = []
    for number in range(files):
        path = folder / f"part-{number}.warc.gz"
        with open(path, "wb") as stream:
            synthetic.write_warc(stream, responses[number::files])
        paths.append(str(path))
    return paths


def peer_venv(work: pathlib.Path) -> pathlib.Path:
    """datatrove's own venv (made once): its python."""
    python = work / "venv" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"datatrove[io,processing]=={DATATROVE_VERSION}",
                "spacy",
                "lxml_html_clean",
            ],
            check=True,
        )
    return python


def time_datatrove(python: pathlib.Path, warcs: pathlib.Path, output: pathlib.Path, workers: int, languages: str):
    from pipeline.steps.langid import default_model_path

    command = [
        str(python), str(REPO / "bench" / "datatrove_fineweb.py"), "--input", str(warcs), "--output", str(output),
        "--workers", str(workers), "--languages", languages, "--lid-model", default_model_path(),
    ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    return seconds, json.loads(result.stdout.strip().splitlines()[-1])


def kept_texts(output: pathlib.Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    rows = pq.read_table(sorted(output.glob("part-*.parquet")), columns=["id", "text"]).to_pylist()
    return {row["id"]: row["text"] for row in rows}


def peer_main(args) -> None:
    work = REPO / "bench" / "results" / "peer-datatrove"
    work.mkdir(parents=True, exist_ok=True)
    python = peer_venv(work)
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        (folder / "warcs").mkdir()
        warcs = mixed_warcs(folder / "warcs", args.pages, args.workers)
        (folder / "tiny").mkdir()
        tiny = mixed_warcs(folder / "tiny", 2 * args.workers, args.workers)  # a page or two a worker: start-up
        pages = sum(isinstance(i, commoncrawl.HtmlPage) for w in warcs for i in commoncrawl.read_warc(w))
        publish: tuple[str, ...] = ()  # PII is on by default; --decontaminate adds every fixture benchmark's index
        if args.decontaminate:
            from pipeline.common import contamination

            (folder / "evals.npz").write_bytes(contamination.NgramIndex.build(fixture_eval_specs()).to_bytes())
            publish = ("--decontamination", str(folder / "evals.npz"))
        names = ("en",) if args.english_only else ("all", "en")
        runs: dict[str, list] = {f"{tool}-{name}": [] for name in names for tool in ("datatrove", "lmforge")}
        startup: dict[str, list[float]] = {"datatrove": [], "lmforge": []}
        for repeat in range(args.repeats):  # interleaved, so that both see the same machine load
            out = folder / f"dt-tiny-{repeat}"
            startup["datatrove"].append(time_datatrove(python, folder / "tiny", out, args.workers, "en")[0])
            out = folder / f"lm-tiny-{repeat}"
            startup["lmforge"].append(
                time_pipeline(tiny, out, "--no-dedup", "--languages", "en", *publish, workers=args.workers)[0]
            )
            for name in names:
                languages, flags = ("en", ("--languages", "en")) if name == "en" else ("", ())
                out = folder / f"dt-{name}-{repeat}"
                runs[f"datatrove-{name}"].append(time_datatrove(python, folder / "warcs", out, args.workers, languages))
                output = folder / f"lm-{name}-{repeat}"
                runs[f"lmforge-{name}"].append(
                    time_pipeline(warcs, output, "--no-dedup", *flags, *publish, workers=args.workers)
                )
        flags = ("--no-dedup", "--languages", "en", "--no-prefilter", *publish)
        _, full_stats = time_pipeline(warcs, folder / "lm-en-full", *flags, workers=args.workers)
        full, cascade = kept_texts(folder / "lm-en-full"), kept_texts(folder / "lm-en-0")
        seconds = {name: statistics.median(run[0] for run in found) for name, found in runs.items()}
        per_core = {name: round(pages / value / args.workers, 1) for name, value in seconds.items()}
        fixed = {name: statistics.median(found) for name, found in startup.items()}
        lost = set(full) - set(cascade)
        report = {
            "input": "real pages: 45% English, 55% rewritten into 13 other languages with real sentences"
            if (REPO.parent / "shared" / "fixtures").is_dir()
            else "generated pages",
            "html_pages": pages,
            "warc_files": len(warcs),
            "workers": args.workers,
            "repeats": args.repeats,
            "seconds": {name: round(value, 2) for name, value in seconds.items()},
            "pages_per_second_per_core": per_core,
            "lmforge_over_datatrove": {
                LABELS[name]: round(per_core[f"lmforge-{name}"] / per_core[f"datatrove-{name}"], 2) for name in names
            },
            "startup_seconds": {name: round(value, 2) for name, value in fixed.items()},
            "lmforge_over_datatrove_past_startup": {
                LABELS[name]: round(
                    (seconds[f"datatrove-{name}"] - fixed["datatrove"])
                    / (seconds[f"lmforge-{name}"] - fixed["lmforge"]),
                    2,
                )
                for name in names
            },
            "kept": {
                name: (found[0][1]["documents"] if name.startswith("datatrove") else found[0][1]["kept"])
                for name, found in runs.items()
            },  # fmt: skip
            "cascade": {
                "full_path_kept": len(full),
                "cascade_kept": len(cascade),
                "lost": len(lost),
                "lost_share": round(len(lost) / max(1, len(full)), 5),
                "set_aside": runs["lmforge-en"][0][1]["dropped"].get("language.prefilter", 0),
                "byte_identical": all(cascade[i] == full[i] for i in cascade),
                "full_path_language_drops": full_stats["dropped"].get("language", 0),
            },
            "datatrove": runs["datatrove-en"][0][1]["versions"],
            "lmforge_publishing": {
                "pii": "on (the default)",
                "decontamination": "every fixture benchmark" if args.decontaminate else "off",
                "edits": runs["lmforge-en"][0][1].get("edits", {}),
                "decontaminated": runs["lmforge-en"][0][1]["dropped"].get("decontaminated", 0),
            },
        }
        print(json.dumps(report, indent=2))


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


def time_pipeline(
    warcs: list[str], output: pathlib.Path, *flags: str, workers: int = 1, code: pathlib.Path = REPO
) -> tuple[float, dict]:
    """The whole command on `warcs` into `output`, with the `pipeline` package of `code` (this checkout, or
    --baseline's): its seconds and stats.json."""
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "commoncrawl",
            "--warcs",
            *warcs,
            *flags,
            "--output",
            str(output),
            f"--direct_num_workers={workers}",
        ],  # fmt: skip
        cwd=code,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start, json.loads((output / "stats.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--real", action="store_true", help="real pages from ../shared/fixtures instead of synthetic ones"
    )
    parser.add_argument("--peer", choices=["datatrove"], help="compare with a peer's pipeline instead")
    parser.add_argument("--workers", type=int, default=2, help="--peer: workers of both (and WARC files)")
    parser.add_argument(
        "--decontaminate",
        action="store_true",
        help="--peer: lmforge's runs also drop documents sharing a 13-gram with every ../shared/fixtures/evals task",
    )
    parser.add_argument(
        "--english-only",
        action="store_true",
        help="--peer: only the English-only runs (at crawl-sized inputs the every-language runs take the most time)",
    )
    parser.add_argument(
        "--baseline",
        type=pathlib.Path,
        help="a checkout of another version (git worktree add DIR COMMIT): its whole command runs too, interleaved, "
        "and the report gives this version's pipeline time over its",
    )
    args = parser.parse_args()
    if args.peer:
        peer_main(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(tmp)
        warc = workdir / "bench.warc.gz"
        (real_warc if args.real else synthetic_warc)(warc, args.pages)
        stage_runs, pipeline_runs, baseline_runs = [], [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            stage_runs.append(time_stages(str(warc)))
            pipeline_runs.append(time_pipeline([str(warc)], workdir / f"out-{time.monotonic_ns()}"))
            if args.baseline:
                output = workdir / f"baseline-{time.monotonic_ns()}"
                baseline_runs.append(time_pipeline([str(warc)], output, code=args.baseline.resolve()))
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
