"""Language model backends. Each SDK is imported only inside its own module, lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oobleck.lm.base import LM, BaseLM, Capabilities
from oobleck.lm.cached import CachedLM
from oobleck.lm.fake import FakeLM
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.lm.types import Choice, LMRequest, LMResponse, Message, TokenLogprob, ToolCall, Usage

if TYPE_CHECKING:
    from oobleck.lm.local import LocalLM
    from oobleck.lm.openai import OpenAILM
    from oobleck.lm.transformers import TransformersLM

__all__ = [
    "LM",
    "BaseLM",
    "CachedLM",
    "Capabilities",
    "Choice",
    "FakeLM",
    "LMRequest",
    "LMResponse",
    "LocalLM",
    "Message",
    "OpenAILM",
    "SoftPrompt",
    "TokenLogprob",
    "ToolCall",
    "TransformersLM",
    "Usage",
]


# The backends import heavy SDKs: each is loaded from its module on first use. The
# TYPE_CHECKING imports above mirror this table for type checkers.
_LAZY: dict[str, str] = {
    "LocalLM": "oobleck.lm.local",
    "OpenAILM": "oobleck.lm.openai",
    "TransformersLM": "oobleck.lm.transformers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oobleck.lm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
