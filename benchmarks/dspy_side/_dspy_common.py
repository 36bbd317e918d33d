"""Helpers shared by the dspy_side scripts (run with the DSPy venv's python; imports dspy)."""

import contextlib
import json
import re
import string
import time

import dspy
from dspy.clients import base_lm

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize(text):
    """The same normalisation as oobleck.metrics.normalize_text (lowercase, no punctuation/articles)."""
    s = "".join(ch for ch in str(text).lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@contextlib.contextmanager
def phase(out):
    """Time a phase and count the LM calls and tokens it made (from dspy's global history)."""
    base_lm.GLOBAL_HISTORY.clear()
    t0 = time.perf_counter()
    yield
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    hist = list(base_lm.GLOBAL_HISTORY)
    if len(hist) >= base_lm.MAX_HISTORY_SIZE:
        out["count_truncated"] = True
    prompt = completion = 0
    for entry in hist:
        usage = entry.get("usage") or {}
        prompt += int(usage.get("prompt_tokens") or 0)
        completion += int(usage.get("completion_tokens") or 0)
    out["calls"] = len(hist)
    out["prompt_tokens"] = prompt
    out["completion_tokens"] = completion
    out["tokens"] = prompt + completion


def local_lm(model, base_url, *, structured, **kwargs):
    """A dspy.LM for the local OpenAI-compatible server at ``base_url``.

    ``structured``: declare the server to DSPy as a provider that supports response schemas
    (``dspy.lm15.register_provider``, the way DSPy 3.4 documents for a server its model
    catalog does not know). Without it, DSPy finds no catalog entry for a local model and its
    JSONAdapter sends no ``response_format``: the JSON is then unconstrained, which a 135M
    model often breaks. With it, JSONAdapter sends the output schema and llama.cpp turns it
    into a grammar, as oobleck's JSONAdapter does.
    """
    if not structured:
        return dspy.LM(f"openai/{model}", api_base=base_url, api_key="none", **kwargs)
    from dspy._vendor.lm15.features import AccessPolicy
    from dspy.lm15 import ModelSupport, OpenAIChatCompat, ProviderDefinition, register_provider

    access = AccessPolicy(provider="localserver", env_keys=("LOCALSERVER_API_KEY",), base_url=base_url)
    register_provider(
        ProviderDefinition.chat(access, compat=OpenAIChatCompat.preset("vllm")),
        supports=ModelSupport(response_schema=True),
        replace=True,
    )
    lm = dspy.LM(f"localserver/{model}", api_base=base_url, api_key="none", **kwargs)
    assert lm.supports_response_schema, "DSPy did not take the structured-output declaration"
    return lm
