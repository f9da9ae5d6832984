# One entry point for people and CI. Every target creates the environment it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The oldest supported Airflow, in a second environment; versions in .ci/oldest-airflow.txt.
OLDEST_VENV  := .venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.installed

.PHONY: venv venv-oldest browser test test-oldest lint unit reliability demo bench clean

$(STAMP): pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(BIN)/python || uv venv --quiet --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

$(OLDEST_STAMP): pyproject.toml .ci/oldest-airflow.txt
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@test -x $(OLDEST_VENV)/bin/python || uv venv --quiet --python $(PYTHON) $(OLDEST_VENV)
	VIRTUAL_ENV=$(OLDEST_VENV) uv pip install --quiet -e '.[dev]' --override .ci/oldest-airflow.txt
	@touch $(OLDEST_STAMP)

venv-oldest: $(OLDEST_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

reliability: $(STAMP)
	$(BIN)/pytest tests/reliability -q

# The UI test drives Debian's Chromium (Playwright's browser download is not used). Install it when
# it is missing and we may (root with apt-get, as in CI); otherwise that test is skipped, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "make: chromium could not be installed; the UI test will be skipped"; \
	else \
		echo "make: no chromium and no root apt-get; the UI test will be skipped (apt-get install chromium)"; \
	fi

# The full suite on the development Airflow, then unit and integration tests on the oldest one.
test: lint browser
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-oldest

test-oldest: $(OLDEST_STAMP)
	$(OLDEST_VENV)/bin/pytest tests/unit tests/integration -q

demo: $(STAMP)
	$(BIN)/python -m airflow_provider_minimax.testing.demo --dags-folder dags

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_triggers.py
	$(BIN)/python benchmarks/bench_batch.py
	$(BIN)/python benchmarks/bench_hook.py

clean:
	rm -rf $(VENV) $(OLDEST_VENV) .demo .pytest_cache .mypy_cache .ruff_cache
