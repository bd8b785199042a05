import gzip
import os

import pytest

from pipeline.common.remote import FetchError, ResumableHTTPStream, beam_path, open_input, read_text_lines

FAST = {"backoff": 0.01, "max_backoff": 0.05}


def test_reads_a_whole_file(http_server):
    data = os.urandom(300_000)
    http_server.files["/f.bin"] = data
    with open_input(http_server.url + "/f.bin", **FAST) as stream:
        assert stream.read() == data


def test_retries_server_errors_with_backoff(http_server):
    data = os.urandom(1000)
    http_server.files["/f.bin"] = data
    http_server.fail_first["/f.bin"] = 2
    stream = ResumableHTTPStream(http_server.url + "/f.bin", **FAST)
    assert stream.read() == data
    assert stream.retries == 2
    assert len(http_server.requests_for("/f.bin")) == 3


def test_a_dropped_stream_resumes_with_a_range_request(http_server):
    data = os.urandom(2_000_000)
    http_server.files["/f.bin"] = data
    http_server.drop_after["/f.bin"] = 700_000
    stream = ResumableHTTPStream(http_server.url + "/f.bin", **FAST)
    received = bytearray()
    while chunk := stream.read(65536):
        received += chunk
    assert bytes(received) == data
    ranges = http_server.requests_for("/f.bin")
    assert ranges[0] is None
    assert ranges[1] == "bytes=700000-"  # resumed where it broke, not from the start


def test_resume_when_the_server_ignores_ranges(http_server):
    data = os.urandom(500_000)
    http_server.files["/f.bin"] = data
    http_server.drop_after["/f.bin"] = 123_457
    http_server.ignore_range.add("/f.bin")
    stream = ResumableHTTPStream(http_server.url + "/f.bin", **FAST)
    assert stream.read() == data


def test_not_found_is_final(http_server):
    stream = ResumableHTTPStream(http_server.url + "/missing", **FAST)
    with pytest.raises(FetchError, match="404"):
        stream.read()
    assert len(http_server.requests_for("/missing")) == 1


def test_gives_up_after_max_retries(http_server):
    http_server.files["/f.bin"] = b"x"
    http_server.fail_first["/f.bin"] = 10
    stream = ResumableHTTPStream(http_server.url + "/f.bin", max_retries=3, **FAST)
    with pytest.raises(FetchError, match="giving up after 3 retries"):
        stream.read()


def test_listing_gzip_or_plain(http_server, tmp_path):
    http_server.files["/paths.gz"] = gzip.compress(b"a/1.warc.gz\nb/2.warc.gz\n")
    assert read_text_lines(http_server.url + "/paths.gz") == ["a/1.warc.gz", "b/2.warc.gz"]
    local = tmp_path / "paths.txt"
    local.write_text("x.warc.gz\n\ny.warc.gz\n")
    assert read_text_lines(str(local)) == ["x.warc.gz", "y.warc.gz"]


@pytest.mark.parametrize(
    ("hadoop", "beam"),
    [
        ("s3a://bucket/out/cc", "s3://bucket/out/cc"),
        ("s3n://bucket/x", "s3://bucket/x"),
        ("abfss://data@myaccount.dfs.core.windows.net/out/cc", "azfs://myaccount/data/out/cc"),
        ("abfs://data@myaccount.dfs.core.windows.net", "azfs://myaccount/data"),
        ("gs://bucket/out", "gs://bucket/out"),
        ("s3://bucket/out", "s3://bucket/out"),
        ("out/local", "out/local"),
    ],
)
def test_hadoop_object_store_paths_are_written_under_beams_names(hadoop, beam):
    assert beam_path(hadoop) == beam
