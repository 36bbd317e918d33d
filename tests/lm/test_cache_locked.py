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
