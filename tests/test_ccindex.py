"""Common Crawl through its columnar index: captures selected from index Parquet files (the real flat schema, CLD2
labels as Common Crawl writes them) and fetched by byte range from a loopback server that honours Range and counts
bytes; what index mode keeps is what whole-WARC mode keeps among the selected records."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.output.stats import Funnel
from pipeline.sources import ccindex
from tests import ccindexdata

ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
WARCS = ("crawl-data/CC-MAIN-2026-01/segments/1/warc/a.warc.gz", "crawl-data/CC-MAIN-2026-01/segments/1/warc/b.warc.gz")


@pytest.fixture
def crawl(tmp_path, http_server):
    """Two WARCs of a crawl-like mix (four languages, errors, non-HTML) served over loopback, and their index."""
    from pipeline.common import synthetic

    rows = []
    for number, name in enumerate(WARCS):
        local = tmp_path / f"warc-{number}.warc.gz"
        synthetic.write_sample_warc(str(local), pages=40, seed=20 + number, host=f"site{number}.example.org")
        http_server.files[f"/{name}"] = local.read_bytes()
        rows.extend(ccindexdata.index_rows(str(local), name))
    ccindexdata.write_index(tmp_path / "index.parquet", rows)
    return http_server, tmp_path / "index.parquet", rows


def curate(server, output, *flags) -> dict:
    status = cli.main(["commoncrawl", "--cc-base-url", server.url + "/", "--no-dedup", "--output", str(output),
                       *flags, *ONE_WORKER])  # fmt: skip
    assert status == 0
    return json.loads((output / "stats.json").read_text())


def kept(output) -> dict[str, str]:
    rows = pq.read_table(sorted(output.glob("part-*.parquet")), columns=["id", "url", "text"]).to_pylist()
    return {row["id"]: (row["url"], row["text"]) for row in rows}


LISTED = "cc-index/table/cc-main/warc/crawl=CC-MAIN-2026-01/subset={}/part-0.parquet"


def big_index(path, rows: list[dict]) -> list[dict]:
    """An index file of `rows` and 20,000 captures of other WARCs (in the columns a selection does not read too), in
    row groups of 5,000: the filler rows."""
    filler = [
        {"url": f"https://other{n}.example.net/page/{n}", "url_surtkey": f"net,example,other{n})/page/{n}",
         "content_digest": f"sha1:{n:032d}", "url_path": f"/page/{n}", "fetch_status": 404,
         "warc_filename": "crawl-data/x.warc.gz", "warc_record_offset": n, "warc_record_length": 1}
        for n in range(20_000)
    ]  # fmt: skip
    ccindexdata.write_index(path, rows + filler, row_group_size=5000)
    return filler


def test_index_mode_keeps_what_whole_warcs_keep_among_the_selected_for_fewer_bytes(crawl, tmp_path):
    server, index, rows = crawl
    (tmp_path / "warc.paths").write_text("\n".join(WARCS) + "\n")
    whole = curate(server, tmp_path / "whole", "--warc-paths", str(tmp_path / "warc.paths"), "--languages", "de")
    whole_bytes = sum(server.bytes_served.values())
    server.bytes_served.clear()
    server.requests.clear()
    server.connections = 0
    filler = big_index(tmp_path / "big.parquet", rows)
    index_url = f"{server.url}/{LISTED.format('warc')}"
    server.files["/" + LISTED.format("warc")] = (tmp_path / "big.parquet").read_bytes()  # over HTTP too
    stats = curate(server, tmp_path / "index", "--cc-index", index_url, "--languages", "de",
                   "--sources.commoncrawl.index_gap_bytes", "0")  # only touching records merge  # fmt: skip
    index_file_bytes = server.bytes_served.pop("/" + LISTED.format("warc"))
    range_requests = sum(len(server.requests_for(f"/{name}")) for name in WARCS)
    assert range_requests > 10 and server.connections < range_requests / 3  # ranges share kept-alive connections
    assert index_file_bytes < (tmp_path / "big.parquet").stat().st_size / 2  # the footer and the columns it needs
    index_bytes = sum(server.bytes_served.values())
    selected = {r["url"] for r in rows if r["fetch_status"] == 200 and (r["content_languages"] or "").startswith("deu")}
    assert Funnel.from_json(stats).problems() == [] and Funnel.from_json(whole).problems() == []
    expected = {i: v for i, v in kept(tmp_path / "whole").items() if v[0] in selected}
    assert kept(tmp_path / "index") == expected and expected  # the same documents, byte for byte
    counts = stats["index"]
    assert counts["captures"] == len(rows) + len(filler) and counts["selected"] == len(selected) == counts["fetched"]
    assert not any(name.startswith("failed") for name in counts)
    chosen = [r for r in rows if r["url"] in selected]
    assert counts["bytes_fetched"] == index_bytes == sum(r["warc_record_length"] for r in chosen)
    assert index_bytes < whole_bytes / 3
    assert counts["capture_bytes"] == sum(r["warc_record_length"] for r in rows + filler)
    assert stats["input_files"] == 1
    report = (tmp_path / "index" / "report.html").read_text()
    assert f"{counts['selected']:,} of {counts['captures']:,} captures selected" in report
    # a rerun through the crawl's index listing (its warc subset: the same index file): every unit committed, so
    # nothing is fetched again, and the other subsets are never read
    server.files["/" + LISTED.format("crawldiagnostics")] = b"never read"
    paths = "".join(LISTED.format(subset) + "\n" for subset in ("warc", "crawldiagnostics"))
    server.files["/crawl-data/CC-MAIN-2026-01/cc-index-table.paths.gz"] = gzip.compress(paths.encode())
    server.bytes_served.clear()
    again = curate(server, tmp_path / "index", "--crawl", "CC-MAIN-2026-01", "--from-index", "--languages", "de",
                   "--sources.commoncrawl.index_gap_bytes", "0")  # fmt: skip
    assert again["index"] == counts and again["kept"] == stats["kept"]
    assert sorted(server.bytes_served) == sorted(
        ["/crawl-data/CC-MAIN-2026-01/cc-index-table.paths.gz", "/" + LISTED.format("warc")]
    )  # planned again, nothing fetched


def test_the_index_rules_given_as_flags_choose_what_is_fetched(crawl, tmp_path, capsys):
    import re

    server, index, rows = crawl
    (tmp_path / "hosts.txt").write_text("site0.example.org\nsite1.example.org\n")
    pattern = r"article-[0-9]*[02468]\.html"
    rules = [
        "--cc-index",
        str(index),
        "--index-hosts",
        str(tmp_path / "hosts.txt"),
        "--index-url-pattern",
        pattern,
        "--index-filter",
        "url_host_name = 'site1.example.org'",
        "--index-languages",
        "any",
        "--languages",
        "en",
    ]
    stats = curate(server, tmp_path / "out", *rules)  # fmt: skip
    expected = {
        r["url"] for r in rows
        if r["fetch_status"] == 200 and r["content_mime_detected"] == "text/html" and re.search(pattern, r["url"])
        and r["url_host_name"] == "site1.example.org" and "eng" in (r["content_languages"] or "").split(",")
    }  # fmt: skip
    assert expected and stats["index"]["selected"] == len(expected) == stats["index"]["fetched"]
    assert {url for url, _ in kept(tmp_path / "out").values()} <= expected and stats["kept"] > 0
    for flag, value, message in (
        ("--index-hosts", str(tmp_path / "missing.txt"), "sources.commoncrawl.index_hosts:"),
        ("--index-filter", "no_such_column = 1", "sources.commoncrawl.index_filter:"),
        ("--languages", "xx", "sources.commoncrawl.languages: no ISO 639-3 code for language 'xx'"),
    ):  # the user's mistakes stop the run before anything is read, naming the setting
        arguments = [
            "commoncrawl",
            "--cc-index",
            str(index),
            flag,
            value,
            "--output",
            str(tmp_path / "bad"),
            *ONE_WORKER,
        ]
        assert cli.main(arguments) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad" / "stats.json").exists()


def test_bad_rows_and_refused_ranges_cost_their_captures_only(crawl, tmp_path):
    server, index, rows = crawl
    html = [r for r in rows if r["fetch_status"] == 200 and r["content_mime_detected"] == "text/html"]
    html[0] = {**html[0], "warc_record_offset": 10**9}  # past the file's end
    html[1] = {**html[1], "warc_record_length": html[1]["warc_record_length"] // 2}  # cuts the record
    html[2] = {**html[2], "url": html[2]["url"] + "?other"}  # not the record's URL
    ccindexdata.write_index(tmp_path / "bad.parquet", html)
    server.fail_ranges.add(f"/{WARCS[1]}")  # every range of the second WARC is refused
    stats = curate(server, tmp_path / "out", "--cc-index", str(tmp_path / "bad.parquet"))
    counts = stats["index"]
    in_second = sum(r["warc_filename"] == WARCS[1] for r in html)
    assert counts["failed.record"] == 1 and counts["failed.url_mismatch"] == 1
    assert counts["failed.range"] + counts.get("failed.fetch", 0) == 1 + in_second
    assert counts["fetched"] == len(html) - 3 - in_second and stats["kept"] > 0
    failed = sum(count for name, count in counts.items() if name.startswith("failed."))
    assert counts["selected"] == counts["fetched"] + failed
    assert Funnel.from_json(stats).problems() == []


@pytest.fixture
def bucket():
    """An S3 endpoint on loopback (moto's server, the S3 API over HTTP) with a `commoncrawl` bucket: a boto3 client to
    fill it, and the Beam options that point lmforge's object-store reads at it."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        access = {"region_name": "us-east-1", "aws_access_key_id": "lmforge", "aws_secret_access_key": "test"}
        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", **access)
        client.create_bucket(Bucket="commoncrawl")
        yield client, [f"--s3_endpoint_url=http://{host}:{port}", "--s3_region_name=us-east-1",
                       "--s3_access_key_id=lmforge", "--s3_secret_access_key=test"]  # fmt: skip
    finally:
        server.stop()


def test_index_files_and_warcs_in_a_bucket_are_read_by_range(crawl, bucket, tmp_path):
    """s3:// as Common Crawl's own bucket is laid out: the index file found by a glob and read in part, each capture
    fetched by range from its WARC under `--cc-base-url s3://commoncrawl/`; the documents of whole WARCs read from the
    bucket by a glob, among the selected."""
    server, _, rows = crawl
    client, s3_options = bucket
    big_index(tmp_path / "big.parquet", rows)
    client.upload_file(str(tmp_path / "big.parquet"), "commoncrawl", LISTED.format("warc"))
    client.put_object(Bucket="commoncrawl", Key="cc-index/garbage.parquet", Body=b"not parquet at all")
    for name in WARCS:
        client.put_object(Bucket="commoncrawl", Key=name, Body=server.files[f"/{name}"])

    def from_bucket(output, *flags) -> dict:
        assert cli.main(["commoncrawl", "--cc-base-url", "s3://commoncrawl/", "--languages", "de", "--no-dedup",
                         "--output", str(output), *flags, *ONE_WORKER, *s3_options]) == 0  # fmt: skip
        stats = json.loads((output / "stats.json").read_text())
        assert Funnel.from_json(stats).problems() == []
        return stats

    index_glob = "s3://commoncrawl/" + LISTED.format("*").replace("part-0", "part-*")
    stats = from_bucket(tmp_path / "s3", "--cc-index", index_glob, "s3://commoncrawl/cc-index/garbage.parquet")
    assert [error["file"] for error in stats["errors"]] == ["s3://commoncrawl/cc-index/garbage.parquet"]
    selected = {r["url"] for r in rows if r["fetch_status"] == 200 and (r["content_languages"] or "").startswith("deu")}
    counts = stats["index"]
    assert counts["selected"] == len(selected) == counts["fetched"] and not any(n.startswith("failed") for n in counts)
    assert counts["index_bytes_read"] < (tmp_path / "big.parquet").stat().st_size / 2  # the footer, needed columns
    whole = from_bucket(tmp_path / "whole", "--warcs", "s3://commoncrawl/crawl-data/*/segments/*/warc/*.warc.gz")
    assert whole["input_files"] == len(WARCS)
    expected = {i: v for i, v in kept(tmp_path / "whole").items() if v[0] in selected}
    assert kept(tmp_path / "s3") == expected and expected  # the same documents, byte for byte


def test_an_index_file_that_cannot_be_read_is_an_input_error(crawl, tmp_path):
    server, index, rows = crawl
    table = pq.read_table(index).set_column(
        FLAT := ccindex.FLAT_SCHEMA.get_field_index("warc_record_offset"),
        "warc_record_offset",
        pa.array([str(r["warc_record_offset"]) for r in rows]),
    )
    assert FLAT >= 0
    pq.write_table(table, tmp_path / "strings.parquet")
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet at all")
    stats = curate(server, tmp_path / "out", "--cc-index", str(tmp_path / "strings.parquet"),
                   str(tmp_path / "garbage.parquet"), str(index))  # fmt: skip
    errors = {error["file"]: error["error"] for error in stats["errors"]}
    assert "column warc_record_offset is string" in errors[str(tmp_path / "strings.parquet")]
    assert str(tmp_path / "garbage.parquet") in errors and stats["kept"] > 0


def test_the_selection_rules():
    table = pa.Table.from_pylist(
        [
            {"url": "https://a.example.is/news/1", "url_host_name": "a.example.is", "fetch_status": 200,
             "content_mime_detected": "text/html", "content_languages": "isl,eng", "url_host_tld": "is"},
            {"url": "https://example.is/shop/2", "url_host_name": "example.is", "fetch_status": 200,
             "content_mime_detected": "text/html", "content_languages": "eng,isl", "url_host_tld": "is"},
            {"url": "https://b.example.com/news/3", "url_host_name": "b.example.com", "fetch_status": 404,
             "content_mime_detected": "text/html", "content_languages": "isl", "url_host_tld": "com"},
            {"url": "https://notexample.is/x.pdf", "url_host_name": "notexample.is", "fetch_status": 200,
             "content_mime_detected": "application/pdf", "content_languages": None, "url_host_tld": "is"},
        ],
        schema=pa.schema([(n, ccindex.FLAT_SCHEMA.field(n).type) for n in (
            "url", "url_host_name", "fetch_status", "content_mime_detected", "content_languages", "url_host_tld")]),
    )  # fmt: skip

    def chosen(**rules):
        selection = ccindex.Selection(**rules)
        selection.check()
        return [i for i, keep in enumerate(selection.mask(table).to_pylist()) if keep]

    assert chosen() == [0, 1]  # status 200 and HTML
    assert chosen(languages=("isl",)) == [0] and chosen(languages=("isl",), language_mode="any") == [0, 1]
    assert chosen(hosts=("example.is",)) == [0, 1]  # a domain takes its subdomains, not notexample.is
    assert chosen(url_patterns=("/news/",)) == [0] and chosen(url_patterns=("/news/", "/shop/")) == [0, 1]
    assert chosen(sql="url_host_tld = 'is' AND url LIKE '%shop%'") == [1]
    assert ccindex.iso639_3("de") == "deu" and ccindex.iso639_3("zh") == "zho" and ccindex.iso639_3("ceb") == "ceb"
    assert ccindex.iso639_3("isl_Latn") == "isl"  # GlotLID's labels
    with pytest.raises(ValueError, match="index_filter"):
        ccindex.Selection(sql="no_such_column = 1").check()
    with pytest.raises(ValueError, match="index_language_mode"):
        ccindex.Selection(language_mode="first").check()
    ranges = list(ccindex.coalesce([ccindex.Capture(0, 10, "a"), ccindex.Capture(15, 5, "b"),
                                    ccindex.Capture(1000, 10, "c")], gap=100))  # fmt: skip
    assert [(start, end, len(members)) for start, end, members in ranges] == [(0, 20, 2), (1000, 1010, 1)]


def test_index_mode_killed_mid_run_resumes_to_the_shards_of_an_uninterrupted_run(crawl, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    server, index, rows = crawl
    flags = ["commoncrawl", "--cc-base-url", server.url + "/", "--no-dedup", "--cc-index", str(index),
             "--sources.commoncrawl.index_unit_records", "5", "--num-shards", "2"]  # fmt: skip
    reference, output = tmp_path / "reference", tmp_path / "out"
    assert cli.main([*flags, "--output", str(reference), *ONE_WORKER]) == 0
    command = [sys.executable, "-m", "pipeline", *flags, "--output", str(output), "--direct_num_workers=1"]
    killed = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(output.glob("_work/*/*.stats.json")) and time.time() < deadline and killed.poll() is None:
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)  # the driver and its workers, mid-run
    killed.wait()
    assert list(output.glob("_work/*/*.stats.json")) and not (output / "stats.json").exists()
    assert cli.main([*flags, "--output", str(output), *ONE_WORKER]) == 0
    assert kept(output) == kept(reference) and len(kept(reference)) > 20
    finished = [Funnel.from_json(json.loads((folder / "stats.json").read_text())).to_json() for folder in
                (output, reference)]  # fmt: skip
    assert finished[0] == finished[1]  # every count, the index's too, as if never interrupted
