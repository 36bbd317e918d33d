"""ChainOfThought: a Predict whose signature asks for reasoning before the outputs."""

from __future__ import annotations

from typing import Any

from oobleck.adapters.base import Adapter
from oobleck.example import Prediction
from oobleck.lm.base import LM
from oobleck.lm.types import Message
from oobleck.module import Module
from oobleck.predict import Predict
from oobleck.signature import Signature, ensure_signature

__all__ = ["ChainOfThought"]

REASONING_DESC = "Think step by step about how to get the answer."


class ChainOfThought(Module):
    """Predict with a ``reasoning`` output field placed before the signature's outputs.

    Args:
        signature: the task's signature (without the reasoning field).
        reasoning_field: the name of the added field.
        reasoning_desc: its description, shown to the LM.
        **kwargs: passed to :class:`~oobleck.predict.Predict` (demos, lm, adapter, max_retries,
            decoding parameters).

    Example:
        >>> from oobleck import FakeLM
        >>> cot = ChainOfThought("question -> answer", lm=FakeLM([{"reasoning": "2 and 2", "answer": "4"}]))
        >>> cot(question="2+2?").answer
        '4'
    """

    def __init__(
        self,
        signature: str | Signature | type[Signature],
        *,
        reasoning_field: str = "reasoning",
        reasoning_desc: str = REASONING_DESC,
        lm: LM | None = None,
        adapter: Adapter | None = None,
        **kwargs: Any,
    ) -> None:
        base = ensure_signature(signature)
        extended = base.prepend(reasoning_field, "output", desc=reasoning_desc)
        self.predict = Predict(extended, lm=lm, adapter=adapter, **kwargs)

    def forward(self, **inputs: Any) -> Prediction:
        """Run the predictor; the prediction carries the reasoning and the outputs."""
        return self.predict(**inputs)

    async def aforward(self, **inputs: Any) -> Prediction:
        """Async form of :meth:`forward`."""
        return await self.predict.acall(**inputs)

    def render(self, **inputs: Any) -> list[Message]:
        """The exact messages sent for ``inputs`` (no LM call)."""
        return self.predict.render(**inputs)
