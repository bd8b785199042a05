"""The quality classifier's cost: training time, and scoring throughput next to extraction's on the same pages.

    .venv/bin/python bench/bench_quality.py [--docs 5000] [--pages 1000] [--repeats 3] [--real]

Training: `quality train` (pipeline.steps.quality_training.train_classifier, the defaults) on --docs generated
article documents (positive) and --docs generated spam pages (negative), written as JSON lines; seconds and
documents per second, reading and held-out scoring included. Scoring: a WARC of --pages pages (synthetic articles,
or `--real`: the real pages of ../shared/fixtures/warc repeated under new URLs, as bench_commoncrawl.py does) is
extracted with trafilatura (the pipeline's settings) and the extracted texts scored with the trained model, both in
this process on one core, interleaved --repeats times; medians, documents per second per core and the ratio.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_commoncrawl import real_warc, synthetic_warc  # noqa: E402

from pipeline.common import synthetic  # noqa: E402
from pipeline.sources import commoncrawl  # noqa: E402
from pipeline.steps import extract, html, quality, quality_training  # noqa: E402


def write_corpora(folder: pathlib.Path, docs: int) -> tuple[str, str]:
    rng = random.Random(0)
    positive, negative = folder / "positive.jsonl", folder / "negative.jsonl"
    with open(positive, "w", encoding="utf-8") as handle:
        for number in range(docs):
            language = rng.choices(list(synthetic.LANGUAGES), weights=list(synthetic.LANGUAGES.values()))[0]
            text = "\n\n".join(synthetic.article_paragraphs(rng, language))
            handle.write(json.dumps({"id": str(number), "text": text}, ensure_ascii=False) + "\n")
    with open(negative, "w", encoding="utf-8") as handle:
        for number in range(docs):
            handle.write(json.dumps({"id": str(number), "text": synthetic.spam_document(rng)}) + "\n")
    return str(positive), str(negative)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=5000, help="training documents a class")
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="real pages from ../shared/fixtures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        positive, negative = write_corpora(folder, args.docs)
        started = time.perf_counter()
        report = quality_training.train_classifier([positive], [negative], str(folder / "model"))
        train_seconds = time.perf_counter() - started
        warc = folder / "bench.warc.gz"
        (real_warc if args.real else synthetic_warc)(warc, args.pages)
        pages = [item for item in commoncrawl.read_warc(str(warc)) if isinstance(item, commoncrawl.HtmlPage)]
        documents = [(commoncrawl.page_html(page, html.DEFAULT_MAX_HTML_BYTES), page.url) for page in pages]
        model = quality.QualityModel(str(folder / "model"))
        extract.extract_text("<html><body><p>warm up</p></body></html>")
        extract_times, score_times = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            texts = [text for text in (extract.extract_text(page, url) for page, url in documents) if text]
            extract_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            for text in texts:
                model.score(text)
            score_times.append(time.perf_counter() - started)
    extracting, scoring = statistics.median(extract_times), statistics.median(score_times)
    result = {
        "training": {
            "documents": 2 * args.docs,
            "seconds": round(train_seconds, 2),
            "documents_per_second": round(2 * args.docs / train_seconds),
            "heldout_f1": report["metrics"]["f1"],
            "model_bytes": report["model_bytes"],
        },
        "input": "real pages (../shared)" if args.real else "synthetic pages",
        "html_pages": len(documents),
        "extracted": len(texts),
        "extract_docs_per_second": round(len(documents) / extracting, 1),
        "score_docs_per_second": round(len(texts) / scoring, 1),
        "score_share_of_extract": round(scoring / extracting, 4),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
