"""Benchmark decontamination as a curation step: documents that share an n-gram with an evaluation set
(`pipeline.common.contamination.NgramIndex`, built by `python -m pipeline decontam index`) are dropped as
`decontaminated`, or, with mode "cut", lose each matching span and `CUT_MARGIN` characters either side and are kept
if what remains still passes the source's filters (`decontamination.cut_documents` and `.cut_chars` in
`stats.json`'s edits). The match's task and words go into the report's examples."""

from __future__ import annotations

import collections
import re

import numpy as np
import xxhash

from pipeline.common.contamination import Match, NgramIndex
from pipeline.common.words import words

REASON = "decontaminated"
CUT_MARGIN = 200  # characters removed on either side of a match, as NeMo Curator's task decontamination does
_TOKEN = re.compile(r"[^\W_]+")  # the runs of letters and digits that `words` splits on, in the original text


class NgramIndexes:
    """Indexes loaded once per worker, shared by every source that names the same file."""

    loaded: dict[str, NgramIndex] = {}

    @classmethod
    def get(cls, path: str) -> NgramIndex:
        if path not in cls.loaded:
            cls.loaded[path] = NgramIndex.load(path)
        return cls.loaded[path]


def word_spans(text: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The text's normalised word hashes with each word's character span in the original text (a token that
    normalises to several words gives each of them its span)."""
    hashes, spans = [], []
    for token in _TOKEN.finditer(text):
        for word in words(token.group(0)):
            if word:
                hashes.append(xxhash.xxh3_64_intdigest(word))
                spans.append(token.span())
    return np.array(hashes, dtype=np.uint64), spans


def cut(text: str, matches: list[Match], spans: list[tuple[int, int]], margin: int = CUT_MARGIN) -> tuple[str, int]:
    """The text without each match and `margin` characters either side (the pieces left joined by a line break),
    and the number of characters removed."""
    ranges: list[list[int]] = []
    for match in matches:
        start = max(0, spans[match.start][0] - margin)
        end = min(len(text), spans[match.start + match.length - 1][1] + margin)
        if ranges and start <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], end)
        else:
            ranges.append([start, end])
    pieces, position = [], 0
    for start, end in ranges:
        pieces.append(text[position:start].strip())
        position = end
    pieces.append(text[position:].strip())
    return "\n".join(piece for piece in pieces if piece), sum(end - start for start, end in ranges)


class DecontaminationStep:
    """`refilter`: the source's filter steps, run again on a cut document."""

    name = "decontamination"

    def __init__(self, index_path: str, mode: str = "drop", refilter: list | None = None):
        self.index = NgramIndexes.get(index_path)
        self.mode = mode
        self.refilter = refilter or []
        self.changes: collections.Counter = collections.Counter()
        self.details: dict[int, str] = {}  # id() of a dropped document → what matched, for its report example

    def _describe(self, doc_words: list[str], match: Match) -> str:
        found = " ".join(doc_words[match.start : match.start + match.length])
        return f"{match.task} item {match.item}: {found}"

    def __call__(self, doc) -> str | None:
        first = self.index.matches(doc.text, first_only=True)
        if not first:
            return None
        if self.mode == "drop":
            doc_words = [w.decode("utf-8", "replace") for w in words(doc.text)]
            self.details[id(doc)] = self._describe(doc_words, first[0])
            return REASON
        hashes, spans = word_spans(doc.text)
        matches = self.index.matches_of_hashes(hashes)
        if not matches:  # the tokenisation with offsets differs from the plain one (NFKC); drop to be safe
            self.details[id(doc)] = self._describe([w.decode("utf-8", "replace") for w in words(doc.text)], first[0])
            return REASON
        self.details[id(doc)] = self._describe([doc.text[s:e].lower() for s, e in spans], matches[0])
        doc.text, removed = cut(doc.text, matches, spans)
        if not doc.text or any(step(doc) is not None for step in self.refilter):
            return REASON
        self.details.pop(id(doc), None)
        self.changes["decontamination.cut_documents"] += 1
        self.changes["decontamination.cut_chars"] += removed
        return None
