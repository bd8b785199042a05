"""Encoding a corpus into a bin directory (format: `tokenizer/bins.py`), on every core.

One bin shard per group of input files (`inputs_per_shard`), each split into train and validation by a
hash of the document id. The parent process reads documents in batches and hands them to one spawned worker
process per core (HF `tokenizers` silently goes single-threaded in forked children), keeping at most two
batches per worker in flight so memory stays bounded, and writes the returned ids in input order: the bins
do not depend on the number of workers. A shard whose json is committed with the same inputs (paths, sizes and
modification times) and tokenizer is skipped, so a rerun after a crash redoes only unfinished shards.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator

import numpy as np

from pipeline.common.remote import input_key
from tokenizer import bins, corpus
from tokenizer.encoding import Encoder

log = logging.getLogger(__name__)

DEFAULT_VAL_FRACTION = 0.005


@dataclasses.dataclass
class EncodeConfig:
    val_fraction: float = DEFAULT_VAL_FRACTION
    inputs_per_shard: int = 1
    workers: int = 0  # 0: one per core
    batch_chars: int = 1_000_000
    backend: str = "tiktoken"  # "hf" to skip the fast encoder
    check_chars: int = 100_000  # per bin shard, the text on which the fast encoder is compared with HF


def plan_shards(paths: list[str], inputs_per_shard: int) -> list[list[str]]:
    return [paths[i : i + inputs_per_shard] for i in range(0, len(paths), inputs_per_shard)]


def _batches(records: Iterator[corpus.Record], batch_chars: int) -> Iterator[list[corpus.Record]]:
    batch, size = [], 0
    for record in records:
        batch.append(record)
        size += len(record.text)
        if size >= batch_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# A worker process's encoder, made once by the pool's initializer.
_WORKER_ENCODER: Encoder | None = None


def _init_worker(tokenizer_dir: str, backend: str) -> None:
    global _WORKER_ENCODER
    os.environ["RAYON_NUM_THREADS"] = "1"  # one process per core already; HF's own threads would oversubscribe
    _WORKER_ENCODER = Encoder(tokenizer_dir, backend)


def _encode_in_worker(task: tuple[bool, list[str]]) -> list[np.ndarray]:
    use_hf, texts = task
    assert _WORKER_ENCODER is not None, "made by the pool's initializer"
    ids = _WORKER_ENCODER.encode_hf(texts) if use_hf else _WORKER_ENCODER.encode(texts)
    return [np.asarray(i, dtype=np.uint32) for i in ids]


class ParallelEncoding:
    """Ordered, bounded parallel encoding of record batches on spawned processes."""

    def __init__(self, tokenizer_dir: str, backend: str, workers: int):
        self.workers = workers
        context = multiprocessing.get_context("spawn")
        self.pool = context.Pool(workers, initializer=_init_worker, initargs=(tokenizer_dir, backend))

    def __call__(
        self, batches: Iterator[tuple[list[corpus.Record], bool]]
    ) -> Iterator[tuple[list[corpus.Record], list]]:
        """(batch, encode with HF?) pairs → (batch, ids), in order."""
        pending: collections.deque = collections.deque()
        for batch, use_hf in batches:
            pending.append((batch, self.pool.apply_async(_encode_in_worker, ((use_hf, [r.text for r in batch]),))))
            if len(pending) >= 2 * self.workers:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def in_process(encoder: Encoder):
    def encode(batches: Iterator[tuple[list[corpus.Record], bool]]):
        for batch, use_hf in batches:
            texts = [r.text for r in batch]
            yield batch, (encoder.encode_hf(texts) if use_hf else encoder.encode(texts))

    return encode


def encode_shard(
    encoder: Encoder,
    spec: corpus.CorpusSpec,
    inputs: list[str],
    output_dir: str,
    index: int,
    config: EncodeConfig,
    encode_batches: Callable,
) -> dict:
    """Writes (or finds committed) train and validation shards `index` for `inputs`; returns their infos."""
    identity = {
        "inputs": inputs,
        # what identifies each input's content (size and modification time): an input rewritten under the same
        # name, as after curating again, is encoded again
        "input_keys": [input_key(path) for path in inputs],
        "tokenizer_sha256": encoder.meta["sha256"],
        "val_fraction": config.val_fraction,
        "text_column": spec.text_column,
        "lines": spec.lines,
    }
    stems = {split: bins.shard_stem(output_dir, split, index) for split in bins.SPLITS}
    found = {split: bins.read_shard_info(stem) for split, stem in stems.items()}
    if all(info and {k: info.get(k) for k in identity} == identity for info in found.values()):
        log.info("bin shard %d: already complete, skipped", index)
        return {**found, "skipped": True}
    dtype = bins.dtype_for(encoder.vocab_size)
    writers = {split: bins.ShardWriter(stem, dtype, encoder.end_of_text) for split, stem in stems.items()}
    shard_spec = dataclasses.replace(spec, paths=inputs)
    report = corpus.ReadReport()
    use_hf = encoder.fast is None
    checked = use_hf
    try:

        def batches():
            """Each batch with the encoder to use, decided (on the first batch's sample) before it is handed on."""
            nonlocal use_hf, checked
            for batch in _batches(corpus.iter_records(shard_spec, report), config.batch_chars):
                if not checked:
                    sample, size = [], 0
                    for record in batch:
                        if size >= config.check_chars:
                            break
                        sample.append(record.text[: config.check_chars])
                        size += len(sample[-1])
                    if not encoder.agrees(sample):
                        log.warning(
                            "bin shard %d: tiktoken's ids differ from HF's on a sample; encoding with HF", index
                        )
                        use_hf = True
                    checked = True
                yield batch, use_hf

        for batch, ids_list in encode_batches(batches()):
            for record, ids in zip(batch, ids_list):
                split = "val" if bins.is_validation(record.key, config.val_fraction) else "train"
                writers[split].add(ids)
        infos = {
            split: writer.commit({**identity, "encoder": "hf" if use_hf else "tiktoken", **report.to_json()})
            for split, writer in writers.items()
        }
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return {**infos, "skipped": False}


def write_meta(
    output_dir: str, encoder: Encoder, groups: list[list[str]], config: EncodeConfig, infos: list[dict]
) -> dict:
    splits = {}
    for split in bins.SPLITS:
        shard_infos = [info[split] for info in infos]
        splits[split] = {
            "tokens": sum(i["tokens"] for i in shard_infos),
            "documents": sum(i["documents"] for i in shard_infos),
            "shards": [os.path.basename(bins.shard_stem(output_dir, split, n)) for n in range(len(groups))],
        }
    report = corpus.ReadReport()
    for info in infos:
        report.merge(info["train"])  # both splits of a shard carry the same report
    meta = {
        "version": bins.FORMAT_VERSION,
        "dtype": bins.dtype_for(encoder.vocab_size).name,
        "vocab_size": encoder.vocab_size,
        "end_of_text_id": encoder.end_of_text,
        "tokenizer_sha256": encoder.meta["sha256"],
        "val_fraction": config.val_fraction,
        "splits": splits,
        "sources": groups,
        "read": report.to_json(),  # records skipped by reason; files (or their rest) that could not be read
    }
    bins.write_json(os.path.join(output_dir, bins.META_FILE), meta)
    return meta


def encode_corpus(
    tokenizer_dir: str,
    spec: corpus.CorpusSpec,
    output_dir: str,
    config: EncodeConfig,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Encodes every input into `output_dir`; returns the bin directory's metadata."""
    encoder = Encoder(tokenizer_dir, config.backend)
    groups = plan_shards(spec.paths, config.inputs_per_shard)
    workers = config.workers or os.cpu_count() or 1
    parallel = ParallelEncoding(tokenizer_dir, config.backend, workers) if workers > 1 else None
    encode_batches = parallel if parallel else in_process(encoder)
    infos = []
    try:
        for index, inputs in enumerate(groups):
            info = encode_shard(encoder, spec, inputs, output_dir, index, config, encode_batches)
            if progress:
                progress(sum(corpus.file_size(p) for p in inputs))
            infos.append(info)
    finally:
        if parallel:
            parallel.close()
    return write_meta(output_dir, encoder, groups, config, infos)
