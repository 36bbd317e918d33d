"""The `oobleck` command, run in-process through main([...]) with a FakeLM in the context."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scripted_lms import echo

from oobleck import FakeLM, JSONAdapter, Predict, context
from oobleck.artifact import load
from oobleck.cli import main

FIXTURES = Path(__file__).parents[1] / "fixtures"
ROOT = Path(__file__).parents[2]
TWO_STEP = f"{FIXTURES / 'qa_program.py'}:TwoStep"


@pytest.fixture
def qa(tmp_path) -> Path:
    p = Predict("question -> answer", demos=[{"question": "Capital of France?", "answer": "Paris"}])
    p.signature = p.signature.with_instructions("Answer in one word.")
    p.provenance = {"optimizer": "Manual", "seed": 7}
    p.save(tmp_path / "qa.json")
    return tmp_path / "qa.json"


def run_cli(capsys, *argv, lm=None):
    with context(lm=lm or FakeLM(echo)):
        code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_in_a_subprocess():
    out = subprocess.run(
        [sys.executable, "-m", "oobleck.cli", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    for command in ("compile", "run", "eval", "inspect", "diff", "serve"):
        assert command in out.stdout
    assert "anthropic/MODEL" in out.stdout and "my_metrics.py:label_ok" in out.stdout


def test_subcommand_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compile", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--max-lm-calls N" in out and "--dry-run" in out and "--optimizer" in out


def test_run_one_json_object(capsys, qa):
    code, out, _ = run_cli(capsys, "run", qa, '{"question": "2+2?"}')
    assert code == 0 and json.loads(out) == {"answer": "2+2?"}


def test_run_jsonl_reports_bad_rows_and_goes_on(capsys, qa, tmp_path):
    rows = tmp_path / "in.jsonl"
    rows.write_text('{"question": "a"}\n\n{"wrong": "b"}\n{"question": "c"}\n')
    code, out, _ = run_cli(capsys, "run", qa, "--jsonl", rows)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert lines[0] == {"answer": "a"} and lines[1]["error"]["type"] == "InputError" and lines[2] == {"answer": "c"}


def test_run_jsonl_of_a_user_program_reports_rows_its_forward_does_not_take_and_goes_on(capsys, tmp_path):
    from qa_program import TwoStep

    TwoStep().save(tmp_path / "two.json")
    rows = tmp_path / "in.jsonl"
    rows.write_text('{"question": "a"}\n{"wrong": "b"}\n{"question": "c"}\n')
    code, out, _ = run_cli(capsys, "run", tmp_path / "two.json", "--jsonl", rows, "--program", TWO_STEP)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and len(lines) == 3, out
    assert lines[1]["error"]["type"] == "InputError" and "question" in lines[1]["error"]["message"]
    assert lines[0]["answer"] == "a" and lines[2]["answer"] == "c"


def test_run_user_program_needs_its_class(capsys, tmp_path):
    from qa_program import TwoStep

    TwoStep().save(tmp_path / "two.json")
    code, _, err = run_cli(capsys, "run", tmp_path / "two.json", '{"question": "q"}')
    assert code == 1 and "program=TwoStep()" in err
    code, out, _ = run_cli(capsys, "run", tmp_path / "two.json", '{"question": "q"}', "--program", TWO_STEP)
    assert code == 0 and json.loads(out)["answer"] == "q"
    code, out, _ = run_cli(
        capsys, "run", tmp_path / "two.json", '{"question": "q", "answer": "a"}', "--predictor", "check"
    )
    assert code == 0 and json.loads(out) == {"ok": True}


def test_inspect_shows_the_prompt_templates(capsys, qa):
    code, out, _ = run_cli(capsys, "inspect", qa)
    assert code == 0
    assert "Answer in one word." in out and "{question}" in out and "Capital of France?" in out
    assert "compiled   by Manual, seed 7" in out and "--- system ---" in out
    assert "cost       not recorded" in out
    code, out, _ = run_cli(capsys, "inspect", qa, "--inputs", '{"question": "2+2?"}', "--json")
    data = json.loads(out)
    assert data["predictors"]["self"][-1]["content"].startswith("[[ ## question ## ]]\n2+2?")
    assert data["provenance"] == {"optimizer": "Manual", "seed": 7}
    assert data["adapters"]["self"]["name"] == "chat" and data["adapters"]["self"]["auto"] is True


def test_diff_shows_changed_instructions_and_demos(capsys, qa, tmp_path):
    art = load(qa)
    p = art.program.copy()
    p.signature = p.signature.with_instructions("Answer in one word, in English.")
    p.demos = [*p.demos, {"question": "2+2?", "answer": "4"}]
    p.save(tmp_path / "after.json", provenance={"optimizer": "Manual", "seed": 8})
    code, out, _ = run_cli(capsys, "diff", qa, tmp_path / "after.json")
    assert code == 1
    assert "== predictor self ==" in out
    assert "  -Answer in one word." in out and "  +Answer in one word, in English." in out
    assert "  word by word: Answer in one [-word.-] {+word, in English.+}" in out
    assert '+ demo {"answer": "4", "question": "2+2?"}' in out
    assert '- {"seed": 7}' in out and '+ {"seed": 8}' in out
    code, out, _ = run_cli(capsys, "diff", qa, qa)
    assert code == 0 and out.strip() == "no differences"
    code, out, _ = run_cli(capsys, "diff", tmp_path / "after.json", qa, "--json")
    kinds = [c["kind"] for c in json.loads(out)]
    assert kinds == ["instructions", "demo_removed", "provenance"]


def test_errors_go_to_stderr_with_status_1(capsys, qa, tmp_path):
    code, out, err = run_cli(capsys, "inspect", tmp_path / "missing.json")
    assert code == 1 and out == "" and "cannot read artifact" in err
    (tmp_path / "bad.json").write_text('{"format": "oobleck.artifact", "schema_version": 7}')
    code, _, err = run_cli(capsys, "run", tmp_path / "bad.json", "{}")
    assert code == 1 and "Upgrade oobleck" in err
    code, _, err = run_cli(capsys, "run", qa, '{"question": "x"}', "--lm", "gpt")
    assert code == 1 and "--lm 'gpt' is not understood" in err


def _data(tmp_path, n=6) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": f"q{i}"}) + "\n" for i in range(n)))
    return path


def test_compile_dry_run_labeled_and_bootstrap(capsys, tmp_path):
    train = _data(tmp_path)
    code, out, err = run_cli(
        capsys,
        "compile",
        "question -> answer",
        "--train",
        train,
        "--optimizer",
        "bootstrap",
        "--metric",
        "exact_match",
        "--dry-run",
    )
    assert code == 0 and json.loads(out)["lm_calls"] >= 1 and "BootstrapFewShot" in err

    code, out, _ = run_cli(
        capsys,
        "compile",
        "question -> answer",
        "--train",
        train,
        "--optimizer",
        "labeled",
        "-O",
        "k=2",
        "-o",
        tmp_path / "lab.json",
    )
    assert code == 0 and json.loads(out)["output"].endswith("lab.json")
    assert len(load(tmp_path / "lab.json").predictors["self"].demos) == 2

    code, out, _ = run_cli(
        capsys,
        "compile",
        TWO_STEP,
        "--train",
        train,
        "--inputs",
        "question",
        "--metric",
        "exact_match",
        "-O",
        "max_bootstrapped_demos=2",
        "-O",
        "max_labeled_demos=2",
        "--max-lm-calls",
        "50",
        "-o",
        tmp_path / "boot.json",
    )
    assert code == 0
    art = load(tmp_path / "boot.json")
    assert art.class_path == "_oobleck_user.qa_program.TwoStep" and art.provenance["optimizer"] == "BootstrapFewShot"
    assert len(art.predictors["check"].demos) == 2

    code, _, err = run_cli(
        capsys,
        "compile",
        "question -> answer",
        "--train",
        train,
        "--optimizer",
        "random_search",
        "-o",
        tmp_path / "x.json",
    )
    assert code == 1 and "--metric" in err


def test_eval_an_artifact(capsys, qa, tmp_path):
    dev = _data(tmp_path, 4)
    code, out, _ = run_cli(
        capsys, "eval", qa, dev, "--metric", "exact_match", "-q", "--json", "--output", tmp_path / "res.json"
    )
    assert code == 0 and json.loads(out)["score"] == 100.0
    assert len(json.loads((tmp_path / "res.json").read_text())["rows"]) == 4
    code, out, _ = run_cli(capsys, "eval", "question -> answer", dev, "-q")
    assert code == 0 and out.startswith("exact_match: 100.00%")


@pytest.mark.slow
def test_compile_and_run_on_the_embedded_model_in_a_subprocess(tmp_path):
    """The whole command line, as a user types it: real model, JSON adapter, disk cache."""
    data = FIXTURES / "sentiment_tiny.jsonl"
    out = tmp_path / "s.json"
    common = ["--lm", "local", "--adapter", "json", "--cache", str(tmp_path / "cache")]
    compile_cmd = [
        sys.executable,
        "-m",
        "oobleck.cli",
        "compile",
        "sentence -> label: Literal['positive', 'negative']",
        "--train",
        str(data),
        "--optimizer",
        "bootstrap",
        "-O",
        "max_bootstrapped_demos=2",
        "--metric",
        "exact_match",
        "--max-lm-calls",
        "12",
        "-o",
        str(out),
        *common,
    ]
    done = subprocess.run(compile_cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    saved = json.loads(out.read_text())
    assert saved["predictors"][0]["adapter"]["name"] == "json"
    assert saved["provenance"]["lm_calls"] <= 12
    run_cmd = [sys.executable, "-m", "oobleck.cli", "run", str(out), '{"sentence": "a wonderful film"}', *common]
    done = subprocess.run(run_cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["label"] in ("positive", "negative")


@pytest.mark.slow
def test_serve_command_answers_over_http_and_stops_on_ctrl_c(tmp_path):
    import os
    import re
    import signal
    import time
    import urllib.request

    art = tmp_path / "sst.json"
    Predict("sentence -> label: Literal['positive', 'negative']", adapter=JSONAdapter(), max_tokens=24).save(art)
    # PYTHONFAULTHANDLER: if it hangs on Ctrl-C, SIGABRT makes it print every thread's stack.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "oobleck.cli", "serve", str(art), "--port", "0", "--no-cache"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:  # a file, not a pipe: llama.cpp logs a lot and a full pipe blocks
        proc = subprocess.Popen(cmd, stderr=err, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        url, deadline = None, time.monotonic() + 300
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"serving \S+ on (http://\S+)", log.read_text(errors="replace"))
            url = found.group(1) if found else time.sleep(0.2)
        assert url is not None, f"the server never said where it listens (exit {proc.poll()})"
        body = json.dumps({"sentence": "a wonderful, moving film"}).encode()
        request = urllib.request.Request(url + "/", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as reply:
            assert reply.status == 200
            assert json.loads(reply.read())["label"] in ("positive", "negative")
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=30)
            code = None
        assert code == 0, "serve did not stop on Ctrl-C; its stacks:\n" + log.read_text(errors="replace")[-6000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_diff_shows_predictor_state_and_side_files(capsys, tmp_path):
    import numpy as np

    from oobleck import Module

    class Weighted(Module):
        def __init__(self, weights):
            self.step = Predict("question -> answer")
            self.weights = np.asarray(weights, dtype=np.float32)

        def dump_extra(self, files):
            return {"weights": files.write_array("w.npy", self.weights)}

    Weighted([1, 2]).save(tmp_path / "a.json")
    Weighted([1, 3]).save(tmp_path / "b.json")
    data = json.loads((tmp_path / "b.json").read_text())
    data["predictors"][0]["extra"] = {"calibration": {"positive": 0.7}}
    (tmp_path / "b.json").write_text(json.dumps(data))
    code, out, _ = run_cli(capsys, "diff", tmp_path / "a.json", tmp_path / "b.json", "--json")
    changes = {c["kind"]: c for c in json.loads(out)}
    assert code == 1
    assert changes["extra"]["predictor"] == "step" and changes["extra"]["after"] == {"calibration": {"positive": 0.7}}
    assert changes["file"]["before"]["w.npy"]["sha256"] != changes["file"]["after"]["w.npy"]["sha256"]
    code, out, _ = run_cli(capsys, "diff", tmp_path / "a.json", tmp_path / "b.json")
    assert "extra:" in out and "file:" in out and "w.npy" in out


def test_jsonl_from_stdin(capsys, qa, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO('{"question": "one"}\n\n{"question": "two"}\n'))
    code, out, _ = run_cli(capsys, "run", qa, "--jsonl", "-")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == [{"answer": "one"}, {"answer": "two"}]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, err = run_cli(capsys, "run", qa, "--jsonl", "-")
    assert code == 1 and "- has no rows" in err


def test_programs_named_as_module_attr(capsys, tmp_path):
    from qa_program import TwoStep  # importable: tests/fixtures is on pytest's pythonpath

    TwoStep().save(tmp_path / "two.json")
    code, out, _ = run_cli(capsys, "run", tmp_path / "two.json", '{"question": "q"}', "--program", "qa_program:TwoStep")
    assert code == 0 and json.loads(out)["answer"] == "q"
    rows = tmp_path / "train.jsonl"
    rows.write_text('{"question": "a", "answer": "a"}\n{"question": "b", "answer": "b"}\n')
    code, out, err = run_cli(
        capsys, "compile", "qa_program:program", "--train", rows, "--optimizer", "labeled", "-o", tmp_path / "p.json"
    )
    assert code == 0, err
    assert len(load(tmp_path / "p.json").predictors["self"].demos) == 2
    code, _, err = run_cli(capsys, "run", tmp_path / "two.json", '{"question": "q"}', "--program", "qa_program:Nope")
    assert code == 1 and "has no attribute 'Nope'" in err
