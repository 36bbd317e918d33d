"""Soft-prompt training given hostile settings or a starting prompt that does not fit (tiny random model)."""

from __future__ import annotations

import math
from typing import Any, Literal

import pytest

pytest.importorskip("peft")
pytest.importorskip("tokenizers")

import torch  # noqa: E402
from tiny_transformers import HIDDEN, build_tiny_model  # noqa: E402

import oobleck  # noqa: E402
from oobleck import Example, Predict  # noqa: E402
from oobleck.errors import ConfigError  # noqa: E402
from oobleck.lm import _hf_runtime as rt  # noqa: E402
from oobleck.lm.soft_prompt import SoftPrompt  # noqa: E402


class Sentiment(oobleck.Signature):
    """Classify."""

    text: str = oobleck.InputField()
    label: Literal["pos", "neg"] = oobleck.OutputField()


TRAIN = [
    Example(text="good", label="pos").with_inputs("text"),
    Example(text="bad", label="neg").with_inputs("text"),
]


def metric(example: Example, prediction: Any, trace: Any = None) -> float:
    return float(example.label == prediction.label)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from oobleck.lm.transformers import TransformersLM

    lm = TransformersLM(build_tiny_model(tmp_path_factory.mktemp("tiny")), temperature=0.0, max_tokens=4, n_threads=1)
    yield lm
    lm.close()


def tuning(**kw: Any) -> Any:
    from oobleck.soft import PromptTuning

    return PromptTuning(
        metric=metric, **{"steps": 1, "num_virtual_tokens": 2, "progress": False, "num_threads": 1, **kw}
    )


@pytest.mark.parametrize("lr", [math.inf, math.nan])
def test_an_infinite_or_nan_learning_rate_is_refused_when_built(lr):
    with pytest.raises(ConfigError, match="lr must be > 0 and finite"):
        tuning(lr=lr)


def test_more_virtual_tokens_than_a_soft_prompt_can_record_is_refused_when_built():
    # was accepted, then failed after building the PEFT model with a raw pydantic ValidationError
    with pytest.raises(ConfigError, match="num_virtual_tokens from 1 to 100000"):
        tuning(init="random", num_virtual_tokens=100_001)
    assert tuning(init="random", num_virtual_tokens=100_000).num_virtual_tokens == 100_000


def test_a_diverging_run_keeps_a_finite_checkpoint_and_reports_the_nan(tiny_lm):
    compiled = tuning(steps=2, eval_every=1, lr=1e30).compile(Predict(Sentiment, lm=tiny_lm), trainset=TRAIN)
    # the first step already turns the vectors to inf/NaN: the initial prompt stays the best
    assert math.isfinite(compiled.soft_prompt.norm)
    report = compiled.provenance["scores"]["predictors"]["self"]
    assert report["best_step"] == 0
    assert [v for _, v in report["history"]][1:] == [None, None]


def _start_like(trained: SoftPrompt, data: bytes, **changes: Any) -> SoftPrompt:
    description = {k: v for k, v in trained.describe().items() if k != "sha256"}
    return SoftPrompt.from_bytes(data, **{**description, **changes})


def test_training_further_from_a_soft_prompt_that_does_not_fit_is_a_config_error(tiny_lm):
    trained = tuning().compile(Predict(Sentiment, lm=tiny_lm), trainset=TRAIN).soft_prompt
    tokens = trained.num_virtual_tokens
    other_model = _start_like(
        trained,
        rt.tensors_bytes({"prompt": torch.zeros(tokens, 2 * HIDDEN), "state.prompt_embeddings": torch.zeros(2, 32)}),
        base_model={"backend": "transformers", "model": "other", "digest": "0123456789abcdef"},
    )
    wrong_shape = _start_like(
        trained,
        rt.tensors_bytes({"prompt": torch.zeros(tokens, HIDDEN), "state.prompt_embeddings": torch.zeros(2, 32)}),
    )
    no_state = _start_like(trained, rt.tensors_bytes({"prompt": torch.zeros(tokens, HIDDEN)}))
    garbage = _start_like(trained, b"not safetensors at all")
    for start, message in [
        (other_model, "trained on model 'other'"),
        (wrong_shape, "do not fit"),
        (no_state, "no trainable state"),
        (garbage, "do not fit"),
    ]:
        with pytest.raises(ConfigError, match=message):
            tuning().compile(Predict(Sentiment, lm=tiny_lm, soft_prompt=start), trainset=TRAIN)


@pytest.fixture(scope="module")
def dropout_folder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import json

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny-dropout") / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.5}))
    return folder


@pytest.mark.parametrize("method", ["PromptTuning", "PTuning", "PrefixTuning"])
def test_training_a_model_with_dropout_repeats_given_the_seed_and_scores_in_eval_mode(dropout_folder, method):
    import oobleck.soft
    from oobleck.lm.transformers import TransformersLM

    modes: list[bool] = []
    results = []
    for global_seed in (1, 2):  # whatever the caller's own torch RNG state
        lm = TransformersLM(dropout_folder, temperature=0.0, max_tokens=4, n_threads=1)

        def watching(example: Example, prediction: Any, trace: Any = None, lm: Any = lm) -> float:
            modes.append(lm.model.training)
            return metric(example, prediction)

        torch.manual_seed(global_seed)
        optimizer = getattr(oobleck.soft, method)(
            metric=watching, steps=3, eval_every=1, num_virtual_tokens=2, progress=False, num_threads=1
        )
        compiled = optimizer.compile(Predict(Sentiment, lm=lm), trainset=TRAIN, seed=7)
        results.append((compiled.soft_prompt.sha256, compiled.provenance["scores"]["predictors"]["self"]["history"]))
        assert lm.model.training is False  # left in eval mode for later calls
        lm.close()
    assert modes and not any(modes)  # dropout was off whenever the valset ran
    assert results[0] == results[1]
