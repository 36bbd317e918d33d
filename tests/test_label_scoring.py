"""Label scoring: ranking, multi-token and shared-prefix labels, free text first, bool, the default."""

from __future__ import annotations

import asyncio
import enum
import math
import typing
from typing import Literal

import pytest
from scoring_lm import ScoringLM

import oobleck
from oobleck import ChainOfThought, FakeLM, Predict
from oobleck.adapters import ChatAdapter, TemplateAdapter
from oobleck.errors import ConfigError, LMResponseError
from oobleck.label_scoring import label_scores, softmax
from oobleck.lm.base import BaseLM, Capabilities
from oobleck.lm.types import Choice, LMRequest, LMResponse, TokenLogprob, Usage
from oobleck.signature import ensure_signature


class Sentiment(oobleck.Signature):
    """Classify the sentiment."""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


def exp_softmax(*scores: float) -> list[float]:
    weights = [math.exp(s) for s in scores]
    return [w / sum(weights) for w in weights]


def test_the_most_likely_label_is_the_answer_and_its_distribution_comes_with_it():
    lm = ScoringLM({"great": {"positive": -0.2, "negative": -1.9}, "awful": {"positive": -2.5, "negative": -0.1}})
    p = Predict(Sentiment, lm=lm, mode="score")
    pred = p(text="great")
    assert pred.label == "positive"
    assert pred.probabilities["label"] == pytest.approx(
        dict(zip(["positive", "negative"], exp_softmax(-0.2, -1.9))), abs=1e-12
    )
    # named score mode without a calibration: raw scores, so both views agree
    assert pred.raw_probabilities == pred.probabilities
    assert p(text="awful").label == "negative"
    assert len(lm.requests) == 2 and all(r.score is not None for r in lm.requests)
    assert lm.requests[0].score == ("[[ ## label ## ]]\npositive", "[[ ## label ## ]]\nnegative")


def test_a_generated_prediction_carries_no_probabilities():
    pred = Predict(Sentiment, lm=FakeLM([{"label": "positive"}]))(text="x")
    assert pred.probabilities is None and pred.raw_probabilities is None


def test_multi_token_labels_are_scored_whole_and_mean_normalises_their_length():
    class Review(oobleck.Signature):
        """Rate it."""

        text: str = oobleck.InputField()
        verdict: Literal["good", "not good at all"] = oobleck.OutputField()

    table = {"*": {"good": -1.0, "not good at all": [-0.3, -0.3, -0.3, -0.3]}}
    summed = Predict(Review, lm=ScoringLM(table), mode="score")(text="meh")
    meaned = Predict(Review, lm=ScoringLM(table), mode="score", score_norm="mean")(text="meh")
    assert summed.verdict == "good" and meaned.verdict == "not good at all"
    assert list(meaned.raw_probabilities["verdict"].values()) == pytest.approx(exp_softmax(-1.0, -0.3), abs=1e-12)


def test_labels_sharing_a_prefix_are_ranked_by_what_differs():
    class Place(oobleck.Signature):
        """Where?"""

        text: str = oobleck.InputField()
        state: Literal["new york", "new jersey", "new"] = oobleck.OutputField()

    table = {"*": {"new york": [-1.0, -0.5], "new jersey": [-1.0, -2.0], "new": -1.9}}
    pred = Predict(Place, lm=ScoringLM(table), mode="score")(text="Albany")
    assert pred.state == "new york"
    # the shared layout tokens drop out; the labels' own tokens are all counted
    assert list(pred.raw_probabilities["state"].values()) == pytest.approx(exp_softmax(-1.5, -3.0, -1.9), abs=1e-12)


def test_label_scores_drop_only_the_tokens_every_completion_shares():
    t = TokenLogprob
    a = Choice(text="x", logprobs=(t(token="A", logprob=-1.0), t(token="no", logprob=-0.5)))
    b = Choice(
        text="y", logprobs=(t(token="A", logprob=-1.0), t(token="no", logprob=-0.5), t(token=" way", logprob=-1.0))
    )
    assert label_scores([a, b], "sum") == [-0.5, -1.5]  # "no" stays: it is all of a's label
    assert label_scores([a, b], "mean") == [-0.5, -0.75]
    with pytest.raises(LMResponseError, match="token log-probabilities"):
        label_scores([Choice(text="x"), b], "sum")


def test_bool_outputs_are_labels_written_as_the_adapter_writes_them():
    lm = ScoringLM({"*": {"true": -2.0, "false": -0.5}})
    p = Predict("claim -> supported: bool", lm=lm, mode="score")
    pred = p(claim="the moon is cheese")
    assert pred.supported is False
    assert set(pred.probabilities["supported"]) == {True, False}
    writes = ChatAdapter().format_outputs(p.signature, {"supported": True})
    assert lm.requests[0].score[0] == writes


def test_enum_labels_answer_with_members():
    class Color(enum.Enum):
        RED = "red"
        BLUE = "blue"

    lm = ScoringLM({"*": {"red": -3.0, "blue": -0.1}})
    sig = oobleck.Signature("thing -> color").with_updated_field("color", type=Color)
    pred = Predict(sig, lm=lm, mode="score")(thing="sky")
    assert pred.color is Color.BLUE and pred.probabilities["color"][Color.BLUE] > 0.9


def test_free_text_before_the_label_is_generated_then_the_label_scored_given_it():
    def think(request: LMRequest) -> str:
        return "[[ ## reasoning ## ]]\nit says great\n\n[[ ## label ## ]]\nnegative\n\n[[ ## completed ## ]]"

    lm = ScoringLM({"great": {"positive": -0.1, "negative": -3.0}}, generate=think)
    cot = ChainOfThought(Sentiment, lm=lm, mode="score")
    with oobleck.trace() as t:
        pred = cot(text="great")
    assert pred.reasoning == "it says great" and pred.label == "positive"
    generated, scored = lm.requests
    assert generated.score is None and generated.stop is not None
    assert scored.score == tuple(
        ChatAdapter().format_outputs(cot.predict.signature, {"reasoning": "it says great", "label": v})
        for v in ("positive", "negative")
    )
    assert scored.messages == generated.messages and scored.stop is None
    # the generating step is traced (and counted) without outputs: no demo is made of half an answer
    assert [e.outputs for e in t.entries] == [None, {"reasoning": "it says great", "label": "positive"}]
    assert pred.usage.calls == 2


def test_several_label_outputs_are_scored_in_turn_each_given_the_ones_before():
    class Two(oobleck.Signature):
        """Tag it."""

        text: str = oobleck.InputField()
        topic: Literal["sport", "music"] = oobleck.OutputField()
        tone: Literal["happy", "sad"] = oobleck.OutputField()

    lm = ScoringLM({"*": {"sport": -0.1, "music": -2.0, "happy": -1.0, "sad": -0.2}})
    pred = Predict(Two, lm=lm, mode="score")(text="we won")
    assert (pred.topic, pred.tone) == ("sport", "sad")
    assert lm.requests[1].score == tuple(
        ChatAdapter().format_outputs(ensure_signature(Two), {"topic": "sport", "tone": v}) for v in ("happy", "sad")
    )
    assert set(pred.probabilities) == {"topic", "tone"}


def test_a_backend_that_cannot_score_is_refused_before_any_call():
    lm = FakeLM([{"label": "positive"}])
    with pytest.raises(ConfigError, match=r"capabilities\.scoring.*FakeLM only generates"):
        Predict(Sentiment, lm=lm, mode="score")(text="good")
    assert lm.requests == []


def test_a_backend_returning_no_token_log_probabilities_is_an_lm_error():
    class Blind(BaseLM):
        capabilities = Capabilities(scoring=True)

        def complete(self, request: LMRequest) -> LMResponse:
            return LMResponse(choices=tuple(Choice(text=c) for c in request.score), usage=Usage(calls=1))

    with oobleck.trace() as t, pytest.raises(LMResponseError, match="without token log-probabilities"):
        Predict(Sentiment, lm=Blind(), mode="score")(text="good")
    assert t.entries[0].error is not None and t.usage.calls == 1


def test_score_mode_needs_labels_and_free_text_only_before_them():
    with pytest.raises(ConfigError, match="comes after the label"):
        Predict("q -> label: bool, why", mode="score")
    with pytest.raises(ConfigError, match="mode must be"):
        Predict(Sentiment, mode="rank")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="score_norm"):
        Predict(Sentiment, score_norm="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="calibration must be"):
        Predict(Sentiment, calibration="platt")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the default


def test_by_default_a_scoring_backend_scores_a_label_only_signature_and_says_why():
    lm = ScoringLM({"*": {"positive": -0.5, "negative": -1.0}})
    p = Predict(Sentiment, lm=lm)
    mode, why = p.mode_choice()
    assert mode == "score" and "capabilities.scoring" in why and "calibrated" in why
    adapter, reason = p.adapter_choice()
    assert adapter == TemplateAdapter(output="prefix") and "mode='score'" in reason and "calibrated" in reason
    assert p(text="fine").label in ("positive", "negative")
    assert "mode=" not in repr(p)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda lm: Predict(Sentiment, lm=FakeLM()), "cannot score"),
        (lambda lm: Predict(Sentiment, lm=lm, adapter=TemplateAdapter(output="prefix")), "adapter was named"),
        (lambda lm: Predict(Sentiment, lm=lm, n=3), "n > 1"),
        (lambda lm: Predict("q -> a", lm=lm), "no output"),
        (lambda lm: ChainOfThought(Sentiment, lm=lm).predict, "free-text output"),
        (lambda lm: Predict(Sentiment), "no LM"),
        (lambda lm: Predict(Sentiment, lm=lm, mode="generate"), "named on the predictor"),
    ],
)
def test_the_default_generates_where_scoring_does_not_fit(make, why):
    p = make(ScoringLM({}))
    mode, reason = p.mode_choice()
    assert mode == "generate" and why in reason


def test_an_adapter_named_in_the_context_keeps_generation():
    lm = FakeLM([{"label": "negative"}], capabilities=Capabilities(scoring=True))
    with oobleck.context(adapter=ChatAdapter()):
        assert Predict(Sentiment, lm=lm)(text="x").label == "negative"
    assert lm.requests[0].score is None


def test_the_default_on_fakelm_is_the_generate_path_unchanged():
    lm = FakeLM([{"label": "positive"}])
    p = Predict(Sentiment, lm=lm)
    assert p(text="x").label == "positive"
    assert lm.requests[0].score is None and lm.requests[0].stop == ("[[ ## completed ## ]]",)


def test_async_scoring_matches_sync():
    lm = ScoringLM({"*": {"positive": -0.7, "negative": -0.4}})
    p = Predict(Sentiment, lm=lm)
    sync = p(text="a")
    again = asyncio.run(p.acall(text="a"))
    assert again.label == sync.label and again.probabilities == sync.probabilities


def test_softmax_is_stable_for_very_negative_scores():
    assert softmax([-1000.0, -1001.0]) == pytest.approx(exp_softmax(0.0, -1.0))


@pytest.mark.parametrize("labels", [Literal[1, True], Literal[0, False], Literal[True, 1, "x"]])
def test_labels_equal_in_python_are_not_scored_into_one_distribution_entry(labels):
    # 1 == True (and hash alike): a distribution keyed by label would merge them, losing one
    # label's probability (and a calibration prior would no longer fit the labels)
    sig = ensure_signature("text -> label").with_updated_field("label", type=labels)

    def scores(request):
        return {t: -1.0 - i for i, t in enumerate(request.score)}

    with pytest.raises(ConfigError, match="equal"):
        Predict(sig, lm=FakeLM(scores=scores), mode="score")
    lm = FakeLM([{"label": typing.get_args(labels)[1]}], scores=scores)
    p = Predict(sig, lm=lm)
    mode, why = p.mode_choice()
    assert mode == "generate" and "equal" in why
    assert p(text="x").label == typing.get_args(labels)[1]
    assert lm.requests[-1].score is None


class OneOrText(enum.Enum):
    ONE = 1
    TEXT = "1"


def test_enum_labels_one_and_text_one_are_written_alike_in_demos_and_scored_completions():
    # a demo wrote the text member raw (1), the same as the int member, while the scored
    # completion wrote it as JSON ("1"): demos taught a spelling the labels were not scored in
    sig = ensure_signature("text -> label").with_updated_field("label", type=OneOrText)
    lm = FakeLM(scores=lambda request: {t: (-2.0 if t.endswith("1") else -0.5) for t in request.score})
    demos = [{"text": "a", "label": OneOrText.TEXT}, {"text": "b", "label": OneOrText.ONE}]
    pred = Predict(sig, lm=lm, mode="score", demos=demos)(text="x")
    request = lm.requests[0]
    shown = [m.content for m in request.messages if m.role == "assistant"]
    assert shown == [request.score[1], request.score[0]]
    assert len(set(request.score)) == 2 and pred.label is OneOrText.TEXT


class Pairs(enum.Enum):
    LOW = [0, 1]
    HIGH = [1, 2]


def test_enum_labels_with_unhashable_values_are_scored():
    sig = ensure_signature("text -> label").with_updated_field("label", type=Pairs)
    lm = FakeLM(scores=lambda request: {t: -1.0 - i for i, t in enumerate(request.score)})
    pred = Predict(sig, lm=lm, mode="score")(text="x")
    assert pred.label is Pairs.LOW and list(pred.probabilities["label"]) == [Pairs.LOW, Pairs.HIGH]
