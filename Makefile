# One entry point for people and CI. Every target creates the environment it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test lint unit demo bench clean

$(STAMP): pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(BIN)/python || uv venv --quiet --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: lint
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/python -m airflow_provider_minimax.testing.demo --dags-folder dags

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_triggers.py
	$(BIN)/python benchmarks/bench_batch.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
