"""The registry behind ``--dataset NAME`` and the default roots of the datasets.

Default roots: ``--root`` wins; else the environment variable ``CAFE_<NAME>_ROOT``; else the
``[datasets]`` table of ``cafe.toml`` in the working folder or ``~/.config/cafe/config.toml``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .base import DatasetError, Reader, root_env_var

READERS: dict[str, type[Reader]] = {}


def register(cls: type[Reader]) -> type[Reader]:
    """Class decorator: make a reader available as ``--dataset cls.name``."""
    READERS[cls.name] = cls
    return cls


def config_files() -> list[Path]:
    return [Path.cwd() / "cafe.toml", Path.home() / ".config" / "cafe" / "config.toml"]


def default_root(name: str) -> Path | None:
    """A dataset's root from the environment or a config file, or None."""
    env = os.environ.get(root_env_var(name))
    if env:
        return Path(env).expanduser()
    for f in config_files():
        if f.is_file():
            try:
                table = tomllib.loads(f.read_text()).get("datasets", {})
            except tomllib.TOMLDecodeError as e:
                raise DatasetError(f"not valid TOML ({e}); fix or remove it", f) from e
            if name in table:
                return Path(str(table[name])).expanduser()
    return None


def build_reader(name: str, /, root: str | Path | None = None, *, strict: bool = True, **options: Any) -> Reader:
    """The reader for ``--dataset name [--root root]``, with the root looked up when not given.

    ``name`` is positional-only so that the folder reader's own ``name`` option can pass through.
    """
    if name not in READERS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(READERS))} "
                           "(use --dataset folder --root PATH for any class-folder dataset)")
    if root is None:
        root = default_root(name)
    if root is None:
        raise DatasetError(
            f"no root folder for dataset {name!r}: pass --root PATH, set {root_env_var(name)}, "
            f"or add it under [datasets] in cafe.toml (see README, 'Dataset roots')")
    return READERS[name](root, strict=strict, **options)
