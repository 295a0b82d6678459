# Everything a fresh machine needs: `make demo` and `make test` create the environment first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo serve test lint bench clean

# Bytecode is compiled once, at install: uv does not by default, and where
# PYTHONDONTWRITEBYTECODE is set every process (a bulk worker, a Dagster run) would
# compile its imports again (2.1 instead of 0.8 s of CPU for a bulk worker).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/portability demo

# The Dagster UI (webserver + daemon) on the demo world: http://127.0.0.1:$(SERVE_PORT)
SERVE_PORT ?= 3000
serve: $(STAMP)
	$(BIN)/python -m pipelines.serve --port $(SERVE_PORT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf var/demo var/exports
