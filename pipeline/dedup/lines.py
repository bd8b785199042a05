"""Boilerplate lines across a run, as CCNet removes them (Wenzek et al. 2020): a line whose normalised form occurs in
at least `min_documents` documents of the run (cookie banners, navigation, sign-up prompts that extraction kept) is
removed from every document that has it, and what is left is filtered again by its source's filters.

CCNet's normalisation: lower case, accents removed, every digit as 0, punctuation removed, spaces folded; a line
with nothing left (blank, or punctuation only) is never counted or removed. CCNet's threshold is 2 (a paragraph seen
twice in a shard is boilerplate), the default here. The engine stages (`pipeline.dedup.stages.RemoveCommonLines` on
Beam, `pipeline.spark.dedup.common_lines`) count each line's documents in a group keyed by its hash, so what a worker
holds is bounded by the largest group (the commonest line's documents); `rewrite` is the per-document rule both call.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

import xxhash

from pipeline.common.schema import Document
from pipeline.dedup import normalise
from pipeline.output.stats import Funnel

DEFAULT_MIN_DOCUMENTS = 2
REASON_PREFIX = "line_dedup."
EMPTY = "line_dedup.empty"  # every line of the document was boilerplate
_DIGIT = re.compile(r"\d")


def normalise_line(line: str) -> str:
    stripped = "".join(c for c in unicodedata.normalize("NFD", line) if not unicodedata.combining(c))
    return _DIGIT.sub("0", normalise(stripped))


def line_hash(line: str) -> int | None:
    """The 64-bit hash of a line's normalised form; None for a line with nothing left."""
    normal = normalise_line(line)
    return xxhash.xxh3_64_intdigest(normal.encode("utf-8", "surrogatepass")) if normal else None


def line_hashes(text: str) -> set[int]:
    """The distinct line hashes of a text: a line repeated inside one document counts that document once."""
    return {h for h in map(line_hash, text.split("\n")) if h is not None}


def document_line_hashes(doc: Document) -> set[int]:
    """What a document contributes to the count of common lines, and so what can be removed from it: nothing for a
    code file (it has a `path`), whose lines repeated across files (`import os`, `}`) are code, not boilerplate."""
    return set() if doc.path is not None else line_hashes(doc.text)


def source_of(doc: Document, names: Iterable[str], kinds: dict[str, str]) -> str | None:
    """The recipe source a document came from: by name (local text, shards keep theirs), else by kind (Common Crawl
    and Wikipedia documents carry their kind)."""
    names = list(names)
    if doc.source in names:
        return doc.source
    return next((name for name in names if kinds.get(name) == doc.source), None)


def rewrite(doc: Document, common: set[int], refilter: Callable[[Document], str | None] | None, source: str):
    """`doc` without its lines in `common`: (the document, or None when what is left fails `refilter` or is empty;
    the Funnel of this change: `line_dedup.<source>.lines` and `.bytes` edits, a drop, an example of the lines)."""
    funnel = Funnel()
    kept: list[str] = []
    removed: list[str] = []
    for line in doc.text.split("\n"):
        (removed if line_hash(line) in common else kept).append(line)
    if not removed:
        return doc, funnel
    funnel.edits[f"line_dedup.{source}.documents"] += 1
    funnel.edits[f"line_dedup.{source}.lines"] += len(removed)
    removed_bytes: int = sum(len(line.encode("utf-8", "surrogatepass")) + 1 for line in removed)
    funnel.edits[f"line_dedup.{source}.bytes"] += removed_bytes
    funnel.example(f"line_dedup.{source}.lines", doc.id, doc.url, "\n".join(removed))
    doc.text = "\n".join(kept).strip()
    reason = EMPTY if not doc.text else (refilter(doc) if refilter is not None else None)
    if reason is not None:
        reason = reason if reason.startswith(REASON_PREFIX) else f"{REASON_PREFIX}{reason}"
        funnel.drop(reason)
        funnel.example(reason, doc.id, doc.url, doc.text)
        return None, funnel
    return doc, funnel


class Refilters:
    """Each source's filters, made once per worker, to run on a document that lost lines."""

    def __init__(self, sources: dict, kinds: dict[str, str]):
        self.sources, self.kinds = sources, kinds
        self._filters: dict[str, list] = {}

    def source(self, doc: Document) -> str:
        return source_of(doc, self.sources, self.kinds) or doc.source

    def for_source(self, name: str) -> Callable[[Document], str | None] | None:
        from pipeline.sources import DocumentSettings
        from pipeline.steps import filters

        settings = self.sources.get(name)
        if not isinstance(settings, DocumentSettings):
            return None
        if name not in self._filters:
            self._filters[name] = filters.build_filters(settings.filters, settings.filter_settings)
        chosen = self._filters[name]
        return lambda doc: filters.apply_filters(chosen, doc)
