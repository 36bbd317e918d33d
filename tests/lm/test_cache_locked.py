"""A disk cache another process keeps locked: a write warns and a read misses; nothing raises."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import diskcache
import pytest

from oobleck.lm.cached import Cache, _json_disk
from oobleck.lm.types import Choice, LMResponse


def _response(text: str) -> LMResponse:
    return LMResponse(choices=(Choice(text=text),))


def test_a_write_to_a_cache_locked_past_its_timeout_warns_and_keeps_the_good_entry(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.set("good", _response("kept"))
    cache.close()
    # the same store with a short lock timeout (the default waits 60 s before giving up)
    cache._disk = diskcache.Cache(str(tmp_path), disk=_json_disk(), timeout=0.05)
    other = sqlite3.connect(tmp_path / "cache.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process writing for a long time
    try:
        with pytest.warns(UserWarning, match="could not write entry"):
            cache.set("new", _response("later"))
        cache.clear_memory()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            during = cache.get("good")  # a miss (locked) or the entry: never an exception
        assert during is None or during.choices[0].text == "kept"
    finally:
        other.execute("ROLLBACK")
        other.close()
    cache.clear_memory()
    hit = cache.get("good")
    assert hit is not None and hit.choices[0].text == "kept"
    cache.close()


@pytest.mark.parametrize("size", [-1, 1.5, True])
def test_a_bad_memory_size_is_a_config_error_not_a_keyerror_on_first_call(size: object) -> None:
    from oobleck import ConfigError

    with pytest.raises(ConfigError, match="memory_size"):
        Cache(None, memory_size=size)  # type: ignore[arg-type]


def test_memory_size_zero_keeps_nothing_in_memory() -> None:
    cache = Cache(None, memory_size=0)
    cache.set("k", _response("x"))
    assert cache.get("k") is None
