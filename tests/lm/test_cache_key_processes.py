"""The cache key of one request is the same in every process, whatever PYTHONHASHSEED is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from oobleck.lm.cached import cache_key
from oobleck.lm.types import LMRequest, Message

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
from oobleck.lm.cached import cache_key
from oobleck.lm.types import LMRequest, Message
request = LMRequest(messages=(Message(role="user", content="hi"),), extra={"ids": {"alpha", "beta", "gamma", "delta"}})
print(cache_key({"backend": "fake"}, request), cache_key({"backend": "fake"}, request.model_copy(update={"extra": {}}), {"words": {"a", "b", "c", "d"}}))
"""


def _keys(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_set_in_the_request_or_the_settings_gives_one_key_across_processes() -> None:
    keys = {_keys(seed) for seed in ("1", "2", "3", "4")}
    assert len(keys) == 1, keys


def test_requests_that_differ_still_get_different_keys() -> None:
    base = LMRequest(messages=(Message(role="user", content="hi"),), extra={"ids": {"a", "b"}})
    assert cache_key({"backend": "f"}, base) != cache_key(
        {"backend": "f"}, base.model_copy(update={"extra": {"ids": {"a"}}})
    )
    assert cache_key({"backend": "f"}, base, {"s": {"a"}}) != cache_key({"backend": "f"}, base, {"s": ["a", "b"]})
    assert cache_key({"backend": "f"}, base) == cache_key({"backend": "f"}, base.model_copy(update={"cache": "write"}))
