"""No single input can stop a curation, change its output silently or lose data (docs/reliability.md).

Per-document code is tested without Beam; the runs go through the command line on the DirectRunner, one worker.
"""

import gzip
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.common import synthetic
from pipeline.common.schema import Document, Dropped, valid_text
from pipeline.output.stats import Funnel
from pipeline.sources import Source, localtext
from pipeline.sources.commoncrawl import read_warc
from pipeline.steps import html, process, units

IN_MEMORY = "--direct_running_mode=in_memory"
TEXT = ["--filters", "none", IN_MEMORY]  # short test documents: no length filter
NOT_TEXT_CODECS = ["hex", "base64", "rot13", "uu", "zip", "bz2", "quoted-printable", "undefined", "idna"]


def page(seed: int, language: str = "en") -> bytes:
    paragraphs = synthetic.article_paragraphs(random.Random(seed), language)
    return synthetic.article_page(f"Story {seed}", paragraphs, language).encode()


def shard_rows(output) -> list[dict]:
    paths = sorted(str(p) for p in output.glob("part-*.parquet"))
    return pq.read_table(paths).to_pylist() if paths else []


def stats_of(output) -> dict:
    return json.loads((output / "stats.json").read_text())


@pytest.mark.parametrize("codec", NOT_TEXT_CODECS)
def test_a_charset_that_is_not_a_text_encoding_is_passed_over(codec):
    body = "<html><body><p>Grüße aus der Stadt</p></body></html>".encode()
    assert html.decode_html(body, f"text/html; charset={codec}") == (body.decode(), "utf-8")
    meta = f'<html><head><meta charset="{codec}"></head><body>Grüße</body></html>'.encode()
    assert html.decode_html(meta, "text/html")[1] == "utf-8"


def test_text_is_made_valid_unicode():
    assert valid_text("a\ud800b\x00c") == "a\ufffdb\ufffdc"
    assert valid_text("\ud83d\ude00") == "\U0001f600"  # a surrogate pair is joined, not replaced
    text = "plain text, ünïcode 🙂"
    assert valid_text(text) is text
    utf7 = html.decode_html(b"<html><body>+2AA- lone</body></html>", "text/html; charset=utf-7")[0]
    assert "\ud800" in utf7 and valid_text(utf7) == "<html><body>\ufffd lone</body></html>"


class _Flaky(Source):
    """Records 0..n-1; the record `bad` makes `document` raise, and reading stops with an exception at `stop`."""

    kind = "flaky"

    def __init__(self, bad: int, stop: int | None = None):
        super().__init__("flaky", None)
        self.bad, self.stop = bad, stop

    def read(self, unit):
        for index in range(10):
            if index == self.stop:
                raise RuntimeError("the reader broke \x00\x01")
            yield index

    def document(self, record):
        if record == self.bad:
            raise KeyError(record)
        if record == 1:
            return Dropped("url_blocklist", record)
        return Document(id=f"flaky/{record}", text=f"text {record} \ud800", source="flaky")


class _Exploding:
    name = "exploding"

    def __call__(self, doc):
        if doc.id.endswith("3"):
            raise ZeroDivisionError("a filter divided by nothing")
        return None


def test_a_step_or_reader_that_raises_costs_its_document_and_is_counted(caplog):
    source = _Flaky(bad=5)
    source.steps = lambda unit: [_Exploding()]
    processor = process.UnitProcessor(source)
    funnel = Funnel()
    kept = list(processor.process("unit", funnel))
    assert [doc.id for doc in kept] == [f"flaky/{i}" for i in (0, 2, 4, 6, 7, 8, 9)]
    assert all(doc.text.endswith("\ufffd") for doc in kept)  # made valid where it was read
    assert dict(funnel.dropped) == {
        "url_blocklist": 1,
        "error.read.KeyError": 1,
        "error.exploding.ZeroDivisionError": 1,
    }
    assert funnel.problems() == [] and funnel.records_in == 10
    assert funnel.examples["error.exploding.ZeroDivisionError"][0]["error"] == (
        "ZeroDivisionError: a filter divided by nothing"
    )
    unit = {"file": "unit", "unit": source.unit_key("unit"), "errors": 2, "documents": 10}
    assert funnel.error_units == [unit]
    assert funnel.noisy_units(0.1) == funnel.error_units and funnel.noisy_units(0.2) == []
    from pipeline.output import report

    shown = report._example(funnel.examples["error.exploding.ZeroDivisionError"][0])
    assert '<p class="error">ZeroDivisionError: a filter divided by nothing</p>' in shown
    logged = [r.getMessage() for r in caplog.records if "raised" in r.getMessage()]
    assert len(logged) == 2 and "unit @ flaky/3: exploding raised ZeroDivisionError: a filter" in "".join(logged)
    assert "unit @ record 5: read raised KeyError: 5" in "".join(logged)

    # a reader that breaks ends its unit with an input error; what it read before stays
    funnel = Funnel()
    kept = list(process.UnitProcessor(_Flaky(bad=-1, stop=4)).process("unit", funnel))
    assert [doc.id for doc in kept] == ["flaky/0", "flaky/2", "flaky/3"]
    assert funnel.errors == [
        {
            "file": "unit",
            "offset": None,
            "error": "error.read: RuntimeError: the reader broke \\x00\\x01",
            "retryable": False,
        }
    ]


def test_the_summary_names_a_unit_over_the_error_share_and_fails_only_when_asked(capsys):
    from pipeline.recipe import ErrorSettings

    funnel = Funnel(input_files=1, records_read=10, records_in=10, kept=7)
    funnel.drop("error.extract.ValueError", 3)
    funnel.unit_error("a.warc.gz", "a-1234", 3, 10)
    assert cli.summarise("out", funnel, 1.0, ErrorSettings(max_share=0.5)) == 0
    assert "a.warc.gz" not in capsys.readouterr().err
    assert cli.summarise("out", funnel, 1.0, ErrorSettings(max_share=0.2)) == 0
    assert "a.warc.gz (a-1234): a step failed on 3 of its 10 documents" in capsys.readouterr().err
    assert cli.summarise("out", funnel, 1.0, ErrorSettings(max_share=0.2, fail=True)) == 1


def test_empty_and_garbage_warcs_are_input_errors_in_printable_words(tmp_path):
    (tmp_path / "empty.warc.gz").write_bytes(b"")
    [error] = read_warc(str(tmp_path / "empty.warc.gz"))
    assert error.error == "no WARC or ARC record: the file is empty"
    (tmp_path / "garbage.warc.gz").write_bytes(bytes(random.Random(1).getrandbits(8) for _ in range(5000)))
    [error] = read_warc(str(tmp_path / "garbage.warc.gz"))
    assert error.error.startswith("ArchiveLoadFailed: Unknown archive format (it starts ")
    assert len(error.error) < 200 and error.error.isascii() and error.error.isprintable()


def test_the_resume_fingerprint_covers_every_module_the_worker_runs():
    from pipeline.sources import source_class

    def files(kind):
        source = source_class(kind)(kind, source_class(kind).Settings())
        return {
            path.rsplit("/pipeline/", 1)[1]
            for path in units.per_document_files(
                ["pipeline.steps.process", "pipeline.steps.units", type(source).__module__]
            )
        }

    crawl = files("commoncrawl")
    assert {
        "steps/html.py",
        "steps/extract.py",
        "steps/filters.py",
        "steps/langid.py",
        "common/schema.py",
        "sources/commoncrawl.py",
    } <= crawl
    assert "steps/wikitext.py" in files("wikipedia") and "common/corpus.py" in files("text")
    assert (
        not {"cli.py", "beam/read.py", "beam/write.py", "dedup/stages.py", "spark/read.py", "output/report.py"} & crawl
    )  # the engine layers make no document


# --- hostile inputs through a whole run -------------------------------------------------------------------------


def _member(record: bytes) -> bytes:
    return gzip.compress(record, mtime=0)


def _raw_response(url: str, http_head: bytes, body: bytes, declared: int | None = None) -> bytes:
    payload = http_head + b"\r\n" + body
    length = len(payload) if declared is None else declared
    head = (
        f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2026-01-15T12:00:00Z\r\n"
        f"WARC-Record-ID: <{uuid.UUID(int=random.Random(url).getrandbits(128)).urn}>\r\n"
        f"Content-Type: application/http; msgtype=response\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
    return _member(head + payload + b"\r\n\r\n")


def hostile_responses() -> list[synthetic.Response]:
    """One record for each kind of page that once stopped or changed a run."""
    responses = []
    for index, codec in enumerate(["hex", "base64", "rot13", "uu", "zip", "bz2", "quoted-printable"]):
        responses.append(
            synthetic.Response(
                f"https://charset.example/{codec}", content_type=f"text/html; charset={codec}", body=page(index)
            )
        )
    meta = page(20).replace(b"<head>", b'<head><meta http-equiv="Content-Type" content="text/html; charset=hex">')
    surrogate_body = b"<html><body><article><p>" + b"Lone surrogates &#xD800; and &#xDFFF; in a page. " * 20
    return [
        *responses,
        synthetic.Response("https://charset.example/meta", body=meta),
        synthetic.Response(  # ASCII, as UTF-7 is: +2AA- is a lone surrogate
            "https://utf7.example/",
            content_type="text/html; charset=utf-7",
            body=surrogate_body.replace(b"&#xD800;", b"+2AA-"),
        ),
        synthetic.Response("https://entity.example/", body=surrogate_body + b"</p></article></body></html>"),
        synthetic.Response(
            "https://long.example/", body=b"<html><body><p>" + b"word " * 600_000 + b"</p></body></html>"
        ),
        synthetic.Response("https://deep.example/", body=b"<div>" * 60_000 + b"deep text" + b"</div>" * 60_000),
        synthetic.Response(
            "https://params.example/", content_type="text/html; charset=\x01; ;;=;q=\x7f; charset", body=page(22)
        ),
        synthetic.Response("https://empty.example/", body=b""),
    ]


def real_responses() -> list[synthetic.Response]:
    return [
        synthetic.Response(f"https://real.example/{i}", body=page(100 + i), record_id=f"<{uuid.UUID(int=i + 1).urn}>")
        for i in range(6)
    ]


def _warc(responses) -> bytes:
    stream = io.BytesIO()
    synthetic.write_warc(stream, responses, ids=random.Random(0))
    return stream.getvalue()


def hostile_warc() -> bytes:
    broken = bytearray(_member(b"WARC/1.0\r\nWARC-Type: response\r\n" + b"x" * 4000))
    broken[20:60] = b"\xff" * 40  # a corrupt gzip member
    not_deflate = b"\x1f\x8b\x08\x00" + b"\x00" * 6 + zlib.compress(b"no")[2:]  # a gzip header on nonsense
    return b"".join(
        [
            _warc(hostile_responses()),
            _raw_response("https://length.example/", b"HTTP/1.1 200 OK\r\nContent-Type: text/html", page(30), 10**7),
            bytes(broken),
            not_deflate,
            _raw_response("https://no-type.example/", b"HTTP/1.1 200 OK\r\nContent-Type:", page(31)),
            _warc(real_responses()),
        ]
    )


def test_hostile_records_cost_only_themselves(tmp_path):
    (tmp_path / "hostile").mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "hostile" / "crawl.warc.gz").write_bytes(hostile_warc())
    (tmp_path / "real" / "crawl.warc.gz").write_bytes(_warc(real_responses()))
    outputs = {}
    for name in ("hostile", "real"):
        outputs[name] = tmp_path / f"out-{name}"
        arguments = ["commoncrawl", "--warcs", str(tmp_path / name / "*.warc.gz"), "--output", str(outputs[name])]
        assert cli.main([*arguments, "--no-dedup", "--filters", "none", "--min-language-score", "0", IN_MEMORY]) == 0
    stats = stats_of(outputs["hostile"])
    assert Funnel.from_json(stats).problems() == []
    rows = {row["url"]: row for row in shard_rows(outputs["hostile"])}
    alone = {row["url"]: row for row in shard_rows(outputs["real"])}
    assert len(alone) == 6 and {url: rows[url] for url in alone} == alone  # the real pages, exactly as alone
    for codec in ["hex", "base64", "rot13", "uu", "zip", "bz2", "quoted-printable", "meta"]:
        assert f"https://charset.example/{codec}" in rows  # decoded as UTF-8, kept
    texts = "".join(row["text"] for row in rows.values())
    assert valid_text(texts) == texts  # no lone surrogate reached a shard
    assert "\ufffd" in rows["https://utf7.example/"]["text"]
    assert stats["dropped"]["html_too_large"] == 1  # the 3 MB line
    broken = [error for error in stats["errors"] if error["file"].endswith("crawl.warc.gz")]
    assert broken and all(error["error"].isprintable() for error in broken)
    counted = stats["kept"] + sum(stats["dropped"].values()) + sum(stats["records_skipped"].values())
    assert counted == stats["records_read"]


# --- flags reach the recipe, and the recipe the output ---------------------------------------------------------


def lines_file(path, lines) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


SENTENCE = "The committee met on Tuesday to discuss the budget for the new library and the park near the river"


def test_dedup_switches_reach_the_output_and_a_rerun_publishes_exactly_its_own_shards(tmp_path):
    distinct = [" ".join(synthetic.article_paragraphs(random.Random(i), "en")) for i in range(20)]
    copy = " ".join(f"{SENTENCE} and item {i}" for i in range(4))
    text = lines_file(tmp_path / "a.txt", [*distinct, copy, copy, copy + " too"])  # an exact and a near copy
    output = tmp_path / "out"
    base = ["text", "--input", text, "--lines", "--output", str(output), *TEXT]
    assert cli.main([*base, "--num-shards", "3"]) == 0
    assert stats_of(output)["kept"] == 21
    work = sorted(p.name for p in (output / "_work").rglob("*"))
    (output / "part-00009-of-00010.parquet.tmp-0a1b2c3d").write_bytes(b"an unfinished write")

    assert cli.main([*base, "--num-shards", "2", "--no-minhash"]) == 0
    assert "minhash = false" in (output / "recipe.toml").read_text()
    assert sorted(p.name for p in output.glob("part-*")) == [
        "part-00000-of-00002.parquet",
        "part-00001-of-00002.parquet",
    ]
    ids = [row["id"] for row in shard_rows(output)]
    assert len(ids) == len(set(ids)) == stats_of(output)["kept"] == 22  # each document once, the near copy kept
    assert sorted(p.name for p in (output / "_work").rglob("*")) == work  # the resume cache stays, reused
    assert list((output / "duplicates").glob("part-*"))

    assert cli.main([*base, "--num-shards", "2", "--no-dedup", "--format", "arrow"]) == 0
    assert "[dedup]\nenabled = false" in (output / "recipe.toml").read_text()
    assert sorted(p.name for p in output.glob("part-*")) == ["part-00000-of-00002.arrow", "part-00001-of-00002.arrow"]
    assert not list((output / "duplicates").glob("part-*"))  # no report this time: the earlier one went
    rows = pa.concat_tables(pa.ipc.open_file(str(p)).read_all() for p in sorted(output.glob("part-*.arrow")))
    assert rows.num_rows == stats_of(output)["kept"] == 23  # both copies kept


def test_document_ids_are_unique_in_the_output_and_text_valid(tmp_path):
    records = [{"id": str(i), "text": " ".join(synthetic.article_paragraphs(random.Random(i), "en"))} for i in range(6)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:3]))  # the same, repeated
    other = [{"id": "4", "text": "Another corpus entirely, about the migration of birds " * 3}]
    lines = [json.dumps(r) + "\n" for r in other]  # an id that repeats, and a line with lone surrogates:
    lines.append('{"id": "\\ud800x", "text": "' + SENTENCE + ' \\ud800 and \\udfff"}\n')
    (tmp_path / "c.jsonl").write_text("".join(lines))
    output = tmp_path / "out"
    inputs = [str(tmp_path / name) for name in ("a.jsonl", "b.jsonl", "c.jsonl")]
    assert cli.main(["text", "--input", *inputs, "--output", str(output), *TEXT]) == 0
    stats = stats_of(output)
    rows = {row["id"]: row for row in shard_rows(output)}
    assert len(rows) == 8 == stats["kept"]
    assert stats["dropped"] == {"duplicate_id": 3} and stats["renamed_ids"] == 1
    assert [i for i in rows if "~" in i] and Funnel.from_json(stats).problems() == []
    assert rows["text/\ufffdx"]["text"].endswith("\ufffd and \ufffd")  # made valid where it was read


# --- fault injection --------------------------------------------------------------------------------------------


def test_a_run_killed_mid_unit_resumes_to_the_shards_of_an_uninterrupted_run(tmp_path, caplog):
    warcs = tmp_path / "warcs"
    warcs.mkdir()
    for number in range(3):
        pages = [synthetic.Response(f"https://w{number}.example/{i}", body=page(number * 10 + i)) for i in range(5)]
        (warcs / f"{number}.warc.gz").write_bytes(_warc(pages))
    arguments = ["commoncrawl", "--warcs", str(warcs / "*.warc.gz"), "--num-shards", "2"]
    reference, output = tmp_path / "reference", tmp_path / "out"
    assert cli.main([*arguments, "--output", str(reference), IN_MEMORY]) == 0
    command = [sys.executable, "-m", "pipeline", *arguments, "--output", str(output), "--direct_num_workers=2"]
    killed = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(output.glob("_work/*/*.stats.json")) and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # the driver and its worker processes, in the middle of the run
    killed.wait()
    committed = list(output.glob("_work/*/*.stats.json"))
    assert committed and not (output / "stats.json").exists()
    # and a committed work file is damaged: its checksum finds it, its unit is made again
    unit = json.loads(committed[0].read_text())
    damaged = committed[0].parent / unit["files"][0]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    assert cli.main([*arguments, "--output", str(output), IN_MEMORY]) == 0  # the rerun reads what was committed
    assert any("committed unit is damaged" in r.getMessage() for r in caplog.records)
    expected = shard_rows(reference)
    assert shard_rows(output) == expected and len({row["id"] for row in expected}) == len(expected) > 10
    assert stats_of(output) == stats_of(reference)


class FlakyLines(Source):
    """A source of one document per line whose `document()` raises on lines that say so: a source's bug."""

    Settings = localtext.Settings
    kind = "flaky-lines"

    def inputs(self):
        return list(self.settings.inputs)

    def read(self, path):
        with open(path, encoding="utf-8") as lines:
            yield from enumerate(lines)

    def document(self, record):
        number, line = record
        if "raise" in line:
            raise ValueError(f"line {number} says raise")
        return Document(id=f"{self.name}/{number}", text=line.strip(), source=self.name)


def test_a_source_that_raises_costs_its_records_and_the_errors_setting_decides_the_exit(tmp_path, capsys):
    from pipeline.sources import register

    register(FlakyLines.kind, FlakyLines)
    lines = [f"{SENTENCE}, line {i}" if i % 4 else f"{SENTENCE}: raise {i}" for i in range(12)]
    text = lines_file(tmp_path / "a.txt", lines)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'[sources.flaky]\nkind = "flaky-lines"\ninputs = ["{text}"]\nfilters = []\n')
    output = tmp_path / "out"
    arguments = ["run", "--recipe", str(recipe), "--output", str(output), "--dedup.enabled", "false", IN_MEMORY]
    assert cli.main([*arguments, "--errors.max_share", "0.2", "--errors.fail", "true"]) == 1
    error = capsys.readouterr().err
    assert "a step failed on 3 of its 12 documents (more than errors.max_share = 0.2)" in error
    stats = stats_of(output)
    assert stats["dropped"] == {"error.read.ValueError": 3} and stats["kept"] == 9
    assert stats["error_units"][0]["errors"] == 3 and Funnel.from_json(stats).problems() == []
    assert len(shard_rows(output)) == 9
    assert "error.read.ValueError" in (output / "report.html").read_text()
