"""datatrove's FineWeb first stage on a folder of WARC files, timed: run by `bench/bench_commoncrawl.py --peer
datatrove` with the python of datatrove's own venv (never imported by lmforge).

    PEER_VENV/bin/python bench/datatrove_fineweb.py --input WARC_DIR --output DIR --workers 2 --languages en \\
        --lid-model .../lid.176.ftz

The stage as datatrove's examples/fineweb.py builds it, without the URL filter and the exclusion writers: WarcReader,
Trafilatura (favour_precision), LanguageFilter (--languages, or every language above 0.65 when empty), Gopher
repetition, Gopher quality, C4 (no terminal-punctuation rule), FineWeb quality, a JSON-lines writer; one task per
WARC file, --workers at once. Offline: the fastText model datatrove would download (lid.176.bin) is replaced by the
file given (lmforge's lid.176.ftz, the same model quantised). Prints one JSON line: seconds, documents written,
versions.
"""

import argparse
import glob
import gzip
import importlib.metadata
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--languages", default="", help="comma-separated; empty: every language")
    parser.add_argument("--lid-model", required=True)
    args = parser.parse_args()

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter

    tasks = len(glob.glob(os.path.join(args.input, "*.warc.gz")))
    languages = [language for language in args.languages.split(",") if language] or None
    language_filter = LanguageFilter(languages=languages)
    language_filter.model.MODEL_URL = os.path.abspath(args.lid_model)  # on the instance: it travels to the workers
    executor = LocalPipelineExecutor(
        pipeline=[
            WarcReader(args.input, glob_pattern="*.warc.gz"),
            Trafilatura(favour_precision=True),
            language_filter,
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(filter_no_terminal_punct=False),
            FineWebQualityFilter(),
            JsonlWriter(os.path.join(args.output, "documents")),
        ],
        tasks=tasks,
        workers=args.workers,
        logging_dir=os.path.join(args.output, "logs"),
        skip_completed=False,
    )
    started = time.perf_counter()
    executor.run()
    seconds = time.perf_counter() - started
    written = 0
    for path in glob.glob(os.path.join(args.output, "documents", "*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            written += sum(1 for _ in handle)
    versions = {name: importlib.metadata.version(name) for name in ("datatrove", "trafilatura", "spacy")}
    print(json.dumps({"seconds": seconds, "documents": written, "tasks": tasks, "versions": versions}))


if __name__ == "__main__":
    main()
