"""The house rules of the tree (docs/architecture.md), checked on every module there is, so a new one obeys them too:
what loads no Beam, and what `tokenizer/` and `train/` may import of `pipeline/`."""

import ast
import json

from tests.conftest import REPO, run_python

# Modules a worker or another package imports without wanting a pipeline engine: the shared home, the per-document
# steps, the sources, the dedup rules (not their Beam stages), the outputs and the recipe.
WITHOUT_BEAM = ["pipeline/common", "pipeline/steps", "pipeline/sources", "pipeline/output"]
WITHOUT_BEAM_FILES = ["pipeline/dedup/__init__.py", "pipeline/dedup/minhash.py", "pipeline/recipe.py"]
HEAVY = ("apache_beam", "torch", "trafilatura", "fasttext")


def module_name(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(*places: str) -> list[str]:
    found = []
    for place in places:
        path = REPO / place
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        found.extend(module_name(file) for file in files)
    return found


def loaded_by(names: list[str]) -> list[str]:
    """The top-level packages among HEAVY that importing `names` (in a fresh interpreter) loads."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    result = run_python(code)
    return json.loads(result.stdout)


def pipeline_imports(path) -> list[str]:
    """The `pipeline` modules a file imports, by name (`from pipeline.x import y` gives pipeline.x)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "pipeline" else [f"pipeline.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.extend(name for name in names if name == "pipeline" or name.startswith("pipeline."))
    return found


def test_the_steps_sources_outputs_and_shared_home_load_no_beam():
    names = modules(*WITHOUT_BEAM, *WITHOUT_BEAM_FILES)
    assert {"pipeline.common.schema", "pipeline.steps.process", "pipeline.sources.commoncrawl"} <= set(names)
    assert loaded_by(names) == []


def test_the_shared_home_loads_nothing_heavy_and_imports_only_itself():
    names = modules("pipeline/common")
    assert loaded_by(names) == []
    for path in (REPO / "pipeline" / "common").rglob("*.py"):
        outside = [name for name in pipeline_imports(path) if not name.startswith("pipeline.common")]
        assert outside == [], f"{path.relative_to(REPO)} imports {outside}"


def test_tokenizer_and_train_import_only_the_shared_home_of_pipeline():
    files = [*(REPO / "tokenizer").rglob("*.py"), *(REPO / "train").rglob("*.py"), *(REPO / "model").rglob("*.py")]
    reached = {}
    for path in files:
        outside = [name for name in pipeline_imports(path) if not name.startswith("pipeline.common")]
        if outside:
            reached[str(path.relative_to(REPO))] = outside
    assert reached == {}
    assert any(pipeline_imports(path) for path in files)  # the rule is exercised: they do import the shared home


def test_the_rules_would_catch_a_breach(tmp_path):
    breach = tmp_path / "breach.py"
    breach.write_text(
        "from pipeline import recipe, steps\nfrom pipeline.common import schema\nimport pipeline.beam.read\n"
    )
    assert pipeline_imports(breach) == ["pipeline.recipe", "pipeline.steps", "pipeline.common", "pipeline.beam.read"]
    assert loaded_by(["pipeline.beam.read"]) == ["apache_beam"]
