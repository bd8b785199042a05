"""Index mode against whole WARCs, and what the index's CLD2 labels miss.

    .venv/bin/python bench/bench_ccindex.py [--pages 8000] [--workers 2] [--repeats 2] [--languages de,en]

Writes the crawl-like mix of bench_commoncrawl.py (real pages, 45% English, the rest in 13 other languages: each about
4% of the pages) as `--workers` WARCs, indexes them as Common Crawl does (tests/ccindexdata.py: the flat schema,
`content_languages` from CLD2 on the HTML), serves WARCs and index from a loopback HTTP server that honours Range
and counts bytes (`--bandwidth`: at most that many MB a second per connection, as a remote server gives), then:
1. for each language of `--languages`, runs `python -m pipeline commoncrawl` both ways, interleaved `--repeats`
   times: whole WARCs (`--warc-paths`, with the extraction cascade, and without it: every page extracted, as the
   other curation frameworks read a crawl) and index mode (`--cc-index` over HTTP, `--index-languages primary` and
   `any`); reports bytes transferred (index files included) and wall per kept
   document, their ratios, and the documents whole-WARC mode keeps that index mode does not (the loss); each
   repeat also runs every mode on a crawl of a page or two a worker, its start-up, for the wall ratio past it;
2. the index's recall on every page: with the run's own path (trafilatura, then fastText at the run's 0.65), which
   pages each language keeps, and how many of those CLD2's first label, or any of its three, would have selected.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_commoncrawl import mixed_warcs  # noqa: E402

from tests import ccindexdata  # noqa: E402
from tests.loopback import LoopbackServer  # noqa: E402

CRAWL = "crawl-data/CC-MAIN-2026-01/segments/1/warc"


def run(server, output: pathlib.Path, workers: int, *flags: str) -> tuple[float, dict, set[str]]:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", "commoncrawl", "--cc-base-url", server.url + "/", "--no-dedup",
         "--output", str(output), f"--direct_num_workers={workers}", *flags],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    import pyarrow.parquet as pq

    ids = set(pq.read_table(sorted(output.glob("part-*.parquet")), columns=["id"]).column("id").to_pylist())
    return seconds, json.loads((output / "stats.json").read_text()), ids


def recall(warcs: list[pathlib.Path], rows: list[dict]) -> dict:
    """Per fastText language: pages the run's own path keeps, and the share CLD2's labels select."""
    from pipeline.common.schema import Document
    from pipeline.sources import ccindex, commoncrawl
    from pipeline.steps import extract, html
    from pipeline.steps.langid import DEFAULT_MIN_SCORE, LanguageIdentifier

    labels = {row["url"]: (row["content_languages"] or "").split(",") for row in rows}
    identifier = LanguageIdentifier()
    kept: dict[str, list[list[str]]] = collections.defaultdict(list)
    for warc in warcs:
        for page in commoncrawl.read_warc(str(warc)):
            if not isinstance(page, commoncrawl.HtmlPage):
                continue
            try:
                text = extract.extract_text(commoncrawl.page_html(page, html.DEFAULT_MAX_HTML_BYTES), page.url)
            except html.Rejected:
                continue
            if not text:
                continue
            label, score = identifier.identify(Document(id="", text=text, source="").text)
            if score >= DEFAULT_MIN_SCORE:
                kept[label].append(labels.get(page.url, []))
    report = {}
    for label, cld2 in sorted(kept.items(), key=lambda item: -len(item[1])):
        code = ccindex.iso639_3(label)
        primary = sum(bool(codes) and codes[0] == code for codes in cld2)
        any_of = sum(code in codes for codes in cld2)
        report[label] = {
            "kept_by_full_path": len(cld2),
            "primary_recall": round(primary / len(cld2), 4),
            "any_recall": round(any_of / len(cld2), 4),
        }
    return report


MODES = ("whole", "whole_no_cascade", "index_primary", "index_any")


def serve_crawl(server, folder: pathlib.Path, name: str, pages: int, workers: int) -> tuple[list[pathlib.Path], list]:
    """The mix as `workers` WARCs under `name`/ on the server, their index and a paths listing: the WARCs and rows."""
    (folder / name).mkdir(exist_ok=True)
    warcs = [pathlib.Path(p) for p in mixed_warcs(folder / name, pages, workers)]
    rows = []
    for warc in warcs:
        path = f"{name}/{CRAWL}/{warc.name}".lstrip("/")
        server.files[f"/{path}"] = warc.read_bytes()
        rows.extend(ccindexdata.index_rows(str(warc), path))
    ccindexdata.write_index(folder / name / "index.parquet", rows, row_group_size=100_000)
    server.files[f"/{name}/cc-index/part-0.parquet".replace("//", "/")] = (folder / name / "index.parquet").read_bytes()
    (folder / name / "warc.paths").write_text("".join(f"{name}/{CRAWL}/{warc.name}\n".lstrip("/") for warc in warcs))
    return warcs, rows


def mode_flags(mode: str, server, folder: pathlib.Path, name: str) -> tuple[str, ...]:
    index = f"{server.url}/{name}/cc-index/part-0.parquet".replace(f"{server.url}//", f"{server.url}/")
    return {
        "whole": ("--warc-paths", str(folder / name / "warc.paths")),
        # every page extracted, as datatrove, NeMo Curator and dolma read a crawl
        "whole_no_cascade": ("--warc-paths", str(folder / name / "warc.paths"), "--no-prefilter"),
        "index_primary": ("--cc-index", index),
        "index_any": ("--cc-index", index, "--index-languages", "any"),
    }[mode]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--languages", default="de,en", help="the runs' languages, one run each")
    parser.add_argument(
        "--bandwidth", type=float, default=0, help="MB a second per connection (0: loopback's own speed)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer() as server:
        server.bandwidth = args.bandwidth * 1e6
        folder = pathlib.Path(tmp)
        warcs, rows = serve_crawl(server, folder, "", args.pages, args.workers)
        serve_crawl(server, folder, "tiny", 2 * args.workers, args.workers)  # a page or two a worker: start-up
        report: dict = {"pages": args.pages, "bandwidth_mb_s": args.bandwidth, "warc_bytes": sum(w.stat().st_size for w in warcs),
                        "index_file_bytes": (folder / "index.parquet").stat().st_size, "languages": {}}  # fmt: skip
        for language in args.languages.split(","):
            found: dict[str, list] = {mode: [] for mode in MODES}
            startup: dict[str, list[float]] = {mode: [] for mode in MODES}
            for repeat in range(args.repeats):
                for mode in MODES:
                    out = folder / f"tiny-{language}-{mode}-{repeat}"
                    startup[mode].append(run(server, out, args.workers, *mode_flags(mode, server, folder, "tiny"),
                                             "--languages", language)[0])  # fmt: skip
                    server.bytes_served.clear()
                    out = folder / f"{language}-{mode}-{repeat}"
                    flags = mode_flags(mode, server, folder, "")
                    seconds, stats, ids = run(server, out, args.workers, *flags, "--languages", language)
                    found[mode].append((seconds, sum(server.bytes_served.values()), stats, ids))
            fixed = {mode: statistics.median(found) for mode, found in startup.items()}
            whole_ids = found["whole"][0][3]
            figures = {}
            for mode, runs in found.items():
                seconds = statistics.median(r[0] for r in runs)
                transferred, stats, ids = runs[0][1], runs[0][2], runs[0][3]
                figures[mode] = {
                    "seconds": round(seconds, 2), "bytes": transferred, "kept": len(ids),
                    "seconds_per_kept": round(seconds / max(1, len(ids)), 4),
                    "bytes_per_kept": round(transferred / max(1, len(ids))),
                    "lost": len(whole_ids - ids), "lost_share": round(len(whole_ids - ids) / max(1, len(whole_ids)), 4),
                    "index": stats.get("index", {}), "startup_seconds": round(fixed[mode], 2),
                }  # fmt: skip
            for mode in ("index_primary", "index_any"):
                figures[mode]["fewer_bytes"] = round(figures["whole"]["bytes"] / max(1, figures[mode]["bytes"]), 1)
                figures[mode]["less_wall"] = round(figures["whole"]["seconds"] / figures[mode]["seconds"], 2)
                no_cascade = figures["whole_no_cascade"]["seconds"]
                figures[mode]["less_wall_than_every_page_extracted"] = round(no_cascade / figures[mode]["seconds"], 2)
                figures[mode]["less_wall_past_startup"] = round(
                    (figures["whole"]["seconds"] - fixed["whole"]) / (figures[mode]["seconds"] - fixed[mode]), 2
                )
            report["languages"][language] = figures
        report["recall"] = recall(warcs, rows)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
