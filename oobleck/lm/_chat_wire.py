"""The OpenAI chat-completions wire format, shared by every backend that speaks it.

What a request may carry in ``extra`` is not decided here: see :mod:`oobleck.lm._policy`.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any

from oobleck.errors import ConfigError, LMContextLengthError, LMResponseError
from oobleck.lm._policy import EXTRA_ALLOWED, refused_extra_keys
from oobleck.lm.types import Choice, LMRequest, LMResponse, TokenLogprob, ToolCall, Usage


def to_params(request: LMRequest, model: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for ``request``.

    ``defaults`` are the backend's decoding defaults; the request's own values win.
    """
    if request.score is not None:
        raise ConfigError(
            "this backend generates but cannot score a given completion (LMRequest.score); "
            "use a backend whose capabilities.scoring is True"
        )
    if request.soft_prompt is not None:
        raise ConfigError(
            f"this backend sends text over the chat API and cannot apply a soft prompt "
            f"({request.soft_prompt!r}); run the program on a TransformersLM "
            "(pip install 'oobleck[transformers]'), or remove the soft prompt to use the hard prompt alone"
        )
    params: dict[str, Any] = {"model": model, "messages": [m.model_dump() for m in request.messages]}
    params.update(defaults)
    for key in ("temperature", "max_tokens", "seed", "top_p", "top_logprobs"):
        value = getattr(request, key)
        if value is not None:
            params[key] = value
    if request.stop:
        params["stop"] = list(request.stop)
    if request.n != 1:
        params["n"] = request.n
    if request.logprobs:
        params["logprobs"] = True
    if request.response_format is not None:
        fmt = request.response_format
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(fmt.get("name", "output")), "schema": fmt["schema"], "strict": True},
        }
    if request.tools is not None:
        params["tools"] = [dict(t) for t in request.tools]
        if request.tool_choice is not None:
            params["tool_choice"] = request.tool_choice
    unknown = refused_extra_keys(request.extra)
    if unknown:
        raise ConfigError(
            f"LMRequest.extra may set only the sampling knobs {sorted(EXTRA_ALLOWED)}; got {unknown}. "
            "The model, endpoint, headers, timeouts and keys are the LM's own settings: pass them to the "
            "LM's constructor (a program or an artifact cannot change them)"
        )
    params.update(request.extra)
    return params


def http_preview(base_url: str, params: dict[str, Any]) -> dict[str, Any]:
    """What a chat-completions call with ``params`` sends to ``base_url``, secrets masked.

    ``params`` are the SDK's keyword arguments: ``extra_body`` is merged into the body as the
    SDK does, and ``extra_headers`` are listed with their values masked (they may be secret).
    """
    body = {k: v for k, v in params.items() if k not in ("extra_body", "extra_headers", "extra_query", "timeout")}
    body.update(params.get("extra_body") or {})
    headers = {"Authorization": "Bearer ***", "Content-Type": "application/json"}
    headers.update({str(k): "***" for k in params.get("extra_headers") or {}})
    url = base_url.rstrip("/") + "/chat/completions"
    if params.get("extra_query"):
        url += "?" + urllib.parse.urlencode(params["extra_query"])
    return {"method": "POST", "url": url, "headers": headers, "json": body}


def _schema_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return cleaned[:64] or "output"


def from_dict(data: Any) -> LMResponse:
    """An LMResponse from a chat-completions response body (as a dict).

    Every part is checked before use: whatever the server sends, the result is an
    LMResponse or an LMResponseError that says what was expected and what came.

    Raises:
        LMContextLengthError: the server says the prompt does not fit the model's context.
        LMResponseError: the body is not a chat completion (garbage, truncated, an error).
    """
    if not isinstance(data, dict):
        raise LMResponseError(f"expected a chat completion object, got {type(data).__name__}", retryable=True)
    if "error" in data and "choices" not in data:
        raise _server_error(data["error"])
    raw_choices = data.get("choices")
    if not isinstance(raw_choices, list) or not raw_choices:
        raise LMResponseError(
            f"expected a non-empty 'choices' list in the LM server's answer, got {_kind(raw_choices)} "
            f"(keys {sorted(map(str, data))[:10]})",
            retryable=True,
        )
    choices = tuple(_choice(i, c) for i, c in enumerate(raw_choices))
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    model = data.get("model")
    return LMResponse(
        choices=choices,
        usage=Usage(
            calls=1, prompt_tokens=_count(usage, "prompt_tokens"), completion_tokens=_count(usage, "completion_tokens")
        ),
        model=model if isinstance(model, str) else "",
    )


_CONTEXT_HINTS = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "too many tokens",
    "exceeds the available context",
    "exceed_context",
)


def is_context_length_message(message: str) -> bool:
    """True when an error message says the prompt does not fit the model's context."""
    lowered = message.lower()
    return any(hint in lowered for hint in _CONTEXT_HINTS)


def _server_error(err: Any) -> LMResponseError:
    message = err.get("message", err) if isinstance(err, dict) else err
    code = err.get("code") if isinstance(err, dict) else None
    status = code if isinstance(code, int) and not isinstance(code, bool) else None
    text = str(message)[:500]
    if is_context_length_message(f"{text} {code}"):
        return LMContextLengthError(
            f"the prompt does not fit the model's context ({text}); shorten the inputs, use fewer demos, "
            "or give the model a larger context",
            status=status,
        )
    return LMResponseError(f"the LM server answered with an error: {text}", status=status)


def _choice(index: int, raw: Any) -> Choice:
    if not isinstance(raw, dict):
        raise LMResponseError(f"expected choice {index} to be an object, got {_kind(raw)}", retryable=True)
    message = raw.get("message")
    if message is None:
        message = {}
    if not isinstance(message, dict):
        raise LMResponseError(
            f"expected choice {index}'s message to be an object, got {_kind(message)}", retryable=True
        )
    text = message.get("content")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise LMResponseError(f"expected choice {index}'s content to be text, got {_kind(text)}", retryable=True)
    finish = raw.get("finish_reason")
    return Choice(
        text=text,
        finish_reason=finish if isinstance(finish, str) else None,
        logprobs=_logprobs(raw.get("logprobs")),
        tool_calls=_tool_calls(index, message.get("tool_calls")),
    )


def _tool_calls(index: int, raw: Any) -> tuple[ToolCall, ...] | None:
    """The message's function calls; their arguments stay text (the caller judges them)."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise LMResponseError(f"expected choice {index}'s tool_calls to be a list, got {_kind(raw)}", retryable=True)
    calls = []
    for call in raw:
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise LMResponseError(
                f"expected each tool call of choice {index} to be an object with a function name, got {_kind(call)}",
                retryable=True,
            )
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):  # some servers send the JSON value itself: keep it JSON
            arguments = json.dumps(arguments, ensure_ascii=False)
        call_id = call.get("id")
        calls.append(ToolCall(name=name, arguments=arguments, id=call_id if isinstance(call_id, str) else ""))
    return tuple(calls)


def _logprobs(lp: Any) -> tuple[TokenLogprob, ...] | None:
    if not isinstance(lp, dict) or not isinstance(lp.get("content"), list):
        return None
    out = []
    for t in lp["content"]:
        if not isinstance(t, dict):
            raise LMResponseError(f"expected a token log-probability object, got {_kind(t)}", retryable=True)
        top = t.get("top_logprobs") or ()
        if not isinstance(top, list | tuple):
            raise LMResponseError(f"expected a top_logprobs list, got {_kind(top)}", retryable=True)
        alternatives = []
        for a in top:
            if not isinstance(a, dict):
                raise LMResponseError(f"expected a top_logprobs entry object, got {_kind(a)}", retryable=True)
            alternatives.append((_token(a), _logprob(a)))
        out.append(TokenLogprob(token=_token(t), logprob=_logprob(t), top=tuple(alternatives)))
    return tuple(out)


def _token(item: dict[str, Any]) -> str:
    token = item.get("token", "")
    if not isinstance(token, str):
        raise LMResponseError(f"expected a token string, got {_kind(token)}", retryable=True)
    return token


def _logprob(item: dict[str, Any]) -> float:
    value = item.get("logprob", 0.0)
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer too large for a float
        number = math.nan
    # A log-probability is at most 0: NaN and +inf (which would outrank every other answer) are garbage.
    if math.isnan(number) or number == math.inf:
        raise LMResponseError(f"expected a numeric logprob (<= 0, or -inf), got {_kind(value)}", retryable=True)
    return number


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0  # usage is informative: a missing or odd count is zero, never a failed call
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    return type(value).__name__
