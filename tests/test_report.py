"""The compile report: one self-contained HTML page, its text escaped and its numbers rounded.

The page is checked as text (no browser): the escaping of hostile instructions, the rounded
numbers, the plot's points against the provenance they come from, and each kind of artifact.
A last test opens it in headless Chromium when that is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest
from qa_program import TwoStep

from oobleck import Example, FakeLM, LMRequest, Predict, context
from oobleck.cli import main
from oobleck.errors import WriteError
from oobleck.lm.soft_prompt import SoftPrompt
from oobleck.metrics import exact_match
from oobleck.optimize import RandomSearch
from oobleck.report import render_report, write_report

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = "Label it. <script>alert('x')</script> & <img src=x onerror=alert(1)>"


def rows() -> list[Example]:
    lines = (FIXTURES / "sentiment_tiny.jsonl").read_text().splitlines()
    return [Example(json.loads(line)).with_inputs("sentence") for line in lines if line.strip()]


def wrong_on_dull(request: LMRequest) -> dict[str, str]:
    """Says positive unless the sentence is one of two it gets right: scores of 2 in 3 happen."""
    text = request.messages[-1].content
    return {"label": "negative" if "dull" in text or "tedious" in text else "positive"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    data = rows()
    program = Predict("sentence -> label", lm=FakeLM(wrong_on_dull))
    program.signature = program.signature.with_instructions(HOSTILE)
    train, val = data[:6], data[6:9]  # 3 scoring rows: means of 0, 33.3, 66.7 or 100
    out = RandomSearch(exact_match, num_candidates=2, max_bootstrapped_demos=1).compile(
        program, trainset=train, valset=val, seed=0, progress=False
    )
    path = tmp_path_factory.mktemp("report") / "compiled.json"
    out.save(path)
    return out, path


def test_hostile_text_is_escaped_and_no_script_is_on_the_page(compiled):
    _, path = compiled
    html = render_report(path)
    assert "<script" not in html.lower() and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # and it reads back as the instruction, whole
    assert HOSTILE in unescape(html)


def test_the_page_is_self_contained(compiled):
    html = render_report(compiled[1])
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<link" not in html and "@import" not in html and "<svg" in html and "<style>" in html


def test_numbers_are_rounded_and_match_the_provenance(compiled):
    program, path = compiled
    html = render_report(path)
    scores = program.provenance["scores"]
    visible = re.sub(r"<[^>]*>", " ", re.sub(r"<style>.*?</style>", "", html, flags=re.S))  # text, not attributes
    assert not re.search(r"\d\.\d{3,}", re.sub(r"sha256 [0-9a-f]+", "", visible)), "an unrounded number on the page"
    best, start = scores["best_score"], scores["start_score"]
    assert f'<span class="before">{start:.1f}</span>' in html and f'<span class="after">{best:.1f}</span>' in html
    for c in scores["candidates"]:
        assert f"<td>{c['score']:.1f}</td>" in html
    assert f"{program.provenance['lm_calls']:,} (cache hits included)" in html
    assert any(abs(c["score"] - 200 / 3) < 1e-9 or abs(c["score"] - 100 / 3) < 1e-9 for c in scores["candidates"]), (
        "the data should give a repeating decimal for the rounding to be tested on"
    )


def test_the_plot_has_one_point_per_scored_candidate_at_its_calls(compiled):
    program, path = compiled
    html = render_report(path)
    trajectory = program.provenance["scores"]["trajectory"]
    points = re.findall(r'<circle [^>]*class="pt (\w+)" data-x="([\d.]+)" data-y="([\d.]+)"', html)
    assert len(points) == len(trajectory) >= 3
    shown = sorted((float(x), float(y)) for _, x, y in points)
    assert shown == sorted((float(t["lm_calls"]), pytest.approx(t["score"], abs=1e-6)) for t in trajectory)
    chosen = [(float(x), float(y)) for kind, x, y in points if kind == "chosen"]
    assert chosen == [(float(t["lm_calls"]), pytest.approx(t["score"], abs=1e-6)) for t in trajectory if t["chosen"]]
    # the calls grow as candidates are scored, and the last is what the compile spent
    calls = [t["lm_calls"] for t in trajectory]
    assert calls == sorted(calls) and calls[-1] <= program.provenance["lm_calls"]


def test_a_live_compile_adds_the_token_split_and_wall_time(compiled):
    program, _ = compiled
    html = render_report(program)
    u = program.compile_usage
    assert f"<th>prompt tokens</th><td>{u.prompt_tokens:,}</td>" in html
    assert f"<th>completion tokens</th><td>{u.completion_tokens:,}</td>" in html
    assert "not recorded" not in html.split("<h2>Cost</h2>")[1].split("</table>")[0]


def test_summary_text_is_rounded(compiled):
    program, _ = compiled
    text = str(program.compile_summary())
    assert "RandomSearch:" in text and "LM calls" in text and "prompt" in text and "wall time" in text
    assert not re.search(r"\d\.\d{3,}", re.sub(r"0\.0*\d\d? s\b", "", text)), "a number not rounded"
    assert re.search(r"[\d.]+ s wall time", text)
    assert f"start {program.provenance['scores']['start_score']:.1f} -> winner" in text


def test_every_predictor_of_a_program_gets_its_prompt(tmp_path):
    program = TwoStep()
    program.provenance = {"optimizer": "Manual", "seed": 1, "lm_calls": 3, "tokens": 120}
    program.save(tmp_path / "two.json")
    html = render_report(tmp_path / "two.json")
    assert "Final prompt (2 predictors)" in html
    assert "<code>generate_answer.predict</code>" in html or "<code>generate_answer</code>" in html
    assert "<code>check</code>" in html
    assert "recorded no scores" in html


def test_an_artifact_without_provenance_says_so(tmp_path):
    Predict("question -> answer").save(tmp_path / "plain.json")
    html = render_report(tmp_path / "plain.json")
    assert "carries no compile provenance" in html and "Final prompt (1 predictor)" in html
    assert "<h2>Cost</h2>" not in html


def test_a_soft_prompt_artifact_shows_its_training_and_vectors(tmp_path):
    soft = SoftPrompt.from_bytes(
        b"\0" * 64,
        method="prompt_tuning",
        kind="embeddings",
        num_virtual_tokens=6,
        base_model={"backend": "transformers", "model": "SmolLM2-135M"},
    )
    p = Predict("text -> label", soft_prompt=soft)
    report = {"best_score": 75.0, "initial_score": 50.0, "best_step": 4, "history": [[0, 50.0], [2, 62.5], [4, 75.0]]}
    p.provenance = {"optimizer": "PromptTuning", "seed": 0, "lm_calls": 0, "tokens": 0}
    p.provenance["scores"] = {"valset": 75.0, "predictors": {"self": report}}
    p.save(tmp_path / "soft.json")
    html = render_report(tmp_path / "soft.json")
    assert "prompt_tuning: 6 virtual tokens" in html and "not as text" in html
    assert '<span class="before">50.0</span>' in html and '<span class="after">75.0</span>' in html
    points = re.findall(r'class="pt (\w+)" data-x="([\d.]+)" data-y="([\d.]+)"', html)
    assert sorted((float(x), float(y)) for _, x, y in points) == [(0, 50), (2, 62.5), (4, 75)]
    assert "training step" in html


def test_cli_report_writes_the_page_and_refuses_its_input(compiled, tmp_path, capsys):
    _, path = compiled
    out = tmp_path / "report.html"
    with context(lm=FakeLM(wrong_on_dull)):
        assert main(["report", str(path), "-o", str(out)]) == 0
        assert main(["report", str(path), "-o", str(path)]) == 1
    assert out.read_text(encoding="utf-8") == render_report(path)
    assert "it is an input of this command" in capsys.readouterr().err
    with pytest.raises(WriteError):
        write_report(path, tmp_path)  # a folder is refused, nothing written


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_page(compiled, tmp_path):
    _, path = compiled
    page, png = tmp_path / "report.html", tmp_path / "report.png"
    write_report(path, page)
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={png}",
            "--window-size=1200,1600",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_hostile_provenance_is_escaped_everywhere(tmp_path):
    """Names, reasons and settings from the provenance reach the table, the plot and the verdict escaped."""
    evil = "<script>alert(1)</script>"
    p = Predict("question -> answer")
    p.provenance = {
        "optimizer": f"<b>{evil}</b>",
        "seed": 0,
        "lm_calls": 9,
        "tokens": 90,
        "settings": {"metric": evil, "members": {evil: {}}},
        "scores": {
            "members": [{"name": evil, "optimizer": evil, "selection_score": 50.0, "calls": 9, "cache_hits": 0}],
            "winner": evil,
            "start_score": 25.0,
            "best_score": 50.0,
            "why": evil,
            "verdict": {"confirmed": False, "reason": f"</p>{evil}"},
        },
    }
    p.save(tmp_path / "evil.json")
    html = render_report(tmp_path / "evil.json", title=evil)
    assert "<script" not in html.lower() and "&lt;b&gt;&lt;script" in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6  # title, heading, table, plot, verdict, why
    assert re.search(r'<circle [^>]*data-x="9" data-y="50"><title>&lt;script&gt;', html)


def test_usage_reads_rounded():
    from oobleck.lm.types import Usage

    text = str(Usage(calls=3, prompt_tokens=120, latency_s=5.317892226998083))
    assert text == "calls=3 retries=0 cache_hits=0 prompt_tokens=120 completion_tokens=0 cached_tokens=0 latency_s=5.3"
    assert "5.317892226998083" in repr(Usage(latency_s=5.317892226998083))  # the raw value stays in repr


@pytest.mark.parametrize(
    "scores",
    [
        {"trajectory": [{"score": 50.0, "lm_calls": "many"}, {"score": 60.0, "lm_calls": 4, "chosen": True}]},
        {"members": [{"name": "a", "selection_score": 50.0, "calls": "nine", "cache_hits": None}], "winner": "a"},
        {"predictors": {"self": {"best_step": 1, "history": [["one", 50.0], [1, 60.0]]}}},
        {"start_score": 10.0, "best_score": 20.0, "best": "3", "candidates": True},
        {"start_score": 10.0, "best_score": 20.0, "selection_verdict": {"gain": 1.0, "confidence": "high"}},
        {"members": [{"name": "a", "selection_score": 1e30, "calls": 1}], "winner": "a"},
    ],
    ids=["trajectory", "members", "soft", "candidates", "confidence", "huge"],
)
def test_a_provenance_value_of_the_wrong_type_still_gives_a_page(tmp_path, scores):
    """An artifact edited by hand (or by anyone) has any JSON in its provenance: the page shows what it can."""
    p = Predict("question -> answer")
    p.provenance = {"optimizer": "RandomSearch", "seed": 0, "lm_calls": 9, "scores": scores}
    p.save(tmp_path / "odd.json")
    html = render_report(tmp_path / "odd.json")
    assert "Final prompt" in html and "question" in html


def test_a_loaded_artifact_is_never_overwritten_by_its_report(tmp_path):
    from oobleck.artifact import load

    Predict("question -> answer").save(tmp_path / "qa.json")
    before = (tmp_path / "qa.json").read_bytes()
    with pytest.raises(WriteError, match="input"):
        write_report(load(tmp_path / "qa.json"), tmp_path / "qa.json")
    assert (tmp_path / "qa.json").read_bytes() == before
    assert load(tmp_path / "qa.json").predictors  # still an artifact
