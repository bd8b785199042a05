# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: install demo test bench clean

install: $(STAMP)

# torch first, pinned, so that pip never resolves a second (CUDA) build for the project's range. --no-compile: no
# bytecode for every module of torch, Beam and the rest up front (about a minute of the install on 2 cores); Python
# compiles what is imported, once.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile torch==2.13.0
	$(PY) -m pip install --quiet --no-compile -e '.[dev]'
	touch $(STAMP)

# The whole path on the generated sample, offline: curate a crawl and a Wikipedia dump, tokenizer, bins, train,
# generate, export, evaluate; one summary at the end (train/demo.py). The same seed gives the same files and losses.
demo: $(STAMP)
	$(PY) -m train.demo --output $(DEMO_DIR)

# Lint, format and types first: they take seconds and name the line at fault. The suite runs on every core, a test
# file to a worker (its module fixtures, the demo's run or a training baseline, are made once).
test: $(STAMP)
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
