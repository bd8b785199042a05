"""Benchmark n-gram indexes: which documents share text with an evaluation set.

`NgramIndex.build(specs)` hashes every item's n-grams (default 13 words, as GPT-3's and NeMo Curator's
decontamination) over normalised words (`pipeline.common.words`: NFKC, lower case, punctuation removed). An item
segment (its quoted text, each choice) shorter than `ngram` words but at least `min_ngram` long counts as one n-gram
of its own length, as NeMo does, so a short question is still found; a shorter one is too common to say anything.
The index holds 8-byte hashes with a task and item number each (about 14 bytes per n-gram: all of HellaSwag's
validation set is some 15 MB), sorted, so a document's n-grams are looked up with one binary search per length.

The file (`.npz`, written through `pipeline.output.sinks`' rules by the caller) carries a version, the n-gram
settings and each task's name, format, path, item count and SHA-1, so a run can refuse an index made otherwise.
Used by the curation step (`pipeline.steps.decontam`) and by `python -m train.eval --contamination`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Sequence

import numpy as np

from pipeline.common import tasks
from pipeline.common.remote import open_input
from pipeline.common.words import POSITION_MULTIPLIERS, combine_shingles, word_hashes, words

INDEX_VERSION = 1
DEFAULT_NGRAM = 13
DEFAULT_MIN_NGRAM = 8


@dataclasses.dataclass(frozen=True)
class Match:
    """An n-gram of a text found in the index: its words [start, start + length) and the item it comes from."""

    start: int
    length: int
    task: str
    item: int


class NgramIndex:
    def __init__(self, hashes: np.ndarray, task_ids: np.ndarray, item_ids: np.ndarray, meta: dict):
        order = np.argsort(hashes, kind="stable")
        self.hashes, self.task_ids, self.item_ids = hashes[order], task_ids[order], item_ids[order]
        self.meta = meta
        self.ngram: int = meta["ngram"]
        self.min_ngram: int = meta["min_ngram"]
        self.task_names: list[str] = [task["name"] for task in meta["tasks"]]
        self.lengths: list[int] = meta["lengths"]
        # A bitmap of the hashes' top bits, about 64 bits an n-gram: almost every window of a document that shares
        # nothing is ruled out by one gather, and only the rest (about 1.5%) are looked up in the sorted hashes.
        self._shift = np.uint64(64 - max(20, int(len(self.hashes) * 64).bit_length()))
        slots = self.hashes >> self._shift
        self._bitmap = np.zeros((1 << (64 - int(self._shift))) // 8 + 1, dtype=np.uint8)
        np.bitwise_or.at(
            self._bitmap, (slots >> np.uint64(3)).astype(np.int64), (1 << (slots & np.uint64(7))).astype(np.uint8)
        )

    def _maybe(self, windows: np.ndarray) -> np.ndarray:
        """The positions of the windows the bitmap does not rule out."""
        slots = windows >> self._shift
        bits = self._bitmap[(slots >> np.uint64(3)).astype(np.int64)] >> (slots & np.uint64(7)).astype(np.uint8)
        return np.flatnonzero(bits & 1)

    def _windows(self, hashes: np.ndarray):
        """(length, the hash of every window of that many words) for each length the index holds, longest first;
        each length's windows are the shorter one's plus one more word (one multiply-add a length)."""
        found = []
        windows = hashes * POSITION_MULTIPLIERS[0]
        wanted = set(self.lengths)
        for length in range(1, min(len(hashes), self.lengths[-1]) + 1):
            if length > 1:
                windows = windows[:-1] + hashes[length - 1 :] * POSITION_MULTIPLIERS[length - 1]
            if length in wanted:
                found.append((length, windows))
        return reversed(found)

    @classmethod
    def build(
        cls, specs: Sequence[tasks.TaskSpec], ngram: int = DEFAULT_NGRAM, min_ngram: int = DEFAULT_MIN_NGRAM
    ) -> NgramIndex:
        """The index of every item of the tasks; raises TaskError for a task file that cannot be read."""
        if not specs:
            raise tasks.TaskError("no tasks: give at least one NAME=FORMAT:PATH")
        if not 1 <= min_ngram <= ngram <= len(POSITION_MULTIPLIERS):
            raise ValueError(f"n-gram sizes must satisfy 1 <= min_ngram <= ngram <= {len(POSITION_MULTIPLIERS)}")
        names = [spec.name for spec in specs]
        if len(set(names)) < len(names):
            raise tasks.TaskError(f"task names must differ: {', '.join(names)}")
        hashes, task_ids, item_ids, described, lengths = [], [], [], [], {ngram}
        for number, spec in enumerate(specs):
            items = tasks.read_task(spec)
            with open_input(spec.path) as stream:
                digest = hashlib.sha1(stream.read()).hexdigest()
            described.append({"name": spec.name, "format": spec.format, "path": spec.path, "items": len(items),
                              "sha1": digest})  # fmt: skip
            for item_number, item in enumerate(items):
                found, item_lengths = item_ngrams(item, ngram, min_ngram)
                lengths.update(item_lengths)
                hashes.append(found)
                task_ids.append(np.full(len(found), number, dtype=np.uint16))
                item_ids.append(np.full(len(found), item_number, dtype=np.uint32))
        all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
        meta = {"version": INDEX_VERSION, "ngram": ngram, "min_ngram": min_ngram, "tasks": described,
                "lengths": sorted(lengths)}  # fmt: skip
        return cls(all_hashes, np.concatenate(task_ids), np.concatenate(item_ids), meta)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        meta = np.frombuffer(json.dumps(self.meta, sort_keys=True).encode(), dtype=np.uint8)
        np.savez(buffer, hashes=self.hashes, task_ids=self.task_ids, item_ids=self.item_ids, meta=meta)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str) -> NgramIndex:
        """Raises OSError when the file cannot be read, ValueError when it is not an index this version reads."""
        with open_input(path) as stream:
            data = stream.read()
        try:
            arrays = np.load(io.BytesIO(data), allow_pickle=False)
            meta = json.loads(arrays["meta"].tobytes())
            hashes, task_ids, item_ids = arrays["hashes"], arrays["task_ids"], arrays["item_ids"]
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"{path}: not a decontamination index (python -m pipeline decontam index): {exc}")
        if meta.get("version", 0) > INDEX_VERSION:
            raise ValueError(f"{path}: index version {meta['version']} is newer than this lmforge reads")
        return cls(hashes, task_ids, item_ids, meta)

    def __len__(self) -> int:
        return len(self.hashes)

    def matches(self, text: str, first_only: bool = False) -> list[Match]:
        """The text's n-grams found in the index, by position."""
        return self.matches_of_hashes(word_hashes(text), first_only)

    def matches_of_hashes(self, hashes: np.ndarray, first_only: bool = False) -> list[Match]:
        found: list[Match] = []
        if not len(self.hashes) or not len(hashes):
            return found
        for length, windows in self._windows(hashes):  # the longest first: `first_only` reports the most telling
            candidates = self._maybe(windows)
            if not len(candidates):
                continue
            rows = np.minimum(np.searchsorted(self.hashes, windows[candidates]), len(self.hashes) - 1)
            for start, row in zip(
                candidates[self.hashes[rows] == windows[candidates]], rows[self.hashes[rows] == windows[candidates]]
            ):
                found.append(Match(int(start), length, self.task_names[self.task_ids[row]], int(self.item_ids[row])))
                if first_only:
                    return found
        return sorted(found, key=lambda m: (m.start, m.length))

    def items_of(self, hashes: np.ndarray) -> set[tuple[int, int]]:
        """Every (task number, item number) one of whose n-grams the text has (all items sharing an n-gram)."""
        items: set[tuple[int, int]] = set()
        if not len(self.hashes) or not len(hashes):
            return items
        for _, windows in self._windows(hashes):
            windows = np.unique(windows[self._maybe(windows)])
            left = np.searchsorted(self.hashes, windows, side="left")
            right = np.searchsorted(self.hashes, windows, side="right")
            for start, end in zip(left[right > left], right[right > left]):
                items.update(zip(self.task_ids[start:end].tolist(), self.item_ids[start:end].tolist()))
        return items


def _segments(item: tasks.TaskItem) -> list[str]:
    return [item.text, *(choice.strip() for choice in item.choices)]


def item_ngrams(item: tasks.TaskItem, ngram: int, min_ngram: int) -> tuple[np.ndarray, set[int]]:
    """The item's n-gram hashes, and their lengths (`ngram`, or a short segment's own)."""
    found, lengths = [], set()
    for segment in _segments(item):
        hashes = word_hashes(segment) if words(segment) != [b""] else np.zeros(0, dtype=np.uint64)
        if len(hashes) >= min_ngram:
            found.append(combine_shingles(hashes, ngram))  # one n-gram of its own length when shorter than ngram
            lengths.add(min(ngram, len(hashes)))
    return (np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.uint64)), lengths
