"""A curation output opens in the tools people use: `datasets.load_dataset(OUT)` gives the kept documents and the
duplicates report as a second config (through the dataset card), and DuckDB's recursive glob of OUT's Parquet
finds the kept documents only (not the report, not the work files)."""

import json
import random

import pyarrow.parquet as pq
import pytest

from pipeline import recipe as recipes
from pipeline.beam import curate
from pipeline.output import sinks

datasets = pytest.importorskip("datasets")
duckdb = pytest.importorskip("duckdb")

ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
WORDS = (
    "the river runs past the old mill and children watch boats go by every summer evening while their "
    "parents talk about harvest weather village square market bread bells"
).split()


def article(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(80)) + "."


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def curate_with_copies(tmp_path, fmt="parquet"):
    """Two text sources; 4 of the 30 books are copied into the web source, and one book is copied twice."""
    books = [{"id": f"b{n}", "text": article(n)} for n in range(30)]
    web = [{"id": f"w{n}", "text": books[n]["text"]} for n in range(4)] + [{"id": "w-again", "text": books[0]["text"]}]
    web += [{"id": f"w{n}", "text": article(1000 + n)} for n in range(10, 20)]
    for name, rows in (("books", books), ("web", web)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "out"
    recipe = recipes.from_table(
        {
            "output": {"dir": str(output), "num_shards": 3, "format": fmt},
            "sources": {
                "books": {"kind": "text", "inputs": [str(tmp_path / "books.jsonl")], "keep_measures": True},
                "web": {"kind": "text", "inputs": [str(tmp_path / "web.jsonl")]},
            },
            "dedup": {"prefer": ["books"]},
        }
    )
    stats = curate.run(recipe, ONE_WORKER)
    assert not stats.problems() and stats.dropped["duplicate"] == 5
    return output, stats


def test_load_dataset_gives_the_kept_documents_and_the_report_as_a_second_config(tmp_path):
    output, stats = curate_with_copies(tmp_path)
    kept = datasets.load_dataset(str(output), split="train")
    assert kept.num_rows == stats.kept == json.loads((output / "stats.json").read_text())["kept"] == 40
    shard_ids = {d.id for path in output.glob("part-*.parquet") for d in sinks.read_documents(str(path))}
    assert set(kept["id"]) == shard_ids and len(shard_ids) == 40
    assert not any(doc_id.startswith("web/w") and doc_id[5:].isdigit() and int(doc_id[5:]) < 4 for doc_id in shard_ids)
    measures = {row["id"]: row["measures"] for row in kept}
    assert all(m and {"name", "value"} == set(m[0]) for key, m in measures.items() if key.startswith("books/"))
    assert all(m is None for key, m in measures.items() if key.startswith("web/"))

    report = datasets.load_dataset(str(output), "duplicates", split="train")
    groups = {row["kept_id"]: sorted(row["removed_ids"]) for row in report}
    assert groups == {
        "books/b0": ["web/w-again", "web/w0"],
        "books/b1": ["web/w1"],
        "books/b2": ["web/w2"],
        "books/b3": ["web/w3"],
    }
    assert sum(len(removed) for removed in groups.values()) == stats.dropped["duplicate"]
    card = (output / "README.md").read_text()
    assert f"| **kept** | **{stats.kept}** |" in card and "| dropped: `duplicate` | 5 |" in card


def test_a_recursive_glob_of_the_parquet_finds_the_kept_documents_only(tmp_path):
    output, stats = curate_with_copies(tmp_path)
    assert list((output / "_work").rglob("*.arrow")) and list((output / "duplicates").iterdir())
    glob = f"{output}/**/*.parquet"
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0] == stats.kept
    rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{output}/duplicates/*')").fetchall()[0][0]
    assert rows == pq.read_table(output / "duplicates").num_rows == 4


def test_arrow_shards_load_too_with_their_report(tmp_path):
    output, stats = curate_with_copies(tmp_path, fmt="arrow")
    assert datasets.load_dataset(str(output), split="train").num_rows == stats.kept
    assert datasets.load_dataset(str(output), "duplicates", split="train").num_rows == 4
