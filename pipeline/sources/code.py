"""Code repositories: one document per source file, curated as The Stack and StarCoder's data were.

An input is a repository in one of three forms:
- an archive (`.tar.gz`, `.tgz`, `.tar`, `.tar.bz2`, `.tar.xz`, `.zip`), as GitHub, GitLab and Software Heritage serve
  them, on any filesystem the other sources read (local, HTTP(S), buckets); a single top folder
  (`owner-repo-<sha>/`) is taken off the paths, and the commit `git archive` records (a tar's pax comment, a zip's
  comment) is the revision;
- a checkout (a folder, its `.git` left out), whose revision is its HEAD's commit;
- a bare git repository at `revision` (a branch, a tag or a commit), read with dulwich, not by running git: a local
  folder, or a URL that is not an archive's, fetched over HTTP(S) (smart or dumb protocol) into a temporary clone.

`plan` walks a repository once: it names its licence from the licence files at its root (askalono, an SPDX
matcher), decides whether the licence is allowed, and splits a large repository into parts of about
`max_unit_bytes` (each file goes to a part by its path's hash). A unit is one part; it is committed and resumed like
the other sources' units. `read` walks the repository again and yields its part's files; `document` makes a file a
document (`repository`, `path`, `revision`, `license`, and its programming language as `language`) or counts why
it is not one. Archives are never unpacked to disk: a member is read into memory only when it is a regular file
under `max_file_bytes` at a safe path, so path traversal, links, devices and decompression bombs cost the member,
counted, never a write outside the work folder.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import io
import logging
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import ClassVar

import xxhash

from pipeline.common.remote import expand_glob, input_key, is_local, is_url, local_path, open_input
from pipeline.common.schema import Document, ReadError, Skipped, text_id
from pipeline.common.settings import UsageError
from pipeline.sources import DocumentSettings, Source, listed_once
from pipeline.steps import code

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
DEFAULT_MAX_UNIT_BYTES = 64_000_000
# A remote zip is spooled to a temporary file (its directory is at its end); this much stays in memory.
_SPOOL_BYTES = 16 << 20
_COMMIT = re.compile(rb"^[0-9a-f]{40}$")
# What a damaged archive or repository raises besides OSError and ValueError
UNREADABLE = (tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError, zlib.error, NotImplementedError, RuntimeError)


@dataclasses.dataclass
class Settings(DocumentSettings):
    """A recipe's table for code repositories; `languages` are programming languages (`python`, `cpp`, `markdown`:
    the names `pipeline.steps.code.language_of` gives)."""

    identifies_language: ClassVar[bool] = False

    repos: list[str] = dataclasses.field(default_factory=list)  # archives, checkouts or bare repositories; globs
    revision: str = "HEAD"  # what a bare repository is read at: a branch, a tag or a commit
    # SPDX ids a repository's licence files must all name; "permissive" stands for The Stack's list, "none" lets a
    # repository without a licence file in, "any" lets every repository in
    licenses: list[str] = dataclasses.field(default_factory=lambda: ["permissive"])
    max_file_bytes: int = code.DEFAULT_MAX_FILE_BYTES  # larger files are skipped unread (The Stack's 1 MB)
    max_unit_bytes: int = DEFAULT_MAX_UNIT_BYTES  # a repository larger than this is read in parts
    secrets: bool = True  # keys and tokens replaced by <SECRET> (detect-secrets' plugins)
    secret_plugins: list[str] = dataclasses.field(default_factory=lambda: list(code.DEFAULT_SECRET_PLUGINS))
    filters: list[str] = dataclasses.field(default_factory=lambda: list(code.CODE_FILTERS))
    min_language_score: float = 0.0


@dataclasses.dataclass(frozen=True)
class RepoUnit:
    """A part of a repository, as planned: what `read` needs without walking the repository twice for it."""

    path: str  # the archive, checkout or bare repository
    repository: str  # its name in the run (the input's path under the inputs' common folder)
    kind: str  # "tar", "zip", "checkout" or "git"
    part: int
    parts: int
    version: str  # what changes when the repository does: its commit, or its files' sizes and times
    revision: str | None = None
    prefix: str = ""  # an archive's top folder, taken off every path
    licenses: tuple[str, ...] = ()
    skip: str | None = None  # why every file of the repository is skipped (its licence)


@dataclasses.dataclass
class Entry:
    """A repository's member as walked: a regular file (`content()` reads it; call it before the next entry) or
    something else, named by `kind` (`link`, `submodule`, `special`, `encrypted`)."""

    path: str
    size: int
    kind: str = "file"
    content: Callable[[], bytes] | None = None


@dataclasses.dataclass
class CodeFile:
    """A record: a file of a repository and its bytes."""

    unit: RepoUnit
    path: str
    content: bytes


def repository_kind(path: str) -> str:
    """How an input is read: an archive by its suffix, a folder as a checkout or a bare repository."""
    lowered = path.lower()
    if lowered.endswith(".zip"):
        return "zip"
    if lowered.endswith(ARCHIVE_SUFFIXES):
        return "tar"
    if is_url(path):  # not an archive: a repository served over HTTP(S), smart or dumb
        return "git"
    if is_local(path) and os.path.isdir(local_path(path)):
        folder = local_path(path)
        if os.path.isdir(os.path.join(folder, ".git")):
            return "checkout"
        if os.path.isfile(os.path.join(folder, "HEAD")) and os.path.isdir(os.path.join(folder, "objects")):
            return "git"
        return "checkout"
    raise ValueError(f"{path}: not a repository archive ({', '.join(ARCHIVE_SUFFIXES)}), checkout or bare repository")


def safe_path(name: str) -> str | None:
    """A member's path inside its repository, or None when it could point outside it: absolute, with `..`, a
    drive or backslashes (as hostile archives carry)."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


# --- walking each kind of repository ---


def walk(unit_path: str, kind: str, revision: str, max_file_bytes: int) -> Iterator[Entry]:
    """Every member of a repository, in a stable order for a checkout, a bare repository and a zip (a tar streams in
    its own order). A regular file over `max_file_bytes` keeps its size but its content is never read."""
    walkers = {"tar": _walk_tar, "zip": _walk_zip, "checkout": _walk_checkout, "git": _walk_git}
    return walkers[kind](unit_path, revision, max_file_bytes)


def _bounded(read: Callable[[int], bytes], size: int, max_file_bytes: int, name: str) -> Callable[[], bytes]:
    def content() -> bytes:
        data = read(max_file_bytes + 1)
        if len(data) > max_file_bytes or len(data) != size:  # a header that lies about the size
            raise ValueError(f"{name}: {len(data)} bytes read where the archive says {size}")
        return data

    return content


def _walk_tar(path: str, revision: str, max_file_bytes: int) -> Iterator[Entry]:
    with open_input(path) as stream, tarfile.open(fileobj=stream, mode="r|*") as archive:
        for member in archive:
            if member.isdir():
                continue
            if not member.isfile():
                yield Entry(member.name, 0, "link" if member.issym() or member.islnk() else "special")
                continue
            extracted = archive.extractfile(member)
            assert extracted is not None  # a regular file
            yield Entry(member.name, member.size, content=_bounded(extracted.read, member.size, max_file_bytes,
                                                                   member.name))  # fmt: skip


def tar_revision(path: str) -> str | None:
    """The commit `git archive` wrote into a tar's pax global header (`comment`), as GitHub's tarballs carry."""
    with open_input(path) as stream, tarfile.open(fileobj=stream, mode="r|*") as archive:
        next(iter(archive), None)
        comment = archive.pax_headers.get("comment", "")
    return comment if _COMMIT.match(comment.encode()) else None


def _open_zip(path: str) -> zipfile.ZipFile:
    if is_local(path):
        return zipfile.ZipFile(local_path(path))
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
    with open_input(path) as stream:
        while chunk := stream.read(1 << 20):
            spool.write(chunk)
    spool.seek(0)
    return zipfile.ZipFile(spool)


def _walk_zip(path: str, revision: str, max_file_bytes: int) -> Iterator[Entry]:
    with _open_zip(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                yield Entry(info.filename, 0, "link")
            elif info.flag_bits & 0x1:
                yield Entry(info.filename, info.file_size, "encrypted")
            else:
                yield Entry(info.filename, info.file_size, content=_zip_reader(archive, info, max_file_bytes))


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_file_bytes: int) -> Callable[[], bytes]:
    def content() -> bytes:
        with archive.open(info) as member:  # reads stop at the declared size: a bomb's lie costs a CRC error
            return _bounded(member.read, info.file_size, max_file_bytes, info.filename)()

    return content


def zip_revision(path: str) -> str | None:
    with _open_zip(path) as archive:
        comment = archive.comment.strip()
    return comment.decode() if _COMMIT.match(comment) else None


def _walk_checkout(path: str, revision: str, max_file_bytes: int) -> Iterator[Entry]:
    root = local_path(path)
    for folder, folders, files in os.walk(root):
        folders[:] = sorted(name for name in folders if name != ".git")
        for name in sorted(files):
            full = os.path.join(folder, name)
            relative = os.path.relpath(full, root).replace(os.sep, "/")
            status = os.lstat(full)
            if stat.S_ISLNK(status.st_mode):
                yield Entry(relative, 0, "link")
            elif not stat.S_ISREG(status.st_mode):
                yield Entry(relative, 0, "special")
            else:
                yield Entry(relative, status.st_size, content=_file_reader(full, status.st_size, max_file_bytes))


def _file_reader(full: str, size: int, max_file_bytes: int) -> Callable[[], bytes]:
    def content() -> bytes:
        with open(full, "rb") as stream:
            return stream.read(max_file_bytes + 1)

    return content


_CLONES: dict[str, str] = {}


def local_repository(path: str) -> str:
    """A repository's folder: a local one as it is, a remote one (HTTP(S), smart or dumb protocol) fetched by dulwich
    into a bare clone in a temporary folder, once per process and removed at its exit. A fetch that fails is an
    OSError naming the URL."""
    if not is_url(path):
        return local_path(path)
    if path not in _CLONES:
        from dulwich import porcelain

        folder = tempfile.mkdtemp(prefix="lmforge-git-")
        atexit.register(shutil.rmtree, folder, True)
        try:
            porcelain.clone(path, folder, bare=True, checkout=False, errstream=io.BytesIO()).close()
        except Exception as exc:  # dulwich's protocol and HTTP errors have no common base but Exception
            raise OSError(f"{path}: cannot fetch the repository: {type(exc).__name__}: {exc}") from exc
        _CLONES[path] = folder
    return _CLONES[path]


def _git_commit(path: str, revision: str):
    from dulwich.objectspec import parse_commit
    from dulwich.repo import Repo

    repo = Repo(local_repository(path))
    try:
        return repo, parse_commit(repo, revision.encode())
    except KeyError:
        raise ValueError(f"{path}: no revision {revision!r}") from None


def git_revision(path: str, revision: str) -> str:
    repo, commit = _git_commit(path, revision)
    with repo:
        return commit.id.decode()


def _walk_git(path: str, revision: str, max_file_bytes: int) -> Iterator[Entry]:
    repo, commit = _git_commit(path, revision)
    with repo:
        entries = sorted(repo.object_store.iter_tree_contents(commit.tree), key=lambda entry: entry.path)
        for entry in entries:
            name = entry.path.decode("utf-8", "replace")
            if stat.S_ISLNK(entry.mode):
                yield Entry(name, 0, "link")
            elif entry.mode == 0o160000:  # a gitlink: another repository's commit
                yield Entry(name, 0, "submodule")
            else:
                data: bytes = repo.object_store[entry.sha].as_raw_string()
                yield Entry(name, len(data), content=functools.partial(bytes, data))


def checkout_revision(path: str) -> str | None:
    """A checkout's HEAD commit, or None when it has no commit (or no .git)."""
    from dulwich.errors import NotGitRepository
    from dulwich.repo import Repo

    try:
        with Repo(local_path(path)) as repo:
            return repo.head().decode()
    except (NotGitRepository, KeyError):
        return None


def common_prefix(paths: list[str]) -> str:
    """An archive's single top folder (`repo-main/`), when every member is under it; else ""."""
    tops = {path.split("/", 1)[0] for path in paths}
    if len(tops) == 1 and all("/" in path for path in paths):
        return tops.pop() + "/"
    return ""


def part_of(path: str, parts: int) -> int:
    return xxhash.xxh3_64_intdigest(path.encode("utf-8", "surrogatepass")) % parts if parts > 1 else 0


class Code(Source):
    """Units are `RepoUnit`s; records are `CodeFile`s, or Skipped for what is not read."""

    Settings = Settings
    kind = "code"

    def inputs(self) -> list[tuple[str, str]]:
        """(repository, its name in the run): names are paths under the inputs' common folder, so two checkouts
        called `src` in different places stay apart."""
        where = f"sources.{self.name}.repos"
        if not self.settings.repos:
            raise UsageError(f"{where}: no repositories given")
        found: list[str] = []
        for pattern in self.settings.repos:
            if is_url(pattern) or not is_local(pattern):
                matched = [pattern] if is_url(pattern) else expand_glob(pattern)
            else:
                matched = sorted(path for path in _local_matches(pattern) if _is_repository(path))
            if not matched:
                raise UsageError(f"{where}: no archive, checkout or bare repository matches {pattern}")
            found.extend(matched)
        found = listed_once([path.rstrip("/") for path in found], where)
        try:
            code.allowed_licenses(self.settings.licenses)
            code.secret_plugins(self.settings.secret_plugins)
        except ValueError as exc:
            raise UsageError(f"sources.{self.name}: {exc}")
        common = os.path.commonprefix(found)
        folder = common[: common.rfind("/") + 1]
        return [(path, _repository_name(path, folder)) for path in found]

    def input_path(self, source_input) -> str:
        return source_input[0]

    def plan(self, source_input) -> list[RepoUnit]:
        """The repository's parts; an archive or repository that cannot be read is a ValueError naming it."""
        path, repository = source_input
        try:
            return self._plan(path, repository, repository_kind(path))
        except UNREADABLE as exc:
            raise ValueError(f"{path}: not a readable repository: {type(exc).__name__}: {exc}") from exc

    def _plan(self, path: str, repository: str, kind: str) -> list[RepoUnit]:
        s = self.settings
        paths, licence_texts, readable_bytes = [], {}, 0
        for entry in walk(path, kind, s.revision, s.max_file_bytes):
            paths.append(entry.path)
            safe = safe_path(entry.path)
            if entry.content is not None and safe is not None:
                readable_bytes += entry.size if entry.size <= s.max_file_bytes else 0
                if entry.size <= s.max_file_bytes and code.is_license_file(_strip(safe, common_prefix([safe]))):
                    try:
                        licence_texts[safe] = entry.content()
                    except (ValueError, OSError, EOFError, *UNREADABLE) as exc:  # `read` counts it unreadable
                        log.info("%s: licence file %s unreadable: %s", path, safe, exc)
        safe_paths = [safe for safe in map(safe_path, paths) if safe is not None]
        prefix = common_prefix(safe_paths) if kind in ("tar", "zip") and safe_paths else ""
        texts = [
            (code.decode(data) or "") for name, data in sorted(licence_texts.items()) if "/" not in _strip(name, prefix)
        ]
        licenses = tuple(code.licenses_of(texts))
        skip = code.license_verdict(list(licenses), code.allowed_licenses(s.licenses))
        revision = {"tar": tar_revision, "zip": zip_revision, "checkout": checkout_revision}.get(kind)
        revision_id = revision(path) if revision else git_revision(path, s.revision)
        # a checkout is read from its files, which may differ from its commit: their sizes and times key it too
        version = revision_id if revision_id and kind != "checkout" else f"{revision_id}|{_files_version(path, kind)}"
        parts = 1 if skip else max(1, -(-readable_bytes // max(1, s.max_unit_bytes)))
        if skip:
            log.info("%s: skipped, %s (licences found: %s)", path, skip, ", ".join(licenses) or "none")
        return [
            RepoUnit(path, repository, kind, part, parts, version, revision_id, prefix, licenses, skip)
            for part in range(parts)
        ]

    def unit_key(self, unit: RepoUnit) -> str:
        identity = f"{unit.path}|{unit.version}|{unit.part}/{unit.parts}"
        name = re.sub(r"[^\w.-]", "_", posixpath.basename(unit.path.rstrip("/")))[:60]
        return f"{name}-{unit.part}of{unit.parts}-{hashlib.sha1(identity.encode()).hexdigest()[:16]}"

    def unit_path(self, unit: RepoUnit) -> str:
        return unit.path

    def counts_input(self, unit: RepoUnit) -> bool:
        return unit.part == 0

    def unit_settings(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self.settings).items() if k != "repos"}

    def read(self, unit: RepoUnit) -> Iterator[CodeFile | Skipped | ReadError]:
        s = self.settings
        for entry in walk(unit.path, unit.kind, s.revision, s.max_file_bytes):
            safe = safe_path(entry.path)
            path = _strip(safe, unit.prefix) if safe is not None else entry.path
            if part_of(path, unit.parts) != unit.part:
                continue
            if safe is None:
                yield Skipped("unsafe_path", entry.path)
            elif unit.skip:
                yield Skipped(unit.skip, path)
            elif entry.content is None:
                yield Skipped(entry.kind, path)
            elif reason := code.skip_reason(path, entry.size, s.max_file_bytes):
                yield Skipped(reason, path)
            else:
                try:
                    content = entry.content()
                except (ValueError, OSError, EOFError, *UNREADABLE) as exc:
                    log.info("%s: %s unreadable: %s", unit.path, path, exc)
                    yield Skipped("unreadable_member", path)
                    continue
                yield CodeFile(unit, path, content)

    def document(self, record: CodeFile | Skipped | ReadError) -> Document | Skipped | ReadError:
        if not isinstance(record, CodeFile):
            return record
        if code.is_binary(record.content):
            return Skipped("binary", record.path)
        language = code.language_of(record.path, record.content)
        if language is None:
            return Skipped("not_code", record.path)
        text = code.decode(record.content)
        if text is None:
            return Skipped("undecodable", record.path)
        if not text.strip():  # an empty __init__.py
            return Skipped("no_text", record.path)
        unit = record.unit
        return Document(
            id=text_id(self.name, f"{unit.repository}/{record.path}"),
            text=text,
            source=self.name,
            language=language,
            repository=unit.repository,
            path=record.path,
            revision=unit.revision,
            license=" AND ".join(unit.licenses) or None,
        )

    def steps(self, unit) -> list:
        return [code.SecretsStep(self.settings.secret_plugins)] if self.settings.secrets else []


def _strip(path: str, prefix: str) -> str:
    return path[len(prefix) :] if prefix and path.startswith(prefix) else path


def _local_matches(pattern: str) -> list[str]:
    import glob

    return glob.glob(local_path(pattern), recursive=True)


def _is_repository(path: str) -> bool:
    return os.path.isdir(path) or path.lower().endswith(ARCHIVE_SUFFIXES)


def _repository_name(path: str, folder: str) -> str:
    name = path[len(folder) :] if folder and path.startswith(folder) else posixpath.basename(path)
    for suffix in (*ARCHIVE_SUFFIXES, ".git"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name or posixpath.basename(path)


def _files_version(path: str, kind: str) -> str:
    """What identifies a checkout without commits, or an archive without a recorded commit: its files' sizes and
    modification times (an archive's own size and time)."""
    digest = hashlib.sha1()
    if kind == "checkout":
        for folder, folders, files in os.walk(local_path(path)):
            folders[:] = sorted(name for name in folders if name != ".git")
            for name in sorted(files):
                status = os.lstat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}|{status.st_size}|{status.st_mtime_ns}\n".encode())
    else:
        digest.update(input_key(path).encode())
    return digest.hexdigest()
