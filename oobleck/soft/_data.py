"""Training rows for a soft prompt: a predictor's prompt and target as token ids.

The prompt is exactly what the predictor sends (its adapter's messages through the model's
chat template, minus the messages a covering soft prompt replaces); the target is the
adapter's rendering of the example's output fields, then the end-of-turn token, which is what
the model must learn to write.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oobleck import _types
from oobleck.errors import ConfigError
from oobleck.example import Example
from oobleck.lm.base import LM
from oobleck.lm.cached import CachedLM
from oobleck.lm.soft_prompt import messages_digest
from oobleck.lm.transformers import TransformersLM
from oobleck.lm.types import Message
from oobleck.predict import Predict


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


def check_labels(predictor: Predict, examples: Sequence[Example], what: str) -> None:
    """Every output value of a Literal or Enum field must be one of its labels.

    A label the signature does not allow would be trained as a target the predictor can never
    return (scoring ranks only the declared labels); better to say so before training.

    Raises:
        ConfigError: naming the row, the field, the value and the allowed labels.
    """
    for name, spec in predictor.signature.output_fields.items():
        choices = _types.literal_choices(spec.type)
        if choices is None:
            continue
        for i, example in enumerate(examples):
            if name not in example:
                continue
            value = example[name]
            if isinstance(value, enum.Enum):
                value = value.value
            if value not in choices:
                raise ConfigError(
                    f"{what}[{i}]: {name}={value!r} is not one of the labels {list(choices)} of the signature's "
                    f"{name!r} field; fix the row or add the label to the field's type"
                )


def hard_prompt_cover(predictor: Predict, lm: TransformersLM, example: Example) -> Cover:
    """The messages before the final user turn (instructions, field list, demos), as a Cover."""
    messages = _messages(predictor, example)
    head = messages[:-1]
    if not head:
        raise ConfigError("the predictor's prompt has no messages before the input to initialise from")
    return Cover(len(head), messages_digest(head), lm.chat_text(head, generation_prompt=False))


def rows(
    predictor: Predict, lm: TransformersLM, examples: Sequence[Example], *, cover: Cover | None, task: int = 0
) -> list[Row]:
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
        target = lm.encode(adapter.format_outputs(predictor.signature, outputs)) + (
            [int(eos)] if eos is not None else []
        )
        out.append(Row(lm.encode(text), target, task))
    if not out:
        fields = [f.name for f in predictor.signature.fields]
        raise ConfigError(
            f"no training example has all of the fields {fields}; soft-prompt training needs labelled rows"
        )
    return out


def _messages(predictor: Predict, example: Example) -> list[Message]:
    inputs: dict[str, Any] = {name: example[name] for name in predictor.signature.input_fields}
    return predictor.resolve_adapter().render(predictor.signature, demos=predictor.demos, inputs=inputs)
