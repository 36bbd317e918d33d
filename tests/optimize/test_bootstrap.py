"""BootstrapFewShot: metric-passing traces become demos; rounds, budgets, checkpoints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from _opt_helpers import POSITIVE, always, field_of, keyword_answer, sentiment_rows
from hypothesis import given, settings
from hypothesis import strategies as st

from oobleck import (
    Cache,
    CachedLM,
    ConfigError,
    Example,
    FakeLM,
    LMRequest,
    LMResponseError,
    Module,
    Predict,
)
from oobleck.errors import TooManyErrorsError
from oobleck.lm.cached import cache_key
from oobleck.metrics import exact_match
from oobleck.optimize import BootstrapFewShot, CostEstimate
from oobleck.optimize._identity import program_fingerprint


class TwoStep(Module):
    """Summarise, then classify the summary: two predictors with their own demos."""

    def __init__(self) -> None:
        self.summarise = Predict("sentence -> gist")
        self.classify = Predict("gist -> label")

    def forward(self, sentence: str):  # type: ignore[no-untyped-def]
        gist = self.summarise(sentence=sentence).gist
        return self.classify(gist=gist)


def two_step_lm(request: LMRequest) -> dict[str, str]:
    if "gist" in request.messages[0].content.split("Output fields:")[1]:
        return {"gist": "GIST " + field_of(request, "sentence")}
    gist = field_of(request, "gist")
    return {"label": "positive" if any(w in gist for w in POSITIVE) else "negative"}


def test_keeps_only_traces_that_pass_the_metric() -> None:
    train = sentiment_rows()
    lm = FakeLM(always("positive"))
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=3, max_labeled_demos=0).compile(
        Predict("sentence -> label", lm=lm), trainset=train
    )
    demos = compiled.predictors()[0].demos
    assert [d["sentence"] for d in demos] == [train[i].sentence for i in (0, 2, 4)]
    assert all(d["label"] == "positive" for d in demos)
    assert demos[0].input_keys == ("sentence",)
    # Labels get equal shares first (2 of 3 here): rows 0 and 2 pass, row 4 waits while the
    # negative rows are tried (4 attempts, twice their share, all failing); then row 4 fills.
    assert len(lm.requests) == 7
    assert compiled.provenance["scores"]["bootstrapped_rows"] == [0, 2, 4]


def test_metric_sees_the_trace_and_threshold_applies() -> None:
    seen = []

    def scored(example, prediction, trace):  # type: ignore[no-untyped-def]
        seen.append(len(trace))
        return 0.4 if example.label == "positive" else 0.9

    train = sentiment_rows(6)
    compiled = BootstrapFewShot(scored, metric_threshold=0.5, max_bootstrapped_demos=2, max_labeled_demos=0).compile(
        Predict("sentence -> label", lm=FakeLM(keyword_answer)), trainset=train
    )
    assert [d["label"] for d in compiled.predictors()[0].demos] == ["negative", "negative"]
    assert set(seen) == {1}


def test_demos_for_each_predictor_by_name_and_labelled_padding() -> None:
    train = sentiment_rows()
    program = TwoStep()
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=4).compile(
        program.set_lm(FakeLM(two_step_lm)), trainset=train
    )
    summarise, classify = compiled.summarise.demos, compiled.classify.demos
    assert [d.get("gist") for d in summarise[:2]] == ["GIST " + train[0].sentence, "GIST " + train[1].sentence]
    assert [d.get("gist") for d in classify[:2]] == ["GIST " + train[0].sentence, "GIST " + train[1].sentence]
    # the last step is padded to 4 with labelled rows that were not bootstrapped; the first
    # is not: a row (sentence, label) holds no gist, and a demo without its output teaches nothing
    assert len(classify) == 4 and len(summarise) == 2
    assert all(d in train[2:] for d in classify[2:])


def test_a_separate_teacher_is_mapped_by_predictor_name() -> None:
    teacher = TwoStep().set_lm(FakeLM(two_step_lm))
    student_lm = FakeLM(always("negative"))
    student = TwoStep().set_lm(student_lm)
    compiled = BootstrapFewShot(exact_match, teacher=teacher, max_bootstrapped_demos=1, max_labeled_demos=0).compile(
        student, trainset=sentiment_rows()
    )
    assert compiled.classify.demos[0]["label"] == "positive"
    assert student_lm.requests == []
    assert compiled.classify.lm is student_lm  # the student keeps its own LM

    with pytest.raises(ConfigError, match="same structure"):
        BootstrapFewShot(exact_match, teacher=Predict("sentence -> label")).compile(student, trainset=sentiment_rows())


def test_never_mutates_the_program_or_the_trainset() -> None:
    program = TwoStep().set_lm(FakeLM(two_step_lm))
    program.classify.demos.append(Example(gist="g", label="negative"))
    before = program_fingerprint(program)
    train = sentiment_rows()
    snapshot = json.dumps([r.to_dict() for r in train])
    compiled = BootstrapFewShot(exact_match, max_rounds=2).compile(program, trainset=train)
    assert program_fingerprint(program) == before
    assert json.dumps([r.to_dict() for r in train]) == snapshot
    assert compiled.classify is not program.classify


def test_later_rounds_ask_for_distinct_samples() -> None:
    lm = FakeLM(always("positive"))
    BootstrapFewShot(exact_match, max_bootstrapped_demos=8, max_labeled_demos=0, max_rounds=2).compile(
        Predict("sentence -> label", lm=lm), trainset=sentiment_rows(4)
    )
    first, second = lm.requests[:4], lm.requests[4:]
    assert [r.sample_index for r in first] == [0, 0, 0, 0] and all(r.temperature is None for r in first)
    # round 2 revisits only the two rows that failed, with a new sample index and temperature 1
    assert [field_of(r, "sentence") for r in second] == [sentiment_rows()[i].sentence for i in (1, 3)]
    assert all(r.sample_index == 1 and r.temperature == 1.0 for r in second)


def test_teacher_errors_are_counted_then_fatal() -> None:
    def flaky(request: LMRequest) -> dict[str, str]:
        if "tedious" in field_of(request, "sentence") or "dull" in field_of(request, "sentence"):
            raise LMResponseError("bad gateway")
        return keyword_answer(request)

    ok = BootstrapFewShot(exact_match, max_bootstrapped_demos=12, max_errors=2).compile(
        Predict("sentence -> label", lm=FakeLM(flaky)), trainset=sentiment_rows()
    )
    assert ok.provenance["scores"]["teacher_errors"] == 2
    with pytest.raises(TooManyErrorsError, match="max_errors=1"):
        BootstrapFewShot(exact_match, max_bootstrapped_demos=12, max_errors=1).compile(
            Predict("sentence -> label", lm=FakeLM(flaky)), trainset=sentiment_rows()
        )


def test_dry_run_returns_an_estimate_and_calls_nothing() -> None:
    lm = FakeLM(two_step_lm)
    est = BootstrapFewShot(exact_match, max_rounds=2).compile(
        TwoStep().set_lm(lm), trainset=sentiment_rows(), dry_run=True
    )
    assert isinstance(est, CostEstimate)
    assert est.program_runs == 24 and est.lm_calls == 48 and est.min_lm_calls == 8
    assert est.prompt_tokens > 0
    assert lm.requests == []


def test_provenance_is_json_and_names_the_data() -> None:
    train = sentiment_rows()
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=2).compile(
        Predict("sentence -> label", lm=FakeLM(keyword_answer)), trainset=train, seed=3
    )
    prov = compiled.provenance
    rows = [{"fields": r.to_dict(), "inputs": ["sentence"]} for r in train]
    canonical = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert prov["trainset_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert prov["optimizer"] == "BootstrapFewShot" and prov["seed"] == 3
    assert prov["settings"]["metric"] == "exact_match" and prov["settings"]["max_bootstrapped_demos"] == 2
    assert prov["lm_calls"] == 2 and prov["tokens"] > 0 and prov["stopped_early"] is False
    json.dumps(prov)


@settings(max_examples=15, deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_same_seed_same_compiled_program(seed: int) -> None:
    def compile_once() -> Module:
        return BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=5).compile(
            Predict("sentence -> label", lm=FakeLM(always("positive"))), trainset=sentiment_rows(), seed=seed
        )

    a, b = compile_once(), compile_once()
    assert program_fingerprint(a) == program_fingerprint(b)
    assert a.provenance == b.provenance


def test_budget_stops_cleanly_with_what_was_found() -> None:
    lm = FakeLM(always("positive"))
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=4, max_labeled_demos=0, max_lm_calls=3).compile(
        Predict("sentence -> label", lm=lm), trainset=sentiment_rows()
    )
    assert len(lm.requests) == 3
    assert compiled.provenance["stopped_early"] is True and compiled.provenance["lm_calls"] == 3
    assert len(compiled.predictors()[0].demos) == 2  # rows 0 and 2 passed before the stop


def test_budget_never_starts_a_run_that_would_cross_the_limit() -> None:
    lm = FakeLM(two_step_lm)
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=8, max_lm_calls=5).compile(
        TwoStep().set_lm(lm), trainset=sentiment_rows()
    )
    # runs cost 2 calls each: 2 runs (4 calls) fit, a third would make 6
    assert len(lm.requests) == 4 and compiled.provenance["stopped_early"] is True


def test_token_budget() -> None:
    # A token limit is a cap: a call is sent only if its bound (prompt bytes + max_tokens) fits.
    lm = FakeLM(always("positive"))
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=8, max_tokens=1).compile(
        Predict("sentence -> label", lm=lm), trainset=sentiment_rows()
    )
    assert len(lm.requests) == 0 and compiled.provenance["stopped_early"] is True
    assert compiled.provenance["stop_reason"].startswith("max_tokens=1")
    roomy = FakeLM(always("positive"))
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=8, max_tokens=2000).compile(
        Predict("sentence -> label", lm=roomy, max_tokens=20), trainset=sentiment_rows()
    )
    assert 0 < len(roomy.requests) < len(sentiment_rows()) and compiled.provenance["stopped_early"] is True
    assert compiled.provenance["tokens"] <= 2000


@pytest.mark.parametrize("cached", [False, True])
def test_resume_from_checkpoint_pays_for_no_call_twice(tmp_path: Path, cached: bool) -> None:
    backend = FakeLM(always("positive"))
    lm = CachedLM(backend, cache=Cache(tmp_path / "cache")) if cached else backend
    ckpt = tmp_path / "boot.json"
    train = sentiment_rows()

    def opt(limit: int | None) -> BootstrapFewShot:
        return BootstrapFewShot(exact_match, max_bootstrapped_demos=5, max_labeled_demos=0, max_lm_calls=limit)

    first = opt(4).compile(Predict("sentence -> label", lm=lm), trainset=train, checkpoint=ckpt)
    assert first.provenance["stopped_early"] and len(backend.requests) == 4
    resumed = opt(None).compile(Predict("sentence -> label", lm=lm), trainset=train, checkpoint=ckpt)
    keys = [cache_key(backend.identity, r) for r in backend.requests]
    assert len(keys) == len(set(keys))  # every row asked exactly once
    assert resumed.provenance["stopped_early"] is False
    assert resumed.provenance["lm_calls"] == len(keys)  # counted across both sessions

    fresh_lm = FakeLM(always("positive"))
    fresh = opt(None).compile(Predict("sentence -> label", lm=fresh_lm), trainset=train)
    assert program_fingerprint(fresh) == program_fingerprint(resumed)
    assert len(fresh_lm.requests) == len(keys)  # the two sessions together cost one uninterrupted run


def test_checkpoint_from_another_compile_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "boot.json"
    program = Predict("sentence -> label", lm=FakeLM(always("positive")))
    BootstrapFewShot(exact_match).compile(program, trainset=sentiment_rows(), checkpoint=ckpt)
    with pytest.raises(ConfigError, match="different compile"):
        BootstrapFewShot(exact_match, max_bootstrapped_demos=1).compile(
            program, trainset=sentiment_rows(), checkpoint=ckpt
        )


def test_demos_are_balanced_across_labels() -> None:
    rows = sentiment_rows()
    gold = {r.sentence: r.label for r in rows}
    # Every positive row first: in order, the first four passing rows would all be positive.
    train = [r for r in rows if r.label == "positive"] + [r for r in rows if r.label == "negative"]
    lm = FakeLM(lambda req: {"label": gold[field_of(req, "sentence")]})  # a teacher that is always right
    compiled = BootstrapFewShot(exact_match, max_bootstrapped_demos=4, max_labeled_demos=0).compile(
        Predict("sentence -> label", lm=lm), trainset=train
    )
    labels = [d["label"] for d in compiled.predictors()[0].demos]
    assert sorted(labels) == ["negative", "negative", "positive", "positive"]
    assert len(lm.requests) == 4  # positive rows beyond their share were skipped without a call


def test_default_teacher_sees_labelled_rows_but_never_the_one_asked() -> None:
    train = sentiment_rows()
    seen: list[tuple[str, list[str]]] = []

    def teacher_lm(req: LMRequest) -> dict[str, str]:
        demo_inputs = [m.content for m in req.messages[1:-1] if m.role == "user"]
        seen.append((field_of(req, "sentence"), demo_inputs))
        return {"label": "positive"}

    BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=4).compile(
        Predict("sentence -> label", lm=FakeLM(teacher_lm)), trainset=train
    )
    assert seen
    for asked, demos in seen:
        assert 3 <= len(demos) <= 4  # four labelled rows, minus the one being asked if drawn
        assert not any(asked in d for d in demos)
    bare: list[int] = []
    BootstrapFewShot(exact_match, max_bootstrapped_demos=2, teacher_shots=0).compile(
        Predict("sentence -> label", lm=FakeLM(lambda r: bare.append(len(r.messages)) or {"label": "positive"})),
        trainset=train,
    )
    assert set(bare) == {2}  # system + the row: no demos


def test_zero_calls_allowed_makes_no_call_and_says_it_stopped() -> None:
    from oobleck.optimize import RandomSearch

    for make in (
        lambda: BootstrapFewShot(exact_match, max_labeled_demos=2, max_lm_calls=0),
        lambda: RandomSearch(exact_match, num_candidates=2, max_lm_calls=0),
    ):
        lm = FakeLM(always("positive"))
        rows = sentiment_rows()
        compiled = make().compile(Predict("sentence -> label", lm=lm), trainset=rows[:6], valset=rows[6:10])
        assert lm.requests == []
        assert compiled.provenance["stopped_early"] is True and compiled.provenance["lm_calls"] == 0


def test_resume_with_a_smaller_budget_than_already_spent_stops_at_once(tmp_path: Path) -> None:
    ckpt = tmp_path / "boot.json"
    train = sentiment_rows()

    def opt(limit: int | None) -> BootstrapFewShot:
        return BootstrapFewShot(exact_match, max_bootstrapped_demos=5, max_labeled_demos=0, max_lm_calls=limit)

    first_lm = FakeLM(always("positive"))
    first = opt(4).compile(Predict("sentence -> label", lm=first_lm), trainset=train, checkpoint=ckpt)
    assert first.provenance["stopped_early"] and len(first_lm.requests) == 4
    smaller_lm = FakeLM(always("positive"))
    again = opt(2).compile(Predict("sentence -> label", lm=smaller_lm), trainset=train, checkpoint=ckpt)
    assert smaller_lm.requests == []  # 4 already spent is over the new limit of 2: nothing more
    assert again.provenance["stopped_early"] is True and again.provenance["lm_calls"] == 4
    assert program_fingerprint(again) == program_fingerprint(first)  # what was found is kept
    more_lm = FakeLM(always("positive"))
    opt(6).compile(Predict("sentence -> label", lm=more_lm), trainset=train, checkpoint=ckpt)
    assert len(more_lm.requests) == 2  # a larger limit pays only for the difference


def test_a_trainset_given_as_an_iterator_compiles_as_the_list_does() -> None:
    # compile reads its rows with list(...): the callback wrapper took len() of them first,
    # so a generator of Examples raised TypeError before the compile started.
    train = sentiment_rows()
    opt = BootstrapFewShot(exact_match, max_bootstrapped_demos=2, max_labeled_demos=0)
    from_list = opt.compile(Predict("sentence -> label", lm=FakeLM(always("positive"))), trainset=train)
    from_iter = opt.compile(Predict("sentence -> label", lm=FakeLM(always("positive"))), trainset=iter(train))
    assert from_iter.predictors()[0].demos == from_list.predictors()[0].demos
    assert from_iter.provenance["trainset_sha256"] == from_list.provenance["trainset_sha256"]
