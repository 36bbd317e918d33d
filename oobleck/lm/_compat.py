"""The OpenAI chat-completions wire format, shared by every backend that speaks it."""

from __future__ import annotations

from typing import Any

from oobleck.errors import ConfigError, LMResponseError
from oobleck.lm.types import Choice, LMRequest, LMResponse, TokenLogprob, Usage


def to_params(request: LMRequest, model: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``chat.completions.create`` for ``request``.

    ``defaults`` are the backend's decoding defaults; the request's own values win.
    """
    if request.score is not None:
        raise ConfigError(
            "this backend generates but cannot score a given completion (LMRequest.score); "
            "use a backend whose capabilities.scoring is True"
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
    params.update(request.extra)
    return params


def _schema_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return cleaned[:64] or "output"


def from_dict(data: Any) -> LMResponse:
    """An LMResponse from a chat-completions response body (as a dict).

    Raises:
        LMResponseError: the body is not a chat completion (garbage, truncated, an error).
    """
    if not isinstance(data, dict):
        raise LMResponseError(f"expected a chat completion object, got {type(data).__name__}", retryable=True)
    if "error" in data and "choices" not in data:
        err = data["error"]
        message = err.get("message", err) if isinstance(err, dict) else err
        code = err.get("code") if isinstance(err, dict) else None
        status = code if isinstance(code, int) else None
        raise LMResponseError(f"the LM server answered with an error: {message}", status=status)
    raw_choices = data.get("choices")
    if not isinstance(raw_choices, list):
        raise LMResponseError(
            f"the LM server's answer has no 'choices' list; got keys {sorted(data)[:10]}", retryable=True
        )
    choices = []
    for c in raw_choices:
        message = c.get("message") or {}
        text = message.get("content") or ""
        logprobs = None
        lp = c.get("logprobs")
        if isinstance(lp, dict) and isinstance(lp.get("content"), list):
            logprobs = tuple(
                TokenLogprob(
                    token=t.get("token", ""),
                    logprob=float(t.get("logprob", 0.0)),
                    top=tuple((a.get("token", ""), float(a.get("logprob", 0.0))) for a in t.get("top_logprobs") or ()),
                )
                for t in lp["content"]
            )
        choices.append(Choice(text=text, finish_reason=c.get("finish_reason"), logprobs=logprobs))
    usage = data.get("usage") or {}
    return LMResponse(
        choices=tuple(choices),
        usage=Usage(
            calls=1,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        ),
        model=str(data.get("model") or ""),
    )
