"""Scoring given completions on a llama.cpp server: teacher forcing through a token grammar.

llama.cpp returns no log-probabilities for prompt tokens (its ``/v1/completions`` refuses
``echo``), only for the tokens it generates. So each completion is *generated*, forced token
by token: a grammar that admits exactly its token ids (llguidance's ``<[id]>``), greedy
decoding, ``logprobs`` on and ``post_sampling_probs`` off. With the latter off, llama.cpp
reports each token's probability from the raw logits over the whole vocabulary, before the
grammar or any sampler touches them: the forced token's log-probability under the model,
exactly what scoring asks for.

The steps, for one request:

1. the chat template is applied by the server itself (``/apply-template``, the code path chat
   generation uses, generation prompt included), so scored and generated text follow the
   same prompt;
2. each completion is tokenized *after* that prompt (``prompt + completion`` tokenized
   together, the prompt's tokens cut off). If the two merge across the boundary (the joint
   tokens do not start with the prompt's own), the prompt keeps its tokens and the completion
   is tokenized alone: generation after this prompt could only ever produce that;
3. the completions are visited in the order of their token ids, so one that shares a prefix
   with the previous reuses the prefix's log-probabilities and the server's prompt cache,
   sending the shared tokens as prompt and forcing only the rest. The prompt is evaluated
   once per request (llama.cpp's prefix cache), and each completion then costs one decoding
   step per token not shared with an earlier completion.

Limits: the values are llama.cpp's float32 softmax, so they agree with another backend (or
with a cold prompt cache: batch sizes change the float rounding) to about 1e-4, not bit for
bit; a token whose probability underflows float32 gets ``-inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from oobleck.errors import LMContextLengthError, LMResponseError
from oobleck.lm import _chat_wire
from oobleck.lm.types import Choice, LMRequest, Message, TokenLogprob

__all__ = ["LlamaServer", "forcing_grammar", "options", "score"]


class LlamaServer(Protocol):
    """The three llama.cpp server routes scoring needs (in-process or over HTTP)."""

    def apply_template(self, messages: list[dict[str, str]]) -> str:
        """The prompt text chat generation would build for ``messages`` (``/apply-template``)."""
        ...

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        """Token ids of ``text``, special-token markup parsed (``/tokenize``)."""
        ...

    def completion(self, body: dict[str, Any]) -> Any:
        """The answer of ``/v1/completions`` to ``body`` (a dict, or an error body)."""
        ...


def options(request: LMRequest) -> tuple[str, ...]:
    """The completions ``request.score`` asks for, as a tuple."""
    score = request.score
    return (score,) if isinstance(score, str) else tuple(score or ())


def forcing_grammar(ids: Sequence[int]) -> str:
    """An llguidance grammar that admits exactly the token ids ``ids``, in order."""
    return "%llguidance {}\nstart: " + " ".join(f"<[{int(i)}]>" for i in ids)


def score(server: LlamaServer, messages: Sequence[Message], texts: Sequence[str]) -> tuple[tuple[Choice, ...], int]:
    """Score ``texts`` after ``messages``: one choice per text, and the tokens evaluated.

    Returns:
        The choices (in the order of ``texts``, ``finish_reason="score"``, one
        :class:`TokenLogprob` per token of the completion) and the prompt tokens the server
        was given (the prompt, plus every forced token), for usage.
    """
    prompt_text = server.apply_template([m.model_dump() for m in messages])
    prompt_ids = server.tokenize(prompt_text, add_special=True)
    ids = {text: _completion_ids(server, prompt_text, prompt_ids, text) for text in dict.fromkeys(texts)}
    known: dict[tuple[int, ...], TokenLogprob] = {}
    sent = len(prompt_ids)
    for seq in sorted({tuple(v) for v in ids.values() if v}):
        start = len(seq)
        while start and seq[:start] not in known:
            start -= 1
        if start == len(seq):
            continue
        rest = seq[start:]
        body = {
            "prompt": list(prompt_ids) + list(seq[:start]),
            "max_tokens": len(rest),
            "temperature": 0.0,
            "logprobs": 1,
            "post_sampling_probs": False,
            "grammar": forcing_grammar(rest),
            "cache_prompt": True,
            "seed": 0,
        }
        got = _forced(server.completion(body), rest)
        sent += len(rest)
        for j, token in enumerate(got):
            known[seq[: start + j + 1]] = token
    choices = tuple(
        Choice(
            text=text,
            finish_reason="score",
            logprobs=tuple(known[tuple(ids[text][: j + 1])] for j in range(len(ids[text]))),
        )
        for text in texts
    )
    return choices, sent


def _completion_ids(server: LlamaServer, prompt_text: str, prompt_ids: list[int], text: str) -> list[int]:
    if not text:
        return []
    joint = server.tokenize(prompt_text + text, add_special=True)
    if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
        return joint[len(prompt_ids) :]
    return server.tokenize(text, add_special=False)


def _forced(raw: Any, expected: Sequence[int]) -> list[TokenLogprob]:
    """The forced tokens' log-probabilities from a ``/v1/completions`` answer, checked."""
    if not isinstance(raw, dict):
        raise LMResponseError(f"expected a completion object from llama.cpp, got {type(raw).__name__}", retryable=True)
    error = raw.get("error")
    if error is not None and "choices" not in raw:
        message = str(error.get("message", error) if isinstance(error, dict) else error)[:500]
        if _chat_wire.is_context_length_message(message):
            raise LMContextLengthError(
                f"the prompt and the completion to score do not fit the model's context ({message}); "
                "shorten the inputs or give the model a larger context"
            )
        raise LMResponseError(f"llama.cpp could not score this completion: {message}")
    try:
        content = raw["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError):
        raise LMResponseError(
            "expected token log-probabilities (choices[0].logprobs.content) in llama.cpp's answer to a "
            f"scoring request, got keys {sorted(map(str, raw))[:10]}; is this a llama.cpp server?",
            retryable=True,
        ) from None
    if not isinstance(content, list):
        raise LMResponseError(
            f"expected a list of token log-probabilities, got {type(content).__name__}", retryable=True
        )
    out = []
    for item in content:
        token, logprob, tid = (
            (item.get("token"), item.get("logprob"), item.get("id")) if isinstance(item, dict) else (None,) * 3
        )
        if (
            not isinstance(token, str)
            or isinstance(logprob, bool)
            or not isinstance(logprob, int | float)
            or math.isnan(logprob)
        ):
            raise LMResponseError(f"expected a token and a numeric logprob, got {item!r:.200}", retryable=True)
        out.append((tid, TokenLogprob(token=token, logprob=float(logprob))))
    if [tid for tid, _ in out] != list(expected):
        raise LMResponseError(
            f"llama.cpp generated token ids {[tid for tid, _ in out]} where the forcing grammar allows only "
            f"{list(expected)}: the server ignored the grammar (it needs llguidance) or the token ids; "
            "scores from it would be wrong"
        )
    return [t for _, t in out]
