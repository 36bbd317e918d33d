"""Built-in modules, one class per file."""

from __future__ import annotations

from oobleck.modules.chain_of_thought import ChainOfThought

__all__ = ["ChainOfThought"]
