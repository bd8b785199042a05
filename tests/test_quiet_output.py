"""What a person sees of a curation run on several local worker processes: no third-party chatter, the workers'
own warnings in the commands' format, failed inputs named; a run whose every input failed exits non-zero with one
line saying so, a run with some failed inputs exits 0."""

import subprocess
import sys

from pipeline.common import synthetic

# Lines Beam and its GCP modules print in every local worker process unless kept from the terminal.
NOISE = (
    "apitools not found",
    "bigquery_storage_v1",
    "semi_persistent_directory",
    "Discarding unparseable args",
    "Logging handler created",
)


def curate(*arguments, workers=2):
    command = [sys.executable, "-m", "pipeline", "commoncrawl", *arguments, f"--direct_num_workers={workers}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout + result.stderr


def assert_quiet(output):
    noisy = [line for line in output.splitlines() if any(fragment in line for fragment in NOISE)]
    assert not noisy, noisy


def test_some_failed_inputs_are_named_and_the_workers_warnings_shown(tmp_path):
    inputs = tmp_path / "warcs"
    inputs.mkdir()
    synthetic.write_sample_warc(str(tmp_path / "whole.warc.gz"), pages=30, seed=2)
    (inputs / "a-truncated.warc.gz").write_bytes((tmp_path / "whole.warc.gz").read_bytes()[:20000])
    (inputs / "b-garbage.warc.gz").write_bytes(b"not a WARC at all\n" * 100)
    code, output = curate("--warcs", str(inputs / "*.warc.gz"), "--output", str(tmp_path / "out"))
    assert code == 0, output
    assert_quiet(output)
    assert f"input error  {inputs / 'b-garbage.warc.gz'} @ 0: not a WARC or ARC file" in output
    assert f"input error  {inputs / 'a-truncated.warc.gz'} @ " in output
    # the warning a worker process logged, in the commands' format (not relayed as protocol-buffer text)
    warnings = [line for line in output.splitlines() if " WARNING pipeline.steps.process: " in line]
    assert any("a-truncated.warc.gz" in line and "truncated" in line for line in warnings), output
    assert "severity: WARN" not in output


def test_a_run_whose_every_input_failed_exits_non_zero_with_one_line(tmp_path):
    (tmp_path / "garbage.warc.gz").write_bytes(b"not a WARC at all\n" * 100)
    code, output = curate("--warcs", str(tmp_path / "garbage.warc.gz"), "--output", str(tmp_path / "out"), workers=1)
    assert code == 1
    assert_quiet(output)
    errors = [line for line in output.splitlines() if line.startswith("python -m pipeline: error:")]
    assert errors == ["python -m pipeline: error: every input failed (1 of 1); nothing was read"]


def test_the_progress_display_counts_committed_units_and_their_documents(tmp_path, capsys):
    from pipeline import recipe as recipes
    from pipeline.beam import curate

    sample = synthetic.write_sample(str(tmp_path / "sample"), pages=20, articles=25)
    synthetic.write_sample_warc(str(tmp_path / "b.warc.gz"), pages=20, seed=2)
    warcs = ("sources.commoncrawl.warcs", [sample.warc, str(tmp_path / "b.warc.gz")])
    output = ("output.dir", str(tmp_path / "out"))
    assert curate.UnitProgress(curate.ReadSources(recipes.load(None, [output, warcs]))).total == 2  # a WARC a unit
    wikipedia = [("sources.wikipedia.dumps", [sample.dump]), ("sources.wikipedia.indexes", [sample.index])]
    recipe = recipes.load(None, [output, warcs, *wikipedia, ("sources.wikipedia.streams_per_part", 1)])
    progress = curate.UnitProgress(curate.ReadSources(recipe))
    assert progress.total is None and progress.poll() == (0, 0)  # the dump's parts are planned on a worker
    funnel = curate.run(recipe, ["--direct_num_workers=1", "--direct_running_mode=in_memory"])
    # 2 WARCs, and the dump's 27 pages in streams of 10: 3 parts of one stream each
    assert progress.poll() == (5, funnel.records_in) and progress.total == 5 and funnel.records_in > 0
    with progress.show(interval=0.01):
        pass
    err = capsys.readouterr().err
    assert "5/5 [" in err and f"{funnel.records_in} documents" in err
