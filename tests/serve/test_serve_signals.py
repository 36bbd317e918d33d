"""`oobleck serve` stopped by SIGTERM or SIGINT finishes the request in flight, then exits 0.

However it was started: directly (as a container runtime does, with SIGTERM), or as a
background job of a shell script, whose children start with SIGINT ignored.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SLOW_PROGRAM = '''
import os
import time
from pathlib import Path

from oobleck import FakeLM, Module, Predict


def answer(request):
    question = request.messages[-1].content.split("\\n")[1]
    return f"[[ ## answer ## ]]\\nanswer to {question}"


class Slow(Module):
    """A program whose tool takes two seconds before the (fake) LM answers."""

    def __init__(self):
        self.answer = Predict("question -> answer", lm=FakeLM(answer))

    def forward(self, question):
        Path(os.environ["SLOW_STARTED"]).touch()  # the test signals only once a request is in here
        time.sleep(2.0)  # the slow tool
        return self.answer(question=question)
'''


@pytest.fixture
def slow_artifact(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "slow.py").write_text(SLOW_PROGRAM)
    sys.path.insert(0, str(tmp_path))
    try:
        import slow  # type: ignore[import-not-found]

        slow.Slow().save(tmp_path / "slow.json")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slow", None)
    return tmp_path / "slow.json", tmp_path / "slow.py"


def _command(art: Path, program: Path) -> list[str]:
    return [
        sys.executable, "-m", "oobleck.cli", "serve", str(art), "--program", f"{program}:Slow",
        "--port", "0", "--no-cache",
    ]  # fmt: skip


def _wait_for_url(log: Path, alive) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and alive():
        # The shell writes the pid before the background job has opened its stderr file.
        text = log.read_text(errors="replace") if log.exists() else ""
        found = re.search(r"serving \S+ on (http://\S+)", text)
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise AssertionError("the server never said where it listens:\n" + log.read_text(errors="replace"))


def _post_in_background(url: str) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def send() -> None:
        request = urllib.request.Request(
            url + "/", data=json.dumps({"question": "q"}).encode(), headers={"Content-Type": "application/json"}
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=30) as reply:
            box.update(status=reply.status, body=json.loads(reply.read()), took=time.monotonic() - started)

    thread = threading.Thread(target=send)
    thread.start()
    return thread, box


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert time.monotonic() < deadline, "the request never reached the program"
        time.sleep(0.02)


def _kill_if_alive(pid_file: Path) -> None:
    try:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass  # no pid written, or the server already exited


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/health", timeout=5)
    except OSError:
        return True
    return False


def test_sigterm_mid_request_finishes_it_then_exits_0(slow_artifact, tmp_path):
    art, program = slow_artifact
    started = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1", "SLOW_STARTED": str(started)}
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(_command(art, program), stderr=err, stdout=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        url = _wait_for_url(log, lambda: proc.poll() is None)
        thread, box = _post_in_background(url)
        _wait_for(started)  # the request is inside its two-second tool now
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not _refused(url):
            assert time.monotonic() < deadline, "still accepting new connections after SIGTERM"
            time.sleep(0.1)
        assert thread.is_alive()  # refused while the request was still in flight
        thread.join(30)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert box.get("status") == 200 and box["body"] == {"answer": "answer to q"} and box["took"] >= 1.9, box
    assert code == 0, log.read_text(errors="replace")[-3000:]


def test_sigint_to_a_background_job_of_a_script_drains_and_exits_0(slow_artifact, tmp_path):
    # A non-interactive shell starts `cmd &` with SIGINT ignored; Python then installs no
    # KeyboardInterrupt handler, and a server relying on it would never stop on Ctrl-C.
    art, program = slow_artifact
    cmd = " ".join(f"'{part}'" for part in _command(art, program))
    script = tmp_path / "run.sh"
    script.write_text(
        f"{cmd} 2> {tmp_path}/stderr.txt &\necho $! > {tmp_path}/pid\nwait $!\necho $? > {tmp_path}/code\n"
    )
    started = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLOW_STARTED": str(started)}
    shell = subprocess.Popen(["sh", str(script)], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int((tmp_path / "pid").read_text())
        url = _wait_for_url(tmp_path / "stderr.txt", lambda: shell.poll() is None)
        thread, box = _post_in_background(url)
        _wait_for(started)
        os.kill(pid, signal.SIGINT)
        thread.join(30)
        shell.wait(30)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()
        _kill_if_alive(tmp_path / "pid")  # a failed run must not leave the server behind
    assert box.get("status") == 200 and box["body"] == {"answer": "answer to q"}, box
    assert (tmp_path / "code").read_text().strip() == "0", (tmp_path / "stderr.txt").read_text()[-3000:]
