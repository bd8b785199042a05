"""The cascade's cheap text: `extract.page_text` (resiliparse without its main-content heuristics, skipping a page's
navigation and chrome) against `extract.extract_resiliparse` (main content), on the pages of the cascade's
benchmark (bench_commoncrawl.py's mixed crawl: real pages, 55% rewritten into 13 other languages).

    .venv/bin/python bench/bench_prefilter_text.py [--pages 2000] [--languages en]

Per page: the time of each text (best of 3 passes), and what the prefilter decides on each (`language.prefilter`
or not), with the pages on which the two disagree.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_commoncrawl import mixed_warcs  # noqa: E402

from pipeline.common.schema import Document  # noqa: E402
from pipeline.sources import commoncrawl  # noqa: E402
from pipeline.steps import extract, langid  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--languages", default="en")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        pages = [
            commoncrawl.page_html(item, 10_000_000)
            for path in mixed_warcs(pathlib.Path(folder), args.pages, 2)
            for item in commoncrawl.read_warc(path)
            if isinstance(item, commoncrawl.HtmlPage)
        ]
    identifier = langid.LanguageIdentifier()
    decisions = {}
    for name, cheap_text in (("main content", extract.extract_resiliparse), ("page_text", extract.page_text)):
        best = min(_timed(cheap_text, pages) for _ in range(3))
        prefilter = langid.LanguagePrefilter(identifier, set(args.languages.split(",")), 0.05, cheap_text)
        decisions[name] = [prefilter(Document(id=str(i), text=page, source="cc")) for i, page in enumerate(pages)]
        set_aside = sum(decision is not None for decision in decisions[name])
        print(f"{name}: {best / len(pages) * 1000:.3f} ms a page; {set_aside} of {len(pages)} pages set aside")
    main_content, cheap = decisions["main content"], decisions["page_text"]
    print(
        f"set aside by page_text only (could be lost): {sum(a is None and b is not None for a, b in zip(main_content, cheap))}; "
        f"let through by page_text only: {sum(a is not None and b is None for a, b in zip(main_content, cheap))}"
    )
    return 0


def _timed(function, pages: list[str]) -> float:
    started = time.perf_counter()
    for page in pages:
        function(page)
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
