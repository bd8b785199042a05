import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
# Every benchmark of ../shared/fixtures/evals in its published layout: name → (task format, path under evals/)
FIXTURE_EVALS = {
    "hellaswag": ("hellaswag", "hellaswag/hellaswag_val_full-head200.txt"),
    "lambada": ("lambada", "lambada/lambada_test-head200.jsonl"),
    "piqa": ("piqa", "piqa/valid-head200.jsonl"),
    "winogrande": ("winogrande", "winogrande/dev-head200.jsonl"),
    "boolq": ("boolq", "boolq/dev-head200.jsonl"),
    "arc_challenge": ("arc", "arc_challenge/ARC-Challenge-Test-head200.jsonl"),
    "arc_easy": ("mosaicml", "arc_easy_mosaicml/arc_easy-head200.jsonl"),
}


def fixture_eval_specs(names=tuple(FIXTURE_EVALS)) -> list[str]:
    """`NAME=FORMAT:PATH` of fixture benchmarks, as `--task` takes them."""
    return [f"{name}={FIXTURE_EVALS[name][0]}:{SHARED_FIXTURES / 'evals' / FIXTURE_EVALS[name][1]}" for name in names]


def run_python(code: str) -> subprocess.CompletedProcess:
    """`python -c code` in a fresh interpreter at the repository's root (for probes of process-wide state),
    its output captured as text; a failure raises."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)


@pytest.fixture
def shared_fixtures() -> pathlib.Path:
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not beside the repository")
    return SHARED_FIXTURES


@pytest.fixture
def http_server():
    from tests.loopback import LoopbackServer

    with LoopbackServer() as server:
        yield server


# The files that take longest (`make test` prints the slowest tests), scheduled first: with one file to a worker
# (`--dist loadfile`), a long file started last keeps one core busy while the other has nothing left to do.
LONGEST_FIRST = (
    "test_demo.py",
    "test_spark.py",
    "test_distributed_resume.py",
    "test_ablate.py",
    "test_distributed.py",
    "test_train.py",
    "test_sources_pipeline.py",
    "test_reliability.py",
)


def pytest_collection_modifyitems(config, items):
    """The longest files first (LONGEST_FIRST); tests marked `cuda` run only where a GPU is (tests/test_cuda.py),
    elsewhere they are skipped, saying why."""
    rank = {name: number for number, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order stays
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch

    if not torch.cuda.is_available():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


LANGID_REPORT_KEY = pytest.StashKey[dict]()


@pytest.fixture
def langid_report(request) -> dict:
    return request.config.stash.setdefault(LANGID_REPORT_KEY, {})


SUMMARY_KEY = pytest.StashKey[dict]()


@pytest.fixture
def summary(request) -> dict:
    """Lines for the end-of-run summary, by section title: measured figures tests should show."""
    return request.config.stash.setdefault(SUMMARY_KEY, {})


def pytest_terminal_summary(terminalreporter, config):
    report = config.stash.get(LANGID_REPORT_KEY, None)
    if report:
        terminalreporter.section("language ID accuracy (lid.176.ftz, ../shared/fixtures/langid)")
        for language, (correct, total) in sorted(report.items()):
            terminalreporter.write_line(f"  {language}: {correct / total:6.1%}  ({correct}/{total})")
    for title, lines in sorted(config.stash.get(SUMMARY_KEY, {}).items()):
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(f"  {line}")


@pytest.fixture(scope="session")
def train_data(tmp_path_factory):
    """A tokenizer and two bin directories for the trainer's tests (tests/trainruns.py)."""
    from tests.trainruns import build_data

    return build_data(tmp_path_factory.mktemp("train-data"))


@pytest.fixture(scope="session")
def baseline(train_data, tmp_path_factory):
    """One process of the distributed tests' run: the curve every layout must reproduce."""
    from tests.trainruns import DISTRIBUTED_STEPS, run_args
    from train import cli

    run = tmp_path_factory.mktemp("baseline") / "run"
    assert cli.main(run_args(train_data, run, *DISTRIBUTED_STEPS)) == 0
    return run
