"""Normalised words and hashes of their n-grams: the shingles of near-duplicate detection (`pipeline.dedup.minhash`)
and the n-grams of benchmark decontamination (`pipeline.common.contamination`), one normalisation for both.

A word hash is xxh3-64 of the word's UTF-8; an n-gram's hash combines its words' hashes with position multipliers,
Σ hᵢ₊ⱼ·Mⱼ mod 2⁶⁴, so no n-gram string is ever built or hashed.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import xxhash

# Together these blank what `pipeline.dedup.normalise` blanks (anything but letters and digits).
_NON_ASCII_NON_WORD = re.compile(r"[^\x00-\x7f\w]+")
_ASCII_NON_WORD_TO_SPACE = bytes(b if chr(b).isalnum() or b >= 0x80 else 0x20 for b in range(256))
# Position multipliers for combining word hashes into an n-gram hash (odd, so each is a bijection).
POSITION_MULTIPLIERS = np.random.default_rng(20241121).integers(0, 2**63, size=64, dtype=np.uint64) * np.uint64(
    2
) + np.uint64(1)


def words(text: str) -> list[bytes]:
    """The words of `pipeline.dedup.normalise(text)` as UTF-8 (NFKC, lower case, punctuation removed), found
    without building the normalised string; never empty, so every text has a shingle. Non-ASCII
    punctuation is blanked by a pattern, ASCII punctuation by a byte table (much faster than a
    pattern), and bytes.split() does the rest."""
    folded = unicodedata.normalize("NFKC", text).lower()
    if not folded.isascii():
        folded = _NON_ASCII_NON_WORD.sub(" ", folded)
    return folded.encode("utf-8").translate(_ASCII_NON_WORD_TO_SPACE).split() or [b""]


def combine_shingles(hashes: np.ndarray, ngram: int) -> np.ndarray:
    """Hashes of the word n-grams, Σ hᵢ₊ⱼ·Mⱼ mod 2⁶⁴; a text shorter than n words is one shingle."""
    n = min(ngram, len(hashes))
    count = len(hashes) - n + 1
    combined = np.zeros(count, dtype=np.uint64)
    for position in range(n):
        combined += hashes[position : position + count] * POSITION_MULTIPLIERS[position]
    return combined


def word_hashes(text: str) -> np.ndarray:
    """xxh3-64 of each of the text's normalised words."""
    found = words(text)
    return np.fromiter(map(xxhash.xxh3_64_intdigest, found), dtype=np.uint64, count=len(found))
