"""The long fuzz campaign: each target of tests/fuzz.py for a while, from its seeds, on one core each in turn.

    python bench/bench_fuzz.py [--seconds 600] [--targets warc,mediawiki,corpus,recipe] [--work bench/results/fuzz]

Prints, per target, the inputs tried, the coverage reached and the crashes found (each saved as
`WORK/<target>/crash-*`, replayed by `python -m tests.fuzz TARGET FILE`); the corpus each campaign grew is kept in
`WORK/<target>/corpus`, so a second campaign starts where the first stopped. Figures go into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ("warc", "mediawiki", "corpus", "recipe")


def campaign(target: str, seconds: int, work: str, seed: int) -> dict:
    folder = os.path.join(work, target)
    corpus = os.path.join(folder, "corpus")
    os.makedirs(corpus, exist_ok=True)
    seeds = os.path.join(work, "seeds", target)
    command = [sys.executable, "-m", "tests.fuzz", target, f"-max_total_time={seconds}", f"-seed={seed}"]
    command += ["-timeout=30", "-print_final_stats=1", f"-artifact_prefix={folder}/", corpus, seeds]
    started = time.time()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, errors="replace")
    log = result.stderr
    with open(os.path.join(folder, "campaign.log"), "w") as handle:
        handle.write(log)
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    coverage = re.findall(r"cov: (\d+)", log)
    return {
        "target": target,
        "seconds": round(time.time() - started),
        "inputs": int(runs[-1]) if runs else None,
        "coverage": int(coverage[-1]) if coverage else None,
        "corpus": len(os.listdir(corpus)),
        "crashes": sorted(n for n in os.listdir(folder) if n.startswith(("crash-", "timeout-", "oom-"))),
        "exit": result.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600, help="per target (default: %(default)s)")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--work", default=os.path.join(REPO, "bench", "results", "fuzz"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    subprocess.run(
        [sys.executable, "-m", "tests.fuzz", "seeds", os.path.join(args.work, "seeds")], cwd=REPO, check=True
    )
    print(f"{'target':10} {'seconds':>8} {'inputs':>9} {'coverage':>9} {'corpus':>7}  crashes")
    found = 0
    for target in args.targets.split(","):
        row = campaign(target, args.seconds, args.work, args.seed)
        found += len(row["crashes"])
        print(
            f"{row['target']:10} {row['seconds']:8d} {row['inputs'] or 0:9,d} {row['coverage'] or 0:9d} "
            f"{row['corpus']:7d}  {', '.join(row['crashes']) or 'none'}"
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
