"""Batches from token bins: a weighted mixture of bin directories, deterministic given the seed and the number
of samples drawn, with a position that a checkpoint saves and a resumed run restores.

Each source is cut into non-overlapping windows of seq_len + 1 tokens (inputs and shifted targets; documents are
packed, separated by <|endoftext|>), visited in a fresh seeded order every epoch. The mixture picks the source
of each sample with Megatron's blending rule: the source furthest below its share so far, so the proportions
are exact at every step and need no random state. "So far" counts from where the current weights took effect:
a run resumed with new weights (annealing on a better mix) follows them from its first sample, and the point
where they took effect is saved with the position, so a later resume continues the same sequence. In a run of
several processes every rank walks the same global sequence of samples and keeps its own slice of each
micro-batch.
"""

from __future__ import annotations

import logging
import os
import queue
import threading

import numpy as np
import torch

from tokenizer.bins import BinReader
from tokenizer.encoding import load_meta
from train.config import DataConfig

log = logging.getLogger(__name__)


class DataError(ValueError):
    pass


class SourceWindows:
    """Window `cursor` of one source: epoch = cursor // windows, position in that epoch's seeded order."""

    def __init__(self, reader: BinReader, seq_len: int, seed: int, index: int, name: str):
        self.reader, self.seq_len, self.seed, self.index = reader, seq_len, seed, index
        self.windows = (reader.num_tokens - 1) // seq_len
        if self.windows < 1:
            raise DataError(f"data source {name}: {reader.num_tokens} training tokens, fewer than data.seq_len + 1")
        self._epoch = -1
        self._order = np.empty(0, dtype=np.uint32)  # the epoch's window order, made when the epoch is first read

    def window(self, cursor: int) -> np.ndarray:
        epoch, position = divmod(cursor, self.windows)
        if epoch != self._epoch:
            order = np.random.default_rng([self.seed, self.index, epoch]).permutation(self.windows)
            self._order = order.astype(np.uint32 if self.windows < 2**32 else np.uint64)  # 4 bytes a window
            self._epoch = epoch
        return self.reader.tokens(int(self._order[position]) * self.seq_len, self.seq_len + 1)


class MixtureLoader:
    def __init__(
        self,
        readers: list[BinReader],
        weights: list[float],
        names: list[str],
        seq_len: int,
        micro_batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.names = names
        self.sources = [SourceWindows(r, seq_len, seed, i, n) for i, (r, n) in enumerate(zip(readers, names))]
        self.shares = np.asarray(weights, dtype=np.float64) / sum(weights)
        self.micro_batch_size, self.rank, self.world_size = micro_batch_size, rank, world_size
        self.samples = 0
        self.cursors = np.zeros(len(readers), dtype=np.int64)
        # where the current shares took effect: the blending rule counts from here
        self.origin_samples = 0
        self.origin_cursors = np.zeros(len(readers), dtype=np.int64)

    def _next_source(self) -> int:
        drawn = self.cursors - self.origin_cursors
        return int(np.argmax(self.shares * (self.samples - self.origin_samples + 1) - drawn))

    def next_batch(self) -> torch.Tensor:
        """This rank's micro-batch: (micro_batch_size, seq_len + 1) int64 token ids."""
        rows, first = [], self.rank * self.micro_batch_size
        for offset in range(self.micro_batch_size * self.world_size):
            source = self._next_source()
            if first <= offset < first + self.micro_batch_size:
                rows.append(self.sources[source].window(int(self.cursors[source])))
            self.cursors[source] += 1
            self.samples += 1
        return torch.from_numpy(np.stack(rows).astype(np.int64))

    def state_dict(self) -> dict:
        return {
            "samples": self.samples,
            "cursors": dict(zip(self.names, self.cursors.tolist())),
            "shares": dict(zip(self.names, self.shares.tolist())),
            "origin": {"samples": self.origin_samples, "cursors": dict(zip(self.names, self.origin_cursors.tolist()))},
        }

    def load_state_dict(self, state: dict) -> None:
        if sorted(state["cursors"]) != sorted(self.names):
            raise DataError(
                f"the checkpoint's data sources {sorted(state['cursors'])} differ from the "
                f"configured {sorted(self.names)}"
            )
        self.samples = int(state["samples"])
        self.cursors = np.asarray([state["cursors"][name] for name in self.names], dtype=np.int64)
        if self._same_shares(state):
            origin = state.get("origin", {"samples": 0, "cursors": dict.fromkeys(self.names, 0)})
            self.origin_samples = int(origin["samples"])
            self.origin_cursors = np.asarray([origin["cursors"][name] for name in self.names], dtype=np.int64)
        else:
            log.info(
                "data: the mixture weights differ from the checkpoint's; the new shares (%s) apply from sample %d",
                ", ".join(f"{name} {share:.3g}" for name, share in zip(self.names, self.shares)),
                self.samples,
            )
            self.origin_samples, self.origin_cursors = self.samples, self.cursors.copy()

    def _same_shares(self, state: dict) -> bool:
        """Whether the saved position was drawn with the configured shares. A position saved before shares were
        recorded tells by its cursors: the blending rule keeps every source within one sample of its share."""
        if "shares" in state:
            saved = np.asarray([state["shares"][name] for name in self.names])
            return bool(np.allclose(saved, self.shares, rtol=1e-9, atol=1e-12))
        return bool(np.all(np.abs(self.cursors - self.shares * self.samples) < 1 + 1e-9))


class Prefetcher:
    """A loader's batches made ahead by a background thread (reading the memory-mapped bins, and for a GPU
    copying into pinned memory, so that the copy to the device is asynchronous): the step loop never waits for
    the host. Its position is that of the last batch taken, which is what a checkpoint must save."""

    def __init__(self, loader: MixtureLoader, pin: bool, depth: int = 4):
        self._loader, self._pin = loader, pin
        self._state = loader.state_dict()
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="batch-prefetch", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._loader.next_batch()
                self._put((batch.pin_memory() if self._pin else batch, self._loader.state_dict()))
        except BaseException as exc:  # noqa: BLE001 - raised in the training loop, where the batch is taken
            self._put((exc, None))

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next_batch(self) -> torch.Tensor:
        batch, state = self._queue.get()
        if isinstance(batch, BaseException):
            raise batch
        self._state = state
        return batch

    def state_dict(self) -> dict:
        return self._state

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def validation_batches(reader: BinReader, seq_len: int, batch_size: int, max_batches: int):
    """Up to `max_batches` batches of consecutive windows from the start of a validation split (the last one
    possibly smaller): the same every time."""
    windows = min((reader.num_tokens - 1) // seq_len, batch_size * max_batches)
    for first in range(0, windows, batch_size):
        rows = [reader.tokens(w * seq_len, seq_len + 1) for w in range(first, min(first + batch_size, windows))]
        yield torch.from_numpy(np.stack(rows).astype(np.int64))


class Corpus:
    """The configured bin directories, checked against each other and against the tokenizer."""

    def __init__(self, config: DataConfig):
        self.names = [s.name for s in config.sources]
        self.weights = [s.weight for s in config.sources]
        if not os.path.exists(os.path.join(config.tokenizer, "tokenizer.json")):
            raise DataError(
                f"data.tokenizer: {config.tokenizer} has no tokenizer.json (train one with `python -m tokenizer train`)"
            )
        tokenizer_sha256 = load_meta(config.tokenizer)["sha256"]
        self.train, self.val = [], []
        for source in config.sources:
            if not os.path.exists(os.path.join(source.path, "meta.json")):
                raise DataError(
                    f"data source {source.name}: {source.path} has no meta.json "
                    "(write bins with `python -m tokenizer encode`)"
                )
            train = BinReader(source.path, "train")
            if train.meta["tokenizer_sha256"] != tokenizer_sha256:
                raise DataError(
                    f"data source {source.name}: {source.path} was encoded with another tokenizer "
                    f"than {config.tokenizer} (sha256 differs)"
                )
            self.train.append(train)
            self.val.append(BinReader(source.path, "val"))
        self.vocab_size = self.train[0].meta["vocab_size"]

    def loader(
        self, seq_len: int, micro_batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> MixtureLoader:
        return MixtureLoader(self.train, self.weights, self.names, seq_len, micro_batch_size, seed, rank, world_size)
