"""Hostile signature strings and field schemas: only oobleck errors, bounded time."""

from __future__ import annotations

import pytest

from oobleck import ArtifactError, Signature, SignatureError
from oobleck._types import MAX_SCHEMA_NODES, type_from_schema
from oobleck.signature import Field


@pytest.mark.parametrize(
    "spec",
    [
        "a: tuple[()] -> b",
        "a: Union[()] -> b",
        "a: Optional[()] -> b",
        "a: dict[()] -> b",
        "a: Literal[()] -> b",
        "a -> b: " + " | ".join(["int"] * 5000),
        "a -> b: " + "list[" * 200 + "int" + "]" * 200,
        "a -> b: " + "(" * 500 + "int" + ")" * 500,
        "a -> b" + ", c" * 20_000,
        "a -> b: " + "Literal[" + ", ".join(map(str, range(10))) + "][0]",
    ],
)
def test_hostile_signature_strings_are_signature_errors(spec):
    with pytest.raises(SignatureError) as info:
        Signature(spec)
    assert str(info.value)


def test_long_but_sane_unions_still_work():
    sig = Signature("a -> b: " + " | ".join(["int", "str", "None"] * 20))
    assert sig.output_fields["b"].type is not None


def _fan_out(levels: int, width: int) -> dict:
    # D0 = anyOf[D1 x width], D1 = anyOf[D2 x width] ...: width**levels paths if expanded naively.
    defs = {f"D{i}": {"anyOf": [{"$ref": f"#/$defs/D{i + 1}"}] * width + [{"type": "integer"}]} for i in range(levels)}
    defs[f"D{levels}"] = {"type": "string"}
    return {"$ref": "#/$defs/D0", "$defs": defs}


def test_ref_fan_out_is_resolved_once_per_definition():
    tp = type_from_schema(_fan_out(12, 10))  # 10**12 paths if expanded naively
    assert tp is not None


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/$defs/A", "$defs": {"A": {"type": "array", "items": {"$ref": "#/$defs/A"}}}},
        {"$ref": "#/$defs/missing"},
        {"$ref": 5},
        {"anyOf": []},
        {"anyOf": "x"},
        {"enum": [[1], {"a": 2}]},
        {"enum": []},
        {"type": "object", "properties": {"__class__": {"type": "string"}}},
        {"type": "object", "properties": {"model_config": {"type": "string"}}},
        {"type": "object", "properties": {"not an identifier": {"type": "string"}}},
        {"type": "object", "properties": ["a"]},
        {"type": "array", "prefixItems": []},
        {"anyOf": [{"type": "integer"}] * (MAX_SCHEMA_NODES + 5)},
        {
            "type": "array",
            "items": {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "items": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "items": {
                                        "type": "array",
                                        "items": {
                                            "type": "array",
                                            "items": {
                                                "type": "array",
                                                "items": {
                                                    "type": "array",
                                                    "items": {
                                                        "type": "array",
                                                        "items": {
                                                            "type": "array",
                                                            "items": {
                                                                "type": "array",
                                                                "items": {
                                                                    "type": "array",
                                                                    "items": {
                                                                        "type": "array",
                                                                        "items": {
                                                                            "type": "array",
                                                                            "items": {
                                                                                "type": "array",
                                                                                "items": {
                                                                                    "type": "array",
                                                                                    "items": {
                                                                                        "type": "array",
                                                                                        "items": {
                                                                                            "type": "array",
                                                                                            "items": {
                                                                                                "type": "array",
                                                                                                "items": {
                                                                                                    "type": "array",
                                                                                                    "items": {
                                                                                                        "type": "array",
                                                                                                        "items": {
                                                                                                            "type": "array",
                                                                                                            "items": {
                                                                                                                "type": "array",
                                                                                                                "items": {
                                                                                                                    "type": "array",
                                                                                                                    "items": {
                                                                                                                        "type": "array",
                                                                                                                        "items": {
                                                                                                                            "type": "array",
                                                                                                                            "items": {
                                                                                                                                "type": "array",
                                                                                                                                "items": {
                                                                                                                                    "type": "array",
                                                                                                                                    "items": {
                                                                                                                                        "type": "array",
                                                                                                                                        "items": {
                                                                                                                                            "type": "array",
                                                                                                                                            "items": {
                                                                                                                                                "type": "array",
                                                                                                                                                "items": {
                                                                                                                                                    "type": "integer"
                                                                                                                                                },
                                                                                                                                            },
                                                                                                                                        },
                                                                                                                                    },
                                                                                                                                },
                                                                                                                            },
                                                                                                                        },
                                                                                                                    },
                                                                                                                },
                                                                                                            },
                                                                                                        },
                                                                                                    },
                                                                                                },
                                                                                            },
                                                                                        },
                                                                                    },
                                                                                },
                                                                            },
                                                                        },
                                                                    },
                                                                },
                                                            },
                                                        },
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
        [1, 2],
    ],
)
def test_hostile_field_schemas_are_artifact_errors(schema):
    with pytest.raises(ArtifactError):
        type_from_schema(schema)


def test_field_from_dict_with_hostile_spelling_falls_back_to_a_checked_schema():
    with pytest.raises(ArtifactError):
        Field.from_dict({"name": "a", "kind": "output", "type": "X" + "[" * 5000, "schema": {"anyOf": []}})
    with pytest.raises(ArtifactError):
        Field.from_dict({"name": "a", "kind": "output", "type": 12, "schema": {"$ref": "#/$defs/nope"}})
    field = Field.from_dict(
        {
            "name": "a",
            "kind": "output",
            "type": "Answer",
            "schema": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
        }
    )
    assert field.type.model_validate({"x": 1}).x == 1


@pytest.mark.parametrize("value", [object(), {"a": {1, 2}}, b"bytes", complex(1, 2)])
def test_inputs_that_cannot_be_written_into_a_prompt_are_input_errors(value):
    from oobleck import FakeLM, InputError, JSONAdapter, Predict

    for adapter in (None, JSONAdapter()):
        with pytest.raises(InputError, match="cannot be written into a prompt"):
            Predict("q: int -> a", lm=FakeLM([{"a": "x"}], cycle=True), adapter=adapter)(q=value)
