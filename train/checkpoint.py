"""Checkpoints: written into a temporary directory and renamed into place, with a manifest written last that
records every file's size and xxh3-128 hash, so a half-written or corrupted checkpoint is never mistaken for a
complete one. Loading never unpickles arbitrary objects: weights are safetensors, the optimiser and RNG states
load with `weights_only=True`, everything else is JSON.

RUN/checkpoints/step-00000100/
    model.safetensors   the model's weights (float32 master weights; a tied head is stored once)
    optimizer.pt        the optimiser's state_dict
    rng.pt              torch CPU and CUDA generator states
    trainer.json        step, data-loader position, schedule, tokens seen
    config.toml         the resolved configuration of the run
    manifest.json       format version, step and {file: {bytes, xxh3_128}}; its presence marks completion
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile

import torch
import xxhash
from safetensors.torch import load_model, save_model

from train import config as config_module

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
STEP_DIR = re.compile(r"^step-(\d{8})$")


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


def save(run_dir: str, step: int, model, optimizer, trainer_state: dict, config, keep: int) -> str:
    """Writes checkpoint `step`; deletes complete checkpoints beyond the newest `keep`. Returns its directory."""
    root = os.path.join(run_dir, CHECKPOINTS)
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"step-{step:08d}")
    staging = tempfile.mkdtemp(prefix=f".step-{step:08d}.", dir=root)
    try:
        save_model(model, os.path.join(staging, "model.safetensors"))
        torch.save(optimizer.state_dict(), os.path.join(staging, "optimizer.pt"))
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, os.path.join(staging, "rng.pt"))
        with open(os.path.join(staging, "trainer.json"), "w") as handle:
            json.dump(trainer_state, handle, indent=1)
        config_module.save(config, os.path.join(staging, "config.toml"))
        files = {}
        for name in sorted(os.listdir(staging)):
            path = os.path.join(staging, name)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
            files[name] = {"bytes": os.path.getsize(path), "xxh3_128": _file_hash(path)}
        with open(os.path.join(staging, MANIFEST), "w") as handle:
            json.dump({"version": FORMAT_VERSION, "step": step, "files": files}, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        if os.path.exists(final):  # a rerun of the same step after a resume from an older checkpoint
            shutil.rmtree(final)
        os.rename(staging, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(root, keep)
    return final


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


def verify(path: str, deep: bool = True) -> bool:
    """Whether `path` is a complete checkpoint: manifest present and every file of the size (and, when deep, of
    the hash) it records."""
    try:
        with open(os.path.join(path, MANIFEST)) as handle:
            manifest = json.load(handle)
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
        raise CheckpointError(f"{target}: no complete checkpoint (a run directory with checkpoints/step-* or a "
                              "checkpoint directory is expected)")
    return found


def load_config(path: str):
    return config_module.load(os.path.join(path, "config.toml"))


def load_weights(path: str, model) -> None:
    missing, unexpected = load_model(model, os.path.join(path, "model.safetensors"), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")


def load_training_state(path: str, optimizer) -> dict:
    """Restores the optimiser and RNG states; returns trainer.json."""
    optimizer.load_state_dict(torch.load(os.path.join(path, "optimizer.pt"), weights_only=True, map_location="cpu"))
    rng = torch.load(os.path.join(path, "rng.pt"), weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    with open(os.path.join(path, "trainer.json")) as handle:
        return json.load(handle)
