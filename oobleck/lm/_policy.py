"""The request allow-list: what a program or an artifact may ask of an LM beyond its prompt.

``LMRequest.extra`` (and so a program's or an artifact's ``config.extra``) may carry only the
keys in :data:`EXTRA_ALLOWED`. Both gates enforce it: the chat wire format refuses any other key
before a request is sent, and the artifact loader refuses a file that sets one. This is a
security policy, not a compatibility table: an artifact is data and never chooses the user's
model, endpoint, headers, timeouts or keys.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DECODING_KEYS", "EXTRA_ALLOWED", "refused_extra_keys"]

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
