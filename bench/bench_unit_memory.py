"""Peak memory of processing and committing one unit (the unit processor alone, no runner): a single-stream
Wikipedia dump with no index is one unit, so it goes through one worker; its peak must not grow with its size.

    .venv/bin/python bench/bench_unit_memory.py [--pages 1500] [--factor 8] [--repeats 3]

Writes dumps of `pages` and `factor × pages` real pages (the ../shared Wikipedia fixtures, repeated under new
ids), then, each in a fresh process, runs `UnitStore.run` over the whole dump (reading, wikitext cleaning,
language ID, the min_length filter, committing as the documents stream) and reports its peak RSS. `--hold`
measures the same with the unit's documents gathered in a list first, as the pipeline did before units streamed.
Medians over --repeats runs.
"""

from __future__ import annotations

import argparse
import bz2
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_wikipedia import DUMPS, page_xml, pages_of, require_fixtures  # noqa: E402

HEADER = (
    '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"><siteinfo><dbname>xxwiki</dbname>'
    '<base>https://xx.wikipedia.org/wiki/Main_Page</base><namespaces><namespace key="0" /></namespaces>'
    "</siteinfo>"
)


def write_single_stream(path: pathlib.Path, total: int) -> None:
    pool = [page for name in DUMPS for page in pages_of(name)[0]]
    compressor = bz2.BZ2Compressor()
    with open(path, "wb") as out:
        out.write(compressor.compress(HEADER.encode()))
        for page_id in range(1, total + 1):
            out.write(compressor.compress(page_xml(pool[page_id % len(pool)], page_id).encode()))
        out.write(compressor.compress(b"</mediawiki>"))
        out.write(compressor.flush())


def measure(dump: str, work: str, hold: bool, file_bytes: int) -> dict:
    """Runs in a child process: one unit through the processor and the store; its peak RSS."""
    from pipeline.output.stats import Funnel
    from pipeline.sources import wikipedia
    from pipeline.steps import process, units

    source = wikipedia.Wikipedia("wikipedia", wikipedia.Settings(dumps=[dump]))
    processor = process.UnitProcessor(source)
    [unit] = source.plan((dump, None))
    started = time.perf_counter()
    items = units.UnitStore(work, file_bytes).run(processor, unit)
    if hold:
        items = list(items)
    kept = 0
    funnel = None
    for item in items:
        if isinstance(item, Funnel):
            funnel = item
        else:
            kept += 1
    return {
        "seconds": time.perf_counter() - started,
        "kept": kept,
        "records_in": funnel.records_in,
        "files": len(list(pathlib.Path(work).glob("*.parquet"))),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(dump: pathlib.Path, work: pathlib.Path, hold: bool, file_bytes: int) -> dict:
    command = [sys.executable, __file__, "--child", str(dump), str(work), str(int(hold)), str(file_bytes)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=1500)
    parser.add_argument("--factor", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--file-bytes", type=int, default=16 * 2**20, help="text per committed file")
    parser.add_argument("--hold", action="store_true", help="also measure with the unit's documents held in a list")
    args = parser.parse_args()
    require_fixtures()
    modes = [False, True] if args.hold else [False]
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        sizes = {1: args.pages, args.factor: args.pages * args.factor}
        dumps = {}
        for factor, pages in sizes.items():
            dumps[factor] = folder / f"xxwiki-{factor}x-pages-articles.xml.bz2"
            write_single_stream(dumps[factor], pages)
        results = {}
        for repeat in range(args.repeats):
            for factor in sizes:
                for hold in modes:
                    work = folder / f"work-{factor}-{hold}-{repeat}"
                    results.setdefault((factor, hold), []).append(run_child(dumps[factor], work, hold, args.file_bytes))
        print(f"{'dump':>5} {'pages':>7} {'MB bz2':>7} {'mode':>9} {'peak MB':>8} {'s':>6} {'files':>5} {'kept':>6}")
        peaks = {}
        for (factor, hold), runs in results.items():
            peaks[(factor, hold)] = statistics.median(r["peak_mb"] for r in runs)
            seconds = statistics.median(r["seconds"] for r in runs)
            print(
                f"{factor:>4}x {sizes[factor]:7d} {dumps[factor].stat().st_size / 1e6:7.1f} "
                f"{'held' if hold else 'streamed':>9} {peaks[(factor, hold)]:8.0f} {seconds:6.1f} "
                f"{runs[0]['files']:5d} {runs[0]['kept']:6d}"
            )
        for hold in modes:
            ratio = peaks[(args.factor, hold)] / peaks[(1, hold)]
            print(f"peak {args.factor}x / 1x, {'held' if hold else 'streamed'}: {ratio:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, dump, work, hold, file_bytes = sys.argv
        print(json.dumps(measure(dump, work, hold == "1", int(file_bytes))))
    else:
        main()
