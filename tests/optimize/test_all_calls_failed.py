"""A compile in which every LM call failed is an error (CompileError), in Python and in the CLI."""

from __future__ import annotations

import json

import httpx
import pytest
from scripted_lms import echo

from oobleck import CompileError, Example, FakeLM, OobleckError, Predict, context
from oobleck.cli import main
from oobleck.errors import LMConnectionError
from oobleck.lm.types import LMRequest
from oobleck.metrics import exact_match
from oobleck.optimize import BootstrapFewShot, RandomSearch

TRAIN = [Example(question=f"q{i}", answer=f"q{i}").with_inputs("question") for i in range(6)]


def _down(request: LMRequest) -> str:
    raise LMConnectionError("cannot reach http://127.0.0.1:9/v1 (connection refused)")


def test_bootstrap_whose_teacher_calls_all_fail_raises_compile_error() -> None:
    with context(lm=FakeLM(_down)), pytest.raises(CompileError) as caught:
        BootstrapFewShot(exact_match, max_errors=None).compile(
            Predict("question -> answer"), trainset=TRAIN, progress=False
        )
    error = caught.value
    assert isinstance(error, OobleckError) and isinstance(error, RuntimeError)
    assert error.failed == 6 and isinstance(error.first, LMConnectionError)
    assert "every LM call" in str(error) and "6 of 6" in str(error) and "connection refused" in str(error)


def test_some_calls_failing_is_not_a_compile_error() -> None:
    calls = {"n": 0}

    def flaky(request: LMRequest) -> str:
        calls["n"] += 1
        if calls["n"] % 2:
            raise LMConnectionError("dropped")
        return echo(request)

    with context(lm=FakeLM(flaky)):
        compiled = BootstrapFewShot(exact_match, max_errors=None).compile(
            Predict("question -> answer"), trainset=TRAIN, progress=False
        )
    assert compiled.provenance["scores"]["teacher_errors"] == 3


def test_answers_that_do_not_parse_are_not_failed_calls() -> None:
    # The LM answered every time; the program just scored nothing. That is a poor compile, not a dead LM.
    with context(lm=FakeLM(["no fields here"], cycle=True)):
        compiled = BootstrapFewShot(exact_match, max_errors=None).compile(
            Predict("question -> answer"), trainset=TRAIN, progress=False
        )
    assert compiled.provenance["scores"]["teacher_passed"] == 0


def test_a_search_whose_calls_all_fail_raises_compile_error() -> None:
    with context(lm=FakeLM(_down)), pytest.raises(CompileError, match="every LM call") as caught:
        RandomSearch(exact_match, num_candidates=2, max_errors=None).compile(
            Predict("question -> answer"), trainset=TRAIN, valset=TRAIN, progress=False
        )
    assert caught.value.failed > 0 and isinstance(caught.value.first, LMConnectionError)


def test_cli_compile_with_every_call_failing_exits_nonzero_and_saves_nothing(tmp_path, capsys) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in TRAIN), encoding="utf-8")
    out = tmp_path / "out.json"

    def server_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "model crashed"}})

    import openai

    from oobleck.lm.openai import OpenAILM

    client = openai.OpenAI(
        api_key="unused",
        base_url="http://test/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(server_error)),
    )
    lm = OpenAILM("m", client=client, max_retries=0)
    with context(lm=lm):
        code = main(
            [
                "compile",
                "question -> answer",
                "--train",
                str(train),
                "--metric",
                "exact_match",
                "-O",
                "max_errors=null",
                "--no-cache",
                "-o",
                str(out),
            ]
        )
    captured = capsys.readouterr()
    assert code == 1 and not out.exists()
    assert "every LM call" in captured.err and "6 of 6" in captured.err and "saved" not in captured.err
    assert captured.err.strip().splitlines()[-1].startswith("oobleck compile: error:")
