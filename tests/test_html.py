import gzip
import zlib

import brotli
import pytest

from pipeline.steps import html


def test_gzip_deflate_and_brotli_bodies_decode():
    page = b"<html><body>" + b"hello " * 1000 + b"</body></html>"
    assert html.decode_content(gzip.compress(page), "gzip", 1 << 20) == page
    assert html.decode_content(zlib.compress(page), "deflate", 1 << 20) == page
    raw_deflate = zlib.compressobj(wbits=-15)
    assert html.decode_content(raw_deflate.compress(page) + raw_deflate.flush(), "deflate", 1 << 20) == page
    assert html.decode_content(brotli.compress(page), "br", 1 << 20) == page
    assert html.decode_content(page, None, 1 << 20) == page


@pytest.mark.parametrize("encoding,compress", [("gzip", gzip.compress), ("br", brotli.compress)])
def test_a_compression_bomb_stops_at_the_cap(encoding, compress):
    bomb = compress(b"\0" * 50_000_000)  # 50 MB of zeros in a few kilobytes
    assert len(bomb) < 100_000
    with pytest.raises(html.Rejected) as rejected:
        html.decode_content(bomb, encoding, 1_000_000)
    assert rejected.value.reason == "html_too_large"


def test_corrupt_or_unknown_encodings_are_rejected_with_a_reason():
    page = gzip.compress(b"<html><body>" + b"hello " * 1000 + b"</body></html>")
    for corrupt, encoding in (
        (page[:40] + bytes(40), "gzip"),
        (b"\x78\x9c" + bytes(30), "deflate"),
        (b"\xff\xff\xff\xff binary, not brotli", "br"),
        (b"\xff\xfe\x00binary", "deflate"),
    ):
        with pytest.raises(html.Rejected) as rejected:
            html.decode_content(corrupt, encoding, 1 << 20)
        assert rejected.value.reason == "content_encoding", encoding
    with pytest.raises(html.Rejected) as rejected:
        html.decode_content(b"x", "compress", 1000)
    assert rejected.value.reason == "content_encoding"


def test_a_body_stored_decoded_under_an_encoding_header_is_kept_as_stored():
    # crawlers such as ClueWeb's keep `Content-Encoding: gzip` on a body they stored decoded
    page = '<html><head><meta charset="euc-jp"></head><body>日本語のページです。</body></html>'.encode("euc-jp")
    for encoding in ("gzip", "x-gzip", "deflate", "br"):
        assert html.decode_content(page, encoding, 1 << 20) == page
        assert html.decode_content(b"\xef\xbb\xbf\n  " + page, encoding, 1 << 20) == b"\xef\xbb\xbf\n  " + page
    text, _ = html.decode_html(html.decode_content(page, "gzip", 1 << 20), "text/html")
    assert "日本語のページです。" in text


def test_dechunk_and_not_really_chunked():
    assert html.dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n") == b"hello world"
    assert html.dechunk(b"<html>plain</html>") == b"<html>plain</html>"


def test_charset_from_http_header_wins():
    text = "Grüße aus Köln"
    body = f"<html><head><meta charset='utf-8'></head><body>{text}</body></html>".encode("iso-8859-1")
    decoded, used = html.decode_html(body, "text/html; charset=ISO-8859-1")
    assert text in decoded and used == "iso8859-1"


def test_charset_from_meta_tag_when_header_has_none():
    body = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251"></head>'
        "<body>Привет, мир</body></html>"
    )
    decoded, used = html.decode_html(body.encode("cp1251"), "text/html")
    assert "Привет, мир" in decoded and used == "cp1251"


def test_wrong_declaration_falls_through_to_utf8_then_detection():
    body = "<p>Ελληνικά κείμενα εδώ</p>".encode()
    decoded, used = html.decode_html(body, "text/html; charset=us-ascii")
    assert "Ελληνικά" in decoded and used == "utf-8"
    legacy = ("<p>" + "Der Bürgermeister begrüßte die Gäste im Rathaus. " * 20 + "</p>").encode("cp1252")
    decoded, _ = html.decode_html(legacy, "text/html")
    assert "Bürgermeister begrüßte" in decoded


def test_is_html():
    assert html.is_html("text/html; charset=utf-8")
    assert html.is_html("application/xhtml+xml")
    assert not html.is_html("image/png")
    assert not html.is_html(None)


def test_binary_bytes_are_undecodable():
    binary = bytes(range(32)) * 200 + bytes((i * 131 + 7) % 256 for i in range(3000))
    with pytest.raises(html.Rejected) as rejected:
        html.decode_html(binary, "text/html")
    assert rejected.value.reason == "undecodable"
