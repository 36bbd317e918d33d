"""MultiHop: search in several hops, each query written from the question and what was found.

By default the first search is the question itself (no LM call: for a small model the
question is a better first query than one it writes), and each later hop ``i`` runs its own
query writer (``context, question -> query``; one predictor per hop, so an optimizer tunes
each) that reads every passage found so far. A written query is searched after the question
(``"<question> <query>"``): a small model's query often drifts into a sentence about one
passage, and the question's own words keep the search on topic (the recall measured each way
is in benchmarks/README.md, section hotpotqa.py). Each search skips what earlier hops found,
so every hop adds ``k`` new passages. Then the answer step reads them all. The prediction carries
the answer step's outputs plus ``passages`` (all, in the order found) and ``queries`` (one per
search), and a trace shows each query writer and Retrieve call.

A query is free text, so the query writers default to a format where a cut-off answer is
still a query: ``Query: ...`` on one line (``TemplateAdapter(output="prefix")``), stopped at
the newline and at ``query_max_tokens``. In JSON, a small model that runs on past
``max_tokens`` leaves an unclosed string that no parser reads, and the whole run fails.
"""

from __future__ import annotations

from typing import Any

from oobleck.adapters.base import Adapter
from oobleck.adapters.template import TemplateAdapter
from oobleck.errors import ConfigError
from oobleck.example import Prediction
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.modules.rag import answer_signature, check_inputs, program_inputs, step
from oobleck.retrieve.module import Retrieve
from oobleck.retrieve.passage import Passage, Retriever
from oobleck.signature import Signature

__all__ = ["MultiHop", "NO_PASSAGES", "QUERY_ADAPTER", "query_signature"]

#: What a query writer sees as ``context`` before the first search.
NO_PASSAGES = "(no passages yet)"
QUERY_INSTRUCTIONS = "Write a short search query for the information that the passages do not give yet."
#: The query writers' default format: ``Query: ...`` in and out, so a cut-off query still reads.
QUERY_ADAPTER: Adapter = TemplateAdapter(output="prefix", schema=True)


def query_signature(answer: Signature, instructions: str = QUERY_INSTRUCTIONS) -> Signature:
    """``context, <the answer step's other inputs> -> query``."""
    # No description on "query": small models copy a description instead of writing a query.
    sig = answer.append("query", "output")
    for name in list(answer.output_fields):
        sig = sig.delete(name)
    return sig.with_updated_field("context", desc="numbered passages found so far").with_instructions(instructions)


class MultiHop(Module):
    """Search in ``hops`` rounds, each later query written from what was found, then answer.

    Args:
        retriever: any Retriever; falls back to ``oobleck.context(retriever=...)``.
        hops: searches (at least 1). With ``search_question`` the first is the question itself
            and ``hops - 1`` query writers follow; otherwise every search has a query writer.
        k: new passages per search (passages an earlier hop found are skipped).
        signature: the answer step (needs a ``context`` input); default ``context, question -> answer``.
        search_question: the first search uses the program's input ``query_field`` as it is.
        query_field: the input searched first (default: the first input that is not ``context``).
        query_with_question: search ``"<query_field's value> <written query>"`` rather than the
            written query alone (see above).
        max_passages: keep at most this many passages (oldest first); default: all found.
        reasoning: use ChainOfThought for the query writers and the answer step.
        query_adapter: the query writers' adapter; default ``adapter`` if given, else
            ``Query: ...`` lines stopped at the newline (see above).
        query_max_tokens: the query writers' completion limit (a longer query is cut there).
        lm, adapter, **kwargs: ``lm`` and ``kwargs`` (max_retries, decoding parameters) go to
            every step, ``adapter`` to the answer step (and to the query writers unless
            ``query_adapter`` is given).

    Raises:
        ConfigError: ``hops`` < 1, a bad ``query_field``, or a bad signature.

    Example:
        >>> from oobleck import FakeLM
        >>> from oobleck.retrieve import VectorIndex
        >>> index = VectorIndex(["Ada Lovelace was born in London.", "London is in England."], show_progress=False)
        >>> lm = FakeLM([{"query": "London country"}, {"answer": "England"}])
        >>> out = MultiHop(index, hops=2, k=1, lm=lm)(question="In which country was Ada Lovelace born?")
        >>> out.answer, out.queries[1], [p.text for p in out.passages]
        ('England', 'In which country was Ada Lovelace born? London country', ['Ada Lovelace was born in London.', 'London is in England.'])
    """

    def __init__(
        self,
        retriever: Retriever | None = None,
        *,
        hops: int = 2,
        k: int = 3,
        signature: str | Signature | type[Signature] | None = None,
        search_question: bool = True,
        query_field: str | None = None,
        query_with_question: bool = True,
        max_passages: int | None = None,
        reasoning: bool = False,
        lm: LM | None = None,
        adapter: Adapter | None = None,
        query_adapter: Adapter | None = None,
        query_max_tokens: int = 32,
        **kwargs: Any,
    ) -> None:
        if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
            raise ConfigError(f"hops must be an int >= 1, got {hops!r}")
        if max_passages is not None and max_passages < 1:
            raise ConfigError(f"max_passages must be >= 1 or None, got {max_passages!r}")
        if isinstance(query_max_tokens, bool) or not isinstance(query_max_tokens, int) or query_max_tokens < 1:
            raise ConfigError(f"query_max_tokens must be an int >= 1, got {query_max_tokens!r}")
        sig = answer_signature(signature)
        inputs = program_inputs(sig)
        if query_field is not None and query_field not in inputs:
            raise ConfigError(f"query_field {query_field!r} is not an input of {sig}; inputs: {inputs}")
        self.query_field = query_field or inputs[0]
        self.search_question = bool(search_question)
        self.query_with_question = bool(query_with_question)
        self.max_passages = max_passages
        writer_adapter = query_adapter or adapter or QUERY_ADAPTER
        writer_config = {**kwargs, "max_tokens": query_max_tokens}
        if writer_adapter is QUERY_ADAPTER and not reasoning:
            writer_config.setdefault("stop", ["\n"])  # one line: the query
        writers = hops - 1 if self.search_question else hops
        self.generate_query = [
            step(query_signature(sig), reasoning=reasoning, lm=lm, adapter=writer_adapter, **writer_config)
            for _ in range(writers)
        ]
        self.retrieve = Retrieve(retriever, k=k)
        self.generate_answer = step(sig, reasoning=reasoning, lm=lm, adapter=adapter, **kwargs)

    @property
    def hops(self) -> int:
        """How many searches run."""
        return len(self.generate_query) + int(self.search_question)

    def forward(self, **inputs: Any) -> Prediction:
        """Run every search, then the answer step; returns outputs, ``passages`` and ``queries``."""
        check_inputs(self.generate_answer.predictors()[0].signature, inputs)
        passages: list[Passage] = []
        seen: set[str] = set()
        queries: list[str] = []

        def search(query: str) -> None:
            queries.append(query)
            for p in self.retrieve(query=query, exclude=seen).passages:
                if p.id not in seen:
                    seen.add(p.id)
                    passages.append(p)
            if self.max_passages is not None:
                del passages[self.max_passages :]

        question = str(inputs[self.query_field])
        if self.search_question:
            search(question)
        for writer in self.generate_query:
            written = str(writer(context=list(passages) or NO_PASSAGES, **inputs).query)
            # One line; a blank query searches the question (for passages not found yet).
            query = next((line.strip() for line in written.splitlines() if line.strip()), "")
            if not query or (self.query_with_question and query != question):
                query = f"{question} {query}".strip()
            search(query)
        pred = self.generate_answer(context=list(passages) or NO_PASSAGES, **inputs)
        return Prediction({**pred, "passages": passages, "queries": queries})

    def dump_extra(self, files: Any) -> dict[str, Any]:
        """The search settings (the query writers and the answer step are children)."""
        return {
            "max_passages": self.max_passages,
            "search_question": self.search_question,
            "query_field": self.query_field,
            "query_with_question": self.query_with_question,
        }

    def load_extra(self, extra: dict[str, Any], files: Any) -> None:
        """Restore the search settings, checking them against the saved steps."""
        if not isinstance(self.__dict__.get("retrieve"), Retrieve):
            raise ConfigError("a saved MultiHop needs its retrieval step ('retrieve')")
        answer = self.__dict__.get("generate_answer")
        if not isinstance(answer, Module) or not answer.predictors():
            raise ConfigError("a saved MultiHop needs its answer step ('generate_answer')")
        cap = extra.get("max_passages")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            raise ConfigError(f"MultiHop max_passages must be a positive int or null, got {cap!r}")
        # Artifacts from before these settings existed wrote every query and searched it alone.
        first, with_question = (_saved_flag(extra, name) for name in ("search_question", "query_with_question"))
        answer_inputs = program_inputs(self.generate_answer.predictors()[0].signature)
        field = extra.get("query_field", answer_inputs[0] if answer_inputs else None)
        if field not in answer_inputs:
            raise ConfigError(f"MultiHop query_field {field!r} is not an input of the saved answer step")
        writers = self.__dict__.get("generate_query")
        if not isinstance(writers, list) or not (writers or first):
            raise ConfigError(
                "a saved MultiHop needs a list of query writers (non-empty unless it searches the question)"
            )
        for writer in writers:
            for name in answer_inputs:
                if name not in writer.predictors()[0].signature.input_fields:
                    raise ConfigError(f"the saved query writers do not take the input {name!r}")
        self.max_passages, self.search_question, self.query_field = cap, first, field
        self.query_with_question = with_question


def _saved_flag(extra: dict[str, Any], name: str) -> bool:
    """A true/false setting of a saved MultiHop (missing: false)."""
    value = extra.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"MultiHop {name} must be true or false, got {value!r}")
    return value
