"""Training rows for a soft prompt: a predictor's prompt and target as token ids.

The prompt is exactly what the predictor sends (its adapter's messages through the model's
chat template, minus the messages a covering soft prompt replaces); the target is the
adapter's rendering of the example's output fields, then the end-of-turn token, which is what
the model must learn to write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oobleck.errors import ConfigError
from oobleck.example import Example
from oobleck.lm.base import LM
from oobleck.lm.cached import CachedLM
from oobleck.lm.soft_prompt import messages_digest
from oobleck.lm.transformers import TransformersLM
from oobleck.lm.types import Message
from oobleck.module import Predict


@dataclass(slots=True)
class Row:
    """One training example: prompt ids, target ids, and which task it belongs to."""

    prompt: list[int]
    target: list[int]
    task: int = 0


@dataclass(slots=True)
class Cover:
    """The leading messages a soft prompt initialised from the hard prompt replaces."""

    count: int
    sha256: str
    text: str


def transformers_lm(lm: LM, where: str) -> TransformersLM:
    """The TransformersLM behind ``lm`` (through a CachedLM), or a ConfigError saying why not."""
    inner = lm.lm if isinstance(lm, CachedLM) else lm
    if not isinstance(inner, TransformersLM):
        raise ConfigError(
            f"{where} runs on {type(inner).__name__}, but soft prompts are trained and applied in-process: "
            "give it a TransformersLM (pip install 'oobleck[transformers]')"
        )
    return inner


def fits(predictor: Predict, example: Example) -> bool:
    """Whether ``example`` has every input and output field of the predictor's signature."""
    return all(f.name in example for f in predictor.signature.fields)


def hard_prompt_cover(predictor: Predict, lm: TransformersLM, example: Example) -> Cover:
    """The messages before the final user turn (instructions, field list, demos), as a Cover."""
    messages = _messages(predictor, example)
    head = messages[:-1]
    if not head:
        raise ConfigError("the predictor's prompt has no messages before the input to initialise from")
    return Cover(len(head), messages_digest(head), lm.chat_text(head, generation_prompt=False))


def rows(predictor: Predict, lm: TransformersLM, examples: Sequence[Example], *, cover: Cover | None, task: int = 0) -> list[Row]:
    """Training rows for every example that has the predictor's fields."""
    adapter = predictor.resolve_adapter()
    eos = lm.tokenizer.eos_token_id
    out = []
    for example in examples:
        if not fits(predictor, example):
            continue
        messages = _messages(predictor, example)
        text = lm.chat_text(messages)
        if cover is not None:
            if messages_digest(messages[: cover.count]) != cover.sha256 or not text.startswith(cover.text):
                raise ConfigError("the predictor's instructions or demos change between examples; cannot cover them")
            text = text[len(cover.text) :]
        outputs = {name: example[name] for name in predictor.signature.output_fields}
        target = lm.encode(adapter.format_outputs(predictor.signature, outputs)) + ([int(eos)] if eos is not None else [])
        out.append(Row(lm.encode(text), target, task))
    if not out:
        fields = [f.name for f in predictor.signature.fields]
        raise ConfigError(f"no training example has all of the fields {fields}; soft-prompt training needs labelled rows")
    return out


def _messages(predictor: Predict, example: Example) -> list[Message]:
    inputs: dict[str, Any] = {name: example[name] for name in predictor.signature.input_fields}
    return predictor.resolve_adapter().render(predictor.signature, demos=predictor.demos, inputs=inputs)
