"""`python -m train` as torchrun starts it, run by tests/test_distributed*.py, that then says what of the job is
left in this process once the trainer returned: its threads by name, before and after. A gloo thread still alive
at interpreter exit can abort a rank that had finished well ("terminate called without an active exception").
Each rank writes {"before": [...], "after": [...]} to $TEARDOWN_REPORT.<rank>.json."""

import json
import os
import sys

from train import cli


def thread_names() -> list[str]:
    names = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/comm") as handle:
            names.append(handle.read().strip())
    return sorted(names)


def main() -> int:
    before = thread_names()
    code = cli.main(sys.argv[1:])
    with open(f"{os.environ['TEARDOWN_REPORT']}.{os.environ['RANK']}.json", "w") as handle:
        json.dump({"before": before, "after": thread_names()}, handle)
    return code


if __name__ == "__main__":
    sys.exit(main())
