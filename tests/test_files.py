"""oobleck._files: one atomic writer for every file oobleck makes, and where caches live."""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from oobleck._checkpoint import Checkpoint
from oobleck._files import atomic_write, cache_dir
from oobleck.lm.cached import default_cache_dir


def _leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_two_writers_to_one_checkpoint_never_share_a_temporary_file(tmp_path: Path, monkeypatch) -> None:
    # The first writer is held between writing its temporary file and renaming it while a second
    # writer saves the same checkpoint from start to finish. With one fixed temporary name the
    # second would overwrite (and rename away) the first one's file; here each has its own.
    path = tmp_path / "run.ckpt.json"
    held, release = threading.Event(), threading.Event()
    seen: list[list[str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if threading.current_thread().name == "first" and not held.is_set():
            held.set()
            release.wait(10)

    monkeypatch.setattr(os, "fsync", fsync)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            Checkpoint(path, {"seed": 0}).save({"writer": "first"})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=first, name="first")
    thread.start()
    assert held.wait(10)
    seen.append(_leftovers(tmp_path, keep=path.name))
    Checkpoint(path, {"seed": 0}).save({"writer": "second"})  # completes while the first is mid-write
    assert json.loads(path.read_text(encoding="utf-8"))["state"] == {"writer": "second"}
    seen.append(_leftovers(tmp_path, keep=path.name))
    release.set()
    thread.join(10)

    assert errors == []
    assert len(seen[0]) == 1 and seen[0][0].startswith(".run.ckpt.json.") and seen[0][0].endswith(".tmp")
    assert seen[1] == seen[0]  # the second writer used another file and left the first one's alone
    assert Checkpoint(path, {"seed": 0}).load() == {"writer": "first"}  # the last rename wins, whole
    assert _leftovers(tmp_path, keep=path.name) == []


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch, failure: BaseException) -> None:
    path = tmp_path / "run.ckpt.json"
    Checkpoint(path, {"seed": 0}).save({"step": 1})
    before = path.read_bytes()

    def broken(fd: int) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(type(failure)):
        Checkpoint(path, {"seed": 0}).save({"step": 2})
    assert path.read_bytes() == before
    assert _leftovers(tmp_path, keep=path.name) == []  # the temporary file is removed


def test_permissions_of_an_existing_file_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "prog.json"
    atomic_write(path, b"{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o600)
    atomic_write(path, b'{"a": 1}')
    assert path.read_bytes() == b'{"a": 1}' and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_missing_folder_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "absent" / "x.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_cache_dirs_keep_their_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OOBLECK_CACHE_DIR", str(tmp_path))
    assert cache_dir() == default_cache_dir() == tmp_path
    assert cache_dir("models") == tmp_path / "models"
    assert cache_dir("models", root=tmp_path / "other") == tmp_path / "other" / "models"
    monkeypatch.delenv("OOBLECK_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "oobleck"
