"""Outputs that cannot hurt: every target family is refused or fails cleanly, and nothing is lost.

For each family (an input under the same path, a symlink or a hard link; a character device; a
symlink target; a folder; a missing folder; a read-only file or folder; a full disk) the command
exits non-zero with one line, and every input and any existing output stays byte-identical.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from scripted_lms import echo

from oobleck import FakeLM, Predict, context
from oobleck.cli import main


def _state(paths: list[Path]) -> dict[str, object]:
    """What is at each path: a link's text, a device's identity, a file's hash and mode."""
    out: dict[str, object] = {}
    for p in paths:
        try:
            info = os.lstat(p)
        except FileNotFoundError:
            out[str(p)] = None
            continue
        if stat.S_ISLNK(info.st_mode):
            out[str(p)] = ("link", os.readlink(p))
        elif stat.S_ISREG(info.st_mode):
            out[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(info.st_mode))
        else:
            out[str(p)] = ("special", stat.S_IFMT(info.st_mode), info.st_ino, info.st_rdev)
    return out


def _cli(capsys, *argv: object) -> tuple[int, str]:
    with context(lm=FakeLM(echo)):
        code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(f'{{"question": "q{i}", "answer": "q{i}"}}\n' for i in range(4)), encoding="utf-8")
    art = tmp_path / "qa.json"
    Predict("question -> answer").save(art)
    old = tmp_path / "old.json"
    old.write_text('{"an": "existing output"}\n', encoding="utf-8")
    (tmp_path / "train-link.jsonl").symlink_to(train)
    os.link(train, tmp_path / "train-hard.jsonl")
    os.link(art, tmp_path / "qa-hard.json")
    (tmp_path / "old-link.json").symlink_to(old)
    (tmp_path / "folder").mkdir()
    return {"train": train, "art": art, "old": old, "dir": tmp_path, "device": _device(tmp_path)}


def _device(folder: Path) -> Path:
    """A character device to aim at: a private copy of /dev/null where we may make one (root),
    so a regression replaces the copy, never the system's; else /dev/null itself (which a
    non-root user could not replace anyway)."""
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.mknod(folder / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
            return folder / "null"
    return Path("/dev/null")


def _compile(files: dict[str, Path], output: object, *, train: object = None) -> list[object]:
    return [
        "compile",
        "question -> answer",
        "--train",
        train or files["train"],
        "--optimizer",
        "labeled",
        "-O",
        "k=2",
        "-o",
        output,
    ]


def _eval(files: dict[str, Path], output: object, *, data: object = None, target: object = None) -> list[object]:
    return ["eval", target or files["art"], data or files["train"], "-q", "--output", output]


# (name, how to build argv from files, what the message says)
CASES = [
    ("compile -o TRAIN", lambda f: _compile(f, f["train"]), "input of this command"),
    ("compile via a symlinked input", lambda f: _compile(f, f["train"], train=f["dir"] / "train-link.jsonl"), "input"),
    ("compile -o a hard link of TRAIN", lambda f: _compile(f, f["dir"] / "train-hard.jsonl"), "input"),
    ("compile -o /dev/null", lambda f: _compile(f, f["device"]), "a device"),
    ("compile -o SYMLINK", lambda f: _compile(f, f["dir"] / "old-link.json"), "symlink"),
    ("compile -o FOLDER", lambda f: _compile(f, f["dir"] / "folder"), "a folder"),
    ("compile -o MISSING/x.json", lambda f: _compile(f, f["dir"] / "missing" / "x.json"), "does not exist"),
    ("eval --output DEV", lambda f: _eval(f, f["train"]), "input of this command"),
    ("eval --output ART", lambda f: _eval(f, f["art"]), "input of this command"),
    ("eval --output a hard link of ART", lambda f: _eval(f, f["dir"] / "qa-hard.json"), "input"),
    ("eval --output a symlink to DEV", lambda f: _eval(f, f["dir"] / "train-link.jsonl"), "symlink"),
    ("eval --output /dev/null", lambda f: _eval(f, f["device"]), "a device"),
    ("eval --output FOLDER", lambda f: _eval(f, f["dir"] / "folder"), "a folder"),
    ("eval --output MISSING/x.json", lambda f: _eval(f, f["dir"] / "missing" / "x.json"), "does not exist"),
]


@pytest.mark.parametrize("name, argv, says", CASES, ids=[c[0] for c in CASES])
def test_a_bad_output_target_is_refused_and_nothing_changes(files, capsys, name, argv, says) -> None:
    watched = [*sorted(files["dir"].iterdir()), files["device"]]
    before = _state(watched)
    code, err = _cli(capsys, *argv(files))
    assert code == 1, err
    assert err.startswith(("oobleck compile: error:", "oobleck eval: error:")) and err.count("\n") == 1, err
    assert says in err and "Traceback" not in err
    assert _state(watched) == before
    assert sorted(files["dir"].iterdir()) == sorted(p for p in set(watched) if p.parent == files["dir"])  # no temp file


@pytest.mark.parametrize("command", ["compile", "eval"])
def test_a_read_only_output_is_refused(files, capsys, command) -> None:
    files["old"].chmod(0o444)
    watched = sorted(files["dir"].iterdir())
    before = _state(watched)
    argv = _compile(files, files["old"]) if command == "compile" else _eval(files, files["old"])
    code, err = _cli(capsys, *argv)
    assert code == 1 and "read-only" in err and _state(watched) == before


def _mount(where: Path, *options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir()
    opts = ",".join(("size=64k", *options))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("command", ["compile", "eval"])
def test_a_read_only_folder_is_refused(files, capsys, command) -> None:
    folder = files["dir"] / "ro"
    mounted = _mount(folder)
    if not mounted:
        folder.mkdir()
    (folder / "out.json").write_text("{}\n", encoding="utf-8")
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        watched = [*sorted(files["dir"].iterdir()), folder / "out.json"]
        before = _state(watched)
        for target in (folder / "out.json", folder / "new.json"):
            argv = _compile(files, target) if command == "compile" else _eval(files, target)
            code, err = _cli(capsys, *argv)
            assert code == 1 and "read-only" in err, err
        assert _state(watched) == before and sorted(p.name for p in folder.iterdir()) == ["out.json"]
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)
        else:
            folder.chmod(0o755)


def _fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 512)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.mark.parametrize("command", ["compile", "eval"])
def test_a_full_disk_fails_cleanly_and_keeps_the_old_output(files, capsys, monkeypatch, command) -> None:
    disk = files["dir"] / "disk"
    mounted = _mount(disk)
    if mounted:
        target = disk / "out.json"
        target.write_text('{"old": true}\n', encoding="utf-8")
        _fill(disk)
    else:  # not root: simulate the full disk inside the writer
        target = files["old"]

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full)
    try:
        watched = [*sorted(files["dir"].iterdir()), target]
        if mounted:
            watched += sorted(disk.iterdir())
        before = _state(watched)
        argv = _compile(files, target) if command == "compile" else _eval(files, target)
        code, err = _cli(capsys, *argv)
        assert code == 1 and "disk is full" in err and "Traceback" not in err, err
        assert _state(watched) == before
        assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=False)


def test_recompiling_over_a_private_artifact_keeps_it_private(files, capsys) -> None:
    out = files["dir"] / "private.json"
    assert _cli(capsys, *_compile(files, out))[0] == 0
    out.chmod(0o600)
    first = out.read_bytes()
    assert _cli(capsys, *_compile(files, out))[0] == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_bytes() == first


def test_a_new_output_gets_the_umask_default(files, capsys) -> None:
    old = os.umask(0o077)
    try:
        assert _cli(capsys, *_eval(files, files["dir"] / "result.json"))[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((files["dir"] / "result.json").stat().st_mode) == 0o600


def test_checkpoint_and_output_cannot_be_one_file_or_an_input(files, capsys) -> None:
    watched = sorted(files["dir"].iterdir())
    before = _state(watched)
    code, err = _cli(capsys, *_compile(files, files["dir"] / "new.json"), "--checkpoint", files["train"])
    assert code == 1 and "input of this command" in err
    code, err = _cli(capsys, *_compile(files, files["old"]), "--checkpoint", files["old"])
    assert code == 1 and "input" in err
    assert _state(watched) == before
