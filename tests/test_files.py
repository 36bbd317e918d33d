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
from oobleck.errors import OobleckError, WriteError
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
    with pytest.raises(WriteError, match="does not exist"):
        atomic_write(tmp_path / "absent" / "x.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_cache_dirs_keep_their_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OOBLECK_CACHE_DIR", str(tmp_path))
    assert cache_dir() == default_cache_dir() == tmp_path
    assert cache_dir("models") == tmp_path / "models"
    assert cache_dir("models", root=tmp_path / "other") == tmp_path / "other" / "models"
    monkeypatch.delenv("OOBLECK_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "oobleck"


# ---- the one writer refuses what it must not replace ----


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_new_file_gets_the_umask_default(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_an_input_is_never_replaced_under_any_spelling(tmp_path: Path, how: str) -> None:
    from oobleck._files import protecting

    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"q": 1}\n')
    named, target = data, data  # the input as the command was given it, and the output path
    if how == "symlink":
        named = tmp_path / "link.jsonl"
        os.symlink(data, named)
    elif how == "hard link":
        target = tmp_path / "other.jsonl"
        os.link(data, target)
    names = sorted(p.name for p in tmp_path.iterdir())
    before = _sha(data)
    with pytest.raises(WriteError, match="input of this command"):
        atomic_write(target, b"{}", inputs=[named])
    with protecting([named]), pytest.raises(WriteError, match="input of this command"):
        atomic_write(target, b"{}")
    assert _sha(data) == before and sorted(p.name for p in tmp_path.iterdir()) == names
    atomic_write(tmp_path / "fresh.json", b"{}", inputs=[named, "-", None])  # another path is fine


def test_a_symlink_target_is_refused_and_left_alone(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_bytes(b"keep")
    link = tmp_path / "link.json"
    os.symlink(real, link)
    with pytest.raises(WriteError, match="symlink"):
        atomic_write(link, b"{}")
    assert link.is_symlink() and real.read_bytes() == b"keep"
    dangling = tmp_path / "dangling.json"
    os.symlink(tmp_path / "nowhere", dangling)
    with pytest.raises(WriteError, match="symlink"):
        atomic_write(dangling, b"{}")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()


def test_a_device_fifo_or_folder_is_refused(tmp_path: Path) -> None:
    device = Path("/dev/null")  # a private copy where we may make one: a regression never hits the system's
    if os.geteuid() == 0:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        device = tmp_path / "null"
    before = os.stat(device)
    with pytest.raises(WriteError, match="a device"):
        atomic_write(device, b"{}")
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino and after.st_rdev == before.st_rdev
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(WriteError, match="FIFO"):
        atomic_write(fifo, b"{}")  # refused without blocking on the pipe
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    (tmp_path / "folder").mkdir()
    with pytest.raises(WriteError, match="a folder"):
        atomic_write(tmp_path / "folder", b"{}")
    assert (tmp_path / "folder").is_dir()


def test_a_read_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prog.json"
    path.write_bytes(b"old")
    path.chmod(0o444)
    with pytest.raises(WriteError, match="read-only"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and stat.S_IMODE(path.stat().st_mode) == 0o444


def test_a_full_disk_is_a_write_error_and_the_old_file_stays(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "prog.json"
    path.write_bytes(b"old contents")
    before = _sha(path)
    real_write = os.write
    written: list[int] = []

    def write(fd: int, data: bytes | memoryview) -> int:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(real_write(fd, bytes(data[:4])))  # a short write, then the disk is full
        return written[-1]

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(WriteError, match="disk is full") as exc:
        atomic_write(path, b"new contents, longer than four bytes")
    assert isinstance(exc.value, OobleckError) and isinstance(exc.value, OSError)
    assert exc.value.errno == errno.ENOSPC
    assert _sha(path) == before and _leftovers(tmp_path, keep=path.name) == []


def _mount_tmpfs(where: Path, *options: str) -> bool:
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir()
    opts = ",".join(("size=64k", *options))
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True).returncode == 0
    )


def _umount(where: Path) -> None:
    import subprocess

    subprocess.run(["umount", str(where)], capture_output=True, check=False)


def test_a_really_full_disk_leaves_the_old_file_byte_identical(tmp_path: Path) -> None:
    disk = tmp_path / "small"
    if not _mount_tmpfs(disk):
        pytest.skip("cannot mount a small tmpfs here (not root); the simulated ENOSPC test covers it")
    try:
        path = disk / "prog.json"
        path.write_bytes(b"x" * 1000)
        before = _sha(path)
        with pytest.raises(WriteError, match="disk is full"):
            atomic_write(path, b"y" * 200_000)  # bigger than the 64 KiB disk
        assert _sha(path) == before and sorted(p.name for p in disk.iterdir()) == ["prog.json"]
    finally:
        _umount(disk)


def test_a_read_only_folder_is_a_write_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    if _mount_tmpfs(folder):
        (folder / "prog.json").write_bytes(b"old")
        import subprocess

        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        folder.mkdir(exist_ok=True)
        (folder / "prog.json").write_bytes(b"old")
        folder.chmod(0o555)
    try:
        with pytest.raises(WriteError, match="permission|read-only|Read-only"):
            atomic_write(folder / "prog.json", b"new")
        with pytest.raises(WriteError):
            atomic_write(folder / "fresh.json", b"new")
        assert (folder / "prog.json").read_bytes() == b"old" and sorted(p.name for p in folder.iterdir()) == [
            "prog.json"
        ]
    finally:
        folder.chmod(0o755) if not os.path.ismount(folder) else _umount(folder)


def test_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match=r"folder .*absent does not exist"):
        atomic_write(tmp_path / "absent" / "x.json", b"{}")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(WriteError, match="is not a folder"):
        atomic_write(tmp_path / "file" / "x.json", b"{}")
