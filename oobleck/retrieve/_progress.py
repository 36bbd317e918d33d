"""A progress bar for index builds that costs nothing when off or when tqdm is missing."""

from __future__ import annotations

from typing import Any

__all__ = ["bar"]


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, desc: str, *, enabled: bool) -> Any:
    """A tqdm bar on stderr (``update(n)``, ``close()``), or one that does nothing."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional; without it there is simply no bar
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="doc", leave=False)
