"""MultiHop: search in several hops, each query written from the question and what was found.

Hop ``i`` runs its own query writer (``context, question -> query``; one predictor per hop,
so an optimizer tunes each), retrieves ``k`` passages and adds the ones not seen yet (by id).
Then the answer step reads every passage found. The prediction carries the answer step's
outputs plus ``passages`` (all, in the order found) and ``queries`` (one per hop), and a trace
shows each hop's query writer and Retrieve call.
"""

from __future__ import annotations

from typing import Any

from oobleck.adapters.base import Adapter
from oobleck.errors import ConfigError
from oobleck.example import Prediction
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.modules.rag import answer_signature, check_inputs, program_inputs, step
from oobleck.retrieve.module import Retrieve
from oobleck.retrieve.passage import Passage, Retriever
from oobleck.signature import Signature

__all__ = ["MultiHop", "NO_PASSAGES", "query_signature"]

#: What a query writer sees as ``context`` before the first search.
NO_PASSAGES = "(no passages yet)"
QUERY_INSTRUCTIONS = "Write a simple search query that will help answer the question."


def query_signature(answer: Signature, instructions: str = QUERY_INSTRUCTIONS) -> Signature:
    """``context, <the answer step's other inputs> -> query``."""
    # No description on "query": small models copy a description instead of writing a query.
    sig = answer.append("query", "output")
    for name in list(answer.output_fields):
        sig = sig.delete(name)
    return sig.with_updated_field("context", desc="numbered passages found so far").with_instructions(instructions)


class MultiHop(Module):
    """Retrieve in ``hops`` rounds, each with a query written from what was found, then answer.

    Args:
        retriever: any Retriever; falls back to ``oobleck.context(retriever=...)``.
        hops: search rounds (one query writer each).
        k: passages retrieved per hop.
        signature: the answer step (needs a ``context`` input); default ``context, question -> answer``.
        max_passages: keep at most this many passages (oldest first); default: all found.
        reasoning: use ChainOfThought for the query writers and the answer step.
        lm, adapter, **kwargs: passed to every step (max_retries, decoding parameters).

    Raises:
        ConfigError: ``hops`` < 1, or a bad signature.

    Example:
        >>> from oobleck import FakeLM
        >>> from oobleck.retrieve import VectorIndex
        >>> index = VectorIndex(["Ada Lovelace was born in London.", "London is in England."], show_progress=False)
        >>> lm = FakeLM([{"query": "Ada Lovelace born"}, {"query": "London country"}, {"answer": "England"}])
        >>> out = MultiHop(index, hops=2, k=1, lm=lm)(question="In which country was Ada Lovelace born?")
        >>> out.answer, out.queries, [p.text for p in out.passages]
        ('England', ['Ada Lovelace born', 'London country'], ['Ada Lovelace was born in London.', 'London is in England.'])
    """

    def __init__(
        self,
        retriever: Retriever | None = None,
        *,
        hops: int = 2,
        k: int = 3,
        signature: str | Signature | type[Signature] | None = None,
        max_passages: int | None = None,
        reasoning: bool = False,
        lm: LM | None = None,
        adapter: Adapter | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
            raise ConfigError(f"hops must be an int >= 1, got {hops!r}")
        if max_passages is not None and max_passages < 1:
            raise ConfigError(f"max_passages must be >= 1 or None, got {max_passages!r}")
        sig = answer_signature(signature)
        self.max_passages = max_passages
        self.generate_query = [
            step(query_signature(sig), reasoning=reasoning, lm=lm, adapter=adapter, **kwargs) for _ in range(hops)
        ]
        self.retrieve = Retrieve(retriever, k=k)
        self.generate_answer = step(sig, reasoning=reasoning, lm=lm, adapter=adapter, **kwargs)

    @property
    def hops(self) -> int:
        """How many search rounds run."""
        return len(self.generate_query)

    def forward(self, **inputs: Any) -> Prediction:
        """Run every hop, then the answer step; returns outputs, ``passages`` and ``queries``."""
        check_inputs(self.generate_answer.predictors()[0].signature, inputs)
        passages: list[Passage] = []
        seen: set[str] = set()
        queries: list[str] = []
        for writer in self.generate_query:
            query = str(writer(context=list(passages) or NO_PASSAGES, **inputs).query)
            queries.append(query)
            for p in self.retrieve(query=query).passages:
                if p.id not in seen:
                    seen.add(p.id)
                    passages.append(p)
            if self.max_passages is not None:
                passages = passages[: self.max_passages]
        pred = self.generate_answer(context=list(passages) or NO_PASSAGES, **inputs)
        return Prediction({**pred, "passages": passages, "queries": queries})

    def dump_extra(self, files: Any) -> dict[str, Any]:
        """``max_passages`` (hops are the saved query writers; the steps are children)."""
        return {"max_passages": self.max_passages}

    def load_extra(self, extra: dict[str, Any], files: Any) -> None:
        """Restore ``max_passages``."""
        cap = extra.get("max_passages")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            raise ConfigError(f"MultiHop max_passages must be a positive int or null, got {cap!r}")
        self.max_passages = cap
        if not isinstance(self.__dict__.get("generate_query"), list) or not self.generate_query:
            raise ConfigError("a saved MultiHop needs a non-empty list of query writers")
        for name in program_inputs(self.generate_answer.predictors()[0].signature):
            if name not in self.generate_query[0].predictors()[0].signature.input_fields:
                raise ConfigError(f"the saved query writers do not take the input {name!r}")
