"""A cache around any LM: a bounded in-memory layer over a persistent diskcache store.

The key is a SHA-256 of everything that changes an answer, as canonical JSON (so dict
ordering never matters): the backend's identity (backend, model, endpoint), the backend's own
decoding settings (``settings``: temperature, max_tokens... given to its constructor), and the
whole request (messages as rendered, every decoding parameter, response format, the adapter
that rendered it, sample index, and any field a backend adds, such as a soft prompt). Values
are JSON text that also carries their key: the store refuses to read pickles, and an entry that
does not parse, is cut short or was written under another key is a miss (recomputed and
overwritten), never an answer. diskcache's SQLite store is safe for concurrent writers, threads
and processes alike. A store that cannot be opened is a ConfigError at construction; a failed
write is a warning. Nothing that was cached is ever deleted by an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic

from oobleck._files import cache_dir
from oobleck._types import stable_order
from oobleck.errors import ConfigError
from oobleck.lm.base import LM, BaseLM, Capabilities
from oobleck.lm.types import LMRequest, LMResponse, Usage

__all__ = ["Cache", "CachedLM", "cache_key", "default_cache_dir", "lm_settings"]

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$OOBLECK_CACHE_DIR``, else ``~/.cache/oobleck``."""
    return cache_dir("lm")


def cache_key(identity: dict[str, str], request: LMRequest, settings: Mapping[str, Any] | None = None) -> str:
    """The cache key of ``request`` sent to the backend with ``identity`` and decoding ``settings``.

    ``settings`` are the backend's own defaults (what its constructor was given); they are
    part of the key because the request's unset values fall back to them. Sets are written
    sorted, so the key is the same in every process (their order follows ``PYTHONHASHSEED``).
    """
    blob = json.dumps(
        {"lm": identity, "settings": stable_order(dict(settings or {})), "request": request.key_data()},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=repr,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def lm_settings(lm: LM) -> Mapping[str, Any]:
    """The decoding settings a backend applies to every call (empty when it declares none)."""
    settings = getattr(lm, "settings", None)
    return settings if isinstance(settings, Mapping) else {}


def _json_disk() -> type:
    import diskcache

    class JSONDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache ships no types: Disk is Any
        """A diskcache Disk that stores only text and never unpickles."""

        def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
            if not isinstance(value, str):
                raise TypeError("oobleck's cache stores JSON text only")
            return super().store(value, read, key=key)

        def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
            if mode == diskcache.core.MODE_PICKLE:
                raise ValueError("refusing to unpickle a cache value")
            return super().fetch(mode, filename, value, read)

        def get(self, key: Any, raw: bool) -> Any:
            if not raw:
                raise ValueError("refusing to unpickle a cache key")
            return super().get(key, raw)

    return JSONDisk


def _store_errors() -> tuple[type[Exception], ...]:
    """What a disk store's read or write may raise: I/O, SQLite, and diskcache's lock timeout."""
    import diskcache

    return (OSError, sqlite3.Error, diskcache.Timeout)


class _Entry(pydantic.BaseModel):
    """What the disk store holds: the response and the key it answers (a misfiled entry shows)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    key: str
    response: LMResponse


class Cache:
    """A two-level store of LM responses.

    Args:
        directory: where the persistent store lives; None keeps only the memory layer.
        memory_size: how many responses the in-memory LRU layer keeps.
        size_limit: the disk store's size limit in bytes.

    Raises:
        ConfigError: the directory cannot be created or opened, or ``memory_size`` is negative.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        memory_size: int = 4096,
        size_limit: int = 2**30,
    ) -> None:
        if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 0:
            raise ConfigError(f"memory_size must be an int >= 0 (0 keeps nothing in memory), got {memory_size!r}")
        self.directory = Path(directory) if directory is not None else None
        self.memory_size = memory_size
        self._memory: OrderedDict[str, LMResponse] = OrderedDict()
        self._lock = threading.Lock()
        self._disk: Any = None
        if self.directory is not None:
            import diskcache

            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._disk = diskcache.Cache(str(self.directory), disk=_json_disk(), size_limit=size_limit)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(
                    f"cannot use {str(self.directory)!r} as a cache directory ({exc}); "
                    "choose a writable directory, or pass directory=None for a memory-only cache"
                ) from exc

    def get(self, key: str) -> LMResponse | None:
        """The stored response for ``key``, or None (a corrupt entry counts as missing)."""
        with self._lock:
            hit = self._memory.get(key)
            if hit is not None:
                self._memory.move_to_end(key)
                return hit
        if self._disk is None:
            return None
        errors: tuple[type[Exception], ...] = (*_store_errors(), ValueError, TypeError)
        try:
            text = self._disk.get(key)
        except errors as exc:
            warnings.warn(
                f"oobleck cache: could not read entry {key[:12]} ({exc}); treating it as a miss", stacklevel=3
            )
            return None
        if text is None:
            return None
        try:
            entry = _Entry.model_validate_json(text)
            if entry.key != key:
                raise ValueError(f"it was written under the key {entry.key[:12]}")
            response = entry.response
        except (pydantic.ValidationError, ValueError, RecursionError) as exc:
            warnings.warn(
                f"oobleck cache: entry {key[:12]} is corrupt ({exc.__class__.__name__}); treating it as a miss",
                stacklevel=3,
            )
            return None
        self._remember(key, response)
        return response

    def set(self, key: str, response: LMResponse) -> None:
        """Store ``response`` under ``key`` (a failed disk write only warns)."""
        self._remember(key, response)
        if self._disk is None:
            return
        try:
            self._disk.set(key, _Entry(key=key, response=response).model_dump_json())
        except _store_errors() as exc:
            warnings.warn(f"oobleck cache: could not write entry {key[:12]} ({exc})", stacklevel=3)

    def _remember(self, key: str, response: LMResponse) -> None:
        with self._lock:
            self._memory[key] = response
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_size:
                self._memory.popitem(last=False)

    def clear_memory(self) -> None:
        """Forget the in-memory layer (the disk store is untouched)."""
        with self._lock:
            self._memory.clear()

    def __len__(self) -> int:
        if self._disk is not None:
            return len(self._disk)
        return len(self._memory)

    def close(self) -> None:
        """Close the disk store."""
        if self._disk is not None:
            self._disk.close()


class CachedLM(BaseLM):
    """Any LM with a cache in front of it.

    Args:
        lm: the backend to wrap.
        cache: a Cache, a directory for a new one, or None for the default directory
            (``$OOBLECK_CACHE_DIR`` or ``~/.cache/oobleck``).

    A hit returns the stored response with ``cached=True`` and a usage of one cache hit whose
    ``cached_tokens`` are what the call first cost (it costs no tokens now). The
    request's ``cache`` field chooses the policy per call: "on" (read and write), "read",
    "write" (refresh), "off".

    Example:
        >>> from oobleck import FakeLM
        >>> lm = CachedLM(FakeLM(["hi"]), cache=Cache(None))
        >>> lm("hello"), lm("hello")   # the second call never reaches FakeLM
        ('hi', 'hi')
    """

    def __init__(self, lm: LM, cache: Cache | str | os.PathLike[str] | None = None) -> None:
        self.lm = lm
        self.cache = cache if isinstance(cache, Cache) else Cache(cache if cache is not None else default_cache_dir())

    @property
    def identity(self) -> dict[str, str]:
        """The wrapped backend's identity (the cache is transparent)."""
        return self.lm.identity

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]  # BaseLM's is a plain attribute; this one forwards
        """The wrapped backend's capabilities."""
        return self.lm.capabilities

    @property
    def settings(self) -> dict[str, Any]:
        """The wrapped backend's decoding settings."""
        return dict(lm_settings(self.lm))

    def _lookup(self, request: LMRequest) -> tuple[str, LMResponse | None]:
        key = cache_key(self.lm.identity, request, lm_settings(self.lm))
        if request.cache in ("on", "read"):
            hit = self.cache.get(key)
            if hit is not None:
                first = hit.usage
                usage = Usage(cache_hits=1, cached_tokens=first.total_tokens + first.cached_tokens)
                return key, hit.model_copy(update={"cached": True, "usage": usage})
        return key, None

    def complete(self, request: LMRequest) -> LMResponse:
        """A cached response if there is one, else the backend's (then stored)."""
        if request.cache == "off":
            return self.lm.complete(request)
        key, hit = self._lookup(request)
        if hit is not None:
            return hit
        response = self.lm.complete(request)
        if request.cache in ("on", "write"):
            self.cache.set(key, response)
        return response

    async def acomplete(self, request: LMRequest) -> LMResponse:
        """Async form of :meth:`complete`."""
        if request.cache == "off":
            return await self.lm.acomplete(request)
        key, hit = self._lookup(request)
        if hit is not None:
            return hit
        response = await self.lm.acomplete(request)
        if request.cache in ("on", "write"):
            self.cache.set(key, response)
        return response
