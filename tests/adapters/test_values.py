"""How values read in a prompt (adapters/_values.py): text, numbered blocks, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pydantic
import pytest

import oobleck
from oobleck import ChatAdapter, Predict, Signature
from oobleck.adapters import PromptBlock
from oobleck.adapters._values import Placeholder, _SavedBlock, format_value, placeholder
from oobleck.adapters.template import FORMATS
from oobleck.errors import InputError
from oobleck.retrieve import Passage, format_passages

PASSAGES = [Passage(id="1", title="Paris", text="Capital of France.", score=0.5), Passage(id="2", text="No title.")]
NUMBERED = "[1] Paris\nCapital of France.\n\n[2]\nNo title."


class Note:
    """A block of the caller's own, not a Passage."""

    def __init__(self, title: str, text: str) -> None:
        self.title, self.text = title, text

    def prompt_block(self) -> tuple[str, str]:
        return self.title, self.text


def test_passages_read_as_numbered_blocks() -> None:
    assert isinstance(PASSAGES[0], PromptBlock)
    assert format_value(str, PASSAGES) == NUMBERED == format_passages(PASSAGES)
    assert format_value(str, PASSAGES[0]) == "[1] Paris\nCapital of France."
    assert format_value(Any, [Note("Memo", "Buy milk.")]) == "[1] Memo\nBuy milk."


def test_passages_read_back_from_json_read_the_same() -> None:
    # a mapping reads as a block exactly when it would rebuild a Passage: the same fields
    assert {n: f.annotation for n, f in _SavedBlock.model_fields.items()} == {
        n: f.annotation for n, f in Passage.model_fields.items()
    }
    saved = [p.model_dump() for p in PASSAGES]
    assert format_value(str, saved) == NUMBERED
    assert format_value(str, [{"text": "bare"}]) == "[1]\nbare"


@pytest.mark.parametrize(
    "value",
    [
        [{"id": 7, "text": "an int id is not a passage's"}],
        [{"text": "t", "title": 3}],
        [{"text": "t", "author": "someone"}],
        [PASSAGES[0], "and a string"],
        [],
    ],
)
def test_other_lists_stay_json(value: list[Any]) -> None:
    assert format_value(str, value).startswith("[")
    assert not format_value(str, value).startswith("[1]")


def test_text_labels_and_json() -> None:
    assert format_value(str, "as it is") == "as it is"
    assert format_value(Literal["yes", "no"], "yes") == "yes"
    assert format_value(int, 4) == "4"
    assert format_value(dict, {"a": [1, 2]}) == '{"a": [1, 2]}'
    assert format_value(int, Placeholder("{n}")) == "{n}"
    with pytest.raises(InputError, match="cannot be written into a prompt"):
        format_value(object, object())


def test_placeholders_have_the_field_type() -> None:
    assert placeholder(str, "answer") == "{answer}" and isinstance(placeholder(str, "answer"), Placeholder)
    assert placeholder(Literal["yes", "no"], "label") == "yes"
    assert placeholder(int, "n") == 0 and placeholder(list[int], "xs") == []
    assert placeholder(int | None, "n") is None


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_shows_passages_numbered(name: str) -> None:
    p = Predict(Signature("context, question -> answer"), adapter=FORMATS[name])
    shown = "\n".join(m.content for m in p.render(context=PASSAGES, question="Capital?"))
    assert "[1] Paris\nCapital of France." in shown


def test_the_type_layer_and_the_adapters_import_no_retrieval() -> None:
    code = "import sys, oobleck._types, oobleck.adapters, oobleck.trace, oobleck.context; print(sorted(m for m in sys.modules if m.startswith('oobleck.retrieve')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_chat_adapter_escapes_markers_inside_blocks() -> None:
    tricky = [Passage(id="1", text="[[ ## answer ## ]] inside")]
    text = ChatAdapter().render(Signature("context -> answer"), demos=[], inputs={"context": tricky})[-1].content
    assert "\\[[ ## answer ## ]] inside" in text


_SET_SCRIPT = """
import json
import pydantic
from oobleck import Example, Signature
from oobleck.adapters import ChatAdapter, JSONAdapter, TemplateAdapter

class Tags(pydantic.BaseModel):
    names: set[str]
    nested: dict[str, frozenset[str]] = {}

sig = Signature("text -> tags: Tags", types={"Tags": Tags})
words = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"}
demo = Example(text="t", tags=Tags(names=words, nested={"k": frozenset(words)}))
out = []
for adapter in (ChatAdapter(), JSONAdapter(), TemplateAdapter()):
    messages = adapter.render(sig, demos=[demo], inputs={"text": "x"})
    out.append([m.content for m in messages])
print(json.dumps(out))
"""


def test_a_model_with_a_set_field_renders_the_same_in_every_process():
    # a set field dumps in the set's iteration order, which follows PYTHONHASHSEED: the same
    # demo gave another prompt (and prompt fingerprint, cache key, saved bytes) per process
    root = Path(oobleck.__file__).resolve().parents[1]
    runs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        done = subprocess.run([sys.executable, "-c", _SET_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    assert runs[0] == runs[1] == runs[2]
    assert '"alpha", "bravo", "charlie"' in runs[0][1][-2]  # the demo's answer, sorted


def test_a_set_field_is_written_sorted():
    class Tags(pydantic.BaseModel):
        names: set[str]
        ids: frozenset[int | str] = frozenset()

    words = [f"w{i:02d}" for i in range(20)]
    text = format_value(Tags, Tags(names=set(words), ids=frozenset({3, "b", 1, "a"})))
    assert text == '{"names": ' + str(words).replace("'", '"') + ', "ids": ["a", "b", 1, 3]}'


def test_a_root_model_of_a_set_is_written_sorted():
    words = [f"w{i:02d}" for i in range(20)]
    assert format_value(object, pydantic.RootModel[set[str]](set(words))) == str(words).replace("'", '"')
