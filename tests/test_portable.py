"""The curation pipelines on Beam's portability layer (PortableRunner, the Python job service, SDK workers from an
EXTERNAL worker pool) give the same shards, report and stats as the DirectRunner. This is what a cloud runner
does and the DirectRunner does not: DoFns pickled and set up in other processes, state only the driver has."""

import pytest

from pipeline import recipe as recipes
from pipeline.beam import curate
from pipeline.common import synthetic
from pipeline.common.schema import Document
from tests.portable import portable_services
from tests.test_dedup_pipeline import write_input_shards
from tests.test_minhash import corpus
from tests.test_sources_pipeline import dump_pages
from tests.test_wikipedia import multistream

DIRECT = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]


@pytest.fixture(scope="module")
def portable(tmp_path_factory):
    with portable_services(str(tmp_path_factory.mktemp("portable-services"))) as options:
        yield options


def outputs(folder):
    """Every file a run leaves for its users, by path: shards, the duplicates report, stats.json, the card."""
    files = [*folder.glob("part-*"), *folder.glob("duplicates/part-*"), folder / "stats.json", folder / "README.md"]
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(files)}


def run_both(tmp_path, table, portable_options):
    results = {}
    for name, options in (("direct", DIRECT), ("portable", portable_options)):
        recipe = recipes.from_table({**table, "output": {**table.get("output", {}), "dir": str(tmp_path / name)}})
        stats = curate.run(recipe, options)
        assert not stats.problems()
        results[name] = outputs(tmp_path / name)
    assert results["portable"] == results["direct"]
    return stats


def test_common_crawl_on_the_portable_runner(tmp_path, portable):
    synthetic.write_sample_warc(str(tmp_path / "a.warc.gz"), pages=40, seed=11)
    synthetic.write_sample_warc(str(tmp_path / "b.warc.gz"), pages=30, seed=12)
    # shards by size: how many there are is counted over the whole corpus, the same on either runner
    table = {"output": {"shard_size": "20KB"}, "sources": {"commoncrawl": {"warcs": [str(tmp_path / "*.warc.gz")]}}}
    stats = run_both(tmp_path, table, portable)
    assert stats.input_files == 2 and stats.kept > 40 and stats.dropped["duplicate"] > 0
    assert len(list((tmp_path / "portable").glob("part-*.parquet"))) > 2


def test_wikipedia_read_through_the_index_on_the_portable_runner(tmp_path, portable):
    dump, index, _ = multistream(tmp_path, dump_pages(12), per_stream=2)
    table = {
        "output": {"num_shards": 2},
        "sources": {"wikipedia": {"dumps": [dump], "indexes": [index], "streams_per_part": 1}},
    }
    stats = run_both(tmp_path, table, portable)
    assert stats.kept == 12 and stats.records_skipped == {"namespace": 1, "redirect": 1}


def test_dedup_on_the_portable_runner(tmp_path, portable):
    texts = corpus(seed=4, bases=30, copies=2)
    write_input_shards(
        tmp_path / "in", [Document(id=f"d-{i:03d}", text=t, source="commoncrawl") for i, t in enumerate(texts)]
    )
    table = {"output": {"num_shards": 2}, "sources": {"shards": {"inputs": [str(tmp_path / "in" / "*.parquet")]}}}
    stats = run_both(tmp_path, table, portable)
    assert stats.dropped["near_duplicate"] > 10
