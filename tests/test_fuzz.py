"""A short coverage-guided campaign of fixed seed on each fuzz target (tests/fuzz.py); bench/bench_fuzz.py runs the
long one. A target that raises (or takes over 30 s on one input) is a finding: libFuzzer stops and names the input
it saved. Earlier findings are kept in tests/fuzz-regressions/<target>/ and replayed first."""

import re
import resource
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("atheris")

# runs per target: a few seconds each on this project's 2-core machine (the web path extracts every page)
RUNS = {"warc": 150, "mediawiki": 150, "corpus": 1500, "recipe": 1000, "publish": 3000, "archive": 200}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    subprocess.run([sys.executable, "-m", "tests.fuzz", "seeds", str(folder)], check=True, cwd=REPO)
    return folder


@pytest.mark.parametrize("target", RUNS)
def test_a_short_fuzz_campaign_finds_nothing(target, seeds, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # libFuzzer runs every input of its corpus first: the seeds, and the inputs of earlier findings (replayed)
    regressions = REPO / "tests" / "fuzz-regressions" / target
    for seed in [*(seeds / target).iterdir(), *(regressions.iterdir() if regressions.is_dir() else [])]:
        (corpus / seed.name).write_bytes(seed.read_bytes())
    command = [sys.executable, "-m", "tests.fuzz", target, f"-runs={RUNS[target]}", "-seed=1", "-timeout=30"]
    # libFuzzer's memory check reads the peak RSS, which Linux carries across exec from this worker, whose earlier
    # tests (in-process Beam runs) may have peaked above libFuzzer's 2 GB: the limit is 2 GB above that peak
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    command.append(f"-rss_limit_mb={peak_mb + 2048}")
    result = subprocess.run(
        [*command, f"-artifact_prefix={tmp_path}/", str(corpus)],
        cwd=REPO,
        capture_output=True,
        text=True,
        errors="replace",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = re.search(r"^Done (\d+) runs", result.stderr, re.MULTILINE)  # the corpus's own inputs count too
    assert done and int(done.group(1)) >= RUNS[target]
    assert not list(tmp_path.glob("crash-*"))
