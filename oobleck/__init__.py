"""oobleck: compile declarative LM programs into frozen, readable prompt programs.

Importing oobleck is light: no LM SDK (openai, xllamacpp, transformers, torch) is imported
until a backend that needs it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oobleck._version import __version__
from oobleck.adapters import ChatAdapter, JSONAdapter
from oobleck.context import context
from oobleck.errors import (
    ArtifactError,
    BudgetExceededError,
    ConfigError,
    InputError,
    LMConnectionError,
    LMError,
    LMRateLimitError,
    LMResponseError,
    LMTimeoutError,
    OobleckError,
    ParseError,
    SignatureError,
)
from oobleck.example import Example, Prediction
from oobleck.lm import BaseLM, CachedLM, FakeLM, LMRequest, LMResponse, Message, Usage
from oobleck.lm.cached import Cache
from oobleck.module import Module, Predict
from oobleck.modules import ChainOfThought
from oobleck.signature import InputField, OutputField, Signature
from oobleck.trace import trace

if TYPE_CHECKING:
    from oobleck.lm.local import LocalLM
    from oobleck.lm.openai import OpenAILM

__all__ = [
    "ArtifactError",
    "BaseLM",
    "BudgetExceededError",
    "Cache",
    "CachedLM",
    "ChainOfThought",
    "ChatAdapter",
    "ConfigError",
    "Example",
    "FakeLM",
    "InputError",
    "InputField",
    "JSONAdapter",
    "LMConnectionError",
    "LMError",
    "LMRateLimitError",
    "LMRequest",
    "LMResponse",
    "LMResponseError",
    "LMTimeoutError",
    "LocalLM",
    "Message",
    "Module",
    "OobleckError",
    "OpenAILM",
    "OutputField",
    "ParseError",
    "Predict",
    "Prediction",
    "Signature",
    "SignatureError",
    "Usage",
    "__version__",
    "context",
    "trace",
]


def __getattr__(name: str) -> Any:
    # Backends import their SDKs; resolve them only on first use.
    if name in ("OpenAILM", "LocalLM"):
        import oobleck.lm

        return getattr(oobleck.lm, name)
    raise AttributeError(f"module 'oobleck' has no attribute {name!r}")
