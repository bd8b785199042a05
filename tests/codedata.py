"""Code repositories for the tests, packed at test time from real code already on this machine: packages installed
in the venv with their own licence files (source code fetched from public repositories may not be committed, even
as test data), Debian's licence texts, and generated files for the cases nothing installed covers."""

from __future__ import annotations

import importlib.metadata
import io
import os
import pathlib
import shutil
import stat
import tarfile
import time
import zipfile

# Written into every packed repository beside the real code: the cases the source must skip or rewrite.
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SECRET_FILE = f'''"""Settings of the deployment."""

AWS_ACCESS_KEY_ID = "{AWS_KEY}"
GITHUB = "{GITHUB_TOKEN}"
REGION = "eu-west-1"


def region() -> str:
    return REGION
'''
EXTRAS = {
    "config/settings.py": SECRET_FILE,
    "vendor/left_pad.js": "module.exports = function leftPad(s, n) { return s.padStart(n); };\n",
    "node_modules/x/index.js": "module.exports = 1;\n",
    "poetry.lock": "[[package]]\nname = 'x'\nversion = '1.0'\n",
    "static/app.min.js": "var a=1;function b(c){return c+a}\n",
    "notes.txt": "Plain notes, not code.\n",
}
BINARY_FILE = ("assets/logo.bin", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))


def package_files(distribution: str, top: str, limit: int | None = None) -> dict[str, bytes]:
    """An installed distribution as a repository's files: its package's files under `top/` (no bytecode) and its
    licence files at the root, as they sit in its source repository."""
    dist = importlib.metadata.distribution(distribution)
    files: dict[str, bytes] = {}
    for entry in dist.files or []:
        path = str(entry)
        name = os.path.basename(path)
        located = pathlib.Path(dist.locate_file(entry))
        if ".dist-info/" in path:  # its own licence files (a vendored package's, deeper down, are not the root's)
            own = path.count("/") == 1 or (path.count("/") == 2 and "/licenses/" in path)
            if own and (name.upper().startswith(("LICEN", "COPYING")) or "/licenses/" in path):
                files[name] = located.read_bytes()
        elif path.startswith(top + "/") and "__pycache__" not in path and not path.endswith(".pyc"):
            if located.is_file():
                files[path] = located.read_bytes()
    code = sorted(p for p in files if "/" in p)
    keep = set(code[:limit] if limit else code) | {p for p in files if "/" not in p}
    return {path: data for path, data in sorted(files.items()) if path in keep}


def with_extras(files: dict[str, bytes]) -> dict[str, bytes]:
    out = dict(files)
    out.update({path: text.encode() for path, text in EXTRAS.items()})
    out[BINARY_FILE[0]] = BINARY_FILE[1]
    return out


def write_checkout(folder: pathlib.Path, files: dict[str, bytes], link: str | None = None) -> pathlib.Path:
    for path, data in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if link:
        os.symlink("config/settings.py", folder / link)
    return folder


def commit_checkout(folder: pathlib.Path) -> str:
    """The checkout as a git repository with one commit of every file (dulwich, as the source reads it)."""
    from dulwich import porcelain

    repo = porcelain.init(str(folder))
    porcelain.add(repo, [str(p) for p in sorted(folder.rglob("*")) if ".git" not in p.parts and not p.is_dir()])
    sha = porcelain.commit(repo, message=b"import", author=b"T <t@example.org>", committer=b"T <t@example.org>")
    repo.close()
    return sha.decode()


def bare_clone(folder: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    from dulwich import porcelain

    quiet = io.BytesIO()
    porcelain.clone(str(folder), str(target), bare=True, checkout=False, errstream=quiet).close()
    return target


def write_tar(path: pathlib.Path, files: dict[str, bytes], top: str, commit: str | None = None,
              link: str | None = None) -> pathlib.Path:  # fmt: skip
    """A tarball as `git archive` (and GitHub) writes one: one top folder, the commit in the pax global header."""
    headers = {"comment": commit} if commit else {}
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers=headers) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime = len(data), 1_700_000_000
            archive.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(f"{top}/{link}")
            info.type, info.linkname = tarfile.SYMTYPE, "config/settings.py"
            archive.addfile(info)
    return path


def write_zip(path: pathlib.Path, files: dict[str, bytes], top: str, commit: str | None = None,
              link: str | None = None) -> pathlib.Path:  # fmt: skip
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(f"{top}/{name}", time.gmtime(1_700_000_000)[:6]), data)
        if link:
            info = zipfile.ZipInfo(f"{top}/{link}")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "config/settings.py")
        if commit:
            archive.comment = commit.encode()
    return path


def hostile_tar(path: pathlib.Path, max_file_bytes: int) -> pathlib.Path:
    """A tarball built to escape or exhaust an unpacker, and one honest file among the traps."""
    with tarfile.open(path, "w:gz") as archive:

        def add(name: str, data: bytes = b"", **fields) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for key, value in fields.items():
                setattr(info, key, value)
            archive.addfile(info, io.BytesIO(data) if data else None)

        add("repo/ok.py", b"def ok():\n    return 'fine'\n")
        add("repo/../../escaped.py", b"print('outside')\n")
        add("/etc/absolute.py", b"print('absolute')\n")
        add("repo/link.py", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add("repo/hard.py", type=tarfile.LNKTYPE, linkname="repo/ok.py")
        add("repo/device", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("repo/huge.py", b"x = 0\n" * (max_file_bytes // 6 + 10))  # compresses to almost nothing
    return path


def hostile_zip(path: pathlib.Path, max_file_bytes: int) -> pathlib.Path:
    """A zip with traversal, an absolute path, a symlink, an encrypted member and a member whose header lies about
    its size (the zip bomb's trick), beside an honest file."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("repo/ok.py", "def ok():\n    return 'fine'\n")
        archive.writestr("repo/../../escaped.py", "print('outside')\n")
        archive.writestr("/absolute.py", "print('absolute')\n")
        link = zipfile.ZipInfo("repo/link.py")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("repo/bomb.py", "y = 1\n" * (max_file_bytes // 3))
        archive.writestr("repo/locked.py", "secret = 1\n")
    data = bytearray(path.read_bytes())
    _patch_zip(data, b"repo/bomb.py", size=100)  # says 100 bytes; inflates to far more
    _patch_zip(data, b"repo/locked.py", encrypted=True)
    path.write_bytes(bytes(data))
    return path


def _patch_zip(data: bytearray, name: str, size: int | None = None, encrypted: bool = False) -> None:
    """Rewrites a member's headers in place: the local header and the central directory entry."""
    for signature, flags_at, size_at, length_at, name_at in (
        (b"PK\x03\x04", 6, 22, 26, 30),
        (b"PK\x01\x02", 8, 24, 28, 46),
    ):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            length = int.from_bytes(data[start + length_at : start + length_at + 2], "little")
            if bytes(data[start + name_at : start + name_at + length]) == name:
                if size is not None:
                    data[start + size_at : start + size_at + 4] = size.to_bytes(4, "little")
                if encrypted:
                    flags = int.from_bytes(data[start + flags_at : start + flags_at + 2], "little") | 1
                    data[start + flags_at : start + flags_at + 2] = flags.to_bytes(2, "little")
            start += 4


def copy_tree(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    shutil.copytree(source, target, symlinks=True)
    return target
