"""Columnar index files as Common Crawl writes them (the flat schema, `pipeline.sources.ccindex.FLAT_SCHEMA`), made at
test time for WARC files: one row per record, with `content_languages` labelled as Common Crawl labels them (CLD2 by
pycld2 on the HTML, up to three ISO 639-3 codes, the likeliest first)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
from warcio.archiveiterator import ArchiveIterator

from pipeline.sources import ccindex


def cld2_languages(html: bytes) -> str:
    import pycld2

    try:
        _, _, details = pycld2.detect(html.decode("utf-8", "replace"), isPlainText=False)
    except pycld2.error:
        return ""
    codes = [code for _, code, percent, _ in details if code != "un" and percent > 0]
    return ",".join(ccindex.iso639_3(code.split("-")[0]) for code in codes)


def index_rows(warc_path: str, warc_filename: str) -> list[dict]:
    """A row per response record of a WARC, at its offset and length in the file."""
    rows = []
    with open(warc_path, "rb") as stream:
        records = ArchiveIterator(stream)
        for record in records:
            if record.rec_type != "response":
                continue
            url = record.rec_headers.get_header("WARC-Target-URI")
            status = int(record.http_headers.get_statuscode())
            mime = (record.http_headers.get_header("Content-Type") or "").split(";")[0].strip()
            body = record.content_stream().read()
            host = urlsplit(url).hostname or ""
            rows.append({
                "url": url, "url_host_name": host, "url_host_tld": host.rpartition(".")[2],
                "url_host_registered_domain": ".".join(host.split(".")[-2:]), "url_path": urlsplit(url).path,
                "fetch_status": status, "content_mime_type": mime, "content_mime_detected": mime,
                "content_languages": cld2_languages(body) if mime == "text/html" else None,
                "warc_filename": warc_filename, "warc_record_offset": records.get_record_offset(),
                "warc_record_length": records.get_record_length(), "subset": "warc",
            })  # fmt: skip
    return rows


def write_index(path, rows: list[dict], row_group_size: int = 50) -> None:
    columns = {name: [row.get(name) for row in rows] for name in ccindex.FLAT_SCHEMA.names}
    pq.write_table(pa.Table.from_pydict(columns, schema=ccindex.FLAT_SCHEMA), path, row_group_size=row_group_size)
