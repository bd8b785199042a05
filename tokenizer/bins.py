"""The token-bin format: the one module that writes and reads it (see docs/formats.md).

BINDIR/meta.json                     version, dtype, token and document counts per split, tokenizer sha256,
                                     end-of-text id, validation fraction, the bin shards and their inputs
BINDIR/<split>/part-NNNNN.bin        raw little-endian uint16 (vocabulary ≤ 65,536 ids) or uint32 tokens;
                                     every document is preceded by <|endoftext|>
BINDIR/<split>/part-NNNNN.idx        uint64 offsets of each document's delimiter, N+1 entries (the last is
                                     the token count), so boundaries never depend on scanning
BINDIR/<split>/part-NNNNN.json       the shard's counts and inputs; written last, its presence commits the
                                     shard (the .bin and .idx are renamed into place before it)
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import numpy as np

FORMAT_VERSION = 1
SPLITS = ("train", "val")
META_FILE = "meta.json"
UINT16_LIMIT = 1 << 16


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= UINT16_LIMIT else np.dtype("<u4")


def is_validation(doc_id: str, fraction: float) -> bool:
    """The deterministic train/validation split: a document's id hashed to [0, 1)."""
    if fraction <= 0:
        return False
    value = int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    return value / 2**64 < fraction


def shard_stem(directory: str, split: str, index: int) -> str:
    return os.path.join(directory, split, f"part-{index:05d}")


class ShardWriter:
    """Appends documents to one split's shard under temporary names; `commit()` renames them into place
    and writes the shard's json last."""

    def __init__(self, stem: str, dtype: np.dtype, end_of_text: int):
        self.stem = stem
        self.dtype = dtype
        self.end_of_text = end_of_text
        os.makedirs(os.path.dirname(stem), exist_ok=True)
        self.suffix = f".tmp-{uuid.uuid4().hex[:8]}"
        self.tokens = open(f"{stem}.bin{self.suffix}", "wb")
        self.offsets = [0]
        self.limit = np.iinfo(dtype).max

    def add(self, ids) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and ids.max() > self.limit:
            raise ValueError(f"token id {ids.max()} does not fit {self.dtype}")
        array = np.empty(ids.size + 1, dtype=self.dtype)
        array[0] = self.end_of_text
        array[1:] = ids
        self.tokens.write(array.tobytes())
        self.offsets.append(self.offsets[-1] + len(array))

    @property
    def documents(self) -> int:
        return len(self.offsets) - 1

    def commit(self, info: dict) -> dict:
        self.tokens.close()
        np.asarray(self.offsets, dtype="<u8").tofile(f"{self.stem}.idx{self.suffix}")
        os.replace(f"{self.stem}.bin{self.suffix}", f"{self.stem}.bin")
        os.replace(f"{self.stem}.idx{self.suffix}", f"{self.stem}.idx")
        info = {**info, "tokens": self.offsets[-1], "documents": self.documents, "dtype": self.dtype.name}
        write_json(f"{self.stem}.json", info)
        return info

    def abort(self) -> None:
        self.tokens.close()
        for name in (f"{self.stem}.bin{self.suffix}", f"{self.stem}.idx{self.suffix}"):
            if os.path.exists(name):
                os.remove(name)


def write_json(path: str, data: dict) -> None:
    """Replaces `path` whole: written under a temporary name, then renamed."""
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(temporary, "w") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def read_shard_info(stem: str) -> dict | None:
    """The committed shard's json, or None when the shard is missing or unfinished."""
    try:
        with open(f"{stem}.json") as handle:
            info = json.load(handle)
    except (OSError, ValueError):
        return None
    expected = info.get("tokens", -1) * np.dtype(info.get("dtype", "uint16")).itemsize
    if not os.path.exists(f"{stem}.bin") or os.path.getsize(f"{stem}.bin") != expected:
        return None
    return info


class BinReader:
    """Memory-maps one split of a bin directory: `num_tokens`, `num_documents`, `tokens(start, n)` (a window
    over the split's shards as one stream), `document(i)` (its tokens without the delimiter) and
    `document_starts` (the delimiter offsets in stream coordinates)."""

    def __init__(self, directory: str, split: str = "train"):
        with open(os.path.join(directory, META_FILE)) as handle:
            self.meta = json.load(handle)
        if self.meta.get("version", 0) > FORMAT_VERSION:
            raise ValueError(f"{directory}: bin format {self.meta['version']} is newer than this lmforge reads")
        self.dtype = np.dtype(self.meta["dtype"]).newbyteorder("<")
        self.end_of_text = self.meta["end_of_text_id"]
        self._tokens, self._offsets, starts = [], [], [0]
        for shard in self.meta["splits"][split]["shards"]:
            stem = os.path.join(directory, split, shard)
            count = os.path.getsize(f"{stem}.bin") // self.dtype.itemsize
            self._tokens.append(
                np.memmap(f"{stem}.bin", dtype=self.dtype, mode="r") if count else np.empty(0, self.dtype)
            )
            self._offsets.append(np.fromfile(f"{stem}.idx", dtype="<u8"))
            starts.append(starts[-1] + count)
        self._shard_starts = np.asarray(starts, dtype=np.int64)
        self.num_tokens = int(self._shard_starts[-1])
        self._doc_counts = np.cumsum([0] + [len(o) - 1 for o in self._offsets])
        self.num_documents = int(self._doc_counts[-1])

    def tokens(self, start: int, count: int) -> np.ndarray:
        """`count` tokens from stream position `start`, crossing shard boundaries."""
        if start < 0 or count < 0 or start + count > self.num_tokens:
            raise IndexError(f"tokens {start}..{start + count} outside 0..{self.num_tokens}")
        if count == 0:
            return np.empty(0, dtype=self.dtype)
        parts = []
        shard = int(np.searchsorted(self._shard_starts, start, side="right") - 1)
        while count > 0:
            local = start - int(self._shard_starts[shard])
            piece = self._tokens[shard][local : local + count]
            parts.append(piece)
            start += len(piece)
            count -= len(piece)
            shard += 1
        return np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0])

    def document(self, index: int) -> np.ndarray:
        shard = int(np.searchsorted(self._doc_counts, index, side="right") - 1)
        local = index - int(self._doc_counts[shard])
        begin, end = self._offsets[shard][local], self._offsets[shard][local + 1]
        return np.asarray(self._tokens[shard][begin + 1 : end])

    @property
    def document_starts(self) -> np.ndarray:
        return np.concatenate(
            [offsets[:-1].astype(np.int64) + start for offsets, start in zip(self._offsets, self._shard_starts[:-1])]
        )
