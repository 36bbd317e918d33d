"""Language model backends. Each SDK is imported only inside its own module, lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oobleck.lm.base import LM, BaseLM, Capabilities
from oobleck.lm.cached import CachedLM
from oobleck.lm.fake import FakeLM
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.lm.types import Choice, LMRequest, LMResponse, Message, TokenLogprob, Usage

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
    "TransformersLM",
    "Usage",
]


def __getattr__(name: str) -> Any:
    # The backends import heavy SDKs; load them only when asked for.
    if name == "OpenAILM":
        from oobleck.lm.openai import OpenAILM

        return OpenAILM
    if name == "LocalLM":
        from oobleck.lm.local import LocalLM

        return LocalLM
    if name == "TransformersLM":
        from oobleck.lm.transformers import TransformersLM

        return TransformersLM
    raise AttributeError(f"module 'oobleck.lm' has no attribute {name!r}")
