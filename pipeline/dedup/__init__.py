"""Deduplication. Here, the logic that needs no pipeline: text normalisation, exact-duplicate keys, and the rule
that picks which copy of a duplicate group survives; `minhash`: signatures, LSH bands and the connected-components
steps, also without Beam; `stages`: the Beam stages that apply them (unique ids, exact, MinHash)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

from pipeline.common.schema import Document

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
