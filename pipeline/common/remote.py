"""Opening inputs wherever they live: HTTP(S) with retries and byte-range resume, local paths, or any other
filesystem Beam knows (gs://, s3:// where the extra is installed). Beam's filesystems are imported only for
paths that need them, so the per-document modules and the tokenizer load without Beam."""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import logging
import os
import posixpath
import re
import time
from urllib.parse import urlsplit

import requests

log = logging.getLogger(__name__)

# Errors worth another try: the connection, not the request, was at fault.
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class FetchError(IOError):
    """A remote file could not be read: `transient` when retries ran out (a later run may succeed), not
    when the server refused it for good (4xx) or the path does not exist."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class ResumableHTTPStream(io.RawIOBase):
    """A read-only stream over an HTTP(S) URL.

    Connection errors and 5xx answers are retried with exponential backoff; a stream that breaks part way
    is resumed from the current byte with a `Range` request rather than started over. A 4xx answer is final.
    """

    def __init__(
        self,
        url: str,
        *,
        max_retries: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 60.0,
        session: requests.Session | None = None,
        start: int = 0,
        end: int | None = None,
    ):
        super().__init__()
        self.url = url
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.session = session or requests.Session()
        self.position = start  # a start past 0 is requested with a Range header
        self.retries = 0  # total retries over the stream's life, for logs and tests
        self._response: requests.Response | None = None
        self._length: int | None = end  # with `end`, the stream stops there (exclusive), asked with a bounded range
        self.end = end

    def readable(self) -> bool:
        return True

    def _sleep_before_retry(self, attempt: int, why: str) -> None:
        if attempt >= self.max_retries:
            raise FetchError(f"{self.url}: giving up after {attempt} retries at byte {self.position}: {why}", True)
        delay = min(self.max_backoff, self.backoff * 2**attempt)
        log.warning("%s: %s; retry %d in %.1fs from byte %d", self.url, why, attempt + 1, delay, self.position)
        self.retries += 1
        time.sleep(delay)

    def _connect(self) -> None:
        attempt = 0
        while True:
            last = "" if self.end is None else str(self.end - 1)
            headers = {"Range": f"bytes={self.position}-{last}"} if self.position or self.end is not None else {}
            try:
                response = self.session.get(self.url, headers=headers, stream=True, timeout=self.timeout)
            except _TRANSIENT as exc:
                self._sleep_before_retry(attempt, f"connection error: {exc}")
                attempt += 1
                continue
            if response.status_code >= 500 or response.status_code == 429:
                response.close()
                self._sleep_before_retry(attempt, f"HTTP {response.status_code}")
                attempt += 1
                continue
            if response.status_code == 416 and (self.position or self.end is not None):
                response.close()
                self._response = None
                self._length = self.position
                return
            if response.status_code >= 400:
                response.close()
                raise FetchError(f"{self.url}: HTTP {response.status_code}")
            if self.position and response.status_code == 200:
                # The server ignored the range: skip what we already have.
                _discard(response.raw, self.position)
            if self._length is None and response.status_code == 200:
                length = response.headers.get("Content-Length")
                self._length = int(length) if length and length.isdigit() else None
            if self.end is not None and response.status_code == 206:
                total = response.headers.get("Content-Range", "").rpartition("/")[2]
                if total.isdigit():  # a range past the file's end is cut to it
                    self._length = min(self.end, int(total))
            self._response = response
            return

    def readinto(self, buffer) -> int:
        if self._length is not None and self.position >= self._length:
            return 0
        attempt = 0
        while True:
            if self._response is None:
                self._connect()
                if self._response is None:
                    return 0
            wanted = len(buffer) if self._length is None else min(len(buffer), self._length - self.position)
            try:
                data = self._response.raw.read(wanted, decode_content=False)
            except Exception as exc:  # urllib3 raises several unrelated types for a dropped stream
                self._response.close()
                self._response = None
                self._sleep_before_retry(attempt, f"stream broke: {exc!r}")
                attempt += 1
                continue
            if not data and self._length is not None and self.position < self._length:
                self._response.close()
                self._response = None
                self._sleep_before_retry(attempt, f"stream ended early ({self.position} of {self._length} bytes)")
                attempt += 1
                continue
            buffer[: len(data)] = data
            self.position += len(data)
            return len(data)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None
        super().close()


def _discard(raw, count: int) -> None:
    while count > 0:
        chunk = raw.read(min(count, 1 << 20), decode_content=False)
        if not chunk:
            raise FetchError("stream ended while skipping to the resume position")
        count -= len(chunk)


def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def local_path(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


_ADLS = re.compile(r"abfss?://([^@/]+)@([^./]+)\.dfs\.core\.windows\.net(?:/(.*))?$")


def beam_path(path: str) -> str:
    """An object-store path in Hadoop's names (what Spark users write: s3a://, s3n://, abfs[s]://CONTAINER@ACCOUNT
    .dfs.core.windows.net/…) in Beam's (s3://, azfs://ACCOUNT/CONTAINER/…); any other path as it is."""
    if path.startswith(("s3a://", "s3n://")):
        return "s3://" + path.split("://", 1)[1]
    found = _ADLS.match(path)
    if found:
        container, account, rest = found.groups()
        return f"azfs://{account}/{container}" + (f"/{rest}" if rest else "")
    return path


def beam_filesystems():
    """Beam's FileSystems, for gs://, s3:// and the other filesystems it knows. A Beam run gives them its pipeline
    options (`--s3_endpoint_url`, `--s3_region_name`, …: `pipeline.beam.curate.run` before it lists the inputs, an SDK
    worker when it starts); outside one (a Spark executor, a library call) they get Beam's defaults, so the clients
    take their credentials and endpoints from the environment as boto3 and google-cloud do."""
    from apache_beam.io.filesystems import FileSystems

    if FileSystems._pipeline_options is None:  # Beam's S3 and GCS filesystems refuse to start without options
        from apache_beam.options.pipeline_options import PipelineOptions

        FileSystems.set_options(PipelineOptions([]))
    return FileSystems


def open_input(path: str, start: int = 0, **http_options) -> io.BufferedIOBase:
    """Open a file for binary streaming reads from byte `start`, without undoing any compression."""
    if is_url(path):
        return io.BufferedReader(ResumableHTTPStream(path, start=start, **http_options), buffer_size=1 << 20)
    try:
        if is_local(path):
            stream = open(local_path(path), "rb")
        else:
            from apache_beam.io.filesystem import CompressionTypes

            stream = beam_filesystems().open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        if start:
            stream.seek(start)
        return stream
    except Exception as exc:
        raise FetchError(f"{path}: cannot open: {exc}") from exc


class RangeReader:
    """Byte ranges of one file, read as they are asked for, fewer bytes where the file ends first. Over HTTP each
    range is one bounded range request (retried and resumed as `ResumableHTTPStream` does), all of them on one
    session, so that they share its kept-alive connection instead of a connection (and a TLS handshake) each.
    Elsewhere the file is opened once and read under Beam's 16 MB read buffer, so that a range of an object costs one
    request for its own bytes, and the object store's client is made once a file: Beam's S3 filesystem makes a new
    boto3 client at every open, about 0.1 s of loading its service model."""

    def __init__(self, path: str, **http_options):
        self.path, self.http_options = path, http_options
        self._own_session = is_url(path) and http_options.get("session") is None
        if self._own_session:
            self.http_options["session"] = requests.Session()
        self._file: io.IOBase | None = None
        self._raw: io.IOBase | None = None

    def read(self, start: int, length: int) -> bytes:
        if is_url(self.path):
            with ResumableHTTPStream(self.path, start=start, end=start + length, **self.http_options) as stream:
                return stream.read()
        if self._raw is None:
            self._file = self._raw = open_input(self.path)
            if isinstance(self._file, io.BufferedReader) and not is_local(self.path):
                self._raw = self._file.raw
        data = bytearray()
        try:
            self._raw.seek(start)
            while len(data) < length:
                chunk = self._raw.read(length - len(data))
                if not chunk:
                    break
                data += chunk
        except Exception as exc:  # the object store's own errors (S3ClientError, BeamIOError, …)
            raise FetchError(f"{self.path}: bytes {start}-{start + length}: {exc}") from exc
        return bytes(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._raw = None
        if self._own_session:
            self.http_options["session"].close()

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class SeekableInput(io.RawIOBase):
    """A file on any filesystem as a seekable read-only file whose reads are range requests: what a Parquet reader
    needs to take only a file's footer and the column chunks it asks for, not the whole file."""

    def __init__(self, path: str, **http_options):
        super().__init__()
        self.path, self.position = path, 0
        self.size = _remote_size(path, **http_options) if is_url(path) else _size(path)
        self.bytes_read = 0
        self._ranges = RangeReader(path, **http_options)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), self.size - self.position)
        if wanted <= 0:
            return 0
        data = self._ranges.read(self.position, wanted)
        buffer[: len(data)] = data
        self.position += len(data)
        self.bytes_read += len(data)
        return len(data)

    def close(self) -> None:
        self._ranges.close()
        super().close()


def _remote_size(url: str, **http_options) -> int:
    """A URL's size from a one-byte range request's Content-Range (or its Content-Length)."""
    with ResumableHTTPStream(url, start=0, end=1, **http_options) as stream:
        stream.read()
        headers = stream._response.headers if stream._response is not None else {}
    total = headers.get("Content-Range", "").rpartition("/")[2] or headers.get("Content-Length", "")
    if total.isdigit():
        return int(total)
    raise FetchError(f"{url}: the server gives no size (no Content-Range or Content-Length)")


def _size(path: str) -> int:
    """A local or object-store file's size; FetchError naming the file where it cannot be had."""
    try:
        if is_local(path):
            return os.path.getsize(local_path(path))
        return beam_filesystems().match([path])[0].metadata_list[0].size_in_bytes
    except Exception as exc:
        raise FetchError(f"{path}: cannot open: {exc}") from exc


def file_size(path: str) -> int:
    """The size of a file in bytes (0 when it cannot be known: a URL, an unreadable file)."""
    try:
        return 0 if is_url(path) else _size(path)
    except FetchError:
        return 0


def read_text_lines(path: str, **http_options) -> list[str]:
    """Lines of a small text file (a paths listing, a word list), gunzipped if it is gzip; blank lines left out. Text
    that is not UTF-8 raises ValueError naming the file and line."""
    with open_input(path, **http_options) as stream:
        data = stream.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def expand_glob(pattern: str) -> list[str]:
    """Files matching a glob (`**` crosses folders) on any filesystem, sorted so runs are deterministic."""
    if is_local(pattern):
        return sorted(path for path in glob.glob(local_path(pattern), recursive=True) if os.path.isfile(path))
    return sorted(m.path for m in beam_filesystems().match([pattern])[0].metadata_list)


def input_key(path: str) -> str:
    """A file-name-safe key for one input file, stable across runs (used for resumable commits). Files
    on a filesystem also key on their size and modification time, so a file rewritten at the same path
    is processed again; remote URLs (Common Crawl's are immutable) key on the URL alone."""
    name = posixpath.basename(urlsplit(path).path) or "input"
    identity = path
    try:
        if is_local(path):
            status = os.stat(local_path(path))
            identity = f"{path}|{status.st_size}|{status.st_mtime}"
        elif not is_url(path):
            metadata = beam_filesystems().match([path])[0].metadata_list[0]
            identity = f"{path}|{metadata.size_in_bytes}|{metadata.last_updated_in_seconds}"
    except (OSError, IndexError):
        pass  # unreadable: reading it reports the error
    digest = hashlib.sha1(identity.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    return f"{safe}-{digest}"
