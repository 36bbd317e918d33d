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
    from oobleck.artifact import Artifact, export_messages, export_request, load, register_module_type
    from oobleck.lm.local import LocalLM
    from oobleck.lm.openai import OpenAILM

__all__ = [
    "Artifact",
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
    "export_messages",
    "export_request",
    "load",
    "register_module_type",
    "trace",
]


_LAZY = {
    "OpenAILM": "oobleck.lm",
    "LocalLM": "oobleck.lm",
    "Artifact": "oobleck.artifact",
    "export_messages": "oobleck.artifact",
    "export_request": "oobleck.artifact",
    "load": "oobleck.artifact",
    "register_module_type": "oobleck.artifact",
}


def __getattr__(name: str) -> Any:
    # Backends import their SDKs, and artifacts/evaluation are not needed to define programs:
    # resolve them on first use so `import oobleck` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oobleck' has no attribute {name!r}")
