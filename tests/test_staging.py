"""What Beam ships to workers: the package built from pyproject.toml (as `--setup_file ./pyproject.toml` builds
it), the pipeline's own dependencies (the `pipeline` extra, no torch), and the worker image's install line."""

import pathlib
import tarfile
import tomllib

from apache_beam.runners.portability.stager import Stager

REPO = pathlib.Path(__file__).resolve().parent.parent
LAUNCHER_ONLY = {"build", "setuptools"}  # they build the package where the job is launched


def name_of(requirement: str) -> str:
    return requirement.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()


def test_setup_file_builds_the_package_workers_install(tmp_path):
    sdist = Stager._build_setup_package(str(REPO / "pyproject.toml"), str(tmp_path))
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
        info = archive.extractfile(next(n for n in names if n.count("/") == 1 and n.endswith("PKG-INFO"))).read()
    for module in (
        "pipeline/steps/process.py",
        "pipeline/sources/commoncrawl.py",
        "pipeline/data",
        "tokenizer/corpus.py",
    ):
        assert any(name.split("/", 1)[1].startswith(module) for name in names if "/" in name), module
    base = [
        line.split(": ", 1)[1]
        for line in info.decode().splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    ]
    assert not {name_of(r) for r in base} & {"torch", "apache-beam", "tokenizers"}  # the base stays light


def test_worker_requirements_are_the_pipeline_extra_without_torch():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["pipeline"]
    lines = [line.strip() for line in (REPO / "pipeline" / "worker-requirements.txt").read_text().splitlines()]
    listed = [line for line in lines if line and not line.startswith("#")]
    assert sorted(listed) == sorted(r for r in extra if name_of(r) not in LAUNCHER_ONLY)
    assert not any(name_of(r) in ("torch", "tokenizers", "tiktoken") for r in listed)
    dockerfile = (REPO / "pipeline" / "Dockerfile").read_text()
    assert 'pip install --no-cache-dir ".[pipeline]"' in dockerfile
