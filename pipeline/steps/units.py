"""The per-unit commit and resume that every engine shares: a unit's documents are committed under the run's work
folder while they stream (files of bounded size, then the unit's stats, which commit it), so nothing holds a unit in
memory and a rerun with the same settings, models and code reads units back. The work folder's name is the source's
fingerprint: its settings, the models' content and a hash of the code that makes its documents.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import inspect
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.ipc

from pipeline.common.schema import ARROW_SCHEMA, Document, documents_to_table
from pipeline.common.settings import describe_exception
from pipeline.output import sinks
from pipeline.output.stats import Funnel
from pipeline.sources import DocumentSettings, Source
from pipeline.steps import langid, quality

if TYPE_CHECKING:
    from pipeline.steps.process import UnitProcessor

log = logging.getLogger(__name__)

WORK_DIR = "_work"  # under the output folder: what a rerun reuses

PER_DOCUMENT_LIBRARIES = (
    "trafilatura",
    "resiliparse",
    "mwparserfromhell",
    "warcio",
    "charset-normalizer",
    "fasttext",
    "brotli",
    "identify",
    "pyaskalono",
    "detect-secrets",
    "dulwich",
)


def _imported_modules(tree: ast.AST, package: str) -> Iterator[str]:
    """The dotted names a module's code imports (`from pipeline import x` gives `pipeline` and `pipeline.x`);
    `package`: the module's package, against which relative imports resolve."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


_PACKAGE = __name__.split(".")[0]
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # above pipeline/


def _module_file(name: str) -> str | None:
    """The source file of a module of this package (a package's `__init__.py`), or None for anything else."""
    if name.split(".")[0] != _PACKAGE:
        return None
    relative = os.path.join(_PACKAGE_DIR, *name.split("."))
    for candidate in (f"{relative}.py", os.path.join(relative, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def per_document_files(roots: Iterable[str]) -> list[str]:
    """Every file of this package that the modules `roots` import, directly or through others: the code a worker
    runs while it makes a unit's documents, found from the imports themselves, so a new module is never left out."""
    files: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if path is None or path in files:
            continue
        files.add(path)
        with open(path, "rb") as handle:
            tree = ast.parse(handle.read(), path)
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        pending.extend(_imported_modules(tree, package))
    return sorted(files)


def code_version(source: Source) -> str:
    """A hash of the code that makes the source's documents (the unit processor, this module, the source's, and every
    module of this package they import; a source defined outside it adds its own file) and of the libraries it relies on: a rerun
    after any of them changed redoes its units instead of serving what the old code produced."""
    return _code_version(type(source).__module__, inspect.getfile(type(source)))


@functools.cache  # the files do not change while a process runs; a driver asks once per source and run
def _code_version(source_module: str, source_file: str) -> str:
    digest = hashlib.sha1()
    files = per_document_files(["pipeline.steps.process", __name__, source_module])
    if _module_file(source_module) is None:
        files.append(source_file)
    for path in files:
        with open(path, "rb") as handle:
            digest.update(os.path.relpath(path, _PACKAGE_DIR).encode() + b"\0" + handle.read())
    for library in PER_DOCUMENT_LIBRARIES:
        try:
            digest.update(f"{library}={importlib.metadata.version(library)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{library}=none".encode())
    return digest.hexdigest()[:16]


def file_checksum(path: str) -> dict:
    """Size and SHA-1 of a file on any filesystem (OSError when it is missing)."""
    digest, size = hashlib.sha1(), 0
    with sinks.open_file(path) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha1": digest.hexdigest()}


def fingerprint(source: Source, langid_model: str | None, version: str) -> str:
    """What a committed unit was made with: the source's settings, the content (not the path) of the language-ID and
    quality models and of every file a setting names (`DocumentSettings.files`), and the code version. A unit committed under another fingerprint is never reused.
    `quality_keep` is left out: it is applied to the committed units' scores, so another fraction reuses them."""
    settings, models = source.unit_settings(), []
    if isinstance(source.settings, DocumentSettings):
        models.append(file_checksum(langid_model or langid.default_model_path())["sha1"])
        if source.settings.quality_model:
            models.append(file_checksum(quality.model_file(source.settings.quality_model))["sha1"])
        settings.pop("quality_keep", None)
        settings.pop("quality_model", None)  # its content is in `models`
        for setting, path in source.settings.files().items():  # word lists, patterns, a benchmark index
            models.append(f"{setting}:{file_checksum(path)['sha1']}")
            settings.pop(setting.split(".")[0], None)
    payload = json.dumps([source.kind, settings, *models, version], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


DEFAULT_FILE_BYTES = 256 * 2**20  # of text per committed file: a unit of any size becomes several files
BATCH_DOCUMENTS = 1_000  # documents held before they are written as a row group


class UnitStore:
    """Finished units under one work folder: `<key>-NNNNN.arrow` files of at most `max_file_bytes` of text each
    (Arrow, not Parquet, so that a glob of the output's Parquet finds the kept documents only), then
    `<key>.stats.json` (the funnel, the files and their checksums), whose appearance commits the unit; a damaged
    file makes its unit be made again."""

    def __init__(self, work_dir: str, max_file_bytes: int = DEFAULT_FILE_BYTES):
        self.work_dir = work_dir
        self.max_file_bytes = max_file_bytes

    def _stats_path(self, key: str) -> str:
        return sinks.join(self.work_dir, f"{key}.stats.json")

    def plan_path(self, input_path: str) -> str:
        name = hashlib.sha1(input_path.encode()).hexdigest()[:16]
        return sinks.join(self.work_dir, f"input-{name}.plan.json")

    def record_plan(self, input_path: str, units: int) -> None:
        """How many units an input became, for the progress display of a source that splits its inputs."""
        sinks.write_json(self.plan_path(input_path), {"input": input_path, "units": units})

    def committed(self, key: str) -> tuple[Funnel, list[str]] | None:
        """The unit's funnel and files when it is committed and every file is whole (its size and SHA-1 as
        written); a unit whose stats or files were cut short or changed is uncommitted, to be made again."""
        path = self._stats_path(key)
        if not sinks.exists(path):
            return None
        try:
            data = sinks.read_json(path)
            files = [sinks.join(self.work_dir, name) for name in data["files"]]
            for name, expected in data.get("checksums", {}).items():
                found = file_checksum(sinks.join(self.work_dir, name))
                if found != expected:
                    raise ValueError(
                        f"{name} is {found['bytes']} bytes, SHA-1 {found['sha1'][:12]}; written: {expected}"
                    )
            funnel = Funnel.from_json(data["funnel"])
        except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            log.warning("%s: committed unit is damaged (%s); making it again", key, describe_exception(exc))
            sinks.delete(path)
            return None
        return funnel, files

    def run(self, processor: UnitProcessor, unit) -> Iterator[Document | Funnel]:
        """The unit's kept documents, read back when committed, else produced and committed as they stream;
        the unit's Funnel last. A unit whose network failed is not committed (a rerun reads it again)."""
        key = processor.source.unit_key(unit)
        found = self.committed(key) if processor.source.commits else None
        if found is not None:
            funnel, files = found
            log.info("%s: already processed, reading %d file(s)", key, len(files))
            for path in files:
                for batch in sinks.iter_document_batches(path):
                    yield from batch
            yield funnel
            return
        funnel = Funnel()
        if not processor.source.commits:
            yield from processor.process(unit, funnel)
            yield funnel
            return
        writer = _UnitWriter(self.work_dir, key, self.max_file_bytes)
        try:
            for doc in processor.process(unit, funnel):
                writer.add(doc)
                yield doc
            files = writer.close()
        except BaseException:
            writer.abort()
            raise
        if any(error["retryable"] for error in funnel.errors):
            log.warning("%s: network failure, not committed; a rerun will read it again", key)
            for path in files:
                sinks.delete(path)
        else:
            names = [path.rsplit("/", 1)[-1] for path in files]
            checksums = {name: file_checksum(path) for name, path in zip(names, files)}
            sinks.write_json(
                self._stats_path(key), {"funnel": funnel.to_json(), "files": names, "checksums": checksums}
            )
        yield funnel


class _UnitWriter:
    """Arrow files (zstd) of one unit, written a batch at a time and renamed into place when full or closed."""

    def __init__(self, work_dir: str, key: str, max_file_bytes: int):
        self.work_dir, self.key, self.max_file_bytes = work_dir, key, max_file_bytes
        self.files: list[str] = []
        self.batch: list[Document] = []
        self.file_bytes = 0
        self.stream: Any = None
        self.writer: pa.ipc.RecordBatchFileWriter | None = None
        self.temporary: str | None = None

    def add(self, doc: Document) -> None:
        self.batch.append(doc)
        self.file_bytes += len(doc.text)
        if len(self.batch) >= BATCH_DOCUMENTS or self.file_bytes >= self.max_file_bytes:
            self._flush()
        if self.file_bytes >= self.max_file_bytes:
            self._finish_file()

    def _flush(self) -> None:
        if not self.batch:
            return
        if self.writer is None:
            path = sinks.join(self.work_dir, f"{self.key}-{len(self.files):05d}.arrow")
            self.temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            self.stream = sinks.create(self.temporary)
            self.writer = pa.ipc.new_file(self.stream, ARROW_SCHEMA, options=pa.ipc.IpcWriteOptions(compression="zstd"))
            self.files.append(path)
        self.writer.write_table(documents_to_table(self.batch))
        self.batch = []

    def _finish_file(self) -> None:
        if self.writer is None:
            return
        assert self.temporary is not None
        self.writer.close()
        self.stream.close()
        sinks.rename(self.temporary, self.files[-1])
        self.writer = self.stream = self.temporary = None
        self.file_bytes = 0

    def close(self) -> list[str]:
        self._flush()
        self._finish_file()
        return self.files

    def abort(self) -> None:
        if self.writer is not None and self.temporary is not None:
            self.writer.close()
            self.stream.close()
            sinks.delete(self.temporary)
        for path in self.files[:-1] if self.temporary else self.files:
            if sinks.exists(path):
                sinks.delete(path)


def unit_store(source: Source, output_dir: str, langid_model: str | None, max_file_bytes: int) -> UnitStore:
    """The store of a source's units in a run writing to `output_dir`: `<output>/_work/<name>-<fingerprint>/`."""
    name = f"{source.name}-{fingerprint(source, langid_model, code_version(source))}"
    return UnitStore(sinks.join(sinks.join(output_dir, WORK_DIR), name), max_file_bytes)
