"""TransformersLM on the real SmolLM2: generation, batching, seeds, stop strings, scoring."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pytest

import oobleck
from oobleck import Predict
from oobleck.adapters.template import TemplateAdapter
from oobleck.errors import ConfigError
from oobleck.lm.types import LMRequest, Message

pytestmark = pytest.mark.slow


def ask(text: str, **params) -> LMRequest:
    return LMRequest(
        messages=(Message(role="system", content="You are terse."), Message(role="user", content=text)), **params
    )


class Sentiment(oobleck.Signature):
    """Classify the sentiment of a movie review sentence."""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


def test_capabilities_and_identity_are_honest(transformers_lm):
    caps = transformers_lm.capabilities
    assert caps.scoring and caps.soft_prompts and caps.logprobs and caps.n and not caps.json_schema
    ident = transformers_lm.identity
    assert ident["backend"] == "transformers" and len(ident["digest"]) == 16
    with pytest.raises(ConfigError, match="JSON schema"):
        transformers_lm.complete(ask("hi", response_format={"name": "x", "schema": {"type": "object"}}))


def test_greedy_generation_with_stop_string_and_logprobs(transformers_lm):
    full = transformers_lm.complete(ask("What is the capital of France?", max_tokens=12, logprobs=True, top_logprobs=2))
    choice = full.choices[0]
    assert "Paris" in choice.text
    assert len(choice.logprobs) == full.usage.completion_tokens
    assert all(t.logprob <= 0 and len(t.top) == 2 for t in choice.logprobs)
    cut = transformers_lm.complete(ask("What is the capital of France?", max_tokens=12, stop=("Paris",)))
    assert cut.choices[0].finish_reason == "stop" and "Paris" not in cut.text
    assert choice.text.startswith(cut.text)


def test_requests_arriving_together_batch_and_match_single_calls(transformers_lm):
    prompts = [f"Name a colour, number {i}." for i in range(4)]
    one_by_one = [transformers_lm.complete(ask(p, max_tokens=10)).text for p in prompts]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: transformers_lm.complete(ask(p, max_tokens=10)).text, prompts))
    assert together == one_by_one


def test_seeded_sampling_is_reproducible_whatever_shares_the_batch(transformers_lm):
    request = ask("Invent a name for a cat.", temperature=1.0, seed=7, max_tokens=8)
    alone = transformers_lm.complete(request).text
    with ThreadPoolExecutor(3) as pool:
        batch = list(pool.map(transformers_lm.complete, [request, ask("Say hi.", max_tokens=8), request]))
    assert batch[0].text == alone == batch[2].text
    others = {transformers_lm.complete(request.model_copy(update={"sample_index": i})).text for i in range(1, 4)}
    assert others - {alone}, "other sample indexes should draw other samples"


def test_scoring_agrees_with_generation(transformers_lm):
    generated = transformers_lm.complete(ask("What is the capital of France?", max_tokens=8, logprobs=True)).choices[0]
    scored = transformers_lm.complete(
        ask("What is the capital of France?", score=(generated.text, "The capital of France is Rome."))
    )
    assert [c.text for c in scored.choices] == [generated.text, "The capital of France is Rome."]
    # The same tokens get the same log-probability whether generated or scored (tolerance: float noise).
    if generated.finish_reason == "length":
        assert math.isclose(scored.choices[0].logprob, generated.logprob, abs_tol=1e-3)
    assert scored.choices[0].logprob > scored.choices[1].logprob


def test_score_mode_predict_agrees_with_generate_mode_on_an_easy_example(transformers_lm):
    adapter = TemplateAdapter(output="prefix")
    text = "An absolute masterpiece: I loved every wonderful minute of it."
    scored = Predict(Sentiment, lm=transformers_lm, adapter=adapter, mode="score")(text=text)
    generated = Predict(Sentiment, lm=transformers_lm, adapter=adapter)(text=text)
    assert scored.label == generated.label == "positive"
    assert scored.usage.calls == 1 and scored.usage.completion_tokens == 0


def test_a_model_folder_without_config_is_refused(tmp_path):
    from oobleck.lm.transformers import TransformersLM

    with pytest.raises(ConfigError, match="config.json"):
        TransformersLM(tmp_path)


def test_without_a_json_grammar_no_adapter_asks_for_constrained_output(transformers_lm):
    # TransformersLM declares json_schema=False: the default adapter is plain chat, and the JSON
    # adapters ask for JSON in words instead of sending a schema the backend would refuse.
    from oobleck.adapters import ChatAdapter, JSONAdapter

    plain = Predict(Sentiment, lm=transformers_lm, mode="generate")  # the default would score its labels
    assert isinstance(plain.resolve_adapter(), ChatAdapter)
    for predictor in (
        plain,
        Predict(Sentiment, lm=transformers_lm, adapter=JSONAdapter()),
        Predict(Sentiment, lm=transformers_lm, adapter=TemplateAdapter(output="json")),
    ):
        request = predictor.request(text="A wonderful film.")
        assert request.response_format is None
    assert transformers_lm.complete(request).choices[0].text  # accepted and answered
