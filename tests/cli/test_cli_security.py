"""The CLI's share of issue 8: --temperature reaches the cache key, serve refuses to expose itself silently."""

from __future__ import annotations

import pytest

from oobleck import LMRequest, Message, Predict
from oobleck.cli import main
from oobleck.cli._commands import _lm_from
from oobleck.lm.cached import cache_key, lm_settings

REQ = LMRequest(messages=(Message(role="user", content="hi"),))


def test_cli_temperature_is_part_of_the_cache_key():
    cold = _lm_from("openai:m", "http://127.0.0.1:9/v1", 0.0)
    hot = _lm_from("openai:m", "http://127.0.0.1:9/v1", 0.9)
    assert cold is not None and hot is not None
    assert lm_settings(hot) == {"temperature": 0.9}
    assert cache_key(cold.identity, REQ, lm_settings(cold)) != cache_key(hot.identity, REQ, lm_settings(hot))


def test_serve_beyond_loopback_without_a_token_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OOBLECK_SERVE_TOKEN", raising=False)
    Predict("q -> a").save(tmp_path / "p.json")
    status = main(
        [
            "serve",
            str(tmp_path / "p.json"),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--lm",
            "openai:m",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and "token" in err and "--no-token" in err


def test_cli_refuses_a_model_the_artifact_names_unless_allowed(tmp_path, capsys):
    import json

    from oobleck import Example
    from oobleck.modules.knn import KNNFewShot

    rows = [Example(text="a", label="x").with_inputs("text"), Example(text="b", label="y").with_inputs("text")]
    KNNFewShot(Predict("text -> label"), trainset=rows, k=1).save(tmp_path / "knn.json")
    doc = json.loads((tmp_path / "knn.json").read_text())
    text = json.dumps(doc).replace(
        '"type": "hashing"', '"type": "transformers", "model_path": "/opt/someone-elses-model"'
    )
    text = text.replace('"dim": 512, ', "").replace(', "ngrams": [1, 2]', "")
    (tmp_path / "knn.json").write_text(text)
    status = main(
        ["run", str(tmp_path / "knn.json"), '{"text": "a"}', "--lm", "openai:m", "--base-url", "http://127.0.0.1:9/v1"]
    )
    assert status == 1 and "allow_models" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "{art}", "notjson"],
        ["run", "{art}", '{{"q": ' + "1" * 5000 + "}}"],
        ["run", "{art}", "[" * 100_000],
        ["run", "{dir}/missing.json", "{{}}"],
        ["run", "{art}", "--jsonl", "{dir}/missing.jsonl"],
        ["run", "{art}", "--jsonl", "{dir}/bad.jsonl"],
        ["inspect", "/dev/zero"],
        ["diff", "/dev/zero", "{art}"],
        ["inspect", "{art}", "--inputs", "notjson"],
    ],
)
def test_cli_mistakes_are_one_line_errors(tmp_path, capsys, argv):
    Predict("q -> a").save(tmp_path / "p.json")
    (tmp_path / "bad.jsonl").write_bytes(b'{"q": 1}\n\xff\xfe not utf-8\n')
    args = [a.format(art=tmp_path / "p.json", dir=tmp_path) for a in argv]
    status = main(
        [*args, "--lm", "openai:m", "--base-url", "http://127.0.0.1:9/v1"] if args[0] in ("run", "serve") else args
    )
    err = capsys.readouterr().err
    assert status == 1 and err.startswith(f"oobleck {args[0]}: error: ") and "Traceback" not in err
