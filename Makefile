# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: install demo test bench clean

install: $(STAMP)

# torch first, pinned, so that pip never resolves a second (CUDA) build for the project's range.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m pipeline synthetic-warc --output $(DEMO_DIR)/sample.warc.gz --pages 300 --seed 1
	$(PY) -m pipeline run --recipe configs/curate-sample.toml --output $(DEMO_DIR)/curated \
		--sources.commoncrawl.warcs '["$(DEMO_DIR)/sample.warc.gz"]'
	@echo "demo: shards, stats.json and the resolved recipe.toml are in $(DEMO_DIR)/curated/"
	$(PY) -m tokenizer train --input '$(DEMO_DIR)/curated/part-*.parquet' --vocab-size 2048 --output $(DEMO_DIR)/tokenizer
	$(PY) -m tokenizer encode --tokenizer $(DEMO_DIR)/tokenizer --input '$(DEMO_DIR)/curated/part-*.parquet' \
		--val-fraction 0.05 --output $(DEMO_DIR)/bins
	rm -rf $(DEMO_DIR)/run
	$(PY) -m train --config configs/demo.toml --run.dir $(DEMO_DIR)/run \
		--data.sources '[{path="$(DEMO_DIR)/bins"}]' --data.tokenizer $(DEMO_DIR)/tokenizer
	@echo "demo: a sample from the trained model:"
	$(PY) -m train.generate --checkpoint $(DEMO_DIR)/run --prompt "The harbour town" --max-new-tokens 60 --seed 1

# Lint, format and types first: they take seconds and name the line at fault.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/bench_commoncrawl.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_distributed.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
