"""Loading is linear in the artifact's size: the nesting check keeps no per-character state."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from oobleck import Predict
from oobleck.artifact import _schema, loads, to_dict
from oobleck.errors import ArtifactError


def _long_text_artifact(chars: int) -> str:
    # escapes and quotes inside the text, so the string scanner takes its slow path too
    piece = 'x\n"y[{'
    demo = {"text": piece * (chars // len(piece)), "label": "a"}
    return _schema.dumps(to_dict(Predict("text -> label", demos=[demo])))


def _peak(fn, *args, **kwargs) -> int:
    tracemalloc.start()
    try:
        fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_nesting_check_takes_constant_memory_on_a_long_string():
    text = _long_text_artifact(3_000_000)
    # The old check (a regex matching whole strings) kept a backtracking frame per character:
    # about 50 bytes per character of the text, here over 100 MB.
    assert _peak(_schema.check_text_depth, text, source="t") < 100_000


def test_loading_peaks_under_four_times_the_text():
    text = _long_text_artifact(3_000_000)
    art = None

    def load() -> None:
        nonlocal art
        art = loads(text)

    assert _peak(load) < 4 * len(text)
    assert art is not None and art.predictors["self"].demos[0]["text"].startswith('x\n"y[{')


@pytest.mark.parametrize("depth", [_schema.MAX_DEPTH + 2, 100_000])
def test_too_deep_text_is_still_refused_before_parsing(depth):
    with pytest.raises(ArtifactError, match="deeper than"):
        _schema.check_text_depth("[" * depth + "]" * depth, source="t")
    with pytest.raises(ArtifactError, match="deeper than"):
        loads('{"format": "oobleck.artifact", "x": ' + "[" * depth + "]" * depth + "}")


def test_brackets_inside_strings_and_escaped_quotes_do_not_count():
    deep_in_a_string = json.dumps(["[" * 1000 + '\\"{' * 1000])
    _schema.check_text_depth(deep_in_a_string, source="t")  # no error: all of it is one string
    legal = "[" * _schema.MAX_DEPTH + json.dumps('"]]]]') + "]" * _schema.MAX_DEPTH
    _schema.check_text_depth(legal, source="t")
    # an unterminated string hides nothing after it: the text is refused when parsed
    with pytest.raises(ArtifactError, match="not valid JSON"):
        loads('{"format": "oobleck.artifact", "a": "' + '\\"' * 10_000)


def test_a_byte_order_mark_and_the_size_cap_are_still_checked(monkeypatch):
    text = _long_text_artifact(100)
    assert loads(b"\xef\xbb\xbf" + text.encode()).predictors["self"].demos[0]["label"] == "a"
    monkeypatch.setattr(_schema, "MAX_BYTES", 1000)
    with pytest.raises(ArtifactError, match="limited to 1000 bytes"):
        _schema.decode_text(b" " * 1001, source="t")
    with pytest.raises(ArtifactError, match="empty"):
        loads(b"\xef\xbb\xbf \n")
