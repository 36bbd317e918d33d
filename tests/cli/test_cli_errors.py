"""Every CLI error is one clear line on stderr and a non-zero exit: never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from oobleck import FakeLM, Predict, context
from oobleck.cli import main


@pytest.fixture
def files(tmp_path: Path) -> Path:
    Predict("question -> answer").save(tmp_path / "qa.json")
    (tmp_path / "train.jsonl").write_text('{"question": "a", "answer": "b"}\n')
    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00garbage\n")
    (tmp_path / "broken.py").write_text("raise RuntimeError('this program is broken')\n")
    (tmp_path / "notmodule.py").write_text("program = 42\n")
    return tmp_path


BAD = {
    "unknown predictor": ["run", "{d}/qa.json", '{{"question": "x"}}', "--predictor", "nope"],
    "inspect inputs not JSON": ["inspect", "{d}/qa.json", "--inputs", "{{bad"],
    "inspect inputs not an object": ["inspect", "{d}/qa.json", "--inputs", "[1, 2]"],
    "inspect inputs that do not fit": ["inspect", "{d}/qa.json", "--inputs", '{{"nope": 1}}'],
    "run inputs not JSON": ["run", "{d}/qa.json", "{{bad"],
    "missing artifact": ["run", "{d}/missing.json", "{{}}"],
    "artifact is a folder": ["inspect", "{d}"],
    "missing jsonl": ["run", "{d}/qa.json", "--jsonl", "{d}/missing.jsonl"],
    "jsonl is a folder": ["eval", "{d}/qa.json", "{d}"],
    "jsonl not UTF-8": ["eval", "{d}/qa.json", "{d}/binary.jsonl"],
    "missing train file": ["compile", "question -> answer", "--train", "{d}/missing.jsonl", "-o", "{d}/o.json"],
    "unknown metric": [
        "compile",
        "question -> answer",
        "--train",
        "{d}/train.jsonl",
        "--metric",
        "nope",
        "-o",
        "{d}/o.json",
    ],
    "unknown optimizer option": [
        "compile",
        "question -> answer",
        "--train",
        "{d}/train.jsonl",
        "--optimizer",
        "labeled",
        "-O",
        "bogus=1",
        "-o",
        "{d}/o.json",
    ],
    "program file raises": ["compile", "{d}/broken.py", "--train", "{d}/train.jsonl", "-o", "{d}/o.json"],
    "program file missing": ["compile", "{d}/nothere.py:Prog", "--train", "{d}/train.jsonl", "-o", "{d}/o.json"],
    "program attribute missing": ["compile", "{d}/notmodule.py:nope", "--train", "{d}/train.jsonl", "-o", "{d}/o.json"],
    "program not a module": ["compile", "{d}/notmodule.py", "--train", "{d}/train.jsonl", "-o", "{d}/o.json"],
    "program is a folder": ["compile", "{d}", "--train", "{d}/train.jsonl", "-o", "{d}/o.json"],
    "module not importable": ["compile", "no_such_pkg_xyz:prog", "--train", "{d}/train.jsonl", "-o", "{d}/o.json"],
    "output folder missing": [
        "compile",
        "question -> answer",
        "--train",
        "{d}/train.jsonl",
        "--optimizer",
        "labeled",
        "-o",
        "{d}/no/o.json",
    ],
    "diff with a missing file": ["diff", "{d}/qa.json", "{d}/missing.json"],
    "missing required argument": ["compile", "question -> answer"],
    "unknown command": ["frobnicate"],
    "bad integer": ["eval", "{d}/qa.json", "{d}/train.jsonl", "--threads", "many"],
    "bad lm spec": ["run", "{d}/qa.json", '{{"question": "x"}}', "--lm", "nonsense"],
}


@pytest.mark.parametrize("argv", list(BAD.values()), ids=list(BAD))
def test_bad_input_is_one_line_and_a_nonzero_exit(files, capsys, argv):
    args = [a.format(d=files) for a in argv]
    with context(lm=FakeLM([{"answer": "b"}], cycle=True)):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None), err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("oobleck"), err
    assert ": error: " in lines[0]


def test_verbose_shows_the_traceback_of_an_unexpected_error(files, capsys):
    code = main(
        ["-v", "compile", str(files / "broken.py"), "--train", str(files / "train.jsonl"), "-o", str(files / "o.json")]
    )
    err = capsys.readouterr().err
    assert code == 1 and "this program is broken" in err


def test_a_user_file_named_like_a_stdlib_module_shadows_nothing(tmp_path, capsys):
    user = tmp_path / "json.py"
    user.write_text("from oobleck import Predict\nprogram = Predict('question -> answer')\n")
    (tmp_path / "train.jsonl").write_text('{"question": "a", "answer": "b"}\n')
    path_before, json_module = list(sys.path), sys.modules["json"]
    with context(lm=FakeLM([{"answer": "b"}], cycle=True)):
        code = main(
            [
                "compile",
                str(user),
                "--train",
                str(tmp_path / "train.jsonl"),
                "--optimizer",
                "labeled",
                "-o",
                str(tmp_path / "o.json"),
            ]
        )
    assert code == 0, capsys.readouterr().err
    assert sys.path == path_before
    assert sys.modules["json"] is json_module and json.dumps({"a": 1}) == '{"a": 1}'
    assert not any(getattr(m, "__file__", None) == str(user) for name, m in sys.modules.items() if "." not in name)


def test_a_user_file_still_imports_its_neighbours(tmp_path, capsys):
    (tmp_path / "helpers_for_prog.py").write_text("SIGNATURE = 'question -> answer'\n")
    (tmp_path / "prog.py").write_text(
        "from helpers_for_prog import SIGNATURE\nfrom oobleck import Predict\nprogram = Predict(SIGNATURE)\n"
    )
    (tmp_path / "train.jsonl").write_text('{"question": "a", "answer": "b"}\n')
    with context(lm=FakeLM([{"answer": "b"}], cycle=True)):
        code = main(
            [
                "compile",
                str(tmp_path / "prog.py"),
                "--train",
                str(tmp_path / "train.jsonl"),
                "--optimizer",
                "labeled",
                "-o",
                str(tmp_path / "o.json"),
            ]
        )
    assert code == 0, capsys.readouterr().err
    sys.modules.pop("helpers_for_prog", None)


def test_a_jsonl_file_with_a_byte_order_mark_is_read(files, capsys):
    bom = b"\xef\xbb\xbf"
    (files / "bom.jsonl").write_bytes(bom + b'{"question": "a", "answer": "b"}\n{"question": "c", "answer": "b"}\n')
    (files / "bom_inputs.jsonl").write_bytes(bom + b'{"question": "a"}\n{"question": "c"}\n')
    with context(lm=FakeLM([{"answer": "b"}], cycle=True)):
        code = main(["eval", str(files / "qa.json"), str(files / "bom.jsonl"), "--metric", "exact_match", "--json"])
        run_code = main(["run", str(files / "qa.json"), "--jsonl", str(files / "bom_inputs.jsonl")])
    out, err = capsys.readouterr()
    assert code == 0 and run_code == 0, err
    lines = out.splitlines()
    assert json.loads(lines[0])["score"] == 100.0
    assert [json.loads(line) for line in lines[1:]] == [{"answer": "b"}, {"answer": "b"}]


@pytest.mark.parametrize("option", [["--no-cache"], ["--adapter", "json"], ["--predictor", "self"]])
def test_run_takes_its_inputs_after_an_option(files, capsys, option):
    with context(lm=FakeLM([{"answer": "b"}], cycle=True)):
        code = main(["run", str(files / "qa.json"), *option, '{"question": "x"}'])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out) == {"answer": "b"}


def test_run_with_two_inputs_is_still_a_usage_error(files, capsys):
    with pytest.raises(SystemExit) as done:
        main(["run", str(files / "qa.json"), "--no-cache", '{"question": "x"}', '{"question": "y"}'])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "unrecognized arguments" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("checkpoint", ["o.json", "../{name}/o.json"])
def test_output_and_checkpoint_on_one_new_path_are_refused_before_any_lm_call(files, capsys, checkpoint):
    lm = FakeLM([{"answer": "b"}], cycle=True)
    argv = ["compile", "question -> answer", "--train", str(files / "train.jsonl"), "--metric", "exact_match"]
    argv += ["-o", str(files / "o.json"), "--checkpoint", str(files / checkpoint.format(name=files.name))]
    with context(lm=lm):
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err  # as when the file exists (check_target: "an input of this command")
    assert len(err.strip().splitlines()) == 1 and "--output and --checkpoint name one file" in err
    assert lm.requests == [] and not (files / "o.json").exists()


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("{d}", "is a folder; expected file.py[:attr]"),
        ("{d}:fn", "is a folder; expected file.py[:attr]"),
        ("{d}/train.jsonl:fn", "is not a .py file"),
        ("{d}/nothere/prog:fn", "no such file"),
    ],
)
@pytest.mark.parametrize("flag", ["--metric", "--tools", "--program"])
def test_a_spec_that_is_a_path_but_not_a_py_file_says_so(files, capsys, spec, says, flag):
    argv = ["eval", str(files / "qa.json"), str(files / "train.jsonl"), flag, spec.format(d=files)]
    if flag != "--metric":
        argv += ["--metric", "exact_match"]
    elif ":" not in spec:
        says = "unknown metric"  # a metric needs file.py:fn; a bare name is a built-in's
    with context(lm=FakeLM([{"answer": "b"}], cycle=True)):
        code = main(argv)
    err = capsys.readouterr().err
    assert code == (2 if flag == "--metric" else 1), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "No module named" not in err, err
