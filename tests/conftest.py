"""Shared fixtures: the real embedded model, in-process and behind a real HTTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def local_lm() -> Iterator[object]:
    """SmolLM2-135M-Instruct run in-process by llama.cpp (greedy decoding)."""
    from oobleck import LocalLM

    lm = LocalLM(temperature=0.0, max_tokens=96, n_parallel=4)
    yield lm
    lm.close()


@pytest.fixture(scope="session")
def server_url(local_lm: object) -> str:
    """The same model served over the OpenAI-compatible HTTP API on 127.0.0.1."""
    return local_lm.serve()  # type: ignore[attr-defined, no-any-return]


@pytest.fixture(scope="session")
def transformers_lm() -> Iterator[object]:
    """SmolLM2-135M-Instruct in-process via transformers (greedy).

    The packaged GGUF is dequantized to safetensors once (about a minute) into the oobleck
    cache directory (``$OOBLECK_CACHE_DIR`` or ``~/.cache/oobleck``) and reused by every later
    run and test process.
    """
    from oobleck.lm.transformers import TransformersLM

    lm = TransformersLM(temperature=0.0, max_tokens=24)
    yield lm
    lm.close()
