"""oobleck: compile declarative LM programs into frozen, readable prompt programs.

Importing oobleck is light: no LM SDK (openai, xllamacpp, transformers, torch) is imported
until a backend that needs it is used.

The public names are ``__all__``. Those imported here are ready at once; the others are listed
once in ``_LAZY`` (module -> names, resolved by ``__getattr__`` on first use) and mirrored, for
type checkers only, by the ``TYPE_CHECKING`` imports below. ``tests/test_import.py`` checks that
the namespace, ``__all__``, ``_LAZY`` and those imports agree.
"""

from __future__ import annotations

import typing

from oobleck._version import __version__
from oobleck.adapters import ChatAdapter, JSONAdapter, TemplateAdapter
from oobleck.calibration import calibrate
from oobleck.callbacks import Callback, Event
from oobleck.context import context
from oobleck.errors import (
    ArtifactError,
    BudgetExceededError,
    CompileError,
    ConfigError,
    InputError,
    LMConnectionError,
    LMContextLengthError,
    LMError,
    LMRateLimitError,
    LMResponseError,
    LMTimeoutError,
    MetricError,
    OobleckError,
    ParseError,
    RetrievalError,
    SignatureError,
    ToolError,
    TooManyErrorsError,
    WriteError,
)
from oobleck.example import Example, Prediction
from oobleck.history import history
from oobleck.lm import BaseLM, CachedLM, FakeLM, LMRequest, LMResponse, Message, Usage
from oobleck.lm.base import Capabilities
from oobleck.lm.cached import Cache
from oobleck.module import Module
from oobleck.modules import ChainOfThought
from oobleck.predict import Predict
from oobleck.signature import InputField, OutputField, Signature
from oobleck.streaming import StreamChunk
from oobleck.trace import trace

if typing.TYPE_CHECKING:
    from oobleck.artifact import Artifact, export_messages, export_request, load
    from oobleck.evaluation import EvaluationResult, evaluate
    from oobleck.lm.local import LocalLM
    from oobleck.lm.openai import OpenAILM
    from oobleck.lm.providers import LM
    from oobleck.lm.transformers import TransformersLM
    from oobleck.modules.best_of_n import BestOfN
    from oobleck.modules.knn import KNNFewShot
    from oobleck.modules.multihop import MultiHop
    from oobleck.modules.rag import RAG
    from oobleck.modules.react import ReAct
    from oobleck.modules.refine import Refine
    from oobleck.optimize import (
        KNN,
        Auto,
        BootstrapFewShot,
        Ensemble,
        InstructionSearch,
        JointSearch,
        LabeledFewShot,
        RandomSearch,
        ReflectiveEvolution,
        majority,
    )
    from oobleck.retrieve import Embedder, HashingEmbedder, Passage, Retrieve, TransformersEmbedder
    from oobleck.serve import asgi_app
    from oobleck.tool import Tool
    from oobleck.tool_mcp import MCPServer, mcp_tools

__all__ = [
    "Artifact",
    "ArtifactError",
    "Auto",
    "BaseLM",
    "BestOfN",
    "BootstrapFewShot",
    "BudgetExceededError",
    "Cache",
    "CachedLM",
    "Callback",
    "Capabilities",
    "ChainOfThought",
    "ChatAdapter",
    "CompileError",
    "ConfigError",
    "Embedder",
    "Ensemble",
    "EvaluationResult",
    "Event",
    "Example",
    "FakeLM",
    "HashingEmbedder",
    "InputError",
    "InputField",
    "InstructionSearch",
    "JSONAdapter",
    "JointSearch",
    "KNN",
    "KNNFewShot",
    "LM",
    "LMConnectionError",
    "LMContextLengthError",
    "LMError",
    "LMRateLimitError",
    "LMRequest",
    "LMResponse",
    "LMResponseError",
    "LMTimeoutError",
    "LabeledFewShot",
    "LocalLM",
    "MCPServer",
    "Message",
    "MetricError",
    "Module",
    "MultiHop",
    "OobleckError",
    "OpenAILM",
    "OutputField",
    "ParseError",
    "Passage",
    "Predict",
    "Prediction",
    "RAG",
    "RandomSearch",
    "ReAct",
    "Refine",
    "ReflectiveEvolution",
    "RetrievalError",
    "Retrieve",
    "Signature",
    "SignatureError",
    "StreamChunk",
    "TemplateAdapter",
    "TooManyErrorsError",
    "Tool",
    "ToolError",
    "TransformersEmbedder",
    "TransformersLM",
    "Usage",
    "WriteError",
    "asgi_app",
    "calibrate",
    "context",
    "evaluate",
    "export_messages",
    "export_request",
    "history",
    "load",
    "majority",
    "mcp_tools",
    "trace",
    "__version__",
]


#: The names resolved on first use, by module (the TYPE_CHECKING imports above mirror it).
_LAZY_BY_MODULE: dict[str, tuple[str, ...]] = {
    "oobleck.artifact": ("Artifact", "export_messages", "export_request", "load"),
    "oobleck.evaluation": ("EvaluationResult", "evaluate"),
    "oobleck.lm": ("LocalLM", "OpenAILM", "TransformersLM"),
    "oobleck.lm.providers": ("LM",),
    "oobleck.modules.best_of_n": ("BestOfN",),
    "oobleck.modules.knn": ("KNNFewShot",),
    "oobleck.modules.multihop": ("MultiHop",),
    "oobleck.modules.rag": ("RAG",),
    "oobleck.modules.react": ("ReAct",),
    "oobleck.modules.refine": ("Refine",),
    "oobleck.optimize": (
        "KNN",
        "Auto",
        "BootstrapFewShot",
        "Ensemble",
        "InstructionSearch",
        "JointSearch",
        "LabeledFewShot",
        "RandomSearch",
        "ReflectiveEvolution",
        "majority",
    ),
    "oobleck.retrieve": ("Embedder", "HashingEmbedder", "Passage", "Retrieve", "TransformersEmbedder"),
    "oobleck.serve": ("asgi_app",),
    "oobleck.tool": ("Tool",),
    "oobleck.tool_mcp": ("MCPServer", "mcp_tools"),
}
_LAZY: dict[str, str] = {name: module for module, names in _LAZY_BY_MODULE.items() for name in names}


def __getattr__(name: str) -> typing.Any:
    # Backends import their SDKs, and artifacts/evaluation are not needed to define programs:
    # resolve them on first use so `import oobleck` stays light.
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oobleck' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
