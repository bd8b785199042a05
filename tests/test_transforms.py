"""The Beam transforms on their own: counters, dedup survivors, deterministic shards."""

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from pipeline.beam import read as reading, write
from pipeline.common import synthetic
from pipeline.common.schema import Document
from pipeline.dedup import stages
from pipeline.output import sinks
from pipeline.sources.commoncrawl import CommonCrawl, Settings
from tests.conftest import run_python

IN_MEMORY = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])


def counters(result, namespace):
    query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    return {c.key.metric.name: c.committed for c in query["counters"]}


def test_read_source_reports_the_funnel_as_beam_counters(tmp_path):
    warc = tmp_path / "s.warc.gz"
    synthetic.write_sample_warc(str(warc), pages=60, seed=3)
    p = beam.Pipeline(options=IN_MEMORY)
    source = CommonCrawl("commoncrawl", Settings(warcs=[str(warc)]))
    docs, stats = p | reading.ReadSource(source, str(tmp_path / "out"))
    result = p.run()
    result.wait_until_finish()
    read = counters(result, "read")
    assert read["input_files"] == 1
    assert read["records_read"] == 121  # warcinfo + a request and a response per page
    assert read["skipped.not_response"] == 61
    assert read["records_in"] == 60 - read.get("skipped.non_html", 0) - read.get("skipped.http_status", 0)
    dropped = sum(
        counters(result, ns).get(name, 0)
        for ns in ("read", "extract", "langid", "filters")
        for name in counters(result, ns)
        if name.startswith("dropped.")
    )
    committed = sinks.read_documents(next((tmp_path / "out" / "_work").glob("*/*.arrow")).as_posix())
    assert read["records_in"] == dropped + len(committed)


def doc(doc_id, text, date=None):
    return Document(id=doc_id, text=text, source="commoncrawl", date=date)


def test_exact_dedup_keeps_one_per_normalised_text():
    with beam.Pipeline(options=IN_MEMORY) as p:
        docs = p | beam.Create([doc("c", "Hello, World!"), doc("a", "hello world"), doc("b", "Another text.")])
        survivors, stats, report = docs | stages.ExactDedup()
        assert_that(survivors | beam.Map(lambda d: d.id), equal_to(["a", "b"]), label="ids")
        assert_that(
            stats | beam.Map(lambda f: sum(f.dropped.values())) | beam.CombineGlobally(sum),
            equal_to([1]),
            label="dropped",
        )
        assert_that(
            report,
            equal_to(
                [{"cluster_id": "exact:a", "kind": "exact", "cluster_size": 2, "kept_id": "a", "removed_ids": ["c"]}]
            ),
            label="report",
        )


def test_shards_do_not_depend_on_input_order(tmp_path):
    docs = [doc(f"id-{i:03d}", f"text {i}") for i in range(50)]
    outputs = []
    for name, order in (("forward", docs), ("backward", docs[::-1])):
        with beam.Pipeline(options=IN_MEMORY) as p:
            _ = p | beam.Create(order) | write.WriteDocuments(str(tmp_path / name), 4)
        outputs.append([(tmp_path / name / sinks.shard_name(i, 4)).read_bytes() for i in range(4)])
    assert outputs[0] == outputs[1]
    rows = [d.id for i in range(4) for d in sinks.read_documents(str(tmp_path / "forward" / sinks.shard_name(i, 4)))]
    assert sorted(rows) == [d.id for d in docs]


def test_exact_survivor_combine_keeps_every_removed_id_across_merged_accumulators():
    combine = stages._KeepSurvivor(prefer_sources=())
    copies = [doc(f"id-{i}", "same text") for i in (5, 3, 9, 1, 7)]
    left, right = combine.create_accumulator(), combine.create_accumulator()
    for d in copies[:2]:
        left = combine.add_input(left, d)
    for d in copies[2:]:
        right = combine.add_input(right, d)
    best, removed = combine.extract_output(combine.merge_accumulators([left, right]))
    assert best.id == "id-1" and sorted(removed) == ["id-3", "id-5", "id-7", "id-9"]


def test_shards_by_size_follow_the_corpus_and_not_the_order(tmp_path):
    docs = [doc(f"id-{i:03d}", f"text number {i} " * 20) for i in range(60)]
    total = sum(len(d.text.encode()) for d in docs)
    outputs = []
    for name, order in (("forward", docs), ("backward", docs[::-1])):
        with beam.Pipeline(options=IN_MEMORY) as p:
            _ = p | beam.Create(order) | write.WriteDocuments(str(tmp_path / name), shard_bytes=total // 5 - 1)
        outputs.append({path.name: path.read_bytes() for path in sorted((tmp_path / name).glob("part-*"))})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 6  # just over five shards' worth
    assert all(name.endswith("-of-00006.parquet") for name in outputs[0])
    with beam.Pipeline(options=IN_MEMORY) as p:  # nothing kept: still one (empty) shard
        _ = p | beam.Create([]) | write.WriteDocuments(str(tmp_path / "empty"))
    assert [path.name for path in (tmp_path / "empty").iterdir()] == [sinks.shard_name(0, 1)]


def test_a_worker_freezes_its_objects_when_it_exits():
    """The reading DoFn's set-up registers `gc.freeze` for the process's exit: a handler registered before it runs
    after it (atexit is last in, first out) and finds the objects frozen; without the call, they are not."""
    probe = (
        "import atexit, gc; atexit.register(lambda: print('frozen' if gc.get_freeze_count() else 'not frozen')); "
        "from pipeline.beam import read; [read.freeze_objects_at_exit() for _ in range(3)]"
    )
    for script, expected in ((probe, "frozen"), (probe.rsplit(";", 1)[0], "not frozen")):
        out = run_python(script)
        assert out.stdout.strip() == expected
