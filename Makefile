# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UNAME := $(shell uname -s)
ARGS ?=

.PHONY: run test bench app clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[app]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[app,test]"
	touch $@

run: $(VENV)/.installed
	$(BIN)/python -m moshi_mlx.run $(ARGS)

app: $(VENV)/.installed
	$(BIN)/python -m app $(ARGS)

test: $(VENV)/.installed-test
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(ARGS)

bench: $(VENV)/.installed
	$(BIN)/python -m moshi_mlx.bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
