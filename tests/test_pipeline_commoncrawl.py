"""The Common Crawl pipeline end to end on Beam's DirectRunner, reading from a loopback HTTP server."""

import gzip
import io
import json
import random
import re

import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.beam.curate import check_beam_arguments
from pipeline.common import synthetic
from pipeline.common.settings import UsageError
from pipeline.output.stats import Funnel, stage_of
from tests.conftest import REPO

CRAWL = "CC-MAIN-2026-01"


def article(language: str, seed: int) -> bytes:
    paragraphs = synthetic.article_paragraphs(random.Random(seed), language)
    return synthetic.article_page(f"Story {seed}", paragraphs, language).encode()


def warc(responses) -> bytes:
    stream = io.BytesIO()
    synthetic.write_warc(stream, responses)
    return stream.getvalue()


GERMAN_LATIN1 = synthetic.article_page(
    "Stadt", synthetic.article_paragraphs(random.Random(7), "de"), "de", charset=None
).encode("iso-8859-1")
SHARED_STORY = article("en", 100)


def crawl_files() -> dict[str, bytes]:
    base = f"crawl-data/{CRAWL}/segments/1/warc"
    first = [
        synthetic.Response("https://en.example/1", body=article("en", 1)),
        synthetic.Response("https://en.example/2", body=article("en", 2)),
        synthetic.Response("https://en.example/copy-of-1", body=article("en", 1)),  # exact duplicate
        synthetic.Response("https://fr.example/1", body=article("fr", 3)),
        synthetic.Response(
            "https://de.example/latin1", content_type="text/html; charset=ISO-8859-1", body=GERMAN_LATIN1
        ),
        synthetic.Response("https://en.example/logo.png", content_type="image/png", body=b"\x89PNG\r\n"),
        synthetic.Response("https://en.example/index", body=synthetic.boilerplate_only_html().encode()),
        synthetic.Response("https://blocked.example/page", body=article("en", 4)),
        synthetic.Response("https://en.example/shared", body=SHARED_STORY),
    ]
    second = [  # served only after one 503
        synthetic.Response("https://es.example/1", body=article("es", 5)),
        synthetic.Response("https://mirror.example/shared", body=SHARED_STORY),  # duplicate across WARCs
        synthetic.Response("https://en.example/gone", status="404 Not Found", body=b"gone"),
    ]
    third = [  # its connection drops part way through
        synthetic.Response(f"https://big.example/{i}", body=article("en", 10 + i)) for i in range(30)
    ]
    return {
        f"{base}/first.warc.gz": warc(first),
        f"{base}/second.warc.gz": warc(second),
        f"{base}/third.warc.gz": warc(third),
    }


@pytest.fixture
def crawl(http_server, tmp_path):
    files = crawl_files()
    for path, data in files.items():
        http_server.files["/" + path] = data
    listing = list(files) + [f"crawl-data/{CRAWL}/segments/1/warc/missing.warc.gz"]
    http_server.files[f"/crawl-data/{CRAWL}/warc.paths.gz"] = gzip.compress("\n".join(listing).encode())
    http_server.fail_first["/" + listing[1]] = 1
    http_server.drop_after["/" + listing[2]] = len(files[listing[2]]) // 2
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("blocked.example\n")
    return http_server, listing, blocklist


def run(server, blocklist, output, *extra) -> int:
    return cli.main(
        [
            "commoncrawl",
            "--crawl",
            CRAWL,
            "--cc-base-url",
            server.url,
            "--max-warcs",
            "4",
            "--url-blocklist",
            str(blocklist),
            "--output",
            str(output),
            "--num-shards",
            "3",
            *extra,
        ]
    )


def read_shards(output):
    return pq.read_table(sorted(str(p) for p in output.glob("part-*.parquet"))).to_pylist()


def test_crawl_to_shards_over_http(crawl, tmp_path):
    server, listing, blocklist = crawl
    output = tmp_path / "out"
    assert run(server, blocklist, output, "--direct_num_workers=2") == 0

    assert sorted(p.name for p in output.glob("part-*")) == [f"part-0000{i}-of-00003.parquet" for i in range(3)]
    rows = read_shards(output)
    by_url = {row["url"]: row for row in rows}
    stats = json.loads((output / "stats.json").read_text())
    funnel = Funnel.from_json(stats)
    assert funnel.problems() == []
    assert stats["records_in"] == stats["kept"] + sum(stats["dropped"].values())
    assert stats["records_read"] == stats["records_in"] + sum(stats["records_skipped"].values())
    assert stats["kept"] == len(rows) == len({row["id"] for row in rows})

    # languages and metadata
    assert by_url["https://fr.example/1"]["language"] == "fr"
    assert by_url["https://es.example/1"]["language"] == "es"
    german = by_url["https://de.example/latin1"]
    assert german["language"] == "de" and any(c in german["text"] for c in "äöüß")
    for row in rows:
        assert row["source"] == "commoncrawl" and row["crawl"] == CRAWL and row["date"] is not None
        assert row["id"].startswith("commoncrawl/") and row["language_score"] >= 0.65
        assert "All rights reserved" not in row["text"] and "Most read" not in row["text"]

    # duplicates, inside one WARC and across WARCs: exactly one copy survives
    assert ("https://en.example/1" in by_url) != ("https://en.example/copy-of-1" in by_url)
    assert ("https://en.example/shared" in by_url) != ("https://mirror.example/shared" in by_url)
    assert stats["dropped"]["duplicate"] == 2
    assert stats["dropped"]["url_blocklist"] == 1
    assert stats["dropped"]["extraction_empty"] == 1
    assert stats["records_skipped"]["non_html"] == 1 and stats["records_skipped"]["http_status"] == 1

    # the dropped connection resumed, the 503 was retried, and every page of the third WARC arrived
    assert sum(url.startswith("https://big.example/") for url in by_url) == 30
    third = "/" + listing[2]
    assert any(r and r.startswith("bytes=") for r in server.requests_for(third))
    assert len(server.requests_for("/" + listing[1])) == 2
    # the missing WARC is listed, and nothing else is
    assert [e["file"].rsplit("/", 1)[1] for e in stats["errors"]] == ["missing.warc.gz"]
    assert "404" in stats["errors"][0]["error"]

    # a second run with the same arguments reads the committed WARCs back instead of downloading them
    requests_before = len(server.requests)
    assert run(server, blocklist, output, "--direct_running_mode=in_memory") == 0
    downloads = [p for p, _ in server.requests[requests_before:] if p.endswith(".warc.gz") and "missing" not in p]
    assert downloads == []
    assert json.loads((output / "stats.json").read_text()) == stats
    assert sorted(read_shards(output), key=lambda r: r["id"]) == sorted(rows, key=lambda r: r["id"])


def test_no_dedup_filters_none_and_arrow_format(crawl, tmp_path):
    server, _, blocklist = crawl
    output = tmp_path / "out"
    assert (
        run(
            server,
            blocklist,
            output,
            "--no-dedup",
            "--filters",
            "none",
            "--format",
            "arrow",
            "--languages",
            "fr,es",
            "--direct_running_mode=in_memory",
        )
        == 0
    )
    import pyarrow as pa

    tables = [pa.ipc.open_file(str(p)).read_all() for p in sorted(output.glob("part-*.arrow"))]
    rows = pa.concat_tables(tables).to_pylist()
    assert sorted(row["language"] for row in rows) == ["es", "fr"]
    stats = json.loads((output / "stats.json").read_text())
    assert "duplicate" not in stats["dropped"]
    assert not any(stage_of(reason) == "filters" for reason in stats["dropped"])  # no filter ran
    # other languages: most set aside before trafilatura by the cascade, the rest on trafilatura's text
    assert stats["dropped"]["language.prefilter"] + stats["dropped"].get("language", 0) > 30
    assert Funnel.from_json(stats).problems() == []


def test_user_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["commoncrawl", "--warcs", str(tmp_path / "nothing-*.warc.gz"), "--output", str(tmp_path)]) == 2
    assert "no file matches" in capsys.readouterr().err
    assert cli.main(["commoncrawl", "--warcs", "x", "--filters", "gopher", "--output", str(tmp_path)]) == 2
    assert "unknown filter" in capsys.readouterr().err


def test_a_value_that_follows_no_option_stops_the_run_instead_of_being_dropped(tmp_path, capsys):
    (tmp_path / "a.warc.gz").write_bytes(b"")
    output = tmp_path / "out"
    arguments = ["--output", str(output), "--runner", "DirectRunner", "--save_main_session", "b.warc.gz"]
    assert cli.main(["commoncrawl", "--warcs", str(tmp_path / "a.warc.gz"), *arguments]) == 2
    error = capsys.readouterr().err
    assert "argument that follows no option: b.warc.gz" in error and error.count("\n") == 1
    assert not output.exists()  # stopped before anything was written


@pytest.mark.parametrize(
    ("command", "misspelt", "suggested"),
    [
        (["run", "--recipe", "RECIPE"], ["--ouput", "OUT"], "--output"),
        (["text", "--input", "TEXT"], ["--no-minhsh"], "--no-minhash"),
        (["text", "--input", "TEXT"], ["--direct_num_worker", "2"], "--direct_num_workers"),
        (["text", "--input", "TEXT"], ["--flink_mastr=localhost:8081"], "--flink_master"),
    ],
)
def test_a_misspelt_option_stops_the_run_naming_the_closest(tmp_path, capsys, command, misspelt, suggested):
    text = tmp_path / "a.txt"
    text.write_text("A line of text that is long enough to be kept by the length filter of the text source.")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f'[output]\ndir = "{tmp_path / "recipe-out"}"\n[sources.text]\nkind = "text"\ninputs = ["{text}"]\n'
    )
    given = [str(recipe) if a == "RECIPE" else str(text) if a == "TEXT" else a for a in command]
    output = ["--output", str(tmp_path / "out")] if command[0] != "run" else []
    assert cli.main([*given, *output, *misspelt]) == 2
    error = capsys.readouterr().err
    assert f"unknown option {misspelt[0].split('=')[0]} (did you mean {suggested}?)" in error
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "recipe-out").exists()  # nothing was written


def test_every_option_beam_knows_passes_and_nothing_else(tmp_path):
    check_beam_arguments(["--direct_num_workers", "2", "--runner=DirectRunner", "--streaming", "--flink_master", "x"])
    check_beam_arguments(["--project", "p", "--region", "us-central1", "--temp_location", "gs://b/t"])  # Dataflow's
    for given in (["--a_runner_option", "value"], ["--streaming", "x"], ["stray"]):
        with pytest.raises(UsageError):
            check_beam_arguments(given)


def test_several_globs_after_one_flag_are_all_read(tmp_path):
    # what the shell passes for an unquoted `--warcs data/*.warc.gz`
    paths = [str(tmp_path / f"{name}.warc.gz") for name in "abc"]
    for path in paths:
        open(path, "wb").close()
    args, extra = cli.build_parser().parse_known_args(
        ["commoncrawl", "--warcs", *paths[:2], "--output", "o", "--runner", "DirectRunner", "--warcs", paths[2]]
    )
    assert extra == ["--runner", "DirectRunner"]
    assert cli.preset_recipe(args, []).source("commoncrawl").inputs() == paths


@pytest.mark.shared
def test_real_warc_files_through_the_pipeline(shared_fixtures, tmp_path):
    output = tmp_path / "out"
    pattern = str(shared_fixtures / "warc" / "*")
    assert (
        cli.main(["commoncrawl", "--warcs", pattern, "--output", str(output), "--direct_running_mode=in_memory"]) == 0
    )
    stats = json.loads((output / "stats.json").read_text())
    assert Funnel.from_json(stats).problems() == []
    assert stats["input_files"] == 15
    assert stats["records_in"] >= 30
    failed = {e["file"].rsplit("/", 1)[1] for e in stats["errors"]}
    assert "clipped.warc.gz" in failed  # its one record is cut short
    assert stats["kept"] == len(read_shards(output))


@pytest.mark.parametrize("command", ["commoncrawl", "wikipedia", "text", "curate", "dedup"])
def test_help_shows_plain_defaults_and_names_files_that_exist(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = capsys.readouterr().out
    assert "('" not in text and "(default: ()" not in text  # no Python tuples for the reader to decode
    for staged in re.findall(r"--setup_file (\S+)", text):  # what Dataflow is told to build must be there
        assert (REPO / staged).is_file(), staged
    if command == "dedup":
        assert "(default: wikipedia)" in " ".join(text.split())
