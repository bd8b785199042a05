"""Checkpoints: written into a temporary directory and renamed into place, with a manifest written last that
records every file's size and xxh3-128 hash, so a half-written or corrupted checkpoint is never mistaken for a
complete one. Nothing is unpickled on load: tensors are safetensors, everything else JSON or TOML.

Format 2 (this trainer) is written with torch.distributed.checkpoint (DCP): every rank writes the shards it
holds, in parallel, as safetensors files whose headers record each shard's offsets in the full tensor, so a
checkpoint loads into any other layout (tp=2 into one process, FSDP over 2 ranks into dp2×tp2, and back):

RUN/checkpoints/step-00000100/
    model/shard-NNNNN-model-00001-of-00001.safetensors       the float32 weights, one file per writing rank
    optimizer/shard-NNNNN-model-00001-of-00001.safetensors   AdamW's step, exp_avg, exp_avg_sq per parameter
    rng/rank-NNNNN.safetensors   each rank's torch generator states
    trainer.json        step, data-loader position (global: samples drawn), schedule, tokens seen
    config.toml         the resolved configuration of the run
    manifest.json       format version, step and {file: {bytes, xxh3_128}}; its presence marks completion

Format 1 (the single-process trainer before it) still loads: model.safetensors, optimizer.pt (loaded with
weights_only=True), rng.pt, trainer.json, config.toml, manifest.json.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import xxhash
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint import HuggingFaceStorageReader, HuggingFaceStorageWriter
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from train import config as config_module, parallel

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
STEP_DIR = re.compile(r"^step-(\d{8})$")
MODEL, OPTIMIZER, RNG = "model", "optimizer", "rng"
FLAT = StateDictOptions(flatten_optimizer_state_dict=True)


class CheckpointError(ValueError):
    pass


def _file_hash(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, xxhash.xxh3_128).hexdigest()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _model_tensors(model) -> dict[str, Any]:
    """The model's state by parameter name, a tied head and embedding once (as tok_embeddings.weight)."""
    unique = {name for name, _ in model.named_parameters()}
    return {name: tensor for name, tensor in get_model_state_dict(model).items() if name in unique}


def _optimizer_tensors(model, optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """The optimiser's state flattened by parameter name, and its tensors alone (the hyperparameters in
    param_groups come from the configuration)."""
    state = get_optimizer_state_dict(model, optimizer, options=FLAT)
    return state, {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def _state(model, optimizer) -> list[tuple[str, dict]]:
    """What a checkpoint's DCP directories hold, by directory."""
    return [(MODEL, _model_tensors(model)), (OPTIMIZER, _optimizer_tensors(model, optimizer)[1])]


@contextlib.contextmanager
def _one_process_is_meant():
    """DCP warns on every call without a process group that it assumes one process; that is what we mean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled, unavailable or uninitialized", UserWarning)
        yield


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


class Checkpointer:
    """Writes a run's checkpoints (every rank calls `save`) and deletes complete ones beyond the newest `keep`.

    In the background (`checkpoint.async_save`, as DCP's async_save and torchtitan's async mode): `save` copies
    the model and optimiser state into host memory (DCP's staging) and returns; a thread writes the shards,
    hashes them and commits the manifest while the next steps run, so the step loop waits for the copy alone.
    The next `save` and `wait` (at the end of a run) wait for the write before them. The copy is what gets
    written, so the checkpoint is the state of its step whatever the optimiser does meanwhile; it costs one more
    copy of the weights and the optimiser state in host memory. The thread's collectives go over a gloo group of
    their own, never the training's."""

    def __init__(self, run_dir: str, keep: int, layout: parallel.Layout, background: bool = False):
        self.root = os.path.join(run_dir, CHECKPOINTS)
        self.keep, self.layout, self.background = keep, layout, background
        self.group = parallel.new_cpu_group(layout) if background else None
        self._pending: Future | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="checkpoint") if background else None
        self.stall_seconds = 0.0  # how long the step loop waited for the last save
        self.write_seconds = 0.0  # how long the last complete checkpoint took, from its save to its commit

    def save(self, step: int, model, optimizer, trainer_state: dict, config) -> str:
        """Writes (or, in the background, starts writing) checkpoint `step`; returns the directory it has once
        complete."""
        started = time.perf_counter()
        self.wait()
        final = os.path.join(self.root, f"step-{step:08d}")
        staging = None
        if self.layout.is_main:
            os.makedirs(self.root, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=f".step-{step:08d}.", dir=self.root)
        staging = parallel.broadcast(self.layout, staging)
        finish = functools.partial(self._finish, started, staging, final, step, copy.deepcopy(trainer_state), config)
        try:
            os.makedirs(os.path.join(staging, RNG), exist_ok=True)
            save_file(_rng_state(), os.path.join(staging, RNG, f"rank-{self.layout.rank:05d}.safetensors"))
            writes = []
            for name, tensors in _state(model, optimizer):
                writer = HuggingFaceStorageWriter(os.path.join(staging, name), save_distributed=True)
                # in the background, what is written is a copy in host memory, made now (DCP's async staging)
                writes.append((writer, writer.stage(tensors) if self.background else tensors))
        except BaseException:
            self._discard(staging)
            raise
        if self._executor is not None:
            self._pending = self._executor.submit(finish, writes)
        else:
            finish(writes)
        self.stall_seconds = time.perf_counter() - started
        return final

    def wait(self) -> None:
        """Until the checkpoint being written in the background is complete; raises its error, if it failed."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self, quiet: bool = False) -> None:
        """Waits for a checkpoint still being written (a run that fails keeps the last one it started). `quiet`:
        a failure of that write is logged, not raised, when the run is already failing for another reason."""
        if self._executor is None:
            return
        try:
            self.wait()
        except Exception:
            if not quiet:
                raise
            log.exception("the checkpoint being written in the background failed too")
        finally:
            self._executor.shutdown()

    def _finish(
        self, started: float, staging: str, final: str, step: int, trainer_state: dict, config, writes: list
    ) -> None:
        """Writes this rank's shards (`writes`: DCP writers and what each writes, one after the other: DCP's
        collectives of two saves at once would interleave), then every rank hashes its share of the files and
        rank 0 commits and prunes."""
        layout, group = self.layout, self.group
        try:
            for writer, tensors in writes:
                with _one_process_is_meant():
                    dcp.save(tensors, storage_writer=writer, process_group=group, no_dist=not layout.distributed)
            parallel.barrier(layout, group)  # every rank's shards are written
            files = parallel.gather_dicts(layout, _record_files(staging, layout.rank, layout.world_size), group)
            parallel.on_main(
                layout, _commit, staging, final, self.root, step, trainer_state, config, files, group=group
            )
        except BaseException:
            self._discard(staging)
            raise
        if layout.is_main:
            _prune(self.root, self.keep)
        self.write_seconds = time.perf_counter() - started

    def _discard(self, staging: str) -> None:
        if self.layout.is_main:
            shutil.rmtree(staging, ignore_errors=True)


def _record(path: str) -> dict:
    """A written file's manifest entry, once it is on disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    return {"bytes": os.path.getsize(path), "xxh3_128": _file_hash(path)}


def _record_files(staging: str, rank: int, world_size: int) -> dict:
    """This rank's share of the manifest: every world_size-th of the files the ranks wrote, so that the job
    hashes its checkpoint in parallel (13 GB for the 1B preset) instead of rank 0 alone while the others wait."""
    paths = sorted(os.path.join(directory, name) for directory, _, names in os.walk(staging) for name in names)
    return {os.path.relpath(path, staging): _record(path) for path in paths[rank::world_size]}


def _commit(staging: str, final: str, root: str, step: int, trainer_state: dict, config, files: dict) -> None:
    """Rank 0, once every rank has written and hashed its share: the JSON and TOML files, the manifest over every
    file, the rename."""
    with open(os.path.join(staging, "trainer.json"), "w") as handle:
        json.dump(trainer_state, handle, indent=1)
    config_module.save(config, os.path.join(staging, "config.toml"))
    files = {**files, **{name: _record(os.path.join(staging, name)) for name in ("trainer.json", "config.toml")}}
    with open(os.path.join(staging, MANIFEST), "w") as handle:
        json.dump({"version": FORMAT_VERSION, "step": step, "files": dict(sorted(files.items()))}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    if os.path.exists(final):  # a rerun of the same step after a resume from an older checkpoint
        shutil.rmtree(final)
    os.rename(staging, final)
    _fsync_dir(root)


def _prune(root: str, keep: int) -> None:
    complete = [path for _, path in _step_dirs(root) if verify(path, deep=False)]
    for path in complete[keep:]:
        shutil.rmtree(path, ignore_errors=True)
    for name in os.listdir(root):  # staging directories of runs that died mid-write
        if name.startswith(".step-"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _step_dirs(root: str) -> list[tuple[int, str]]:
    """(step, path) of the step directories under `root`, newest first."""
    if not os.path.isdir(root):
        return []
    found = [(int(m.group(1)), os.path.join(root, name)) for name in os.listdir(root) if (m := STEP_DIR.match(name))]
    return sorted(found, reverse=True)


def set_aside_future(run_dir: str, start: str) -> list[str]:
    """Resuming `run_dir` from `start`, an explicitly chosen checkpoint, abandons whatever the run did after it:
    its checkpoints of that step and later move to RUN/abandoned/<time>/ (with a copy of metrics.jsonl), so that
    a later `--resume auto` continues the new history and pruning counts its checkpoints alone."""
    step = int(_manifest(start)["step"])
    future = [
        path
        for found, path in _step_dirs(os.path.join(run_dir, CHECKPOINTS))
        if found >= step and os.path.realpath(path) != os.path.realpath(start)
    ]
    if not future:
        return []
    aside = os.path.join(run_dir, "abandoned", time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    os.makedirs(aside, exist_ok=True)
    metrics = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(metrics):
        shutil.copyfile(metrics, os.path.join(aside, "metrics.jsonl"))
    moved = []
    for path in future:
        moved.append(os.path.join(aside, os.path.basename(path)))
        os.rename(path, moved[-1])
    log.warning(
        "resuming from %s (step %d): the run's later checkpoints (%s) are set aside in %s",
        start,
        step,
        ", ".join(os.path.basename(path) for path in sorted(future)),
        aside,
    )
    return moved


def _manifest(path: str) -> dict:
    with open(os.path.join(path, MANIFEST)) as handle:
        return json.load(handle)


def verify(path: str, deep: bool = True) -> bool:
    """Whether `path` is a complete checkpoint: manifest present and every file of the size (and, when deep, of
    the hash) it records."""
    try:
        manifest = _manifest(path)
        if manifest.get("version", 0) > FORMAT_VERSION:
            log.warning("%s: checkpoint format %s is newer than this lmforge reads", path, manifest["version"])
            return False
        for name, expected in manifest["files"].items():
            file_path = os.path.join(path, name)
            if os.path.getsize(file_path) != expected["bytes"]:
                return False
            if deep and _file_hash(file_path) != expected["xxh3_128"]:
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def latest(run_dir: str) -> str | None:
    """The newest complete checkpoint of a run; incomplete or corrupt ones are skipped with a warning."""
    for _, path in _step_dirs(os.path.join(run_dir, CHECKPOINTS)):
        if verify(path):
            return path
        log.warning("skipping %s: incomplete or corrupt (its files do not match its manifest)", path)
    return None


def resolve(target: str) -> str:
    """A checkpoint directory, or a run directory meaning its newest complete checkpoint."""
    if os.path.exists(os.path.join(target, MANIFEST)):
        if not verify(target):
            raise CheckpointError(f"{target}: incomplete or corrupt checkpoint (its files do not match its manifest)")
        return target
    found = latest(target)
    if found is None:
        raise CheckpointError(
            f"{target}: no complete checkpoint (a run directory with checkpoints/step-* or a "
            "checkpoint directory is expected)"
        )
    return found


def load_config(path: str):
    return config_module.load(os.path.join(path, "config.toml"))


def format_version(path: str) -> int:
    return _manifest(path)["version"]


def _load_sharded(tensors: dict, directory: str) -> None:
    """Fills `tensors` (plain or DTensor, in any layout) in place from the shards under `directory`."""
    try:
        with _one_process_is_meant():
            dcp.load(tensors, storage_reader=HuggingFaceStorageReader(directory), no_dist=not dist.is_initialized())
    except (RuntimeError, ValueError, KeyError) as exc:  # DCP wraps a missing key or a wrong shape per rank
        raise CheckpointError(f"{directory}: does not fit the model ({str(exc).strip().splitlines()[-1]})") from exc


def load_weights(path: str, model) -> None:
    """The weights of a checkpoint of either format into `model`, in whatever layout it is."""
    if format_version(path) == 1:
        weights: dict[str, Any] = load_file(os.path.join(path, "model.safetensors"))
        shared = [weights[name] for name in ("output.weight", "tok_embeddings.weight") if name in weights]
        if model.config.tie_embeddings and shared:  # format 1 stored the shared tensor once
            weights["output.weight"] = weights["tok_embeddings.weight"] = shared[0]
        expected = set(get_model_state_dict(model))
        if set(weights) != expected:
            raise CheckpointError(
                f"{path}: weights do not fit the model (missing {sorted(expected - set(weights))[:3]}, "
                f"unexpected {sorted(set(weights) - expected)[:3]})"
            )
        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))
        return
    tensors = _model_tensors(model)
    _load_sharded(tensors, os.path.join(path, MODEL))
    set_model_state_dict(model, tensors, options=StateDictOptions(strict=False))  # a tied head comes with the embedding


def load_training_state(path: str, model, optimizer, layout: parallel.Layout) -> dict:
    """Restores the optimiser and this rank's RNG states; returns trainer.json."""
    if format_version(path) == 1:
        saved = torch.load(os.path.join(path, "optimizer.pt"), weights_only=True, map_location="cpu")
        # format 1 is torch's own state dict, parameters numbered in the optimiser's order; name them
        names = {id(param): name for name, param in model.named_parameters()}
        fqns = [names[id(param)] for group in optimizer.param_groups for param in group["params"]]
        state: dict[str, Any] = {
            "state": {fqns[index]: value for index, value in saved["state"].items()},
            "param_groups": [
                {**group, "params": [fqns[i] for i in group["params"]]} for group in saved["param_groups"]
            ],
        }
        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        rng = torch.load(os.path.join(path, "rng.pt"), weights_only=True)
        rng = {"cpu": rng["cpu"], **({"cuda": rng["cuda"][0]} if rng.get("cuda") else {})}
    else:
        state, tensors = _optimizer_tensors(model, optimizer)
        _load_sharded(tensors, os.path.join(path, OPTIMIZER))
        set_optimizer_state_dict(model, optimizer, {**state, **tensors}, options=FLAT)
        own = os.path.join(path, RNG, f"rank-{layout.rank:05d}.safetensors")
        rng = load_file(own) if os.path.exists(own) else {}  # a rank the saving job did not have starts seeded
    if "cpu" in rng:
        torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and layout.device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"])
    with open(os.path.join(path, "trainer.json")) as handle:
        return json.load(handle)
