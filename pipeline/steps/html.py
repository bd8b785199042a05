"""Turning an HTTP response body into HTML text: transfer and content encodings undone under a size cap,
then the charset chosen from the HTTP header, the document's meta tag, and finally detection."""

from __future__ import annotations

import codecs
import io
import re
import zlib

import brotli
import charset_normalizer
from warcio.bufferedreaders import ChunkedDataReader

DEFAULT_MAX_HTML_BYTES = 2 * 1024 * 1024
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CHARSET_IN_HEADER = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_GZIP_MAGIC = b"\x1f\x8b"
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", re.I)


class Rejected(Exception):
    """A document that cannot be turned into text; `reason` is its drop reason in stats.json."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def is_html(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";")[0].strip().lower() in _HTML_TYPES


def dechunk(body: bytes) -> bytes:
    """Undo `Transfer-Encoding: chunked` (falls back to the raw bytes when they are not really chunked,
    which is common in archived responses)."""
    return ChunkedDataReader(io.BytesIO(body)).read()


def decode_content(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo a Content-Encoding, never producing more than `max_bytes` (a gzip bomb stops there). Only what the
    bytes show is encoded is decoded: crawlers (ClueWeb's among them) store the decoded body and keep the header,
    and such a body is returned as stored, as warcio and resiliparse do."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity", "none"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        if _has_zlib_header(body) or (encoding != "deflate" and body.startswith(_GZIP_MAGIC)):
            try:
                return _bounded_inflate(body, 47, max_bytes)  # 47: gzip or zlib header, auto-detected
            except zlib.error:
                raise Rejected("content_encoding", f"corrupt {encoding} body")
        if encoding != "deflate" or _looks_like_markup(body):
            return body
        return _bounded_inflate(body, -zlib.MAX_WBITS, max_bytes)  # raw deflate, as some servers send
    if encoding == "br":
        if _looks_like_markup(body):  # brotli has no magic number; markup is not brotli
            return body
        decompressor = brotli.Decompressor()
        try:
            output = decompressor.process(body, output_buffer_limit=max_bytes + 1)
        except brotli.error as exc:
            raise Rejected("content_encoding", f"corrupt br body: {exc}")
        if len(output) > max_bytes:
            raise Rejected("html_too_large", f"br body expands past {max_bytes} bytes")
        return output
    raise Rejected("content_encoding", f"unsupported Content-Encoding {encoding!r}")


def _has_zlib_header(body: bytes) -> bool:
    """RFC 1950: deflate method, 32K window or less, and a header checksum that divides by 31."""
    return len(body) >= 2 and body[0] & 0x0F == 8 and body[0] >> 4 <= 7 and (body[0] << 8 | body[1]) % 31 == 0


def _looks_like_markup(body: bytes) -> bool:
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"


def _bounded_inflate(body: bytes, wbits: int, max_bytes: int) -> bytes:
    try:
        inflater = zlib.decompressobj(wbits)
        output = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        if wbits < 0:
            raise Rejected("content_encoding", f"corrupt deflate body: {exc}")
        raise
    if len(output) > max_bytes:
        raise Rejected("html_too_large", f"body expands past {max_bytes} bytes")
    return output


# Codecs Python knows that are not charsets of documents: their decoders turn arbitrary bytes into nonsense or fail
# with errors of their own (codecs with `_is_text_encoding` false, such as hex, base64 or zlib, are refused too).
_NOT_CHARSETS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"})


def _known_codec(name: str | None) -> str | None:
    """The codec a declared charset names, when it is a text encoding a page can be written in; else None."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a name with a NUL in it
        return None
    if not getattr(codec, "_is_text_encoding", True) or codec.name in _NOT_CHARSETS:
        return None
    return codec.name


def charset_from_content_type(content_type: str | None) -> str | None:
    match = _CHARSET_IN_HEADER.search(content_type or "")
    return match.group(1) if match else None


def charset_from_meta(html: bytes) -> str | None:
    match = _META_CHARSET.search(html[:4096])
    return match.group(1).decode("ascii", "replace") if match else None


def decode_html(html: bytes, content_type: str | None) -> tuple[str, str]:
    """Bytes to text: the HTTP header's charset, then the meta tag's, then UTF-8, then detection.
    A declared charset that fails to decode the bytes is passed over. Returns (text, charset used)."""
    candidates = [charset_from_content_type(content_type), charset_from_meta(html), "utf-8"]
    tried = set()
    for name in candidates:
        codec = _known_codec(name)
        if codec is None or codec in tried:
            continue
        tried.add(codec)
        try:
            return html.decode(codec), codec
        except (UnicodeError, LookupError):  # UnicodeError: the base of every codec's decoding errors
            continue
    best = charset_normalizer.from_bytes(html[:200_000]).best()
    if best is None or best.encoding is None:
        raise Rejected("undecodable", "no charset decodes the bytes")
    try:
        return html.decode(best.encoding), best.encoding
    except (UnicodeError, LookupError) as exc:
        raise Rejected("undecodable", str(exc))
