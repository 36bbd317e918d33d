"""Adapters: the prompt format between signatures and chat messages."""

from __future__ import annotations

from oobleck.adapters.base import Adapter
from oobleck.adapters.chat import ChatAdapter
from oobleck.adapters.json import JSONAdapter
from oobleck.adapters.template import TemplateAdapter

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter", "TemplateAdapter", "adapter_from_name"]


def adapter_from_name(name: str) -> Adapter:
    """The built-in adapter called ``name`` ("chat", "json" or "template")."""
    from oobleck.errors import ConfigError

    if name == "chat":
        return ChatAdapter()
    if name == "json":
        return JSONAdapter()
    if name == "template":
        return TemplateAdapter()
    raise ConfigError(f"unknown adapter {name!r}; expected 'chat', 'json' or 'template'")
