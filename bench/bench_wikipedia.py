"""Wikipedia dumps: parse + clean throughput on one core, and the speed-up from 1 to 2 Beam workers on a
multistream dump read through its index.

    .venv/bin/python bench/bench_wikipedia.py parse [--repeats 5]
    .venv/bin/python bench/bench_wikipedia.py speedup [--pages 6000] [--repeats 3]

`parse`: pages per second on one core over the real dumps in ../shared/fixtures/wikipedia (Latgalian,
and the Ukrainian and Japanese multistream heads), parsing alone (lxml, pages cleared as read) and parsing
plus wikitext cleaning (mwparserfromhell), medians of alternating runs.

`speedup`: `python -m pipeline wikipedia --dump D --index I --no-dedup` with 1 and then 2 workers (both
in the DirectRunner's multi-processing mode, so only the worker count differs), on a multistream dump
written the way Wikimedia writes them (100 pages per bz2 stream) from the real articles of those dumps,
repeated under new page ids to `--pages`. Wall time includes language ID, filters and the shard writes.
"""

from __future__ import annotations

import argparse
import bz2
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.sources import mediawiki, wikipedia  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "wikipedia"
DUMPS = {
    "ltg": "ltgwiki-pages-articles.xml",
    "uk": "ukwiki-pages-articles-multistream-head4MB.xml.bz2",
    "ja": "jawiki-pages-articles-multistream-head4MB.xml.bz2",
}


def require_fixtures() -> None:
    if not FIXTURES.is_dir():
        sys.exit(f"needs the real dumps in {FIXTURES}")


def pages_of(name: str) -> tuple[list[mediawiki.Page], mediawiki.SiteInfo]:
    path = str(FIXTURES / DUMPS[name])
    return [p for p in mediawiki.read_dump(path) if isinstance(p, mediawiki.Page)], mediawiki.read_siteinfo(path)


def bench_parse(args) -> None:
    require_fixtures()
    print(
        f"{'dump':5} {'pages':>6} {'wikitext MB':>11} {'parse pages/s':>14} {'parse+clean pages/s':>20} {'clean MB/s':>10}"
    )
    for name, dump in DUMPS.items():
        path = str(FIXTURES / dump)
        pages, siteinfo = pages_of(name)
        cleaner = wikipedia.CleanWikitext(siteinfo, keep_tables=False).cleaner
        megabytes = sum(len(p.text.encode()) for p in pages) / 1e6
        parse_times, both_times = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            parsed = [p for p in mediawiki.read_dump(path) if isinstance(p, mediawiki.Page)]
            parse_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            for page in mediawiki.read_dump(path):
                if isinstance(page, mediawiki.Page):
                    cleaner.clean(page.text)
            both_times.append(time.perf_counter() - started)
        assert len(parsed) == len(pages)
        parse, both = statistics.median(parse_times), statistics.median(both_times)
        print(
            f"{name:5} {len(pages):6d} {megabytes:11.1f} {len(pages) / parse:14.0f} {len(pages) / both:20.0f} "
            f"{megabytes / both:10.2f}"
        )


def page_xml(page: mediawiki.Page, page_id: int) -> str:
    from xml.sax.saxutils import escape

    stamp = page.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ") if page.timestamp else "2024-01-01T00:00:00Z"
    return (
        f"<page><title>{escape(page.title)} {page_id}</title><ns>0</ns><id>{page_id}</id><revision>"
        f'<id>{page_id}</id><timestamp>{stamp}</timestamp><text xml:space="preserve">{escape(page.text)}</text>'
        f"</revision></page>"
    )


def write_multistream(folder: pathlib.Path, total: int) -> tuple[str, str]:
    pool = []
    for name in DUMPS:
        pool += pages_of(name)[0]
    header = (
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"><siteinfo><dbname>xxwiki</dbname>'
        '<base>https://xx.wikipedia.org/wiki/Main_Page</base><namespaces><namespace key="0" />'
        "</namespaces></siteinfo>"
    )
    streams, lines = [bz2.compress(header.encode())], []
    offset = len(streams[0])
    for start in range(0, total, 100):
        ids = range(start + 1, min(start + 100, total) + 1)
        stream = bz2.compress("".join(page_xml(pool[i % len(pool)], i) for i in ids).encode())
        lines += [f"{offset}:{i}:page {i}" for i in ids]
        streams.append(stream)
        offset += len(stream)
    streams.append(bz2.compress(b"</mediawiki>"))
    dump = folder / "xxwiki-bench-pages-articles-multistream.xml.bz2"
    index = folder / "xxwiki-bench-pages-articles-multistream-index.txt.bz2"
    dump.write_bytes(b"".join(streams))
    index.write_bytes(bz2.compress("\n".join(lines).encode()))
    return str(dump), str(index)


def run_pipeline(dump: str, index: str, output: pathlib.Path, workers: int) -> tuple[float, str]:
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "wikipedia",
        "--dump",
        dump,
        "--index",
        index,
        "--no-dedup",
        "--output",
        str(output),
        "--num-shards",
        "4",
        f"--direct_num_workers={workers}",
        "--direct_running_mode=multi_processing",
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"pipeline failed:\n{result.stderr[-3000:]}")
    records = re.search(r"records: (\d+) documents in, (\d+) kept", result.stdout)
    return elapsed, f"{records.group(1)} in, {records.group(2)} kept"


def bench_speedup(args) -> None:
    require_fixtures()
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        dump, index = write_multistream(folder, args.pages)
        size = pathlib.Path(dump).stat().st_size / 1e6
        print(f"dump: {args.pages} pages, {size:.1f} MB bz2, {args.pages // 100 + (args.pages % 100 > 0)} streams")
        times = {1: [], 2: []}
        for repeat in range(args.repeats):
            for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
                elapsed, records = run_pipeline(dump, index, folder / "out", workers)
                times[workers].append(elapsed)
                print(f"  run {repeat + 1}, {workers} worker(s): {elapsed:6.1f} s  ({records})")
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(
            f"median: 1 worker {one:.1f} s ({args.pages / one:.0f} pages/s), 2 workers {two:.1f} s "
            f"({args.pages / two:.0f} pages/s); speed-up {one / two:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    parse = commands.add_parser("parse")
    parse.add_argument("--repeats", type=int, default=5)
    parse.set_defaults(run=bench_parse)
    speedup = commands.add_parser("speedup")
    speedup.add_argument("--pages", type=int, default=6000)
    speedup.add_argument("--repeats", type=int, default=3)
    speedup.set_defaults(run=bench_speedup)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
