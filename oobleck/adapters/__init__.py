"""Adapters: the prompt format between signatures and chat messages."""

from __future__ import annotations

from oobleck.adapters.base import Adapter
from oobleck.adapters.chat import ChatAdapter
from oobleck.adapters.json import JSONAdapter

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter", "adapter_from_name"]


def adapter_from_name(name: str) -> Adapter:
    """The built-in adapter called ``name`` ("chat" or "json")."""
    from oobleck.errors import ConfigError

    if name == "chat":
        return ChatAdapter()
    if name == "json":
        return JSONAdapter()
    raise ConfigError(f"unknown adapter {name!r}; expected 'chat' or 'json'")
