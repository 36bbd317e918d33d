"""The grounded instruction proposer and the reflection step, both themselves oobleck programs.

:class:`InstructionProposer` writes readable instruction candidates for one predictor with a
``prompt_lm`` (default: the task LM), grounded in

- a summary of the training data, written once by the LM from a sample of rows;
- a description of the program (its predictors, signatures, field descriptions) and of this
  predictor's role in it;
- a few demos (bootstrapped runs where there are any, else labelled rows);
- the current instruction;
- a style tip drawn (seeded) from a fixed list;
- the history of instructions already tried, with their scores (worst first, best last, as
  OPRO does).

:meth:`InstructionProposer.reflect` rewrites an instruction from a minibatch of the predictor's
inputs, outputs and the metric's feedback (the reflective optimizer's step).

Both are ``Predict`` calls with their own signatures, so their prompts render, cache, trace and
count like any other call; every call is checked against and charged to the active budget.
Candidates are cleaned (no quotes, markers, labels or field lists), de-duplicated against what
was tried, and capped in length. A candidate that talks about the proposer's own task instead
of the program's (a small model echoing "You improve the instruction...") is rejected.

When the LM writes nothing usable, :func:`grounded_variants` supplies readable variants built
from the predictor's own signature (its answer choices, its fields and their descriptions), so
a search on a model too small to write instructions still has real candidates to score. Each
proposal records where its text came from (``"source": "lm"`` or ``"template"``).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from oobleck._run import charged
from oobleck.adapters.base import describe_fields, type_hint
from oobleck.context import context, current
from oobleck.errors import ConfigError
from oobleck.example import Example
from oobleck.lm.base import LM
from oobleck.module import Module
from oobleck.predict import Predict
from oobleck.signature import InputField, OutputField, Signature

__all__ = ["TIPS", "InstructionProposer", "clean_instruction", "echoes_proposer", "grounded_variants"]

log = logging.getLogger("oobleck.optimize")

#: Style tips, one drawn per proposal (as MIPROv2 does), so candidates differ in kind.
TIPS: tuple[str, ...] = (
    "Be short and direct: one or two plain sentences.",
    "Name the possible answers explicitly and say when each one applies.",
    "Describe the task the way a careful expert would explain it to a new colleague.",
    "Point out the most common mistake on this kind of input and how to avoid it.",
    "Say exactly what the answer must contain and nothing more.",
    "Start with what the input is, then what to decide about it.",
)


class SummarizeData(Signature):
    """Read these rows from a dataset and describe it in two or three sentences: what the inputs are, what the outputs are, and any pattern that matters for getting the outputs right."""

    rows: str = InputField(desc="sample rows, one per paragraph")
    summary: str = OutputField(desc="two or three sentences")


class ProposeInstruction(Signature):
    """You improve the instruction given to a language model for one step of a program. Write one new instruction for that step: plain sentences, no lists of fields, no examples, no quotes."""

    dataset: str = InputField(desc="what the data looks like")
    program: str = InputField(desc="the program's steps and the step to instruct")
    examples: str = InputField(desc="inputs with correct outputs for this step")
    tried: str = InputField(desc="instructions tried so far with their scores, best last")
    current_instruction: str = InputField(desc="the instruction in use now")
    tip: str = InputField(desc="a style tip for the new instruction")
    instruction: str = OutputField(desc="the new instruction")


class ReflectInstruction(Signature):
    """You improve the instruction given to a language model for one step of a program. Read how the step did on these examples, with the feedback on each, then write one better instruction for it: plain sentences, no lists of fields, no quotes."""

    program: str = InputField(desc="the program's steps and the step to instruct")
    current_instruction: str = InputField(desc="the instruction in use now")
    examples: str = InputField(desc="inputs, the step's outputs and feedback on each")
    instruction: str = OutputField(desc="the improved instruction")


_MARKERS = re.compile(r"\[\[ ## \w+ ## \]\]")
_LABEL = re.compile(
    r"^\s*(?:(?:new |improved |proposed |current )?instructions?\s*[:\-]\s*|tried\s*:\s*)*(?:\d{1,3}(?:\.\d+)?\s*:\s+)?",
    re.IGNORECASE,
)
_FIELD_LINE = re.compile(r"^\s*(?:[-*•]\s*\w+\s*(?:\(|:)|(?:input|output) fields?\s*:)", re.IGNORECASE)
_QUOTES = "\"'`“”‘’«»"


def clean_instruction(text: str, *, max_chars: int = 400) -> str:
    r"""``text`` as a plain instruction: markers, labels, quotes and field lists removed.

    Cut at the last sentence end within ``max_chars`` (or hard at ``max_chars``). Returns
    ``""`` when nothing readable is left.

    Example:
        >>> clean_instruction('[[ ## instruction ## ]]\nInstruction: "Classify the review."\n- text (str): the review')
        'Classify the review.'
    """
    text = _MARKERS.sub("\n", text)
    lines = []
    for line in text.splitlines():
        if _FIELD_LINE.match(line):
            continue
        line = _LABEL.sub("", line).strip().strip(_QUOTES).strip()
        if line:
            lines.append(line)
    out = " ".join(" ".join(lines).split()).strip(_QUOTES).strip()
    if len(out) > max_chars:
        cut = out[:max_chars]
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        out = cut[: end + 1] if end >= max_chars // 3 else cut.rstrip() + "."
        if out.endswith(("..", ",.")):
            out = out[:-2].rstrip() + "."
    return out if re.search(r"[A-Za-z]{2}", out) else ""


#: Words about writing instructions rather than doing the task: in a candidate, two distinct ones
#: (not in the predictor's own instruction or fields) mean the proposer's prompt was echoed.
_META_WORDS = frozenset(
    {
        "instruction",
        "instructions",
        "tip",
        "tips",
        "step",
        "steps",
        "previous",
        "improve",
        "improved",
        "improves",
        "rewrite",
        "rewritten",
        "rewrote",
        "proposer",
        "prompt",
        "prompts",
        "tried",
    }
)
_META_OPENING = re.compile(
    r"^(?:the|your|my|this|a)\s+(?:first|new|current|improved|previous|better)?\s*instructions?\b", re.I
)


def echoes_proposer(text: str, own_words: str = "") -> bool:
    """Whether ``text`` is about writing instructions instead of doing the task.

    Two distinct words such as "instruction", "step", "improve", "previous" that do not occur in
    ``own_words`` (the predictor's instruction and field names, where such words are
    legitimate), or an opening such as "The new instruction", make an echo.

    Example:
        >>> echoes_proposer("You improve the instruction to the previous one.")
        True
        >>> echoes_proposer("Decide whether the review is positive or negative.")
        False
    """
    allowed = set(re.findall(r"[a-z]+", own_words.lower()))
    words = re.findall(r"[a-z]+", text.lower())
    hits = {w for w in words if w in _META_WORDS and w not in allowed}
    return len(hits) >= 2 or bool(_META_OPENING.match(text.strip()))


def _own_words(signature: Signature) -> str:
    fields = [*signature.input_fields.values(), *signature.output_fields.values()]
    return " ".join(
        [signature.instructions, *(f.name.replace("_", " ") for f in fields), *(f.desc or "" for f in fields)]
    )


def grounded_variants(signature: Signature) -> list[str]:
    """Readable instruction variants built from ``signature`` alone, no LM involved.

    The current instruction with, in turn: the allowed answers named; what to read and what to
    give; the output fields' descriptions; and a plain restatement of the task from the fields.

    Example:
        >>> sig = Signature("review -> label: Literal['positive', 'negative']", instructions="Classify the review.")
        >>> grounded_variants(sig)[0]
        'Classify the review. Answer with one of: positive, negative.'
    """
    base = signature.instructions.strip()
    if base and base[-1] not in ".!?":
        base += "."
    ins = [f.name.replace("_", " ") for f in signature.input_fields.values()]
    outs = list(signature.output_fields.values())
    out_names = [f.name.replace("_", " ") for f in outs]
    variants = []
    choices = [type_hint(f) for f in outs if type_hint(f).startswith("one of: ")]
    if choices:
        variants.append(f"{base} Answer with {choices[0]}.")
    variants.append(f"{base} Read the {_and(ins)} carefully, then give the {_and(out_names)}.")
    descs = [f"The {f.name.replace('_', ' ')} is {f.desc.rstrip('.')}." for f in outs if f.desc]
    if descs:
        variants.append(f"{base} {' '.join(descs)}")
    restated = f"Given the {_and(ins)}, decide the {_and(out_names)}."
    if choices:
        restated += f" Answer with {choices[0]}."
    variants.append(f"{restated} {base}")
    return [clean_instruction(v) for v in variants]


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def describe_program(program: Module, name: str) -> str:
    """The program's predictors, their fields, and which one ``name`` is."""
    steps = program.named_predictors()
    lines = [f"The program has {len(steps)} step(s)."]
    for i, (n, p) in enumerate(steps, 1):
        mark = "  <- the step to instruct" if n == name else ""
        arrow = f"{', '.join(p.signature.input_fields)} -> {', '.join(p.signature.output_fields)}"
        lines.append(f"Step {i} ({n}): {arrow}{mark}")
        if n == name:
            lines.append(describe_fields(p.signature))
    return "\n".join(lines)


def format_row(row: Mapping[str, Any], *, max_chars: int = 300) -> str:
    """One row as ``name: value`` lines, each value clipped."""
    out = []
    for k, v in row.items():
        s = " ".join(str(v).split())
        out.append(f"{k}: {s[:max_chars]}")
    return "\n".join(out)


class InstructionProposer:
    """Writes instruction candidates for one predictor at a time (see the module docstring).

    Args:
        prompt_lm: the LM that writes instructions (default: each predictor's own LM, else the
            context's).
        max_chars: the longest instruction kept.
        n_demos: demos shown to the proposer.
        history_size: tried instructions shown (the best ones, worst first).
        summary_rows: rows the data summary is written from.
        temperature: sampling temperature of proposals.
        max_tokens: the longest answer of a proposal, reflection or data summary (an
            instruction is a sentence or two; small models ramble past that).
        grounded_fallback: when the LM writes nothing usable (empty, a duplicate, an echo of
            the proposer's prompt, an error), propose the next of :func:`grounded_variants`.
    """

    def __init__(
        self,
        *,
        prompt_lm: LM | None = None,
        max_chars: int = 400,
        n_demos: int = 3,
        history_size: int = 8,
        summary_rows: int = 8,
        temperature: float = 1.0,
        max_tokens: int = 100,
        grounded_fallback: bool = True,
    ) -> None:
        if max_chars < 20:
            raise ConfigError(f"max_chars must be at least 20, got {max_chars}")
        self.prompt_lm = prompt_lm
        self.max_chars = max_chars
        self.n_demos = n_demos
        self.history_size = history_size
        self.summary_rows = summary_rows
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.grounded_fallback = grounded_fallback

    def settings(self) -> dict[str, Any]:
        """JSON data for provenance (the LM by identity only)."""
        lm = None if self.prompt_lm is None else dict(self.prompt_lm.identity)
        return {
            "prompt_lm": lm,
            "max_chars": self.max_chars,
            "n_demos": self.n_demos,
            "history_size": self.history_size,
            "summary_rows": self.summary_rows,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "grounded_fallback": self.grounded_fallback,
        }

    def _lm(self, program: Module) -> LM:
        if self.prompt_lm is not None:
            return self.prompt_lm
        for p in program.predictors():
            if p.lm is not None:
                return p.lm
        lm = current().lm
        if lm is None:
            raise ConfigError(
                "no LM to propose instructions with: pass prompt_lm=..., give the program's predictors an lm, "
                "or wrap compile in `with oobleck.context(lm=...)`"
            )
        return lm

    def summarize(self, program: Module, trainset: Sequence[Example], seed: int) -> str:
        """A short description of the data, written by the LM from a seeded sample of rows."""
        rows = list(trainset)
        random.Random(f"oobleck-summary:{seed}").shuffle(rows)
        sample = "\n\n".join(format_row(r.to_dict(), max_chars=200) for r in rows[: self.summary_rows])
        step = Predict(SummarizeData, lm=self._lm(program), temperature=0.0, max_tokens=self.max_tokens)
        out = charged(lambda: step(rows=sample))
        return " ".join(str(out.summary).split())[:600]

    def propose(
        self,
        program: Module,
        name: str,
        *,
        summary: str,
        demos: Sequence[Mapping[str, Any]],
        history: Sequence[tuple[str, float | None]],
        rng: random.Random,
        sample: int,
    ) -> tuple[str, dict[str, Any]]:
        """One cleaned instruction for predictor ``name`` and the grounding it was given.

        Args:
            program: the program (for its description).
            name: the predictor to instruct.
            summary: the data summary (from :meth:`summarize`).
            demos: rows to show (only this predictor's fields are shown).
            history: ``(instruction, score)`` tried so far (score None: not scored).
            rng: draws the tip (seeded by the caller).
            sample: which sample of the same prompt to ask for (a distinct cache key).

        Returns:
            ``(instruction, info)``; the instruction is ``""`` when the LM wrote nothing usable.
        """
        predictor = dict(program.named_predictors())[name]
        tip = rng.choice(TIPS)
        fields = list(predictor.signature.input_fields) + list(predictor.signature.output_fields)
        shown = [{k: d[k] for k in fields if k in d} for d in list(demos)[: self.n_demos]]
        examples = "\n\n".join(format_row(d) for d in shown) or "(none)"
        scored = [(i, s) for i, s in history if s is not None]
        best = sorted(scored, key=lambda x: x[1])[-self.history_size :]
        tried = "\n".join(f"{s:.1f}: {i}" for i, s in best) or "(none yet)"
        step = Predict(
            ProposeInstruction, lm=self._lm(program), temperature=self.temperature, max_tokens=self.max_tokens
        )
        kwargs = {
            "dataset": summary or "(no summary)",
            "program": describe_program(program, name),
            "examples": examples,
            "tried": tried,
            "current_instruction": predictor.instructions,
            "tip": tip,
        }
        with context(sample_index=sample):
            out = charged(lambda: step(**kwargs))
        text = clean_instruction(str(out.instruction), max_chars=self.max_chars)
        info: dict[str, Any] = {"tip": tip, "sample": sample, "raw": str(out.instruction)[:1000], "source": "lm"}
        if text and echoes_proposer(text, _own_words(predictor.signature)):
            text, info["rejected"] = "", "echo"
        return text, info

    def reflect(
        self, program: Module, name: str, *, records: Sequence[Mapping[str, Any]], sample: int
    ) -> tuple[str, dict[str, Any]]:
        """A rewritten instruction for ``name`` from ``records`` of its inputs, outputs and feedback.

        Each record is a mapping of field values plus ``"score"`` and ``"feedback"``.
        """
        predictor = dict(program.named_predictors())[name]
        examples = "\n\n".join(format_row(r) for r in records) or "(none)"
        step = Predict(
            ReflectInstruction, lm=self._lm(program), temperature=self.temperature, max_tokens=self.max_tokens
        )
        kwargs = {
            "program": describe_program(program, name),
            "current_instruction": predictor.instructions,
            "examples": examples,
        }
        with context(sample_index=sample):
            out = charged(lambda: step(**kwargs))
        text = clean_instruction(str(out.instruction), max_chars=self.max_chars)
        info: dict[str, Any] = {"sample": sample, "raw": str(out.instruction)[:1000], "source": "lm"}
        if text and echoes_proposer(text, _own_words(predictor.signature)):
            text, info["rejected"] = "", "echo"
        return text, info

    def fallback(self, program: Module, name: str, tried: Sequence[str]) -> str:
        """The first :func:`grounded_variants` of predictor ``name`` not yet tried (``""``: none left)."""
        if not self.grounded_fallback:
            return ""
        predictor = dict(program.named_predictors())[name]
        for text in grounded_variants(predictor.signature):
            if is_new(text, tried):
                return text[: self.max_chars]
        return ""


def is_new(text: str, tried: Sequence[str]) -> bool:
    """Whether ``text`` is usable and differs (ignoring case and punctuation) from every tried one."""
    key = _norm(text)
    return bool(key) and all(_norm(t) != key for t in tried)
