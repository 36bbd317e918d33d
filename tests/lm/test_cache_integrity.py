"""The cache never lies: the key covers everything that changes an answer, bad entries are misses."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scripted_server import ScriptedServer, completion, reply

from oobleck import Cache, CachedLM, FakeLM, LMRequest, LMResponse, Message, OpenAILM
from oobleck.lm.cached import cache_key, lm_settings
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.lm.types import Choice, Usage

MSG = (Message(role="user", content="hi"),)
REQ = LMRequest(messages=MSG)
IDENT = {"backend": "fake", "model": "m"}

# One value per request field that differs from the default: every field but the cache policy
# must change the key (a field added later, such as a soft-prompt reference, is covered by the
# same rule: key_data() dumps every field).
CHANGED = {
    "messages": (Message(role="user", content="hello"),),
    "temperature": 1.0,
    "max_tokens": 7,
    "stop": ("END",),
    "n": 2,
    "seed": 3,
    "top_p": 0.5,
    "logprobs": True,
    "top_logprobs": 2,
    "response_format": {"name": "o", "schema": {"type": "object"}},
    "score": "yes",
    "sample_index": 1,
    "adapter": "json/1",
    "extra": {"top_k": 3},
    "tools": ({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},),
    "tool_choice": "required",
    "soft_prompt": SoftPrompt.from_bytes(
        b"tensors", method="prompt_tuning", kind="embeddings", num_virtual_tokens=1, base_model={}
    ),
}


def test_every_request_field_but_the_policy_is_in_the_key():
    fields = set(LMRequest.model_fields) - {"cache"}
    missing = fields - set(CHANGED)
    assert not missing, f"add a changed value for {missing} to CHANGED"
    base = cache_key(IDENT, REQ)
    for name, value in CHANGED.items():
        assert cache_key(IDENT, REQ.model_copy(update={name: value})) != base, name
    assert cache_key(IDENT, REQ.model_copy(update={"cache": "write"})) == base


@given(st.dictionaries(st.sampled_from(["temperature", "max_tokens", "top_p", "seed"]), st.integers(0, 3), min_size=1))
def test_constructor_settings_are_in_the_key(settings_):
    assert cache_key(IDENT, REQ, settings_) != cache_key(IDENT, REQ)
    assert cache_key(IDENT, REQ, settings_) == cache_key(IDENT, REQ, dict(reversed(list(settings_.items()))))


def test_an_answer_at_temperature_0_is_not_served_for_1(tmp_path):
    server = ScriptedServer([reply(200, completion("cold")), reply(200, completion("hot"))], repeat_last=False)
    try:
        cache = Cache(tmp_path)
        cold = CachedLM(OpenAILM("m", base_url=server.url, temperature=0), cache=cache)
        hot = CachedLM(OpenAILM("m", base_url=server.url, temperature=1), cache=cache)
        assert cold.complete(REQ).text == "cold"
        assert hot.complete(REQ).text == "hot"
        assert cold.complete(REQ).text == "cold" and cold.complete(REQ).cached
        assert len(server.seen) == 2
        assert lm_settings(hot) == {"temperature": 1}
    finally:
        server.close()


def test_local_lm_settings_are_in_the_key(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    from oobleck import LocalLM

    a, b = LocalLM(gguf, temperature=0, max_tokens=8), LocalLM(gguf, temperature=0, max_tokens=9)
    assert a.identity == b.identity
    assert cache_key(a.identity, REQ, lm_settings(a)) != cache_key(b.identity, REQ, lm_settings(b))


def _answer(text: str) -> LMResponse:
    return LMResponse(choices=(Choice(text=text, finish_reason="stop"),), usage=Usage(calls=1))


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        '{"key": "',
        "[]",
        '{"choices": [{"text": "old format"}]}',
        "x" * 100_000,
        "[" * 50_000 + "]" * 50_000,
    ],
)
def test_damaged_entries_are_recomputed_never_returned(tmp_path, damage):
    lm = CachedLM(FakeLM(["first", "second"]), cache=Cache(tmp_path))
    lm.complete(REQ)
    key = cache_key(lm.identity, REQ)
    lm.cache._disk.set(key, damage)
    lm.cache.clear_memory()
    with pytest.warns(UserWarning, match="corrupt"):
        assert lm.complete(REQ).text == "second"
    lm.cache.clear_memory()
    assert lm.complete(REQ).text == "second" and len(lm.lm.requests) == 2  # type: ignore[attr-defined]


def test_an_entry_filed_under_another_key_is_a_miss(tmp_path):
    lm = CachedLM(FakeLM(["a", "b", "c"]), cache=Cache(tmp_path))
    other = REQ.model_copy(update={"messages": (Message(role="user", content="other"),)})
    lm.complete(REQ)
    lm.complete(other)
    disk = lm.cache._disk
    disk.set(cache_key(lm.identity, REQ), disk.get(cache_key(lm.identity, other)))  # swap in another answer
    lm.cache.clear_memory()
    with pytest.warns(UserWarning, match="corrupt"):
        assert lm.complete(REQ).text == "c"


def test_a_large_entry_cut_short_on_disk_is_a_miss(tmp_path):
    big = "y" * 200_000  # diskcache keeps values this large in their own file
    lm = CachedLM(FakeLM([big, "fresh"]), cache=Cache(tmp_path))
    lm.complete(REQ)
    files = [p for p in tmp_path.rglob("*.val")]
    assert files, "expected the value in its own file"
    for f in files:
        f.write_bytes(f.read_bytes()[: len(big) // 2])
    lm.cache.clear_memory()
    with pytest.warns(UserWarning, match="corrupt"):
        assert lm.complete(REQ).text == "fresh"


def test_threads_writing_the_same_keys(tmp_path):
    cache = Cache(tmp_path)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(50):
                cache.set(f"k{i}", _answer(f"v{i}"))
                got = cache.get(f"k{(i * 7 + t) % 50}")
                assert got is None or got.text == f"v{(i * 7 + t) % 50}"
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cache.clear_memory()
    assert all(cache.get(f"k{i}").text == f"v{i}" for i in range(50))  # type: ignore[union-attr]


def _writer(directory: str, worker: int) -> None:
    cache = Cache(directory)
    for i in range(60):
        key = f"shared{i % 20}" if i % 2 else f"own{worker}-{i}"
        text = key  # the same key always gets the same answer, whoever writes it
        cache.set(key, _answer(text))
        got = cache.get(f"shared{(i + worker) % 20}")
        if got is not None and got.text != f"shared{(i + worker) % 20}":
            raise SystemExit(f"wrong answer for shared{(i + worker) % 20}: {got.text}")
    cache.close()


def test_processes_writing_concurrently(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    cache = Cache(tmp_path)
    keys = [f"shared{i}" for i in range(1, 20, 2)] + [f"own{w}-{i}" for w in range(4) for i in range(0, 60, 2)]
    assert all(cache.get(k).text == k for k in keys)  # type: ignore[union-attr]
    assert len(cache) == len(keys)
