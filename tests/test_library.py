"""Curation as a library: a source of one's own through the generic processor and transform, recipes that
reproduce a run, resume that knows the code and the model, the one corpus reader, streaming units, measures."""

import bz2
import dataclasses
import gzip
import json
import lzma
import pathlib
import random
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline import cli, recipe as recipes
from pipeline.beam import curate
from pipeline.common import corpus, synthetic
from pipeline.common.schema import Document, Skipped
from pipeline.common.settings import UsageError
from pipeline.output import sinks
from pipeline.output.stats import Funnel
from pipeline.sources import DocumentSettings, Source, register
from pipeline.steps import process, units

REPO = pathlib.Path(__file__).resolve().parent.parent
ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
PROSE = (
    "The river runs past the old mill and the children watch the boats go by every summer evening "
    "while their parents talk about the harvest and the weather in the village square. "
)


@dataclasses.dataclass
class LineSettings(DocumentSettings):
    path: str = ""
    filters: list[str] = dataclasses.field(default_factory=lambda: ["min_length"])
    min_language_score: float = 0.0


class NumberedLines(Source):
    """A source in a few lines: every line of a file is a document; lines starting with # are skipped."""

    Settings = LineSettings
    kind = "numbered-lines"

    def inputs(self):
        return [self.settings.path]

    def read(self, path):
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.startswith("#"):
                    yield Skipped("comment", number)
                else:
                    yield Document(id=f"{self.name}/{number}", text=line.strip(), source=self.name)


register(NumberedLines.kind, NumberedLines)


def sentence(seed: int) -> str:
    words = PROSE.replace(".", "").split()
    return " ".join(random.Random(seed).sample(words, len(words))) + "."


def write_lines(path, count=30):
    lines = ["# header", *[sentence(n) if n % 5 else "too short" for n in range(1, count)]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def line_recipe(tmp_path, output, **settings):
    return recipes.from_table(
        {
            "output": {"dir": str(output), "num_shards": 2},
            "sources": {"mine": {"kind": "numbered-lines", "path": str(tmp_path / "lines.txt"), **settings}},
        }
    )


def shard_ids(output):
    return sorted(d.id for path in sorted(output.glob("part-*.parquet")) for d in sinks.read_documents(str(path)))


def test_a_source_written_here_runs_through_the_generic_processor_and_transform(tmp_path):
    lines = write_lines(tmp_path / "lines.txt")
    recipe = line_recipe(tmp_path, tmp_path / "out")
    # without Beam
    processor = process.UnitProcessor(recipe.source("mine"))
    funnel = Funnel()
    kept = list(processor.process(str(tmp_path / "lines.txt"), funnel))
    expected = [f"mine/{n}" for n in range(2, len(lines) + 1) if (n - 1) % 5]
    assert [d.id for d in kept] == expected and all(d.language_label == "en" for d in kept)
    assert funnel.records_skipped == {"comment": 1} and funnel.dropped == {"min_length.too_few_words": 5}
    # on Beam, through the Python API
    stats = curate.run(recipe, ONE_WORKER)
    assert not stats.problems() and stats.kept == len(expected) and stats.input_files == 1
    assert shard_ids(tmp_path / "out") == sorted(expected)


def test_a_recipe_rerun_from_its_recipe_toml_into_another_folder_gives_the_same_shards(tmp_path):
    synthetic.write_sample_warc(str(tmp_path / "s.warc.gz"), pages=40, seed=5)
    write_lines(tmp_path / "lines.txt")
    (tmp_path / "r.toml").write_text(f"""
[output]
num_shards = 3
[sources.commoncrawl]
warcs = ["{tmp_path}/s.warc.gz"]
[sources.mine]
kind = "numbered-lines"
path = "{tmp_path}/lines.txt"
keep_measures = true
[dedup]
prefer = ["mine"]
""")
    assert (
        cli.main(
            [
                "run",
                "--recipe",
                str(tmp_path / "r.toml"),
                "--output",
                str(tmp_path / "first"),
                "--output.format",
                "parquet",
                *ONE_WORKER,
            ]
        )
        == 0
    )
    saved = tmp_path / "first" / "recipe.toml"
    assert recipes.load(str(saved)).sources["mine"].keep_measures is True
    assert cli.main(["run", "--recipe", str(saved), "--output", str(tmp_path / "second"), *ONE_WORKER]) == 0
    for index in range(3):
        name = sinks.shard_name(index, 3)
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()
    rows = pq.read_table(tmp_path / "first" / sinks.shard_name(0, 3)).to_pylist()
    mine = [row for row in rows if row["source"] == "mine"]
    web = [row for row in rows if row["source"] == "commoncrawl"]
    assert mine and all({m["name"]: m["value"] for m in row["measures"]}["min_length.words"] >= 25 for row in mine)
    assert web and all(row["measures"] is None for row in web)  # measures kept for one source only


def work_dirs(output):
    return sorted(path.name for path in (output / "_work").iterdir())


def test_a_rerun_redoes_units_after_the_code_or_the_language_model_changes(tmp_path, monkeypatch):
    write_lines(tmp_path / "lines.txt")
    recipe = line_recipe(tmp_path, tmp_path / "out")
    curate.run(recipe, ONE_WORKER)
    first = work_dirs(tmp_path / "out")
    curate.run(recipe, ONE_WORKER)
    assert work_dirs(tmp_path / "out") == first  # same settings, model and code: the committed unit is read back
    monkeypatch.setattr(units, "code_version", lambda source: "a filter changed")
    stats = curate.run(recipe, ONE_WORKER)
    assert len(work_dirs(tmp_path / "out")) == 2 and stats.kept == 24
    # the model is known by its content, not its path
    from pipeline.steps.langid import default_model_path

    source = recipe.source("mine")
    copy = tmp_path / "copy.ftz"
    copy.write_bytes(open(default_model_path(), "rb").read())
    other = tmp_path / "other.ftz"
    other.write_bytes(copy.read_bytes()[:-1] + b"x")
    assert units.fingerprint(source, str(copy), "v") == units.fingerprint(source, None, "v")
    assert units.fingerprint(source, str(other), "v") != units.fingerprint(source, None, "v")


def test_a_unit_streams_into_several_files_and_is_read_back_the_same(tmp_path):
    write_lines(tmp_path / "lines.txt", count=60)
    recipe = line_recipe(tmp_path, tmp_path / "out")
    store = units.UnitStore(str(tmp_path / "work"), max_file_bytes=2_000)
    processor = process.UnitProcessor(recipe.source("mine"))
    produced = list(store.run(processor, str(tmp_path / "lines.txt")))
    files = sorted((tmp_path / "work").glob("*.arrow"))
    assert len(files) >= 4 and not list((tmp_path / "work").glob("*.tmp-*"))
    again = list(store.run(processor, str(tmp_path / "lines.txt")))
    assert [d.id for d in again[:-1]] == [d.id for d in produced[:-1]] and again[-1] == produced[-1]


RECORDS = [
    {"id": "a", "text": "First document.\nSecond line."},
    {"text": "No id here."},
    {"id": "c", "text": "  "},
    {"id": "d", "text": "Dernier document, en français."},
]


def write_every_format(folder):
    lines = "".join(json.dumps(record) + "\n" for record in RECORDS).encode()
    (folder / "c.jsonl").write_bytes(lines)
    (folder / "c.jsonl.gz").write_bytes(gzip.compress(lines))
    (folder / "c.jsonl.bz2").write_bytes(bz2.compress(lines))
    (folder / "c.jsonl.xz").write_bytes(lzma.compress(lines))
    (folder / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
    table = pa.Table.from_pylist([{"id": r.get("id"), "text": r["text"]} for r in RECORDS])
    pq.write_table(table, folder / "c.parquet")
    with pa.ipc.new_file(str(folder / "c.arrow"), table.schema) as writer:
        writer.write_table(table)


def test_the_one_reader_gives_the_same_documents_for_every_format_and_compression(tmp_path):
    from tokenizer import corpus as tokenizer_corpus

    write_every_format(tmp_path)
    expected = [("a", "First document.\nSecond line."), ("c/2", "No id here."), ("d", "Dernier document, en français.")]
    for path in sorted(tmp_path.iterdir()):
        items = list(corpus.read_file(str(path), "c"))
        kept = [(item.key, item.text) for item in items if isinstance(item, corpus.TextRecord)]
        row_based = path.suffix in (".parquet", ".arrow")
        assert kept == [(key.replace("c/2", "c/1") if row_based else key, text) for key, text in expected], path.name
        assert [item.reason for item in items if isinstance(item, Skipped)] == ["no_text"], path.name
    # plain text per line streams, with universal newlines, and keys by line number
    (tmp_path / "lines.txt.gz").write_bytes(gzip.compress("\ufeffa\r\nb\rc\n\n  \nd".encode()))
    lines = list(corpus.read_file(str(tmp_path / "lines.txt.gz"), "l", lines=True))
    assert [(r.key, r.text) for r in lines] == [("l/1", "a"), ("l/2", "b"), ("l/3", "c"), ("l/6", "d")]
    # the tokenizer reads through the same reader: a .jsonl.bz2 is documents, not compressed bytes
    spec = tokenizer_corpus.CorpusSpec(paths=[str(tmp_path / "c.jsonl.bz2")])
    assert [record.text for record in tokenizer_corpus.iter_records(spec)] == [text for _, text in expected]


def test_the_tokenizer_and_the_trainer_settings_load_without_beam():
    # the curation modules that load no Beam are tests/test_layout.py's
    code = (
        "import sys, tokenizer.cli, train.config; print(sorted(m for m in sys.modules if m.startswith('apache_beam')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_recipe_mistakes_name_the_setting(tmp_path, capsys):
    (tmp_path / "r.toml").write_text('[sources.commoncrawl]\nwarc = ["x"]\n')
    assert cli.main(["run", "--recipe", str(tmp_path / "r.toml"), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        "python -m pipeline: error: unknown setting sources.commoncrawl.warc "
        "(did you mean sources.commoncrawl.warcs?)\n"
    )
    with pytest.raises(UsageError, match="sources.x.kind: no source kind 'nope'"):
        recipes.from_table({"sources": {"x": {"kind": "nope"}}})
    with pytest.raises(UsageError, match="output.dir"):
        recipes.from_table({"sources": {"text": {"inputs": ["a"]}}}).check()
    assert cli.main(["run", "--recipe", str(tmp_path / "missing.toml")]) == 2
    assert "--recipe: " in capsys.readouterr().err


def test_run_help_lists_every_setting_with_its_default(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for line in (
        '[output] dir = ""',
        "[dedup] enabled = true",
        'kind = "commoncrawl"',
        'kind = "wikipedia"',
        'kind = "text"',
        'kind = "shards"',
        "keep_measures = false",
        "unit_file_bytes = 268435456",
    ):
        assert line in out, line


def test_the_sample_recipe_of_the_help_and_the_demo_runs(tmp_path):
    sample = synthetic.write_sample(str(tmp_path / "sample"), pages=20, articles=4, seed=2)
    recipe = recipes.load(
        str(REPO / "configs" / "curate-sample.toml"),
        [
            ("output.dir", str(tmp_path / "out")),
            ("sources.commoncrawl.warcs", [sample.warc]),
            ("sources.wikipedia.dumps", [sample.dump]),
            ("sources.wikipedia.indexes", [sample.index]),
        ],
    )
    stats = curate.run(recipe, ONE_WORKER)
    assert stats.kept > 0 and not stats.problems() and len(list((tmp_path / "out").glob("part-*"))) == 4


def test_funnels_merged_in_any_order_write_the_same_stats():
    """Both engines merge a run's funnels in whatever order their tasks finish: ties (one id dropped twice for one
    reason, two errors at one offset) are ordered by content, so stats.json is the same bytes either way."""
    from pipeline.output.stats import EXAMPLES_PER_REASON, Funnel

    parts = []
    for number in range(6):
        funnel = Funnel(records_read=1, records_in=1)
        funnel.drop("min_length.too_few_words")
        funnel.example("min_length.too_few_words", "same-id", f"https://e.example/{number}", f"text {number}")
        funnel.error("a.warc.gz", 7, f"ReadError: cut at {number}")
        parts.append(funnel)
    orders = [parts, parts[::-1], [*parts[3:], *parts[:3]]]
    written = []
    for order in orders:
        merged = Funnel()
        for part in order:
            merged.merge(Funnel.from_json(part.to_json()))
        written.append(json.dumps(merged.to_json(), sort_keys=True))
    assert written[0] == written[1] == written[2]
    examples = json.loads(written[0])["examples"]["min_length.too_few_words"]
    assert [e["url"] for e in examples] == [f"https://e.example/{n}" for n in range(EXAMPLES_PER_REASON)]


def test_the_fingerprint_knows_a_word_list_or_index_by_its_content(tmp_path):
    from pipeline.sources import localtext

    first, copy, other = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    first.write_text("darn\n")
    copy.write_text("darn\n")
    other.write_text("heck\n")

    def fingerprint(**settings):
        source = localtext.LocalText("mine", localtext.Settings(inputs=["x"], **settings))
        return units.fingerprint(source, None, "v")

    assert fingerprint(badwords={"en": str(first)}) == fingerprint(badwords={"en": str(copy)})
    assert fingerprint(badwords={"en": str(first)}) != fingerprint(badwords={"en": str(other)})
    assert fingerprint(pii_patterns=str(first)) != fingerprint(pii_patterns=str(other))
    assert fingerprint(badwords={"en": str(first)}) != fingerprint(badwords={"de": str(first)})
