"""Hostile soft-prompt tensors on a real (tiny, randomly initialised) TransformersLM.

A soft prompt's side file is checked by sha256 when an artifact loads, but a consistent
artifact can still carry tensors that are wrong for the model: NaN, integers, another
model's shape, fewer tokens than the description says. A call must refuse them with a
ConfigError naming the problem, never crash in torch or answer with NaN scores.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import torch  # noqa: E402
from tiny_transformers import HEAD_DIM, HIDDEN, KV_HEADS, LAYERS, build_tiny_model  # noqa: E402

import oobleck  # noqa: E402
from oobleck.errors import ConfigError  # noqa: E402
from oobleck.lm import _hf_runtime as rt  # noqa: E402
from oobleck.lm.soft_prompt import SoftPrompt  # noqa: E402
from oobleck.lm.types import LMRequest, Message  # noqa: E402


class Sentiment(oobleck.Signature):
    """Classify."""

    text: str = oobleck.InputField()
    label: Literal["pos", "neg"] = oobleck.OutputField()


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from oobleck.lm.transformers import TransformersLM

    lm = TransformersLM(build_tiny_model(tmp_path_factory.mktemp("tiny")), temperature=0.0, max_tokens=3, n_threads=1)
    yield lm
    lm.close()


def soft(lm: Any, tensor: torch.Tensor, *, kind: str = "embeddings", tokens: int = 2) -> SoftPrompt:
    name = "prompt" if kind == "embeddings" else "prefix"
    return SoftPrompt.from_bytes(
        rt.tensors_bytes({name: tensor}),
        method="prompt_tuning" if kind == "embeddings" else "prefix_tuning",
        kind=kind,  # type: ignore[arg-type]
        num_virtual_tokens=tokens,
        base_model=lm.identity,
    )


def call(lm: Any, prompt: SoftPrompt, score: tuple[str, ...] | None) -> Any:
    return lm.complete(LMRequest(messages=(Message(role="user", content="hi"),), soft_prompt=prompt, score=score))


def test_a_well_formed_soft_prompt_of_each_kind_runs(tiny_lm):
    # the control: the checks below refuse only what is wrong
    for prompt in (
        soft(tiny_lm, torch.randn(2, HIDDEN)),
        soft(tiny_lm, torch.randn(LAYERS, 2, KV_HEADS, 2, HEAD_DIM), kind="kv"),
    ):
        scored = call(tiny_lm, prompt, ("a", "b"))
        assert all(c.logprobs[0].logprob == c.logprobs[0].logprob for c in scored.choices)  # not NaN
        assert call(tiny_lm, prompt, None).choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("score", [None, ("a", "b")], ids=["generate", "score"])
@pytest.mark.parametrize(
    ("tensor", "kind", "message"),
    [
        (torch.full((2, HIDDEN), float("nan")), "embeddings", "NaN or infinite"),
        (torch.full((2, HIDDEN), float("inf")), "embeddings", "NaN or infinite"),
        (torch.ones((2, HIDDEN), dtype=torch.int64), "embeddings", "floating point"),
        (torch.zeros((0, HIDDEN)), "embeddings", r"shape \(0, 16\)"),
        (torch.zeros((5, HIDDEN)), "embeddings", r"shape \(5, 16\)"),
        (torch.zeros((LAYERS, 2, KV_HEADS + 1, 2, HEAD_DIM)), "kv", "kv heads"),
        (torch.zeros((LAYERS, 2, KV_HEADS, 2, HEAD_DIM + 1)), "kv", "head_dim"),
        (torch.zeros((LAYERS, 2, KV_HEADS, 3, HEAD_DIM)), "kv", "2 virtual tokens"),
    ],
    ids=["nan", "inf", "int64", "no-tokens", "more-tokens-than-described", "kv-heads", "kv-head-dim", "kv-tokens"],
)
def test_a_soft_prompt_with_wrong_tensors_is_refused_with_a_config_error(tiny_lm, tensor, kind, message, score):
    with pytest.raises(ConfigError, match=message):
        call(tiny_lm, soft(tiny_lm, tensor, kind=kind), score)


def test_virtual_tokens_count_against_the_models_context(tiny_lm):
    # the tiny model reads 256 positions; 250 virtual tokens leave too few for the chat prompt
    long = soft(tiny_lm, torch.randn(250, HIDDEN) * 0.01, tokens=250)
    with pytest.raises(ConfigError, match="after the soft prompt's 250 virtual tokens; this model reads at most 256"):
        call(tiny_lm, long, None)
    # a prefix (kv) takes no input positions: the same count is fine there
    prefix = soft(tiny_lm, torch.randn(LAYERS, 2, KV_HEADS, 250, HEAD_DIM) * 0.01, kind="kv", tokens=250)
    assert call(tiny_lm, prefix, ("a", "b")).choices


def test_an_artifact_whose_side_file_holds_nan_vectors_loads_but_refuses_the_call(tiny_lm, tmp_path):
    from oobleck import Predict
    from oobleck.artifact import load

    # a consistent artifact (the side file matches its recorded sha256) with unusable tensors
    Predict(Sentiment, soft_prompt=soft(tiny_lm, torch.full((2, HIDDEN), float("nan")))).save(tmp_path / "p.json")
    predictor = load(tmp_path / "p.json").predictors["self"]
    predictor.lm = tiny_lm
    for mode in ("score", "generate"):
        predictor.mode = mode
        with pytest.raises(ConfigError, match="NaN or infinite"):
            predictor(text="good")
