"""The request allow-list: what a program or an artifact may ask of an LM beyond its prompt.

``LMRequest.extra`` (and so a program's or an artifact's ``config.extra``) may carry only the
keys in :data:`EXTRA_ALLOWED`. Both gates enforce it: the chat wire format refuses any other key
before a request is sent, and the artifact loader refuses a file that sets one. This is a
security policy, not a compatibility table: an artifact is data and never chooses the user's
model, endpoint, headers, timeouts or keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from oobleck._types import is_finite
from oobleck.errors import ConfigError

__all__ = ["DECODING_KEYS", "EXTRA_ALLOWED", "check_decoding", "decoding_problem", "refused_extra_keys"]

#: The decoding knobs a compile records in provenance and ``export_request`` pins (a program's
#: config may set them too). Never a header, an endpoint, a timeout or a key.
DECODING_KEYS = ("temperature", "max_tokens", "stop", "n", "seed", "top_p", "logprobs", "top_logprobs")


EXTRA_ALLOWED = frozenset(
    {
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "top_k",
        "min_p",
        "typical_p",
        "repeat_penalty",
        "repetition_penalty",
        "repeat_last_n",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "reasoning_effort",
    }
)
"""What ``LMRequest.extra`` (and so a program's or an artifact's ``config.extra``) may set.

Only sampling knobs that shape the answer: never the model, messages, endpoint, headers,
timeouts, keys or anything the SDK would treat as a transport option.
"""


def refused_extra_keys(keys: Iterable[str]) -> list[str]:
    """The keys of ``keys`` that :data:`EXTRA_ALLOWED` does not name, sorted (empty: all allowed)."""
    return sorted(k for k in keys if k not in EXTRA_ALLOWED)


def decoding_problem(settings: Mapping[str, Any]) -> str | None:
    """What is wrong with the decoding knobs in ``settings`` (None: nothing).

    Only the keys of :data:`DECODING_KEYS` are checked; None means "the backend's default".
    The bounds are those every backend shares: a negative ``max_tokens`` is "no limit" to
    llama.cpp, so it must never reach one by accident.
    """
    for key in DECODING_KEYS:
        value = settings.get(key)
        if value is None:
            continue
        if key in ("max_tokens", "n", "seed", "top_logprobs"):
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{key} must be an integer, got {value!r:.60}"
            low = {"max_tokens": 1, "n": 1, "top_logprobs": 0}.get(key)
            if low is not None and value < low:
                return f"{key} must be at least {low}, got {value}"
        elif key in ("temperature", "top_p"):
            if isinstance(value, bool) or not isinstance(value, int | float) or not is_finite(value):
                return f"{key} must be a finite number, got {value!r:.60}"
            if key == "temperature" and value < 0:
                return f"temperature must be at least 0, got {value}"
            if key == "top_p" and not 0 < value <= 1:
                return f"top_p must be in (0, 1], got {value}"
        elif key == "stop":
            stops = (value,) if isinstance(value, str) else value
            if not isinstance(stops, list | tuple) or not all(isinstance(x, str) and x for x in stops):
                return f"stop must be a non-empty string or a list of them, got {value!r:.60}"
        elif key == "logprobs" and not isinstance(value, bool):
            return f"logprobs must be true or false, got {value!r:.60}"
    return None


def check_decoding(settings: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError (naming ``where``) when a decoding knob in ``settings`` is out of bounds."""
    problem = decoding_problem(settings)
    if problem:
        raise ConfigError(f"{where}: {problem}")
