"""MinHash near-duplicate detection without a pipeline: shingles, signatures, LSH band keys, the star
edges of one bucket, and the two steps of the large-star/small-star connected-components algorithm.

Signatures are datasketch's `affine64` MinHash (MurmurHash3-finalised 64-bit input hashes, then
a·h + b mod 2⁶⁴ per permutation, with datasketch's own permutations), computed for many documents in one
numpy pass. The base hash is xxh3-64 of each normalised word, and a 5-gram shingle's hash combines its
words' hashes with position multipliers, so no shingle string is ever built or hashed. The tests check
that the result is bit-for-bit what `datasketch.MinHash.update_batch` gives with the same base hash.

Nodes of the duplicate graph are `dedup.survivor_key`s, (source rank, date, id) tuples, so the smallest node
of a component is the document the survivor rule keeps, and connected components end as stars around it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import struct
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import xxhash

from pipeline.common.words import POSITION_MULTIPLIERS, combine_shingles, words

# datasketch is imported where it is used: the recipe reads this module's defaults, and datasketch imports scipy
# (0.45 s) in every command and worker that never computes a signature.

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 112
DEFAULT_NGRAM = 5
DEFAULT_SEED = 1
# Large-star/small-star rounds built into a pipeline; LSH star graphs usually converge in two or three.
DEFAULT_ROUNDS = 4
SCHEME = "affine64"
# Rows of (shingles × permutations) uint64 work held at once for one document: 16k × 112 × 8 B ≈ 15 MB.
_BATCH_SHINGLES = 16_384


@dataclasses.dataclass(frozen=True)
class MinHashConfig:
    threshold: float = DEFAULT_THRESHOLD
    num_perm: int = DEFAULT_NUM_PERM
    bands: int = 0
    rows: int = 0
    ngram: int = DEFAULT_NGRAM
    seed: int = DEFAULT_SEED
    verify: bool = False
    # (source, words per shingle) for sources shingled otherwise than `ngram`; their documents are only compared with
    # documents shingled alike (their band keys carry the n)
    source_ngrams: tuple[tuple[str, int], ...] = ()

    @classmethod
    def create(
        cls,
        threshold: float = DEFAULT_THRESHOLD,
        num_perm: int = DEFAULT_NUM_PERM,
        bands: int | None = None,
        rows: int | None = None,
        **settings,
    ) -> MinHashConfig:
        """Bands × rows as given, or chosen for `threshold` the way datasketch's MinHashLSH chooses them
        (minimising the weighted false-positive and false-negative areas)."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither")
        if bands is None:
            from datasketch import MinHashLSH

            lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
            bands, rows = lsh.b, lsh.r
        assert rows is not None
        if bands < 1 or rows < 1 or bands * rows > num_perm:
            raise ValueError(f"bands × rows ({bands} × {rows}) must be positive and at most num_perm ({num_perm})")
        config = cls(threshold=threshold, num_perm=num_perm, bands=bands, rows=rows, **settings)
        for where, ngram in (("ngram", config.ngram), *((f"source_ngrams.{s}", n) for s, n in config.source_ngrams)):
            if not isinstance(ngram, int) or not 1 <= ngram <= len(POSITION_MULTIPLIERS):
                raise ValueError(f"{where} must be between 1 and {len(POSITION_MULTIPLIERS)}, not {ngram!r}")
        return config

    def ngram_of(self, source: str) -> int:
        return dict(self.source_ngrams).get(source, self.ngram)

    def detection_probability(self, similarity: float) -> float:
        """Chance that a pair with this Jaccard similarity shares at least one band: 1 − (1 − sʳ)ᵇ."""
        return 1.0 - (1.0 - similarity**self.rows) ** self.bands


def shingle_hash(shingle: Sequence[bytes]) -> int:
    """The base hash of one shingle (a tuple of words), as `Signer` computes it in bulk: the
    `hashfunc` that makes datasketch's MinHash give the same signatures as `Signer`."""
    value = 0
    for position, word in enumerate(shingle):
        value += xxhash.xxh3_64_intdigest(word) * int(POSITION_MULTIPLIERS[position])
    return value % 2**64


def shingles(text: str, ngram: int) -> list[tuple[bytes, ...]]:
    tokens = words(text)
    n = min(ngram, len(tokens))
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


class Signer:
    """MinHash signatures (uint64, `num_perm` per document) for batches of texts."""

    def __init__(self, num_perm: int = DEFAULT_NUM_PERM, ngram: int = DEFAULT_NGRAM, seed: int = DEFAULT_SEED):
        from datasketch import MinHash

        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self.a, self.b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text. Word hashes, shingle hashes and the pre-mix are computed for the whole batch
        in a few numpy calls; the permutations run per document, whose (shingles × num_perm) block stays
        in cache (measured faster than one block for many documents)."""
        from datasketch.minhash import _fmix

        per_text = [words(text) for text in texts]
        lengths = np.array([len(tokens) for tokens in per_text], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
        all_words = np.fromiter(
            map(xxhash.xxh3_64_intdigest, itertools.chain.from_iterable(per_text)),
            dtype=np.uint64,
            count=int(lengths.sum()),
        )
        # Windows that cross a document boundary are computed too, and never read.
        windows = _fmix(combine_shingles(all_words, self.ngram), 64) if len(all_words) >= self.ngram else all_words[:0]
        result = np.empty((len(per_text), self.num_perm), dtype=np.uint64)
        for row, (start, length) in enumerate(zip(starts, lengths)):
            if length >= self.ngram:
                mixed = windows[start : start + length - self.ngram + 1]
            else:
                mixed = _fmix(combine_shingles(all_words[start : start + length], self.ngram), 64)
            result[row] = self._signature(mixed)
        return result

    def signature_of(self, shingle_hashes: np.ndarray) -> np.ndarray:
        """The signature of a set of 64-bit shingle hashes however they were made."""
        from datasketch.minhash import _fmix

        return self._signature(_fmix(shingle_hashes, 64))

    def _signature(self, mixed: np.ndarray) -> np.ndarray:
        """Min over shingles of a·h + b per permutation, for pre-mixed shingle hashes; in slices, so a huge
        text never needs a huge matrix."""
        signature = np.full(self.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, len(mixed), _BATCH_SHINGLES):
            permuted = np.multiply.outer(mixed[start : start + _BATCH_SHINGLES], self.a)
            permuted += self.b
            np.minimum(signature, permuted.min(axis=0), out=signature)
        return signature


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[bytes]:
    """One bucket key per band: the band index and a 64-bit hash of its rows."""
    return [
        struct.pack("<H", band) + xxhash.xxh3_64_digest(signature[band * rows : (band + 1) * rows].tobytes())
        for band in range(bands)
    ]


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


def bucket_edges(members: Iterable[tuple], threshold: float | None = None) -> Iterator[tuple]:
    """Edges (member, centre) of one LSH bucket: a star around its smallest node, linear in the bucket's
    size. Members are (node, signature or None). With a `threshold` (verification), members whose estimated
    similarity to the centre is lower are not joined to it but form the next star among themselves."""
    remaining = sorted(dict(members).items(), key=lambda item: item[0])
    while len(remaining) > 1:
        (centre, centre_signature), rest = remaining[0], []
        for node, signature in remaining[1:]:
            if threshold is None or estimated_jaccard(centre_signature, signature) >= threshold:
                yield node, centre
            else:
                rest.append((node, signature))
        remaining = rest


def large_star(node, neighbours: set) -> Iterator[tuple]:
    """Kiveris et al. (2014): connect every larger neighbour to the smallest node of the neighbourhood."""
    smallest = min(neighbours | {node})
    for neighbour in neighbours:
        if neighbour > node:
            yield neighbour, smallest


def small_star(node, neighbours: set) -> Iterator[tuple]:
    """Connect the node and its smaller neighbours to the smallest of them."""
    group = {neighbour for neighbour in neighbours if neighbour < node} | {node}
    smallest = min(group)
    for member in group:
        if member != smallest:
            yield member, smallest


def breaks_star(roles: Iterable[tuple[str, object]]) -> bool:
    """Whether a node breaks the final shape of large-star/small-star (every component a star around its smallest
    node), from its roles in the edges: ("parent", p) for its edges (node, p), ("child", c) for (c, node). It
    does when it has a parent and children, or more than one parent."""
    parents = set()
    has_children = False
    for role, value in roles:
        if role == "parent":
            parents.add(value)
        else:
            has_children = True
    return len(parents) > 1 or (bool(parents) and has_children)


@functools.cache
def cached_signer(num_perm: int, ngram: int, seed: int) -> Signer:
    """One signer per process and shingle size (its permutations take a moment to make)."""
    return Signer(num_perm, ngram, seed)


def band_members(signer: Signer, docs: Sequence, config: MinHashConfig, prefer_sources: tuple[str, ...] = ()):
    """A batch of documents → (band key, (graph node, signature or None)) for every band of every document: the
    node is the document's `dedup.survivor_key`, the signature is kept only when candidates are verified. What the
    Beam and Spark stages shuffle into LSH buckets. A document of a source with a shingle size of its own
    (`config.source_ngrams`) is signed with it, and its band keys start with that size."""
    from pipeline.dedup import survivor_key

    by_ngram: dict[int, list] = {}
    for doc in docs:
        by_ngram.setdefault(config.ngram_of(doc.source), []).append(doc)
    for ngram, group in by_ngram.items():
        own = signer if ngram == signer.ngram else cached_signer(signer.num_perm, ngram, signer.seed)
        prefix = b"" if ngram == config.ngram else b"ngram%d:" % ngram
        for doc, signature in zip(group, own.signatures([doc.text for doc in group])):
            member = (survivor_key(doc, prefer_sources), signature if config.verify else None)
            for key in band_keys(signature, config.bands, config.rows):
                yield prefix + key, member
