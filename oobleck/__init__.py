"""oobleck: compile declarative LM programs into frozen, readable prompt programs.

Importing oobleck is light: no LM SDK (openai, xllamacpp, transformers, torch) is imported
until a backend that needs it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oobleck._version import __version__
from oobleck.adapters import ChatAdapter, JSONAdapter, TemplateAdapter
from oobleck.calibration import calibrate
from oobleck.context import context
from oobleck.errors import (
    ArtifactError,
    BudgetExceededError,
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
    TooManyErrorsError,
)
from oobleck.example import Example, Prediction
from oobleck.lm import BaseLM, CachedLM, FakeLM, LMRequest, LMResponse, Message, Usage
from oobleck.lm.base import Capabilities
from oobleck.lm.cached import Cache
from oobleck.module import Module
from oobleck.modules import ChainOfThought
from oobleck.predict import Predict
from oobleck.signature import InputField, OutputField, Signature
from oobleck.trace import trace

if TYPE_CHECKING:
    from oobleck.artifact import (
        Artifact,
        export_messages,
        export_request,
        load,
    )
    from oobleck.evaluate import EvaluationResult, evaluate
    from oobleck.lm.local import LocalLM
    from oobleck.lm.openai import OpenAILM
    from oobleck.lm.transformers import TransformersLM
    from oobleck.modules.knn import KNNFewShot
    from oobleck.modules.multihop import MultiHop
    from oobleck.modules.rag import RAG
    from oobleck.optimize import (
        KNN,
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

__all__ = [
    "Artifact",
    "ArtifactError",
    "BaseLM",
    "BootstrapFewShot",
    "BudgetExceededError",
    "Cache",
    "CachedLM",
    "Capabilities",
    "ChainOfThought",
    "ChatAdapter",
    "ConfigError",
    "Embedder",
    "Ensemble",
    "EvaluationResult",
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
    "ReflectiveEvolution",
    "RetrievalError",
    "Retrieve",
    "Signature",
    "SignatureError",
    "TemplateAdapter",
    "TooManyErrorsError",
    "TransformersEmbedder",
    "TransformersLM",
    "Usage",
    "calibrate",
    "context",
    "evaluate",
    "export_messages",
    "export_request",
    "load",
    "majority",
    "trace",
    "__version__",
]


_LAZY = {
    "BootstrapFewShot": "oobleck.optimize",
    "Embedder": "oobleck.retrieve",
    "Ensemble": "oobleck.optimize",
    "EvaluationResult": "oobleck.evaluate",
    "HashingEmbedder": "oobleck.retrieve",
    "InstructionSearch": "oobleck.optimize",
    "JointSearch": "oobleck.optimize",
    "ReflectiveEvolution": "oobleck.optimize",
    "KNN": "oobleck.optimize",
    "KNNFewShot": "oobleck.modules.knn",
    "MultiHop": "oobleck.modules.multihop",
    "Passage": "oobleck.retrieve",
    "RAG": "oobleck.modules.rag",
    "Retrieve": "oobleck.retrieve",
    "LabeledFewShot": "oobleck.optimize",
    "RandomSearch": "oobleck.optimize",
    "TransformersEmbedder": "oobleck.retrieve",
    "majority": "oobleck.optimize",
    "OpenAILM": "oobleck.lm",
    "LocalLM": "oobleck.lm",
    "TransformersLM": "oobleck.lm",
    "Artifact": "oobleck.artifact",
    "export_messages": "oobleck.artifact",
    "export_request": "oobleck.artifact",
    "load": "oobleck.artifact",
}


def __getattr__(name: str) -> Any:
    # Backends import their SDKs, and artifacts/evaluation are not needed to define programs:
    # resolve them on first use so `import oobleck` stays light.
    import importlib

    if name == "evaluate":  # the module, callable as the function (see oobleck.evaluate)
        return importlib.import_module("oobleck.evaluate")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'oobleck' has no attribute {name!r}")
