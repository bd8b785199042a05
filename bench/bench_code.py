"""Code curation throughput and what code does to the tokenizer.

    .venv/bin/python bench/bench_code.py [--repeats 3] [--packages click,jinja2,…]

Packs real installed packages (each with its own licence file, tests/codedata.py) as GitHub-style tarballs, then:
1. times `python -m pipeline code --repos DIR/*` on them with one DirectRunner worker, repeated: files read per
   second per core through the whole command (start-up, planning, licences, dedup, shards, report);
2. times each per-file step in this process on the same files (walking and reading the archives, language, licence
   detection, decoding, secrets, the code filters, PII), as shares of their sum;
3. trains two byte-level BPE tokenizers of the same vocabulary, one on prose (the ../shared prose fixtures, else
   the generated sample's text) and one on that prose plus half the code, and reports bytes per token of each on the
   other half of the code (and on held-out prose): what a tokenizer trained without code costs code.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.common.schema import Document  # noqa: E402
from pipeline.sources import code as code_source  # noqa: E402
from pipeline.steps import code, filters, pii  # noqa: E402
from tests import codedata  # noqa: E402

PACKAGES = {  # distribution: its top-level package
    "click": "click", "jinja2": "jinja2", "markupsafe": "markupsafe", "idna": "idna", "packaging": "packaging",
    "platformdirs": "platformdirs", "httpx": "httpx", "anyio": "anyio", "h11": "h11", "Markdown": "markdown",
    "networkx": "networkx", "mpmath": "mpmath", "absl-py": "absl", "certifi": "certifi", "python-dateutil": "dateutil",
}  # fmt: skip


def pack(folder: pathlib.Path, packages: dict[str, str]) -> dict[str, dict[str, bytes]]:
    repos = {}
    for dist, top in packages.items():
        files = codedata.package_files(dist, top)
        codedata.write_tar(folder / f"{top}.tar.gz", files, f"{top}-main")
        repos[top] = files
    return repos


def time_command(repos: pathlib.Path, output: pathlib.Path) -> tuple[float, dict]:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", "code", "--repos", str(repos / "*"), "--output", str(output),
         "--direct_num_workers=1"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start, json.loads((output / "stats.json").read_text())


def time_steps(repos: pathlib.Path) -> dict[str, float]:
    """Each per-file step alone on every file of every repository, as the source runs them."""
    source = code_source.Code("code", code_source.Settings(repos=[str(repos / "*")], licenses=["any"]))
    times = dict.fromkeys(("walk_and_read", "licences", "language", "decode", "secrets", "filters", "pii"), 0.0)
    secrets, chain, anonymise = code.SecretsStep(), filters.build_filters(code.CODE_FILTERS), pii.PiiStep()
    for source_input in source.inputs():
        start = time.perf_counter()
        code.identify_license.cache_clear()
        units = source.plan(source_input)
        times["licences"] += time.perf_counter() - start  # the plan's walk is mostly licence matching
        for unit in units:
            start = time.perf_counter()
            records = [r for r in source.read(unit) if isinstance(r, code_source.CodeFile)]
            times["walk_and_read"] += time.perf_counter() - start
            for record in records:
                start = time.perf_counter()
                language = code.language_of(record.path, record.content)
                times["language"] += time.perf_counter() - start
                if language is None or code.is_binary(record.content):
                    continue
                start = time.perf_counter()
                text = code.decode(record.content)
                times["decode"] += time.perf_counter() - start
                if text is None:
                    continue
                doc = Document(id=record.path, text=text, source="code", language=language, path=record.path)
                for name, step in (("secrets", secrets), ("filters", lambda d: filters.apply_filters(chain, d)),
                                   ("pii", anonymise)):  # fmt: skip
                    start = time.perf_counter()
                    step(doc)
                    times[name] += time.perf_counter() - start
    return times


def prose_texts() -> list[str]:
    shared = REPO.parent / "shared" / "fixtures" / "prose"
    texts = [p.read_text(errors="replace") for p in sorted(shared.rglob("*.txt"))] if shared.is_dir() else []
    if not texts:
        from pipeline.common import synthetic

        texts = [" ".join(synthetic.article_paragraphs(__import__("random").Random(i), "en")) for i in range(400)]
    return texts


def tokenizer_costs(repos: dict[str, dict[str, bytes]], vocab_size: int) -> dict:
    from tokenizer.train import TrainConfig, train_from_texts

    code_texts = [
        text
        for files in repos.values()
        for path, data in sorted(files.items())
        if path.endswith(".py") and (text := code.decode(data))
    ]
    train_code, test_code = code_texts[::2], code_texts[1::2]
    prose = prose_texts()
    train_prose, test_prose = prose[::2], prose[1::2]
    config = TrainConfig(vocab_size=vocab_size)
    without = train_from_texts(train_prose, config)
    with_code = train_from_texts(train_prose + train_code, config)

    def bytes_per_token(tokenizer, texts):
        tokens = sum(len(tokenizer.encode(text, add_special_tokens=False).ids) for text in texts)
        return round(sum(len(text.encode()) for text in texts) / tokens, 3)

    round_trips = all(with_code.decode(with_code.encode(t, add_special_tokens=False).ids) == t for t in test_code)
    return {
        "vocab_size": vocab_size,
        "training_bytes": {
            "prose": sum(len(t.encode()) for t in train_prose),
            "code": sum(len(t.encode()) for t in train_code),
        },  # fmt: skip
        "code_bytes_per_token": {
            "without_code": bytes_per_token(without, test_code),
            "with_code": bytes_per_token(with_code, test_code),
        },  # fmt: skip
        "prose_bytes_per_token": {
            "without_code": bytes_per_token(without, test_prose),
            "with_code": bytes_per_token(with_code, test_prose),
        },  # fmt: skip
        "held_out_code_files_round_trip": round_trips,
        "indentation_tokens": sorted(
            len(token) for token in with_code.get_vocab() if set(token) == {"Ġ"}
        ),  # runs of spaces learned as one token ("Ġ" is a space in byte-level BPE)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--packages", help="distribution=package,… (default: 15 pure-Python packages)")
    parser.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args()
    packages = dict(item.split("=") for item in args.packages.split(",")) if args.packages else PACKAGES
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        (folder / "repos").mkdir()
        repos = pack(folder / "repos", packages)
        runs = [time_command(folder / "repos", folder / f"out-{i}") for i in range(args.repeats)]
        seconds = statistics.median(run[0] for run in runs)
        stats = runs[0][1]
        steps = [time_steps(folder / "repos") for _ in range(args.repeats)]
        step_times = {name: statistics.median(s[name] for s in steps) for name in steps[0]}
        total = sum(step_times.values())
        report = {
            "repositories": len(repos),
            "files": stats["records_read"],
            "bytes": sum(len(data) for files in repos.values() for data in files.values()),
            "kept": stats["kept"],
            "skipped": stats["records_skipped"],
            "dropped": stats["dropped"],
            "edits": stats["edits"],
            "command_seconds": [round(run[0], 2) for run in runs],
            "files_per_second_per_core": round(stats["records_read"] / seconds, 1),
            "step_seconds": {name: round(value, 3) for name, value in step_times.items()},
            "step_share": {name: round(value / total, 3) for name, value in step_times.items()},
            "tokenizer": tokenizer_costs(repos, args.vocab_size),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
