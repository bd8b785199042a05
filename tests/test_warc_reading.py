import gzip
import io

import pytest

from pipeline.common import remote, synthetic
from pipeline.common.schema import ReadError, Skipped
from pipeline.sources import commoncrawl
from pipeline.sources.commoncrawl import HtmlPage, read_warc
from pipeline.steps import html

PAGE = synthetic.article_page("Title", ["The harbour town woke slowly as the boats returned."], "en").encode()


def warc_bytes(responses, gzip_records=True) -> bytes:
    stream = io.BytesIO()
    synthetic.write_warc(stream, responses, gzip_records=gzip_records)
    return stream.getvalue()


def items(tmp_path, data: bytes, name="t.warc.gz", **kwargs):
    path = tmp_path / name
    path.write_bytes(data)
    return list(read_warc(str(path), **kwargs))


def test_classifies_every_record(tmp_path):
    responses = [
        synthetic.Response("https://a.example/1", body=PAGE),
        synthetic.Response("https://a.example/2.png", content_type="image/png", body=b"\x89PNG"),
        synthetic.Response("https://a.example/3", status="404 Not Found", body=b"gone"),
        synthetic.Response(
            "https://a.example/4", body=gzip.compress(PAGE), extra_headers=(("Content-Encoding", "gzip"),)
        ),
        synthetic.Response(
            "https://a.example/5", body=synthetic.chunked(PAGE), extra_headers=(("Transfer-Encoding", "chunked"),)
        ),
    ]
    for gzip_records in (True, False):
        got = items(tmp_path, warc_bytes(responses, gzip_records))
        pages = [i for i in got if isinstance(i, HtmlPage)]
        skipped = sorted(i.reason for i in got if isinstance(i, Skipped))
        assert [p.url for p in pages] == ["https://a.example/1", "https://a.example/4", "https://a.example/5"]
        assert skipped == ["http_status", "non_html"] + ["not_response"] * 6  # warcinfo + 5 requests
        assert not [i for i in got if isinstance(i, ReadError)]
        assert all(commoncrawl.page_html(p, 1 << 20) == PAGE.decode() for p in pages)
        offsets = [i.offset if isinstance(i, HtmlPage) else i.where for i in got]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_truncated_file_yields_what_precedes_the_break(tmp_path):
    responses = [synthetic.Response(f"https://a.example/{i}", body=PAGE * 3) for i in range(10)]
    data = warc_bytes(responses)
    got = items(tmp_path, data[: len(data) * 2 // 3])
    pages = [i for i in got if isinstance(i, HtmlPage)]
    errors = [i for i in got if isinstance(i, ReadError)]
    assert 3 <= len(pages) < 10
    assert len(errors) == 1 and errors[0].offset is not None and not errors[0].retryable
    assert got[-1] is errors[0]


def test_garbage_and_missing_files_are_read_errors(tmp_path):
    got = items(tmp_path, b"this is not a warc file at all\n" * 10, name="junk.warc")
    assert len(got) == 1 and isinstance(got[0], ReadError)
    missing = list(read_warc(str(tmp_path / "missing.warc.gz")))
    assert len(missing) == 1 and isinstance(missing[0], ReadError) and "cannot open" in missing[0].error


def test_single_gzip_member_file_is_read_as_one_stream(tmp_path):
    responses = [synthetic.Response(f"https://a.example/{i}", body=PAGE) for i in range(4)]
    data = gzip.compress(warc_bytes(responses, gzip_records=False))
    pages = [i for i in items(tmp_path, data) if isinstance(i, HtmlPage)]
    assert [p.url for p in pages] == [f"https://a.example/{i}" for i in range(4)]


def test_body_over_the_cap_is_flagged(tmp_path):
    big = synthetic.Response("https://a.example/big", body=PAGE * 200)
    [page] = [i for i in items(tmp_path, warc_bytes([big]), max_html_bytes=10_000) if isinstance(i, HtmlPage)]
    assert page.body_truncated
    with pytest.raises(html.Rejected) as rejected:
        commoncrawl.page_html(page, 10_000)
    assert rejected.value.reason == "html_too_large"


def test_listing_resolution_and_crawl_name():
    listing = [
        "crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz",
        "crawl-data/CC-MAIN-2024-10/segments/1/warc/b.warc.gz",
        "https://elsewhere.example/c.warc.gz",
    ]
    assert commoncrawl.resolve_paths(listing, "https://data.commoncrawl.org", 1, 2) == [
        "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-10/segments/1/warc/b.warc.gz",
        "https://elsewhere.example/c.warc.gz",
    ]
    assert (
        commoncrawl.crawl_listing_url("CC-MAIN-2024-10", "http://127.0.0.1:9/cc")
        == "http://127.0.0.1:9/cc/crawl-data/CC-MAIN-2024-10/warc.paths.gz"
    )
    assert commoncrawl.crawl_of(listing[0]) == "CC-MAIN-2024-10"
    assert commoncrawl.crawl_of("/local/file.warc.gz") is None


@pytest.mark.shared
def test_real_warc_files_read_without_crashing(shared_fixtures):
    expected_html = {
        "dolma-sample-0000.warc.gz": 22,
        "clueweb12-single-gzip-member.warc.gz": 3,
        "example-bad-non-chunked.warc.gz": 1,
        "example.arc.gz": 1,
        "example-iana.org-chunked.warc": 1,
        "wikipedia-2012-main-page.warc.gz": 1,
    }
    for path in sorted((shared_fixtures / "warc").iterdir()):
        got = list(read_warc(str(path)))
        pages = [i for i in got if isinstance(i, HtmlPage)]
        if path.name in expected_html:
            assert len(pages) == expected_html[path.name], path.name
        for page in pages:
            try:
                assert commoncrawl.page_html(page, html.DEFAULT_MAX_HTML_BYTES)
            except html.Rejected as rejected:
                assert rejected.reason in {"undecodable", "content_encoding", "html_too_large"}


def test_a_file_rewritten_at_the_same_path_gets_a_new_resume_key(tmp_path):
    path = tmp_path / "crawl.warc.gz"
    synthetic.write_sample_warc(str(path), pages=5, seed=1)
    first = remote.input_key(str(path))
    assert remote.input_key(str(path)) == first
    synthetic.write_sample_warc(str(path), pages=9, seed=2)
    assert remote.input_key(str(path)) != first
    assert remote.input_key("https://data.commoncrawl.org/a.warc.gz") == remote.input_key(
        "https://data.commoncrawl.org/a.warc.gz"
    )
