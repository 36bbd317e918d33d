"""A Literal-label program saved without an LM, served by `oobleck serve --lm local` on the real
model, answers every request with a parsed label.

Before issue 20 the artifact pinned the chat adapter it was saved with ("follows the LM's
capabilities once one is"), so the server generated chat answers that the small model broke:
25 of 25 requests answered 502 ParseError, while the same program in-process on LocalLM parsed
every answer. Saved as ``auto``, the served program ranks the labels as it does in-process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

import pytest

from oobleck import InputField, OutputField, Predict, Signature

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "agnews_20.jsonl"
LABELS = ("World", "Sports", "Business", "Sci/Tech")


class Topic(Signature):
    """Classify the topic of the news article."""

    text: str = InputField()
    label: Literal["World", "Sports", "Business", "Sci/Tech"] = OutputField()


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_a_program_saved_without_an_lm_answers_every_request_with_a_label(tmp_path):
    art = tmp_path / "topic.json"
    Predict(Topic).save(art)  # no LM anywhere: the adapter and the mode are saved as "auto"
    assert json.loads(art.read_text())["predictors"][0]["adapter"]["auto"] is True
    with FIXTURE.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:8]

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "oobleck.cli", "serve", str(art), "--lm", "local", "--port", "0", "--no-cache"]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:  # a file, not a pipe: llama.cpp logs a lot and a full pipe blocks
        proc = subprocess.Popen(cmd, stderr=err, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        url, deadline = None, time.monotonic() + 300
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"serving \S+ on (http://\S+)", log.read_text(errors="replace"))
            url = found.group(1) if found else time.sleep(0.2)
        assert url is not None, f"the server never said where it listens (exit {proc.poll()})"
        answers = [_post(url + "/", {"text": row["text"]}) for row in rows]
        failed = [(status, body) for status, body in answers if status != 200]
        assert not failed, f"{len(failed)} of {len(rows)} requests failed: {failed[:2]}"
        labels = [body["label"] for _, body in answers]
        assert all(label in LABELS for label in labels), labels
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
