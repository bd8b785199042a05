"""Deduplication. Here, the logic that needs no pipeline: text normalisation, exact-duplicate keys, the rule that
picks which copy of a duplicate group survives, the report's rows and the rule for documents that share an id;
`minhash`: signatures, LSH bands and the connected-components steps, also without an engine; `stages`: the Beam
stages that apply them (unique ids, exact, MinHash), and `pipeline.spark.dedup` the Spark ones."""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable

from pipeline.common.schema import Document
from pipeline.output.stats import Funnel

log = logging.getLogger(__name__)

_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation and runs of whitespace folded to single spaces."""
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def exact_key(text: str) -> str:
    """128-bit hash of the normalised text: copies that differ only in case, punctuation or spacing
    share a key."""
    return hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=16).hexdigest()


# Later than any real date, so undated documents lose to dated ones.
_NO_DATE_MS = 2**62


def survivor_key(doc: Document, prefer_sources: tuple[str, ...] = ()) -> tuple[int, int, str]:
    """Smaller keys win: preferred source first, then the earliest date, then the smallest id, so the
    choice is the same whatever order the copies arrive in. Plain ints and a string, so the key is also
    a deterministic Beam key and a node of the near-duplicate graph."""
    source_rank = prefer_sources.index(doc.source) if doc.source in prefer_sources else len(prefer_sources)
    date_ms = int(doc.date.timestamp() * 1000) if doc.date is not None else _NO_DATE_MS
    return (source_rank, date_ms, doc.id)


def pick_survivor(docs: Iterable[Document], prefer_sources: tuple[str, ...] = ()) -> Document:
    return min(docs, key=lambda d: survivor_key(d, prefer_sources))


def merge_copies(a: tuple, b: tuple, prefer_sources: tuple[str, ...] = ()) -> tuple:
    """Two partial groups of exact copies, each (survivor or None, ids of the copies it beat), as one: a's list
    is extended in place, since a group of many copies (boilerplate pages) must not cost a list copy per document.
    Merged in any order, the survivor and the set of removed ids are the same."""
    (best_a, removed), (best_b, removed_b) = a, b
    removed.extend(removed_b)
    if best_a is None or best_b is None:
        return best_a or best_b, removed
    best = pick_survivor((best_a, best_b), prefer_sources)
    removed.append((best_b if best is best_a else best_a).id)
    return best, removed


def report_row(kind: str, kept_id: str, removed_ids: Iterable[str]) -> dict:
    """A row of the duplicates report (`duplicates/`): one group of copies, the id kept and the ids removed."""
    removed = sorted(removed_ids)
    return {
        "cluster_id": f"{kind}:{kept_id}",
        "kind": kind,
        "cluster_size": 1 + len(removed),
        "kept_id": kept_id,
        "removed_ids": removed,
    }


def cluster_row(root: tuple, members: Iterable[tuple]) -> dict:
    """The report row of a near-duplicate component: its smallest node (a `survivor_key`) is kept."""
    return report_row("near", root[2], {node[2] for node in members})


def resolve_ids(doc_id: str, docs: list[Document]) -> tuple[list[Document], Funnel | None]:
    """The documents that share an id → (those to keep, a Funnel of the copies dropped, or None when there was one
    document). Of the documents with one id, the same text is kept once (the others are dropped as
    `duplicate_id`); a different text is kept under `<id>~<8 hex digits of its text's SHA-1>` and counted in
    `renamed_ids`. Which copy keeps the id is decided by content, not arrival."""
    if len(docs) == 1:
        return docs, None
    by_text = sorted(
        ((hashlib.sha1(doc.text.encode("utf-8")).hexdigest(), doc) for doc in docs),
        key=lambda pair: (pair[0], pair[1].source, pair[1].url or ""),
    )
    seen: set[str] = set()
    kept = []
    for digest, doc in by_text:
        if digest in seen:
            continue
        if seen:
            doc.id = f"{doc_id}~{digest[:8]}"
        seen.add(digest)
        kept.append(doc)
    log.warning("id %s: %d documents (%d with another text, renamed)", doc_id, len(docs), len(seen) - 1)
    funnel = Funnel(renamed_ids=len(seen) - 1)
    if len(docs) > len(seen):
        funnel.drop("duplicate_id", len(docs) - len(seen))
    return kept, funnel
