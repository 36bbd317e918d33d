"""Helpers shared by the optimizer tests: scripted LMs that answer from the request."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oobleck import Example, LMRequest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def field_of(request: LMRequest, name: str) -> str:
    """The value of input ``name`` in the request's last user message (ChatAdapter format)."""
    content = request.messages[-1].content
    m = re.search(rf"\[\[ ## {re.escape(name)} ## \]\]\n(.*?)(?:\n\n|\Z)", content, re.S)
    assert m, content
    return m.group(1)


def n_demos(request: LMRequest) -> int:
    """Demo turns in a ChatAdapter request (system + pairs + final user)."""
    return (len(request.messages) - 2) // 2


def sentiment_rows(n: int | None = None) -> list[Example]:
    lines = (FIXTURES / "sentiment_tiny.jsonl").read_text().splitlines()
    rows = [Example(json.loads(line)).with_inputs("sentence") for line in lines if line.strip()]
    return rows[:n] if n is not None else rows


POSITIVE = ("funny", "best", "delightful", "beautifully", "joy", "moving", "warm")


def keyword_answer(request: LMRequest) -> dict[str, Any]:
    """Right for sentences with a positive keyword, says 'negative' otherwise (so mostly right)."""
    s = field_of(request, "sentence")
    return {"label": "positive" if any(w in s for w in POSITIVE) else "negative"}


def always(label: str) -> Callable[[LMRequest], dict[str, Any]]:
    return lambda request: {"label": label}
