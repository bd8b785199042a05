"""The text statistics the repetition and quality filters share (`pipeline.steps.filters`): words as NLTK's English
tokenizer roughly splits them, repeated items, and a document's word n-grams numbered with numpy, so that Gopher's
top and duplicated n-gram shares cost a few array operations per n instead of joining and hashing n words."""

from __future__ import annotations

import functools
import itertools
import re

import numpy as np

_WORDS = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")


@functools.lru_cache(maxsize=1)  # the Gopher filters split the same text one after the other
def split_words(text: str) -> list[str]:
    """Words and single punctuation marks, roughly as NLTK's word_tokenize splits English. The list is shared
    between calls on the same text: not to be changed."""
    return _WORDS.findall(text)


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items seen before, characters in them): every item but the first of its kind."""
    distinct = set(items)
    return len(items) - len(distinct), sum(map(len, items)) - sum(map(len, distinct))


# One level of `NgramIndex`: each n-gram's number; per number its first position and count; each n-gram's length.
NgramLevel = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class NgramIndex:
    """A document's word n-grams as integers, equal where the n-grams are equal, for n = 2, 3, … in turn: each
    level numbers the pairs (an (n-1)-gram, the next word) with numpy instead of joining and hashing n words.
    Words hold no whitespace, so equal word sequences are exactly equal space-joined strings."""

    def __init__(self, words: list[str]):
        numbers = dict(zip(dict.fromkeys(words), itertools.count()))  # in order of first occurrence
        self.words = np.fromiter(map(numbers.__getitem__, words), dtype=np.int64, count=len(words))
        self.vocabulary = max(1, len(numbers))
        self.prefix = np.concatenate(([0], np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)))))
        self.n, self.ids = 1, self.words
        self.counted: tuple[np.ndarray, np.ndarray] | None = None  # the current level's first positions and counts

    def level(self, n: int) -> NgramLevel | None:
        """For the n-grams in order: each one's number, and per number its first position and count; and each
        n-gram's length in characters (words joined by single spaces). None when the text has fewer than n words."""
        if n < self.n:
            self.n, self.ids, self.counted = 1, self.words, None
        if len(self.words) < n:
            return None
        if n == self.n and self.counted is None:  # the words themselves (n = 1)
            self.ids, self.counted = _numbered(self.ids)
        while self.n < n:  # (an n-gram's number, the next word) → the (n+1)-gram's number
            positions = len(self.words) - self.n
            if self.counted is not None and len(self.counted[1]) == len(self.ids):
                # no n-gram occurs twice, so no longer one does: each is numbered by its position
                self.ids = np.arange(positions)
                self.counted = self.ids, np.ones(positions, dtype=np.int64)
            else:
                self.ids, self.counted = _numbered(self.ids[:positions] * self.vocabulary + self.words[self.n :])
            self.n += 1
        assert self.counted is not None
        first, counts = self.counted
        lengths = self.prefix[n:] - self.prefix[: len(self.ids)] + (n - 1)
        return self.ids, first, counts, lengths


def _numbered(keys: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Equal keys numbered alike (0, 1, … in the keys' order), and each number's first position and count."""
    _, first, numbers, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    return numbers, (first, counts)


def top_ngram_chars(level: NgramLevel) -> int:
    """Characters of the most frequent n-gram times its count (the first to occur among equally frequent ones)."""
    _, first, counts, lengths = level
    top = counts.max()
    return int(lengths[first[counts == top].min()]) * int(top)


def duplicated_ngram_chars(level: NgramLevel, n: int) -> int:
    """Characters in n-grams that repeat an earlier one, not counting overlapping repeats twice: after a repeat
    the next n positions are skipped and not remembered. Only n-grams that occur twice can repeat, so only their
    positions are walked (they are few in natural text)."""
    numbers, _, counts, lengths = level
    positions = np.flatnonzero(counts[numbers] >= 2)
    seen = set()
    chars = resume = 0
    for position, number, length in zip(positions.tolist(), numbers[positions].tolist(), lengths[positions].tolist()):
        if position < resume:
            continue
        if number in seen:
            chars += length
            resume = position + n
        else:
            seen.add(number)
    return chars
