# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: install demo test bench clean

install: $(STAMP)

# torch first, pinned, so that pip never resolves a second (CUDA) build for the project's range. The bytecode is
# compiled after pip, on every core (pip compiles on one): an environment with PYTHONDONTWRITEBYTECODE set (this
# project's machines have it) never writes it on import, so without it every process of the suite, a Beam worker or
# a torchrun rank, would compile torch and Beam from source again (in one fresh clone pytest took 560 s; 356 s once
# compiled).
# A few files written for other Python versions (torch's py312_intrinsics) do not compile: a cache, so that is no error.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile torch==2.13.0
	$(PY) -m pip install --quiet --no-compile -e '.[dev]'
	$(PY) -m compileall -q -j 0 $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') >/dev/null 2>&1 || true
	touch $(STAMP)

# The whole path on the generated sample, offline: curate a crawl and a Wikipedia dump, tokenizer, bins, train,
# generate, export, evaluate; one summary at the end (train/demo.py). The same seed gives the same files and losses.
demo: $(STAMP)
	$(PY) -m train.demo --output $(DEMO_DIR)

# Lint, format and types first: they take seconds and name the line at fault. The suite runs on every core, a test
# file to a worker (its module fixtures, the demo's run or a training baseline, are made once).
test: $(STAMP)
	$(PY) -m compileall -q -j 0 pipeline tokenizer model train tests > /dev/null
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q -n auto --dist loadfile --durations=15

bench: $(STAMP)
	$(PY) bench/bench_commoncrawl.py
	$(PY) bench/bench_commoncrawl.py --peer datatrove
	$(PY) bench/bench_train.py
	$(PY) bench/bench_distributed.py
	$(PY) bench/bench_quality.py
	$(PY) bench/bench_ablate.py
	if [ -d ../shared/peers/nanogpt ]; then $(PY) bench/bench_nanogpt.py --nanogpt ../shared/peers/nanogpt; fi

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
