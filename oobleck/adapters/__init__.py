"""Adapters: the prompt format between signatures and chat messages.

With no adapter named (on the predictor or in ``oobleck.context``), the format is chosen from
what the backend declares it can do (:func:`default_adapter`): a short ``Name: value`` prompt
whose answer is constrained JSON where the backend takes a JSON schema, field markers in plain
chat everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oobleck.adapters._values import PromptBlock
from oobleck.adapters.base import Adapter
from oobleck.adapters.chat import ChatAdapter
from oobleck.adapters.json import JSONAdapter
from oobleck.adapters.template import ADAPTERS, TemplateAdapter
from oobleck.errors import ConfigError
from oobleck.lm.base import Capabilities

__all__ = [
    "Adapter",
    "ChatAdapter",
    "JSONAdapter",
    "PromptBlock",
    "TemplateAdapter",
    "adapter_from_name",
    "default_adapter",
]

_CHAT = ChatAdapter()
_CONSTRAINED = TemplateAdapter(output="json")

CONSTRAINED_REASON = (
    "default for a backend that declares structured output (capabilities.json_schema): "
    "the answer is constrained to the signature's JSON schema, so it always parses"
)
PLAIN_REASON = "default for a backend without structured output: field markers in plain chat"
NO_LM_REASON = "default when no LM is set (the choice follows the LM's capabilities once one is)"


def default_adapter(capabilities: Capabilities | None, *, scored: bool = False) -> tuple[Adapter, str]:
    """The adapter a predictor uses when none is named, and why.

    Args:
        capabilities: what the predictor's backend declares; None when there is no LM yet.
        scored: the predictor scores its labels here (``Predict.mode_choice``): the reason
            says so first, since then the format only writes the candidate answers.

    Returns:
        ``(TemplateAdapter(output="json"), reason)`` for a backend with ``json_schema`` (the
        instruction, ``Name: value`` input lines, a constrained JSON answer), else
        ``(ChatAdapter(), reason)``.
    """
    if capabilities is None:
        return _CHAT, NO_LM_REASON
    if scored:
        # Measured on SmolLM2-135M, SST-2, 80 dev rows, contextual calibration: 78.8% with
        # `Label: value` lines against 43.8% with chat field markers (see the label-scoring notes).
        return TemplateAdapter(output="prefix"), (
            "default with every output a label on a backend that scores completions (capabilities.scoring): "
            "each label is written as a `Name: value` line after `Name: value` inputs and ranked by "
            "likelihood (mode='score'), calibrated, not generated"
        )
    if capabilities.json_schema:
        return _CONSTRAINED, CONSTRAINED_REASON
    return _CHAT, PLAIN_REASON


def adapter_from_name(name: str, options: Mapping[str, Any] | None = None) -> Adapter:
    """The built-in adapter called ``name``, built with ``options``.

    Args:
        name: an adapter's ``name``: "chat", "json" or "template" (the classes of the named
            formats, :data:`oobleck.adapters.template.ADAPTERS`).
        options: what the adapter's ``options()`` returned (an artifact saves it); None or
            empty for its defaults.

    Raises:
        ConfigError: an unknown name, or options the adapter does not take.

    Example:
        >>> adapter_from_name("json", {"strict": True}).options()
        {'strict': True}
    """
    cls = ADAPTERS.get(name)
    if cls is None:
        names = [repr(n) for n in ADAPTERS]
        raise ConfigError(f"unknown adapter {name!r}; expected {', '.join(names[:-1])} or {names[-1]}")
    try:
        return cls(**dict(options or {}))
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"adapter {name!r} cannot be built from the options {dict(options or {})}: {exc}") from None
