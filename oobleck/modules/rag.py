"""RAG: retrieve passages for the question, then answer ``context, question -> answer``.

The answer step sees the passages as numbered passages with their titles. The returned
prediction carries the answer step's outputs plus ``passages`` (what was retrieved), so a
metric can score retrieval as well as the answer.
"""

from __future__ import annotations

from typing import Any

from oobleck.adapters.base import Adapter
from oobleck.errors import ConfigError, InputError
from oobleck.example import Prediction
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.modules.chain_of_thought import ChainOfThought
from oobleck.predict import Predict
from oobleck.retrieve.module import Retrieve
from oobleck.retrieve.passage import Retriever
from oobleck.signature import InputField, OutputField, Signature, ensure_signature

__all__ = ["RAG", "AnswerWithPassages", "step"]


class AnswerWithPassages(Signature):
    """Answer the question with a short factoid answer, using the passages."""

    context: str = InputField(desc="numbered passages that may contain relevant facts")
    question: str = InputField()
    answer: str = OutputField(desc="often between 1 and 5 words")


def answer_signature(signature: str | Signature | type[Signature] | None) -> Signature:
    """The answer step's signature: it must take ``context`` and at least one other input.

    Raises:
        ConfigError: no ``context`` input, or no other input to search with.
    """
    sig = ensure_signature(signature if signature is not None else AnswerWithPassages)
    if "context" not in sig.input_fields:
        raise ConfigError(f"a retrieval program's answer signature needs a 'context' input for the passages, got {sig}")
    if len(sig.input_fields) < 2:
        raise ConfigError(f"the answer signature {sig} needs an input besides 'context' to search with")
    return sig


def step(signature: Signature, *, reasoning: bool, lm: LM | None, adapter: Adapter | None, **kwargs: Any) -> Module:
    """A Predict, or a ChainOfThought when ``reasoning``."""
    if reasoning:
        return ChainOfThought(signature, lm=lm, adapter=adapter, **kwargs)
    return Predict(signature, lm=lm, adapter=adapter, **kwargs)


def program_inputs(signature: Signature) -> list[str]:
    """The inputs a caller gives (every input of the answer step except ``context``)."""
    return [name for name in signature.input_fields if name != "context"]


def check_inputs(signature: Signature, inputs: dict[str, Any]) -> None:
    """Raise InputError unless ``inputs`` are exactly the program's inputs."""
    expected = program_inputs(signature)
    if sorted(inputs) != sorted(expected):
        raise InputError(f"expected inputs {expected}, got {sorted(inputs)}")


class RAG(Module):
    """Retrieve ``k`` passages for the question, then answer from them.

    Args:
        retriever: any Retriever; falls back to ``oobleck.context(retriever=...)``.
        k: passages retrieved.
        signature: the answer step (needs a ``context`` input); default
            :class:`AnswerWithPassages` (``context, question -> answer``).
        query_field: the input searched for (default: the first input that is not ``context``).
        reasoning: answer with a ChainOfThought instead of a Predict.
        lm, adapter, **kwargs: passed to the answer step (demos, max_retries, decoding parameters).

    Example:
        >>> from oobleck import FakeLM
        >>> from oobleck.retrieve import VectorIndex
        >>> index = VectorIndex(["Paris is the capital of France.", "Rome is in Italy."], show_progress=False)
        >>> rag = RAG(index, k=1, lm=FakeLM([{"answer": "Paris"}]))
        >>> out = rag(question="What is the capital of France?")
        >>> out.answer, out.passages[0].text
        ('Paris', 'Paris is the capital of France.')
    """

    def __init__(
        self,
        retriever: Retriever | None = None,
        *,
        k: int = 3,
        signature: str | Signature | type[Signature] | None = None,
        query_field: str | None = None,
        reasoning: bool = False,
        lm: LM | None = None,
        adapter: Adapter | None = None,
        **kwargs: Any,
    ) -> None:
        sig = answer_signature(signature)
        inputs = program_inputs(sig)
        if query_field is not None and query_field not in inputs:
            raise ConfigError(f"query_field {query_field!r} is not an input of {sig}; inputs: {inputs}")
        self.query_field = query_field or inputs[0]
        self.retrieve = Retrieve(retriever, k=k)
        self.answer = step(sig, reasoning=reasoning, lm=lm, adapter=adapter, **kwargs)

    def _answer_signature(self) -> Signature:
        return self.answer.predictors()[0].signature

    def forward(self, **inputs: Any) -> Prediction:
        """Retrieve for ``inputs[query_field]``, answer, and return the outputs plus ``passages``."""
        check_inputs(self._answer_signature(), inputs)
        passages = self.retrieve(query=str(inputs[self.query_field])).passages
        pred = self.answer(context=passages, **inputs)
        return Prediction({**pred, "passages": passages})

    def dump_extra(self, files: Any) -> dict[str, Any]:
        """The query field (the steps are saved as the program's children)."""
        return {"query_field": self.query_field}

    def load_extra(self, extra: dict[str, Any], files: Any) -> None:
        """Restore the query field (checking the saved steps are there: a call needs both)."""
        if not isinstance(self.__dict__.get("retrieve"), Retrieve):
            raise ConfigError("a saved RAG needs its retrieval step ('retrieve')")
        if not isinstance(self.__dict__.get("answer"), Module) or not self.answer.predictors():
            raise ConfigError("a saved RAG needs its answer step ('answer')")
        field = extra.get("query_field")
        if not isinstance(field, str) or field not in program_inputs(self._answer_signature()):
            raise ConfigError(f"RAG query_field {field!r} is not an input of the saved answer step")
        self.query_field = field
