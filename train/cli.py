"""`python -m train --config configs/<name>.toml [--resume auto] [--section.field VALUE …]`, or the same under
`torchrun --nproc_per_node N -m train …` for a job of N processes."""

from __future__ import annotations

import argparse
import logging
import os

from pipeline.common.settings import UsageError, parse_overrides, report
from train import config as config_module
from train.checkpoint import CheckpointError
from train.data import DataError
from train.trainer import NonFiniteLoss, train

PROGRAM = "python -m train"
EXAMPLE = """examples:
  # the CPU demo preset on bins written by `python -m tokenizer encode`
  python -m train --config configs/demo.toml --data.sources '[{path="bins/"}]' --data.tokenizer tok/
  # GPT-2-small size, two corpora mixed 70/30, a higher learning rate, continuing the run if it has checkpoints
  python -m train --config configs/gpt2-small.toml --resume auto --optim.lr 1e-3 \\
      --data.sources '[{path="bins/web", weight=0.7}, {path="bins/wiki", weight=0.3}]'
  # eight GPUs of one node: tensor parallel in pairs, FSDP over the four pairs (docs/distributed.md)
  torchrun --nproc_per_node 8 -m train --config configs/1b.toml --data.sources '[{path="bins/"}]' \\
      --data.tokenizer tok/ --parallel.tp 2 --parallel.fsdp true --parallel.sequence_parallel true

Any field of the configuration can be overridden as --section.field VALUE; VALUE is read as TOML (6e-4, true,
[0.9, 0.95], "text") and otherwise taken as a string. The resolved configuration is saved as RUN/config.toml.
"""


def build_parser() -> argparse.ArgumentParser:
    epilog = (
        f"{EXAMPLE}\nsettings and their defaults (meanings in train/config.py, docs/formats.md and, for "
        f"[parallel], docs/distributed.md):\n{config_module.describe()}"
    )
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description=__doc__.strip() + "\n\nTrains the Llama-style model on token bins.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="a TOML file (presets in configs/); without it, the defaults")
    parser.add_argument(
        "--resume",
        default="never",
        metavar="auto|never|PATH",
        help="auto: continue from the run directory's newest complete checkpoint, if any; PATH: "
        "from that checkpoint; never (default): refuse a run directory that has checkpoints",
    )
    parser.add_argument(
        "--peak-flops",
        type=float,
        metavar="FLOP/S",
        help="peak FLOP/s of one device for MFU (same as --logging.peak_flops); by default looked up "
        "from the GPU's name",
    )
    return parser


def _fail(exc: Exception) -> None:
    """One line on stderr. In a job, errors in the settings and checkpoints are the same on every rank and only
    rank 0 prints them; the data can differ between nodes, so each rank names itself."""
    rank = int(os.environ.get("RANK", "0"))
    if isinstance(exc, DataError) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        report(PROGRAM, f"rank {rank}: {exc}")
    elif rank == 0:
        report(PROGRAM, exc)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args, rest = build_parser().parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
        if args.peak_flops is not None:
            overrides.append(("logging.peak_flops", args.peak_flops))
        config = config_module.load(args.config, overrides)
        summary = train(config, resume=args.resume)
    except (UsageError, DataError, CheckpointError) as exc:
        _fail(exc)
        return 2
    except NonFiniteLoss as exc:
        _fail(exc)
        return 3
    if not summary["is_main"]:
        return 0
    if summary["stopped_early"]:
        print(f"stopped at step {summary['step']}; checkpoint {summary['checkpoint']}")
    else:
        val = f", validation loss {summary['val.loss']:.4f}" if "val.loss" in summary else ""
        print(
            f"trained {summary['step']} steps ({summary['tokens']:,} tokens){val}; checkpoint {summary['checkpoint']}"
        )
        if summary["report"]:
            print(f"report: {summary['report']}  (curves, samples and the configuration; open it in a browser)")
    return 0
