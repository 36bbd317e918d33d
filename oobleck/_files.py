"""Files oobleck writes and reads: one writer, one set of reading rules, one cache root.

**Writing.** Every file the library or the CLI makes (artifacts and their side files, index
folders, checkpoints, soft-prompt training state, evaluation results) goes through
:func:`atomic_write`: the target is refused when it is a symlink, not a regular file (a device,
FIFO or folder), read-only, or one of the command's inputs (same device and inode, so a symlink
or hard link to an input is caught; see :func:`protecting`); the bytes go to a fresh temporary
file in the target's folder (a unique ``mkstemp`` name, so two writers never share one), are
flushed to disk, and the temporary file is renamed over the target. A reader sees the old file
or the new one, never half of either; a failed write (a full disk included) removes its
temporary file and leaves the old file byte for byte as it was; an existing file keeps its
permission bits. Every refusal or failure is a :class:`~oobleck.errors.WriteError`.

**Reading what an untrusted file points at.** The rules every loader of saved state follows
(artifacts, their side files, retrieval indexes, soft-prompt tensors), so an artifact stays data
and never becomes authority:

- A referenced file is a relative path inside the artifact's folder: no absolute path, no
  ``..``, no symlink at any step (``O_NOFOLLOW`` on every component, walked with ``dir_fd``),
  only a regular file (a FIFO, device or socket is refused without blocking: ``O_NONBLOCK``),
  and its size is checked with ``fstat`` on the open descriptor, against a cap and against the
  size the artifact declares, before a byte is read. What was checked is what is read.
- A model or embedder an artifact names is used only when it is bundled with oobleck (the
  artifact names no path) or the user allowed it when loading (``load(..., allow_models=[...])``).
- Nothing is fetched over the network: paths are local folders, read with ``local_files_only``.

Use :func:`read_inside` for any file an untrusted document references, :func:`read_regular`
for a file the user named, and :meth:`ModelPolicy.check` for a model reference.

**Caches.** :func:`cache_dir` says where cached LM responses and converted models live.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from oobleck.errors import ArtifactError, WriteError

__all__ = [
    "MAX_FILE_BYTES",
    "ModelPolicy",
    "atomic_write",
    "cache_dir",
    "check_target",
    "protecting",
    "read_inside",
    "read_regular",
]

MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024
"""The default cap on one file read for an artifact (2 GiB)."""

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


# ---- writing ----

_INPUTS: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("oobleck_write_inputs", default=())


@contextlib.contextmanager
def protecting(paths: Iterable[str | os.PathLike[str] | None]) -> Iterator[None]:
    """Within the block, :func:`atomic_write` refuses to replace any of ``paths``.

    A command names its inputs here (training data, the artifact it reads, ...), so no output
    it writes, side files included, can be one of them under any spelling: the same path, a
    symlink or a hard link (files are compared by device and inode). ``None`` and ``"-"``
    (stdin) are skipped.
    """
    kept = tuple(os.fspath(p) for p in paths if p is not None and os.fspath(p) != "-")
    token = _INPUTS.set(_INPUTS.get() + kept)
    try:
        yield
    finally:
        _INPUTS.reset(token)


def check_target(path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str] | None] = ()) -> int:
    """Check that ``path`` may be written by :func:`atomic_write`, before any work is spent on it.

    Returns:
        The permission bits the written file gets: the existing file's, or the umask default.

    Raises:
        WriteError: the folder is missing, not a folder or read-only; the target is a symlink, not a
            regular file (a device, FIFO, socket or folder), read-only, or the same file as
            one of ``inputs`` or of the inputs named by :func:`protecting`.
    """
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        why = "is not a folder" if folder.exists() else "does not exist"
        raise WriteError(f"cannot write {target}: the folder {folder} {why}; create it first or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError(
            f"cannot write {target}: the folder {folder} is read-only (no permission to create files there); "
            "choose another folder"
        )
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return _new_file_mode()
    except OSError as exc:
        raise WriteError(f"cannot write {target}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise WriteError(
            f"refusing to write {target}: it is a symlink (to {os.readlink(target)!r}); oobleck never writes "
            "through a link. Name the real file, or remove the link first"
        )
    if not stat.S_ISREG(info.st_mode):
        raise WriteError(
            f"refusing to write {target}: it is {_kind(info.st_mode)}, not a regular file; choose a file path"
        )
    for other in (*(os.fspath(p) for p in inputs if p is not None and os.fspath(p) != "-"), *_INPUTS.get()):
        try:
            seen = os.stat(other)
        except OSError:
            continue  # an input that is gone cannot be destroyed
        if (seen.st_dev, seen.st_ino) == (info.st_dev, info.st_ino):
            same = "" if os.path.abspath(other) == os.path.abspath(target) else f" ({target} and {other} are one file)"
            raise WriteError(
                f"refusing to write {target}: it is an input of this command ({other}){same}; "
                "writing it would destroy what was read. Choose another output path"
            )
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o222 or not os.access(target, os.W_OK):
        raise WriteError(
            f"refusing to write {target}: the file is read-only (mode {mode:o}); make it writable "
            "(chmod u+w) or choose another path"
        )
    return mode


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, inputs: Iterable[str | os.PathLike[str] | None] = ()
) -> None:
    """Replace ``path`` with ``data`` so that no reader ever sees half a file.

    The one writer of every file the library and the CLI write. The target is checked first
    (:func:`check_target`): a symlink, a device, FIFO or folder, a read-only file or one of the
    command's inputs is refused. The bytes then go to a temporary file with a unique name
    (``mkstemp``) in the same folder, are flushed to disk (``fsync``), and the temporary file is
    renamed over ``path``. Two writers to one path never share a temporary file; the last rename
    wins, whole. An existing file's permission bits are kept; a new file gets the umask default
    (``0o666`` less the umask). On any error (a full disk included) the temporary file is removed
    and ``path`` is left byte for byte as it was.

    Args:
        path: the file to write; its folder must exist.
        data: the complete new contents.
        inputs: files the caller read that must not be replaced (beside those of :func:`protecting`).

    Raises:
        WriteError: the target was refused, or writing failed (folder missing or not writable,
            disk full); nothing was changed.
    """
    target = Path(path)
    inputs = tuple(inputs)
    mode = check_target(target, inputs=inputs)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(target, exc) from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        check_target(target, inputs=inputs)  # again, just before the rename: nothing changed meanwhile
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise _write_error(target, exc) from None
        raise
    _sync_folder(target.parent)


def _write_error(target: Path, exc: OSError) -> WriteError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"no permission to write in {target.parent}"
    elif exc.errno == errno.ENOENT:
        why = f"the folder {target.parent} does not exist"
    else:
        why = exc.strerror or str(exc)
    error = WriteError(f"cannot write {target}: {why} ({exc.strerror or exc}); nothing was changed")
    error.errno = exc.errno
    return error


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _new_file_mode() -> int:
    """``0o666`` less the process's umask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting it, and put it back at once
    os.umask(mask)
    return 0o666 & ~mask


def _sync_folder(folder: Path) -> None:
    # Make the rename itself durable; a platform that cannot open a folder (Windows) skips it.
    try:
        fd = os.open(folder, os.O_RDONLY | _DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- reading ----


def _parts(relative: str, *, what: str) -> list[str]:
    if not isinstance(relative, str) or not relative or "\x00" in relative or "\\" in relative:
        raise ArtifactError(f"{what}: expected a relative file name inside the artifact's folder, got {relative!r}")
    path = PurePosixPath(relative)
    if path.is_absolute() or any(p in ("..", ".", "") for p in relative.split("/")):
        raise ArtifactError(
            f"{what}: {relative!r} must be a path inside the artifact's folder (no absolute path, no '..')"
        )
    return list(path.parts)


def read_inside(
    directory: str | os.PathLike[str],
    relative: str,
    *,
    what: str,
    max_bytes: int = MAX_FILE_BYTES,
    expected_size: int | None = None,
) -> bytes:
    """The bytes of ``relative`` inside ``directory``, read under the rules above.

    Args:
        directory: the artifact's folder (the user chose it; it may itself be a symlink).
        relative: the path the untrusted document gives, e.g. ``"prog.knn.npy"``.
        what: how to name the file in errors (``"qa.json: side file 'x'"``).
        max_bytes: refuse anything larger.
        expected_size: the size the document declares; a different size is refused unread.

    Raises:
        ArtifactError: an unsafe path, a symlink, a special file, a size over the cap or
            different from the declared one, or a file that cannot be read.
    """
    parts = _parts(relative, what=what)
    try:
        dir_fd = os.open(os.fspath(directory), os.O_RDONLY | _DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ArtifactError(
            f"{what}: cannot open the artifact's folder {os.fspath(directory)!r} ({exc.strerror})"
        ) from None
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                next_fd = os.open(
                    part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd
                )
            except OSError as exc:
                raise _refusal(what, "/".join(parts[: i + 1]), exc) from None
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            fd = os.open(parts[-1], _FLAGS | _NOFOLLOW, dir_fd=dir_fd)
        except OSError as exc:
            raise _refusal(what, relative, exc) from None
    finally:
        os.close(dir_fd)
    return _read_fd(fd, what=what, max_bytes=max_bytes, expected_size=expected_size)


def read_regular(path: str | os.PathLike[str], *, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file the user named (symlinks followed: the user chose the path).

    FIFOs, devices and sockets are refused without blocking, and the size is checked before
    reading.

    Raises:
        ArtifactError: not a regular file, too large, or unreadable.
    """
    try:
        fd = os.open(os.fspath(path), _FLAGS)
    except OSError as exc:
        raise ArtifactError(f"cannot read {what} {os.fspath(path)}: {exc.strerror or exc}") from None
    return _read_fd(fd, what=f"{what} {os.fspath(path)}", max_bytes=max_bytes, expected_size=None)


def _refusal(what: str, relative: str, exc: OSError) -> ArtifactError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
        return ArtifactError(f"{what} is a symlink; an artifact may only reference regular files inside its folder")
    return ArtifactError(
        f"{what} cannot be read ({exc.strerror or exc}); the artifact needs its side file {relative!r} "
        "inside its folder: copy it along with the artifact"
    )


def _read_fd(fd: int, *, what: str, max_bytes: int, expected_size: int | None) -> bytes:
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"{what} is not a regular file (a FIFO, device, socket or folder); refusing to read it")
        if info.st_size > max_bytes:
            raise ArtifactError(f"{what} is {info.st_size} bytes; the limit is {max_bytes}")
        if expected_size is not None and info.st_size != expected_size:
            raise ArtifactError(
                f"{what} does not match the artifact: it is {info.st_size} bytes, the artifact says "
                f"{expected_size}; it was changed or belongs to another save"
            )
        os.set_blocking(fd, True)
        chunks = []
        remaining = info.st_size + 1  # one byte more shows a file that grew while being read
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) != info.st_size:
            raise ArtifactError(f"{what} changed size while being read; read it again when nothing writes it")
        return data
    except OSError as exc:
        raise ArtifactError(f"cannot read {what}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


# ---- models and caches ----


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """Which model folders an artifact may name (the user's choice, given to ``load``).

    Attributes:
        allowed: resolved folders the user allowed (``load(..., allow_models=[...])``).
    """

    allowed: frozenset[str] = frozenset()

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]] | None) -> ModelPolicy:
        """A policy allowing exactly ``paths`` (resolved, so a spelling cannot sneak past)."""
        return cls(frozenset(str(Path(p).expanduser().resolve()) for p in (paths or ())))

    def check(self, reference: str | None, *, what: str) -> str | None:
        """``reference`` when the user allowed it; None stays None (the bundled default).

        Raises:
            ArtifactError: the artifact names a model the user did not allow.
        """
        if reference is None:
            return None
        if not isinstance(reference, str):
            raise ArtifactError(f"{what}: a model reference is a folder path, got {type(reference).__name__}")
        resolved = str(Path(reference).expanduser().resolve())
        if resolved in self.allowed:
            return resolved
        raise ArtifactError(
            f"{what} names the model {reference!r}, which is neither bundled with oobleck nor allowed; "
            f"an artifact cannot choose which model runs on your machine. If you trust it, load with "
            f"allow_models=[{reference!r}] (a local folder; nothing is downloaded)"
        )


def cache_dir(kind: Literal["lm", "models"] = "lm", *, root: str | os.PathLike[str] | None = None) -> Path:
    """Where oobleck keeps cached files of one kind.

    The root is ``root`` when given, else ``$OOBLECK_CACHE_DIR``, else ``~/.cache/oobleck``.
    Cached LM responses (``"lm"``) live in the root itself; models converted for a backend
    (``"models"``) in its ``models`` folder.

    Example:
        >>> cache_dir("models", root="/tmp/c").as_posix()
        '/tmp/c/models'
    """
    if root is None:
        env = os.environ.get("OOBLECK_CACHE_DIR")
        base = Path(env) if env else Path.home() / ".cache" / "oobleck"
    else:
        base = Path(root)
    return base / "models" if kind == "models" else base
