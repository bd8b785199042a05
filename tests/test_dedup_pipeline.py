"""MinHash deduplication on Beam's DirectRunner: the transform against datasketch's candidates, the
survivor rule, and `python -m pipeline dedup` end to end (1 and 2 workers give the same files)."""

import datetime as dt
import os
import pathlib
import pickle
import random
import tempfile

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import cli, dedup, recipe as recipes
from pipeline.beam import curate
from pipeline.common import synthetic
from pipeline.common.schema import Document
from pipeline.dedup import minhash, stages
from pipeline.output import sinks
from tests.test_minhash import VOCAB, corpus, datasketch_candidate_pairs, union_find_components

IN_MEMORY = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])
CONFIG = minhash.MinHashConfig.create()


def dedup_run(inputs, output, beam_arguments=(), num_shards=8, shard_size="256MB", **dedup):
    """`python -m pipeline dedup` from Python: a recipe with one `shards` source."""
    recipe = recipes.from_table(
        {
            "output": {"dir": str(output), "num_shards": num_shards, "shard_size": shard_size},
            "sources": {"shards": {"inputs": [str(inputs)]}},
            "dedup": dedup,
        }
    )
    return curate.run(recipe, beam_arguments)


def save(values, path):
    pathlib.Path(path).write_bytes(pickle.dumps(list(values)))


def run_minhash(docs, config=CONFIG, prefer=(), rounds=minhash.DEFAULT_ROUNDS):
    """Survivor ids, dropped count and report rows of MinHashDedup over `docs`."""
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: os.path.join(folder, name) for name in ("kept", "stats", "report")}
        with beam.Pipeline(options=IN_MEMORY) as p:
            kept, stats, report = p | beam.Create(docs) | stages.MinHashDedup(config, prefer, rounds)
            outputs = {"kept": kept | "Ids" >> beam.Map(lambda d: d.id), "stats": stats, "report": report}
            for name, pcollection in outputs.items():
                _ = pcollection | f"All{name}" >> beam.combiners.ToList() | f"Save{name}" >> beam.Map(save, paths[name])
        found = {name: pickle.loads(pathlib.Path(path).read_bytes()) for name, path in paths.items()}
    dropped = sum(f.dropped.get("near_duplicate", 0) for f in found["stats"])
    return set(found["kept"]), dropped, found["report"]


def test_components_are_those_of_datasketchs_candidate_pairs(summary):
    texts = corpus(seed=5, bases=80, copies=3)
    docs = [Document(id=f"doc-{i:04d}", text=text, source="commoncrawl") for i, text in enumerate(texts)]
    signatures = minhash.Signer(CONFIG.num_perm, CONFIG.ngram, CONFIG.seed).signatures(texts)
    pairs = datasketch_candidate_pairs(signatures, CONFIG.num_perm, CONFIG.bands, CONFIG.rows, CONFIG.seed)
    components = union_find_components(range(len(docs)), pairs)
    expected_kept = {docs[root].id for root in set(components.values())}

    kept, dropped, report = run_minhash(docs)
    assert kept == expected_kept
    assert dropped == len(docs) - len(kept) > 100
    assert sum(row["cluster_size"] - 1 for row in report) == dropped
    assert {row["kept_id"] for row in report} <= kept
    removed = [i for row in report for i in row["removed_ids"]]
    assert len(removed) == len(set(removed)) == dropped and not set(removed) & kept
    # false positives: candidate pairs between documents made independently of each other
    group = {i: i // 4 for i in range(len(docs))}
    cross = sum(1 for a, b in pairs if group[a] != group[b])
    total_cross = len(docs) * (len(docs) - 4) // 2
    assert cross == 0
    summary["MinHash dedup (0.8, 112 permutations): false positives"] = [
        f"{cross} candidate pairs among {total_cross} pairs of unrelated documents "
        f"(rate {cross / total_cross:.2e}); {len(pairs)} candidate pairs within near-copy groups"
    ]


def shifted_chain(seed: int, links: int, shift: int, words: int = 200) -> list[str]:
    rng = random.Random(seed)
    stream = synthetic.word_document(rng, words + shift * links, VOCAB).split()
    return [" ".join(stream[i * shift : i * shift + words]) for i in range(links + 1)]


def test_transitive_chain_ends_in_one_component():
    for seed in range(50):  # a chain where A≈B and B≈C are candidates but A and C are not
        texts = shifted_chain(seed, links=2, shift=12)
        signatures = minhash.Signer().signatures(texts)
        pairs = datasketch_candidate_pairs(signatures, CONFIG.num_perm, CONFIG.bands, CONFIG.rows, CONFIG.seed)
        if pairs == {(0, 1), (1, 2)} and minhash.estimated_jaccard(signatures[0], signatures[2]) < CONFIG.threshold:
            break
    else:
        pytest.fail("no seed gave the chain")
    docs = [Document(id=name, text=text, source="commoncrawl") for name, text in zip("bca", texts)]
    kept, dropped, report = run_minhash(docs)
    assert kept == {"a"} and dropped == 2
    assert report == [
        {"cluster_id": "near:a", "kind": "near", "cluster_size": 3, "kept_id": "a", "removed_ids": ["b", "c"]}
    ]


def test_a_long_chain_converges_with_few_rounds_per_pipeline_only_after_enough_rounds():
    texts = shifted_chain(seed=1, links=40, shift=3)
    rng = random.Random(0)
    ids = [f"id-{i:03d}" for i in range(len(texts))]
    rng.shuffle(ids)  # ids in random order along the chain: the hard case for label propagation
    docs = [Document(id=i, text=t, source="commoncrawl") for i, t in zip(ids, texts)]
    kept, dropped, _ = run_minhash(docs, rounds=6)
    assert kept == {"id-000"} and dropped == 40
    kept_one_round, _, _ = run_minhash(docs, rounds=1)
    assert len(kept_one_round) > 1  # one round is not enough: the driver must run again (tested below)


def test_survivor_is_the_preferred_source_then_the_earliest_date_then_the_smallest_id():
    text = synthetic.word_document(random.Random(3), 120, VOCAB)
    day = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    copies = [
        Document(id="a", text=text, source="commoncrawl", date=day + dt.timedelta(days=5)),
        Document(id="b", text=text + " extra", source="commoncrawl", date=day),
        Document(id="c", text=text + " more", source="commoncrawl", date=day),
        Document(id="z", text=text + " words", source="wikipedia", date=None),
    ]
    assert run_minhash(copies)[0] == {"b"}  # no preference: the earliest, then the smallest id; undated last
    assert min(copies, key=dedup.survivor_key).id == "b"
    assert run_minhash(copies, prefer=("wikipedia",))[0] == {"z"}
    assert run_minhash(copies, prefer=("news", "commoncrawl"))[0] == {"b"}
    unrelated = [
        Document(id=f"u{i}", text=synthetic.word_document(random.Random(i), 120, VOCAB), source="x") for i in range(200)
    ]
    assert run_minhash(unrelated)[0] == {d.id for d in unrelated}


def write_input_shards(folder, docs, shards=3):
    folder.mkdir(parents=True)
    for index in range(shards):
        sinks.write_documents(str(folder / sinks.shard_name(index, shards)), docs[index::shards])


def read_output(folder):
    docs = [d for path in sorted(folder.glob("part-*.parquet")) for d in sinks.read_documents(str(path))]
    report = [
        row
        for path in sorted((folder / "duplicates").glob("part-*.parquet.report"))
        for row in pq.read_table(path).to_pylist()
    ]
    return docs, report


def test_dedup_command_end_to_end_on_one_and_two_workers(tmp_path, capsys):
    rng = random.Random(9)
    texts = corpus(seed=9, bases=40, copies=2)
    docs = [
        Document(
            id=f"cc-{i:03d}",
            text=t,
            source="commoncrawl",
            date=dt.datetime(2024, 1, 1 + rng.randrange(20), tzinfo=dt.UTC),
        )
        for i, t in enumerate(texts)
    ]
    docs.append(Document(id="wiki-1", text=texts[0], source="wikipedia"))  # an exact copy from another source
    write_input_shards(tmp_path / "in", docs)
    (tmp_path / "in" / "part-broken.parquet").write_bytes(b"PAR1 this is not parquet")
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"out-{workers}"
        # shards by size: their number is counted over the corpus, the same for any number of workers
        dedup_run(tmp_path / "in" / "part-*.parquet", out, [f"--direct_num_workers={workers}"], 0, "10KB")
        outputs[workers] = [p.read_bytes() for p in sorted(out.rglob("*.parquet"))]
    assert outputs[1] == outputs[2] and len(list((tmp_path / "out-1").glob("part-*.parquet"))) > 2

    stats = sinks.read_json(str(tmp_path / "out-1" / "stats.json"))
    kept, report = read_output(tmp_path / "out-1")
    assert stats["records_in"] == len(docs) == stats["kept"] + sum(stats["dropped"].values())
    assert stats["kept"] == len(kept) and stats["input_files"] == 4
    assert stats["dropped"]["duplicate"] >= 1 and stats["dropped"]["near_duplicate"] > 20
    assert [e["file"].endswith("part-broken.parquet") for e in stats["errors"]] == [True]
    assert "wiki-1" in {d.id for d in kept} and "cc-000" not in {d.id for d in kept}  # --prefer wikipedia by default
    removed = {i for row in report for i in row["removed_ids"]}
    assert len(removed) == sum(stats["dropped"].values()) and not removed & {d.id for d in kept}
    assert {"exact", "near"} == {row["kind"] for row in report}


def test_dedup_command_runs_again_until_components_converge(tmp_path, caplog):
    texts = shifted_chain(seed=1, links=40, shift=3)
    ids = [f"id-{i:03d}" for i in range(len(texts))]
    random.Random(0).shuffle(ids)
    write_input_shards(tmp_path / "in", [Document(id=i, text=t, source="commoncrawl") for i, t in zip(ids, texts)])
    code = cli.main(
        [
            "dedup",
            "--input",  # the shards, as the shell expands an unquoted glob
            *sorted(map(str, (tmp_path / "in").glob("*.parquet"))),
            "--output",
            str(tmp_path / "out"),
            "--components-rounds",
            "1",
            "--direct_running_mode=in_memory",
        ]
    )
    assert code == 0
    assert "had not converged after 1 rounds" in caplog.text
    kept, report = read_output(tmp_path / "out")
    assert [d.id for d in kept] == ["id-000"] and report[0]["cluster_size"] == 41


def test_dedup_command_user_errors(tmp_path, capsys):
    assert cli.main(["dedup", "--input", str(tmp_path / "none-*.parquet"), "--output", str(tmp_path / "o")]) == 2
    write_input_shards(tmp_path / "in", [Document(id="a", text="x", source="s")], shards=1)
    assert (
        cli.main(["dedup", "--input", str(tmp_path / "in" / "*"), "--output", str(tmp_path / "o"), "--bands", "3"]) == 2
    )
    assert "give both bands and rows" in capsys.readouterr().err


def test_shards_written_by_other_tools_deduplicate_and_a_date_column_of_another_kind_is_refused_by_name(tmp_path):
    """datatrove and dolma write `date` as ISO-8601 strings (or leave it out); a date32 column is read as that
    day; a column of numbers is refused, naming the file and the column, while the other shards go through."""
    folder = tmp_path / "in"
    folder.mkdir()
    text = "The same paragraph about the harbour town, copied by two crawls of the same site. " * 5
    pq.write_table(
        pa.table(
            {
                "id": ["datatrove-late", "datatrove-early"],
                "text": [text, text],
                "date": ["2024-03-01T10:00:00Z", "2023-12-31T08:30:00.000+00:00"],
                "metadata": ['{"url": "a"}', '{"url": "b"}'],
            }
        ),
        folder / "part-a.parquet",
    )
    pq.write_table(
        pa.table({"id": ["dolma-1"], "text": [text], "date": pa.array([dt.date(2024, 1, 5)], pa.date32())}),
        folder / "part-b.parquet",
    )
    pq.write_table(pa.table({"id": ["undated"], "text": [text]}), folder / "part-c.parquet")
    pq.write_table(
        pa.table({"id": ["epoch"], "text": ["other text"], "date": pa.array([1704067200], pa.int64())}),
        folder / "part-d.parquet",
    )
    dedup_run(folder / "part-*.parquet", tmp_path / "out")
    kept, report = read_output(tmp_path / "out")
    assert [d.id for d in kept] == ["datatrove-early"]  # the earliest date survives; the undated copy loses
    assert kept[0].date == dt.datetime(2023, 12, 31, 8, 30, tzinfo=dt.UTC)
    assert sorted(report[0]["removed_ids"]) == ["datatrove-late", "dolma-1", "undated"]
    stats = sinks.read_json(str(tmp_path / "out" / "stats.json"))
    (error,) = stats["errors"]
    assert error["file"].endswith("part-d.parquet") and "column date is int64" in error["error"]


def test_a_hub_of_near_copies_keeps_one_and_reports_the_whole_cluster(tmp_path):
    # a templated page: every copy differs by one number, so all reach MinHash and share every LSH bucket, and the
    # connected components see one node with every copy as its neighbour (bench/bench_hub.py: 50,000 of them)
    rng = random.Random(5)
    page = synthetic.word_document(rng, 300, VOCAB)
    copies = 1_500
    docs = [Document(id=f"copy-{i:05d}", text=f"{page} Item {i}.", source="commoncrawl") for i in range(copies)]
    docs += [
        Document(id=f"other-{i}", text=synthetic.word_document(rng, 300, VOCAB), source="commoncrawl")
        for i in range(20)
    ]
    write_input_shards(tmp_path / "in", docs)
    stats = dedup_run(tmp_path / "in" / "*.parquet", tmp_path / "out", ["--direct_running_mode=in_memory"])
    kept, report = read_output(tmp_path / "out")
    assert sorted(d.id for d in kept) == ["copy-00000", *sorted(f"other-{i}" for i in range(20))]
    assert stats.dropped == {"near_duplicate": copies - 1} and not stats.problems()
    (cluster,) = report
    assert cluster["kept_id"] == "copy-00000" and cluster["cluster_size"] == copies


@pytest.mark.shared
def test_boilerplate_lines_are_the_paragraphs_dolma_finds_duplicated(shared_fixtures, tmp_path):
    """dolma's deduper test data: ten real crawl documents, two of which share their header and footer. dolma's
    Bloom-filter paragraph dedup marks the second one's 43 shared paragraphs; CCNet's rule (lines in two or more
    documents) removes those same paragraphs, from both."""
    import gzip
    import json

    fixtures = shared_fixtures / "dedup" / "dolma_deduper"
    docs = [json.loads(line) for line in gzip.open(fixtures / "documents_000.json.gz", "rt")]
    marked = {}
    for line in gzip.open(fixtures / "expected_dedupe-paragraphs.json.gz", "rt"):
        row = json.loads(line)
        text = next(doc["text"] for doc in docs if doc["id"] == row["id"])
        marked[row["id"]] = [
            text[start:end].strip("\n") for start, end, _ in row["attributes"]["bff_duplicate_paragraph_spans"]
        ]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d["text"], "url": d["id"]}) + "\n" for d in docs))
    output = tmp_path / "out"
    arguments = ["text", "--input", str(tmp_path / "docs.jsonl"), "--output", str(output), "--line-dedup"]
    assert cli.main([*arguments, "--direct_running_mode=in_memory"]) == 0
    stats = json.loads((output / "stats.json").read_text())
    shared = [paragraphs for paragraphs in marked.values() if paragraphs]
    assert len(shared) == 1 and len(shared[0]) == 43
    assert stats["edits"]["line_dedup.text.lines"] == 2 * 43 and stats["edits"]["line_dedup.text.documents"] == 2
    rows = pq.read_table(sorted(output.glob("part-*.parquet")), columns=["url", "text"]).to_pylist()
    kept = {row["url"]: row["text"] for row in rows}
    for doc in docs:
        original, now = doc["text"].split("\n"), kept[doc["id"]].split("\n")
        removed = [line for line in original if line not in now]
        expected = shared[0] if doc["text"].split("\n")[0] == docs[0]["text"].split("\n")[0] else []
        assert sorted(set(removed)) == sorted(set(expected)), doc["id"]
    report = (output / "report.html").read_text()
    assert 'id="edits-line_dedup.text.lines"' in report
    # no line is in three of these documents
    arguments[4] = str(tmp_path / "three")
    assert cli.main([*arguments, "--line-min-documents", "3", "--direct_running_mode=in_memory"]) == 0
    assert not json.loads((tmp_path / "three" / "stats.json").read_text())["edits"]
