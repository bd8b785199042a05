"""Source code, one file at a time, as The Stack and StarCoder's data curate it: which files are code at all
(`classify`), the programming language of a file (`language_of`), what a repository's licence is (`licenses_of`,
`allowed`), the published code filters (small classes like the web filters, registered in
`pipeline.steps.filters.FILTERS`), and keys and tokens redacted (`SecretsStep`). Plain functions and classes,
tested without an engine; `pipeline.sources.code` reads repositories with them.

Libraries made for each job: pre-commit's `identify` names a file's type from its name, extension and shebang;
askalono (the SPDX licence matcher behind GitHub's and crates.io's tooling) names a licence text; Yelp's
detect-secrets supplies the key and token patterns.
"""

from __future__ import annotations

import collections
import functools
import io
import posixpath
import re
from collections.abc import Iterable

from pipeline.common.schema import Document

# identify's tags that say what kind of file it is, not which language it is written in
_NOT_LANGUAGES = frozenset(
    {"text", "binary", "plain-text", "header", "image", "executable", "non-executable", "file", "symlink",
     "directory", "socket", "audio", "video", "font", "archive", "zip", "gzip", "tar", "bzip2", "xz", "zstd"}
)  # fmt: skip
# identify's tags for one language under several names
_ALIASES = {
    "pyi": "python", "python2": "python", "python3": "python", "pyz": "python",
    "ts": "typescript", "tsx": "typescript", "jsx": "javascript", "mjs": "javascript", "cjs": "javascript",
    "bash": "shell", "sh": "shell", "zsh": "shell", "ksh": "shell", "ash": "shell", "dash": "shell",
    "yml": "yaml", "c++": "cpp", "c#": "csharp", "objective-c": "objective-c",
}  # fmt: skip
# Languages whose files are data rather than programs: `code_data` bounds their size, as StarCoder did.
DATA_LANGUAGES = ("json", "yaml", "xml", "csv", "tsv", "svg")

# Folders of third-party code copied into a repository (GitHub Linguist's vendor list, its common entries).
VENDORED_DIRS = frozenset(
    {"vendor", "vendors", "vendored", "_vendor", "node_modules", "bower_components", "third_party", "third-party",
     "thirdparty", "external", "externals", "site-packages", "dist-packages", ".git", ".hg", ".svn", "__pycache__",
     ".tox", ".venv", "venv", ".mypy_cache", ".pytest_cache", "Pods", "Carthage", "jspm_packages"}
)  # fmt: skip
# Files a package manager writes: exact names, and the .lock suffix.
LOCK_FILES = frozenset(
    {"package-lock.json", "yarn.lock", "pnpm-lock.yaml", "npm-shrinkwrap.json", "poetry.lock", "Pipfile.lock",
     "uv.lock", "pdm.lock", "Cargo.lock", "Gemfile.lock", "composer.lock", "go.sum", "mix.lock", "pubspec.lock",
     "Podfile.lock", "flake.lock", "gradle.lockfile", "packages.lock.json", "bun.lockb"}
)  # fmt: skip
# A repository's licence files, at its root (GitHub's and The Stack's names)
_LICENSE_FILE = re.compile(r"(?i)^(?:un)?licen[cs]e|^copying|^copyright")
# Bytes of a file that decide whether it is binary: git's own test (a NUL among the first 8,000).
BINARY_PROBE = 8000
# Files over this size are skipped unread (The Stack's 1 MB).
DEFAULT_MAX_FILE_BYTES = 1_000_000


def is_vendored(path: str) -> bool:
    return any(part in VENDORED_DIRS for part in path.split("/")[:-1])


def is_lock_file(path: str) -> bool:
    name = posixpath.basename(path)
    return name in LOCK_FILES or name.endswith(".lock")


def is_license_file(path: str) -> bool:
    """A licence file at the repository's root (`LICENSE`, `LICENSE.md`, `COPYING`, `LICENCE-MIT`, `UNLICENSE`)."""
    return "/" not in path and bool(_LICENSE_FILE.match(path))


def skip_reason(path: str, size: int, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> str | None:
    """Why a repository's file is not read at all, from its path and size: vendored, a lock file, too large."""
    if is_vendored(path):
        return "vendored"
    if is_lock_file(path):
        return "lock_file"
    if size > max_file_bytes:
        return "too_large"
    return None


def language_of(path: str, content: bytes = b"") -> str | None:
    """The programming (or markup, or data) language of a file from its name and extension, else its shebang:
    `python`, `cpp`, `markdown`, `json`; None for a file that is not code (a LICENSE, a .txt, an image)."""
    import identify.identify as identify

    tags = identify.tags_from_filename(posixpath.basename(path))
    if "binary" in tags:
        return None
    if not tags - _NOT_LANGUAGES and content.startswith(b"#!"):
        tags = tags | identify.tags_from_interpreter(_interpreter(content))
    names = sorted({_ALIASES.get(tag, tag) for tag in tags - _NOT_LANGUAGES})
    return names[0] if names else None


def _interpreter(content: bytes) -> str:
    import identify.identify as identify

    command = identify.parse_shebang(io.BytesIO(content[:1024]))
    return command[0] if command else ""


def is_binary(content: bytes) -> bool:
    return b"\x00" in content[:BINARY_PROBE]


def decode(content: bytes) -> str | None:
    """A source file's text: UTF-8 (a BOM dropped), else the charset charset-normalizer finds; None when no charset
    makes text of it."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        import charset_normalizer

        best = charset_normalizer.from_bytes(content).best()
        return None if best is None else str(best)


# --- licences ---

# The Stack's permissive licences (its v1 list, as SPDX ids), the default of `licenses`
PERMISSIVE_LICENSES = frozenset(
    {"MIT", "MIT-0", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Clear", "BSD-4-Clause", "0BSD",
     "BSD-1-Clause", "BSD-2-Clause-Patent", "ISC", "Unlicense", "CC0-1.0", "CC-BY-3.0", "CC-BY-4.0", "Zlib",
     "zlib-acknowledgement", "BSL-1.0", "Python-2.0", "Python-2.0.1", "PSF-2.0", "X11", "NCSA", "Artistic-2.0",
     "WTFPL", "AFL-3.0", "ECL-2.0", "Unicode-DFS-2016", "PostgreSQL", "MS-PL", "UPL-1.0", "curl", "libpng-2.0",
     "OpenSSL", "W3C", "HPND", "Beerware", "FTL", "Fair", "Bitstream-Vera", "MulanPSL-2.0"}
)  # fmt: skip
# askalono's score from which a match names the licence (askalono's own CLI uses 0.8)
MIN_LICENSE_SCORE = 0.8
NO_LICENSE = "none"


@functools.lru_cache(maxsize=1024)
def identify_license(text: str) -> str | None:
    """The SPDX id of a licence text, or None when askalono's best match scores under `MIN_LICENSE_SCORE`. Cached:
    each call costs askalono 0.1-0.3 s, and forks and mirrors carry the same licence file."""
    import askalono

    match = askalono.identify(text)
    return match.name if match.score >= MIN_LICENSE_SCORE else None


def licenses_of(texts: Iterable[str]) -> list[str]:
    """The licences a repository's licence files name, each once, sorted; an unrecognised file counts as `unknown`."""
    found = {identify_license(text) or "unknown" for text in texts if text.strip()}
    return sorted(found)


def allowed_licenses(setting: Iterable[str]) -> frozenset[str] | None:
    """`licenses` as a set of SPDX ids (`permissive` stands for `PERMISSIVE_LICENSES`, `none` allows a repository
    without a licence file); None for `any`, which allows every repository."""
    names = set(setting)
    if "any" in names:
        return None
    if "permissive" in names:
        names = (names - {"permissive"}) | PERMISSIVE_LICENSES
    return frozenset(names)


def license_verdict(licenses: list[str], allowed: frozenset[str] | None) -> str | None:
    """Why a repository with these licences is skipped (`license.none`, `license.not_allowed`), or None to read
    it: every licence it names must be allowed (a repository under MIT and GPL-3.0 is not permissive)."""
    if allowed is None:
        return None
    if not licenses:
        return None if NO_LICENSE in allowed else "license.none"
    return None if all(name in allowed for name in licenses) else "license.not_allowed"


# --- filters: the published thresholds as defaults (StarCoder, The Stack v2) ---


class CodeLinesFilter:
    """StarCoder's line rules: a line longer than `max_line_length`, or lines longer than `max_mean_line_length`
    on average (minified or generated code), drop the file."""

    name = "code_lines"

    def __init__(self, max_line_length: int | None = 1000, max_mean_line_length: float | None = 100):
        self.max_line_length = max_line_length
        self.max_mean_line_length = max_mean_line_length

    def __call__(self, doc: Document) -> str | None:
        lengths = [len(line) for line in doc.text.splitlines()] or [0]
        longest, mean = max(lengths), sum(lengths) / len(lengths)
        doc.measure("code_lines.max_line_length", longest)
        doc.measure("code_lines.mean_line_length", mean)
        if self.max_line_length is not None and longest > self.max_line_length:
            return "long_line"
        if self.max_mean_line_length is not None and mean > self.max_mean_line_length:
            return "long_mean_line"
        return None


class CodeAlphanumFilter:
    """StarCoder's alphanumeric rule: under `min_alphanum_fraction` of letters and digits is data or encoded
    content (a base64 blob, a table of numbers written as symbols)."""

    name = "code_alphanum"

    def __init__(self, min_alphanum_fraction: float | None = 0.25):
        self.min_alphanum_fraction = min_alphanum_fraction

    def __call__(self, doc: Document) -> str | None:
        text = doc.text
        fraction = sum(map(str.isalnum, text)) / len(text) if text else 0.0
        doc.measure("code_alphanum.fraction", fraction)
        if self.min_alphanum_fraction is not None and fraction < self.min_alphanum_fraction:
            return "low_alphanum"
        return None


GENERATED_MARKERS = ("auto-generated", "autogenerated", "automatically generated", "generated by", "do not edit")
MINIFIED_SUFFIXES = (".min.js", ".min.css", "-min.js", ".bundle.js")


class CodeGeneratedFilter:
    """Files a tool wrote: a marker of generation (The Stack v2's list) in the first `header_lines` lines, or a
    minified file's name."""

    name = "code_generated"

    def __init__(self, markers: Iterable[str] = GENERATED_MARKERS, header_lines: int = 5):
        self.markers = tuple(marker.lower() for marker in markers)
        self.header_lines = header_lines

    def __call__(self, doc: Document) -> str | None:
        if doc.path and doc.path.lower().endswith(MINIFIED_SUFFIXES):
            return "minified"
        header = "\n".join(doc.text.splitlines()[: self.header_lines]).lower()
        if any(marker in header for marker in self.markers):
            return "autogenerated"
        return None


class CodeDataFilter:
    """Data files kept only when small (StarCoder: JSON and YAML between 50 and 5,000 characters); larger ones are
    dumps of data, not code."""

    name = "code_data"

    def __init__(self, min_chars: int | None = 50, max_chars: int | None = 5000, languages=DATA_LANGUAGES):
        self.min_chars, self.max_chars, self.languages = min_chars, max_chars, frozenset(languages)

    def __call__(self, doc: Document) -> str | None:
        if doc.language not in self.languages:
            return None
        if self.min_chars is not None and len(doc.text) < self.min_chars:
            return "data_too_short"
        if self.max_chars is not None and len(doc.text) > self.max_chars:
            return "data_too_long"
        return None


CODE_FILTER_CLASSES = (CodeLinesFilter, CodeAlphanumFilter, CodeGeneratedFilter, CodeDataFilter)
CODE_FILTERS = tuple(f.name for f in CODE_FILTER_CLASSES)


# --- secrets ---

# detect-secrets' plugins whose patterns name a key or token by its format. Left out: the entropy plugins and
# KeywordDetector, which flag most lines of ordinary code (4 findings a line on plain arithmetic); IPPublicDetector,
# which the PII step covers; and the IBM Cloud, Cloudant and SoftLayer plugins, whose patterns (a lookbehind at every
# position, keywords as short as `cl` and `sl`) took 70% of the scan for those vendors' credentials alone
# (bench/bench_code.py): `secret_plugins` adds them back.
DEFAULT_SECRET_PLUGINS = (
    "AWSKeyDetector", "ArtifactoryDetector", "AzureStorageKeyDetector", "BasicAuthDetector",
    "DiscordBotTokenDetector", "GitHubTokenDetector", "GitLabTokenDetector", "JwtTokenDetector", "MailchimpDetector",
    "NpmDetector", "OpenAIDetector", "PrivateKeyDetector", "PypiTokenDetector", "SendGridDetector", "SlackDetector",
    "SquareOAuthDetector", "StripeDetector", "TelegramBotTokenDetector", "TwilioKeyDetector",
)  # fmt: skip
SECRET_PLACEHOLDER = "<SECRET>"
_PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN[A-Z ]*PRIVATE KEY[A-Z ]*-----.*?(?:-----END[A-Z ]*PRIVATE KEY[A-Z ]*-----|\Z)", re.S
)


def secret_plugins(names: Iterable[str]) -> list:
    """detect-secrets' plugin objects by class name; a name it does not have is a ValueError naming the known ones."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    plugin_classes: Iterable[type] = get_mapping_from_secret_type_to_class().values()
    classes = {plugin_class.__name__: plugin_class for plugin_class in plugin_classes}
    unknown = [name for name in names if name not in classes]
    if unknown:
        raise ValueError(f"no detect-secrets plugin {unknown[0]!r} (plugins: {', '.join(sorted(classes))})")
    return [classes[name]() for name in names]


class SecretsStep:
    """Replaces keys, tokens and private keys with `SECRET_PLACEHOLDER`; drops nothing. Each plugin's patterns run
    over the whole text first, so the plugin's own line analysis runs only on texts where one of them matches.
    Counts per plugin (`secrets.AWSKeyDetector`) go to `stats.json` `edits`."""

    name = "secrets"

    def __init__(self, plugins: Iterable[str] = DEFAULT_SECRET_PLUGINS):
        self.plugins = secret_plugins(plugins)
        self.changes: collections.Counter = collections.Counter()

    def redact(self, text: str) -> tuple[str, collections.Counter]:
        counts: collections.Counter = collections.Counter()
        for plugin in self.plugins:
            if not any(pattern.search(text) for pattern in plugin.denylist):
                continue
            kind = f"secrets.{type(plugin).__name__}"
            if type(plugin).__name__ == "PrivateKeyDetector":
                text, replaced = _PRIVATE_KEY_BLOCK.subn(SECRET_PLACEHOLDER, text)
                counts[kind] += replaced
                continue
            found = {secret for line in text.splitlines() for secret in plugin.analyze_string(line) if secret}
            for secret in sorted(found, key=len, reverse=True):  # a secret inside a longer one goes with it
                counts[kind] += text.count(secret)
                text = text.replace(secret, SECRET_PLACEHOLDER)
        return text, counts

    def __call__(self, doc: Document) -> None:
        doc.text, counts = self.redact(doc.text)
        self.changes.update(counts)
