"""Helpers shared by the dspy_side scripts (run with the DSPy venv's python; imports dspy)."""
import contextlib
import json
import re
import string
import time

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
