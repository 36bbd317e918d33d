from __future__ import annotations

import os
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oobleck import (
    Cache,
    CachedLM,
    ConfigError,
    FakeLM,
    LMRequest,
    Message,
    Predict,
    context,
)
from oobleck.lm.cached import cache_key

MSG = (Message(role="user", content="hi"),)


@given(st.dictionaries(st.text(max_size=5), st.integers(), max_size=6))
def test_key_is_stable_under_dict_ordering(extra):
    reordered = dict(reversed(list(extra.items())))
    a = LMRequest(messages=MSG, extra=extra)
    b = LMRequest(messages=MSG, extra=reordered)
    ident_a = {"backend": "openai", "model": "m", "endpoint": "http://a/v1"}
    ident_b = dict(reversed(list(ident_a.items())))
    assert cache_key(ident_a, a) == cache_key(ident_b, b)


@given(st.integers(0, 50), st.integers(0, 50))
def test_key_distinct_across_sample_indices(i, j):
    ident = {"backend": "fake", "model": "m"}
    same = cache_key(ident, LMRequest(messages=MSG, sample_index=i)) == cache_key(
        ident, LMRequest(messages=MSG, sample_index=j)
    )
    assert same == (i == j)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_key_distinct_across_endpoints(a, b):
    req = LMRequest(messages=MSG)
    same = cache_key({"backend": "openai", "model": "m", "endpoint": a}, req) == cache_key(
        {"backend": "openai", "model": "m", "endpoint": b}, req
    )
    assert same == (a == b)


def test_cache_policy_is_not_part_of_the_key():
    ident = {"backend": "fake", "model": "m"}
    assert cache_key(ident, LMRequest(messages=MSG, cache="read")) == cache_key(ident, LMRequest(messages=MSG))


def test_hits_persist_on_disk_and_count_separately(tmp_path):
    fake = FakeLM(["[[ ## answer ## ]]\n4"])
    program = Predict("question -> answer", lm=CachedLM(fake, cache=Cache(tmp_path)))
    first = program(question="2+2?")
    assert first.usage.calls == 1 and first.usage.cache_hits == 0
    # A new Cache object on the same directory (a new process, in effect) hits the disk store.
    program.lm = CachedLM(FakeLM([]), cache=Cache(tmp_path))
    second = program(question="2+2?")
    assert second.answer == "4"
    assert second.usage.calls == 0 and second.usage.cache_hits == 1 and second.usage.total_tokens == 0


def test_policies(tmp_path):
    fake = FakeLM(["a", "b", "c", "d"])
    lm = CachedLM(fake, cache=Cache(tmp_path))
    req = LMRequest(messages=MSG)
    assert lm.complete(req).text == "a"
    assert lm.complete(req).text == "a"  # hit
    assert lm.complete(req.model_copy(update={"cache": "off"})).text == "b"
    assert lm.complete(req.model_copy(update={"cache": "write"})).text == "c"  # refresh
    assert lm.complete(req).text == "c"
    assert len(fake.requests) == 3
    with context(cache="off"):
        program = Predict("q -> a", lm=CachedLM(FakeLM(["[[ ## a ## ]]\nx"] * 2), cache=Cache(tmp_path / "p")))
        program(q="1")
        program(q="1")
    assert len(program.lm.lm.requests) == 2  # type: ignore[union-attr]


def test_corrupt_entry_is_a_miss_and_is_overwritten(tmp_path):
    lm = CachedLM(FakeLM(["first", "second"]), cache=Cache(tmp_path))
    req = LMRequest(messages=MSG)
    lm.complete(req)
    key = cache_key(lm.identity, req)
    lm.cache._disk.set(key, "{not json")  # damage the stored value
    lm.cache.clear_memory()
    with pytest.warns(UserWarning, match="corrupt"):
        assert lm.complete(req).text == "second"
    lm.cache.clear_memory()
    assert lm.complete(req).text == "second"  # the fresh answer replaced the bad one


def test_pickled_values_are_never_loaded(tmp_path):
    import diskcache

    lm = CachedLM(FakeLM(["safe"]), cache=Cache(tmp_path))
    req = LMRequest(messages=MSG)
    key = cache_key(lm.identity, req)
    lm.cache.close()

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    raw = diskcache.Cache(str(tmp_path))  # plain diskcache pickles non-text values
    raw.set(key, Boom())
    raw.close()
    fresh = CachedLM(FakeLM(["safe"]), cache=Cache(tmp_path))
    with pytest.warns(UserWarning):
        assert fresh.complete(req).text == "safe"
    assert not (tmp_path / "pwned").exists()


def test_unusable_directory_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cache directory"):
        Cache(blocker / "sub")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "cache.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="cache directory") as refused:
        Cache(broken)
    assert isinstance(refused.value.__cause__, sqlite3.DatabaseError)  # sqlite's own verdict, translated
    assert (broken / "cache.db").read_bytes().startswith(b"this is not sqlite")  # nothing deleted


def test_memory_layer_is_bounded():
    cache = Cache(None, memory_size=3)
    lm = CachedLM(FakeLM([str(i) for i in range(10)]), cache=cache)
    for i in range(5):
        lm.complete(LMRequest(messages=(Message(role="user", content=str(i)),)))
    assert len(cache) == 3


def test_acomplete_reads_and_writes_the_same_cache_as_complete(tmp_path):
    import asyncio

    backend = FakeLM(["first", "second"])
    lm = CachedLM(backend, cache=Cache(tmp_path))
    req = LMRequest(messages=MSG)

    async def twice():
        return await lm.acomplete(req), await lm.acomplete(req)

    a, b = asyncio.run(twice())
    assert a.text == b.text == "first" and len(backend.requests) == 1
    assert a.usage.calls == 1 and b.usage.cache_hits == 1 and b.usage.calls == 0
    assert lm.complete(req).usage.cache_hits == 1  # the sync path sees what the async path wrote
    fresh = CachedLM(FakeLM(["unused"]), cache=Cache(tmp_path))
    assert asyncio.run(fresh.acomplete(req)).text == "first"  # and it is on disk
    off = asyncio.run(lm.acomplete(req.model_copy(update={"cache": "off"})))
    assert off.text == "second" and len(backend.requests) == 2
