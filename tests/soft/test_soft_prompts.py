"""Soft-prompt optimizers on the real SmolLM2 (short runs on a handful of SST-2 rows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

import oobleck
from oobleck import Example, Predict
from oobleck.adapters.template import TemplateAdapter
from oobleck.artifact import load
from oobleck.errors import ConfigError
from oobleck.evaluation import evaluate
from oobleck.optimize import LabeledFewShot

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "sst2_train.jsonl"


class Sentiment(oobleck.Signature):
    """Classify the sentiment of a movie review sentence."""

    text: str = oobleck.InputField()
    label: Literal["positive", "negative"] = oobleck.OutputField()


def metric(example, prediction, trace=None):
    return float(example.label == prediction.label)


@pytest.fixture(scope="module")
def rows() -> list[Example]:
    with DATA.open(encoding="utf-8") as f:
        return [Example(json.loads(line)).with_inputs("text") for line in f][:12]


@pytest.fixture
def program(transformers_lm):
    return Predict(Sentiment, lm=transformers_lm, adapter=TemplateAdapter(output="prefix"), mode="score")


def short(cls, **kw):
    options = {
        "metric": metric,
        "steps": 4,
        "batch_size": 4,
        "eval_every": 4,
        "progress": False,
        "num_virtual_tokens": 6,
    }
    return cls(**{**options, **kw})


def methods():
    from oobleck.soft import MultitaskPromptTuning, PrefixTuning, PromptTuning, PTuning

    return {
        "prompt_tuning": lambda: short(PromptTuning, init="vocab", lr=3e-2),
        "prefix_tuning": lambda: short(PrefixTuning),
        "p_tuning": lambda: short(PTuning, encoder="LSTM", lr=3e-3),
        "multitask_prompt_tuning": lambda: short(MultitaskPromptTuning, adapt_steps=4),
    }


@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning", "p_tuning", "multitask_prompt_tuning"])
def test_training_lowers_the_loss(method, program, rows):
    # Four rows, batch four: every step sees the same batch, so the loss must go down.
    tuned = methods()[method]().compile(program, trainset=rows[:4], valset=rows[4:6], seed=0)
    scores = tuned.provenance["scores"]
    report = scores["predictors"]["self"] if "predictors" in scores else scores["task"]
    assert report["last_loss"] < report["first_loss"]
    assert tuned.soft_prompt is not None and tuned.soft_prompt.method == method
    assert program.soft_prompt is None  # the original program is untouched
    assert report["trainable_params"] > 0


@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning"])
def test_save_then_load_gives_identical_logits(method, program, rows, tmp_path, transformers_lm):
    tuned = methods()[method]().compile(program, trainset=rows[:4], valset=rows[4:6], seed=0)
    tuned.save(tmp_path / "tuned.json")
    loaded = load(tmp_path / "tuned.json", lm=transformers_lm).predictors["self"]
    assert loaded.soft_prompt == tuned.soft_prompt and loaded.mode == "score"
    for ex in rows[6:8]:
        before = transformers_lm.complete(tuned.request(text=ex.text).model_copy(update={"cache": "off"}))
        after = transformers_lm.complete(loaded.request(text=ex.text).model_copy(update={"cache": "off"}))
        assert [c.logprob for c in before.choices] == [c.logprob for c in after.choices]
    # ... and differs from the program without the soft prompt
    plain = transformers_lm.complete(program.request(text=rows[6].text))
    assert [c.logprob for c in plain.choices] != [
        c.logprob for c in transformers_lm.complete(loaded.request(text=rows[6].text)).choices
    ]


def test_prompt_from_the_hard_prompt_text_starts_at_its_score(program, rows, transformers_lm):
    """Tolerance: 1e-3 nats per label score (float noise of embeddings fed as vectors)."""
    from oobleck.soft import PromptTuning

    hard = LabeledFewShot(k=2).compile(program, trainset=rows[:6], seed=1)
    soft = short(PromptTuning, init="hard_prompt", steps=0).compile(hard, trainset=rows[:6], valset=rows[6:10], seed=0)
    prompt = soft.soft_prompt
    assert prompt.covers == 1 + 2 * 2  # the system message and both demo turns
    request = soft.request(text=rows[10].text)
    assert len(transformers_lm.prompt_ids(request.messages, prompt)) < len(transformers_lm.prompt_ids(request.messages))
    for ex in rows[6:12]:
        a = transformers_lm.complete(hard.request(text=ex.text))
        b = transformers_lm.complete(soft.request(text=ex.text))
        for x, y in zip(a.choices, b.choices):
            assert abs(x.logprob - y.logprob) < 1e-3
    report = soft.provenance["scores"]["predictors"]["self"]
    hard_score = evaluate(hard, rows[6:10], metric, progress=False).score
    assert report["initial_score"] == report["best_score"] == hard_score
    # the soft prompt is tied to the hard prompt it replaces
    changed = soft.copy()
    changed.demos = changed.demos[:1]
    with pytest.raises(ConfigError, match="instructions or demos changed"):
        changed(text="fine")


def test_checkpoint_resume_continues_the_same_run(program, rows, tmp_path):
    from oobleck.soft import PrefixTuning

    ckpt = tmp_path / "run.json"
    short(PrefixTuning, steps=2, eval_every=2).compile(
        program, trainset=rows[:6], valset=rows[6:8], seed=3, checkpoint=ckpt
    )
    resumed = short(PrefixTuning, steps=4, eval_every=2).compile(
        program, trainset=rows[:6], valset=rows[6:8], seed=3, checkpoint=ckpt
    )
    straight = short(PrefixTuning, steps=4, eval_every=2).compile(program, trainset=rows[:6], valset=rows[6:8], seed=3)
    a = resumed.provenance["scores"]["predictors"]["self"]
    b = straight.provenance["scores"]["predictors"]["self"]
    assert a["steps"] == b["steps"] == 4
    assert a["history"] == b["history"]
    assert a["last_loss"] == pytest.approx(b["last_loss"], abs=1e-4)


def test_a_saved_soft_prompt_trains_further(program, rows, tmp_path, transformers_lm):
    from oobleck.soft import PromptTuning

    first = short(PromptTuning, init="vocab", lr=3e-2).compile(program, trainset=rows[:4], valset=rows[4:6], seed=0)
    first.save(tmp_path / "first.json")
    again = load(tmp_path / "first.json", lm=transformers_lm).program
    second = short(PromptTuning, init="vocab", lr=3e-2, steps=2).compile(
        again, trainset=rows[:4], valset=rows[4:6], seed=0
    )
    r1 = first.provenance["scores"]["predictors"]["self"]
    r2 = second.provenance["scores"]["predictors"]["self"]
    # it starts exactly from the saved vectors (and their PEFT state), not from a new init
    assert r2["initial_sha256"] == first.soft_prompt.sha256
    assert r2["initial_score"] == r1["best_score"]


def test_a_predictor_on_another_backend_is_refused(rows):
    from oobleck import FakeLM
    from oobleck.soft import PromptTuning

    with pytest.raises(ConfigError, match="TransformersLM"):
        short(PromptTuning).compile(Predict(Sentiment, lm=FakeLM()), trainset=rows[:4], seed=0)


class _Interrupted(BaseException):
    """Stands for a crash or Ctrl-C in the middle of a run (not an error evaluate counts)."""


def test_multitask_checkpoint_resumes_both_stages(program, rows, tmp_path, monkeypatch):
    import oobleck.soft._trainer as trainer
    from oobleck.soft import MultitaskPromptTuning, Task

    calls = {"n": 0, "stop_at": 0, "steps": 0}
    real_loss = trainer._loss

    def counting_loss(*args, **kwargs):  # the real training step, counted
        calls["steps"] += 1
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(trainer, "_loss", counting_loss)

    def counting(example, prediction, trace=None):
        calls["n"] += 1
        if calls["n"] == calls["stop_at"]:
            raise _Interrupted
        return metric(example, prediction)

    def tasks():
        return {"a": Task(program, rows[:4], rows[8:10]), "b": Task(program, rows[4:8], rows[10:12])}

    def run(checkpoint=None, seed=5):
        calls["n"] = calls["steps"] = 0
        mpt = short(
            MultitaskPromptTuning, metric=counting, steps=2, adapt_steps=2, eval_every=2, batch_size=2, num_threads=1
        )
        return mpt.compile_tasks(tasks(), seed=seed, checkpoint=checkpoint)

    # Two rows per evaluation, evaluations at steps 0 and 2 of each stage: the shared stage makes
    # calls 1-4, adapting "a" 5-8, adapting "b" 9-12; stop at 11, after "b" trained its last step.
    ckpt = tmp_path / "mpt.json"
    calls["stop_at"] = 11
    with pytest.raises(_Interrupted):
        run(ckpt)
    assert calls["steps"] == 6
    calls["stop_at"] = 0
    resumed = run(ckpt)
    assert calls["steps"] == 0 and calls["n"] == 2  # no step trained again: only "b"'s last evaluation
    straight = run()
    assert calls["steps"] == 6 and calls["n"] == 12
    for name in ("a", "b"):
        for stage in ("source_scores", "scores"):
            a, b = resumed[name].provenance[stage], straight[name].provenance[stage]
            assert a["steps"] == b["steps"] == a["planned_steps"] == 2 and not a["stopped_by_time"]
            assert a["history"] == b["history"]
            assert a["last_loss"] == pytest.approx(b["last_loss"], abs=1e-4)
        assert resumed[name].soft_prompt.config == straight[name].soft_prompt.config
        assert "source" not in resumed[name].soft_prompt.config  # the artifact needs no side file
    # one state file per stage, each naming one tensor file and one best-prompt file (old ones removed)
    assert len(list(tmp_path.glob("*.soft.json"))) == 3
    assert len(list(tmp_path.glob("*.tensors.safetensors"))) == len(list(tmp_path.glob("*.best.safetensors"))) == 3
    with pytest.raises(ConfigError, match="another training run"):
        run(ckpt, seed=6)


def test_time_budget_is_reported_and_progress_bars_obey_compile(program, rows, monkeypatch, capsys):
    import oobleck._progress
    from oobleck.soft import PromptTuning

    monkeypatch.setattr(oobleck._progress, "on_terminal", lambda: True)  # as if on a terminal (every bar asks it)

    def run(shown: bool, compile_progress: bool) -> tuple[dict, str]:
        # a time budget of 0 s stops before the first step: only the start is scored
        tuned = short(PromptTuning, init="vocab", max_time_s=0.0, progress=shown).compile(
            program, trainset=rows[:4], valset=rows[4:6], seed=0, progress=compile_progress
        )
        return tuned.provenance["scores"]["predictors"]["self"], capsys.readouterr().err

    report, err = run(True, True)
    assert report["steps"] == 0 and report["planned_steps"] == 4 and report["stopped_by_time"]
    assert report["history"] == [[0, report["initial_score"]]]
    assert "prompt_tuning" in err  # the training bar
    assert "prompt_tuning" not in run(True, False)[1]  # compile(progress=False) silences every bar
    assert "prompt_tuning" not in run(False, True)[1]


def test_a_damaged_checkpoint_is_refused_clearly(program, rows, tmp_path):
    from oobleck.soft import PromptTuning

    def run():
        return short(PromptTuning, init="vocab", steps=1, eval_every=1).compile(
            program, trainset=rows[:2], valset=rows[2:3], seed=0, checkpoint=tmp_path / "run.json"
        )

    run()
    state_file = next(tmp_path.glob("*.soft.json"))
    good = json.loads(state_file.read_text(encoding="utf-8"))
    state_file.write_text(json.dumps({**good, "rng": [3, [1, 2], None]}), encoding="utf-8")
    with pytest.raises(ConfigError, match="is damaged"):
        run()
    # a file name in the state is only ever looked up beside it
    state_file.write_text(json.dumps({**good, "tensors_file": "../" + good["tensors_file"]}), encoding="utf-8")
    (tmp_path.parent / good["tensors_file"]).write_bytes((tmp_path / good["tensors_file"]).read_bytes())
    (tmp_path / good["tensors_file"]).unlink()
    with pytest.raises(ConfigError, match="cannot read soft-prompt checkpoint"):
        run()
