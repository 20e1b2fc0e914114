"""Dataset readers, one module per dataset (each registers itself), and the registry behind ``--dataset NAME``.

Default roots: ``--root`` wins; else the environment variable ``CAFE_<NAME>_ROOT``; else the
``[datasets]`` table of ``cafe.toml`` in the working folder or ``~/.config/cafe/config.toml``
(:mod:`.registry`).
"""

from . import affectnet, ckplus, expw, ferplus, folder, jaffe, kdef, mma, rafdb, sfew  # noqa: F401  (importing a reader registers it)
from .base import SPLITS, DatasetError, ImageReadError, Reader, ReadResult, Sample, open_rgb, root_env_var
from .registry import READERS, build_reader, default_root, register

__all__ = ["READERS", "register", "build_reader", "default_root", "Reader", "Sample", "ReadResult",
           "DatasetError", "ImageReadError", "SPLITS", "open_rgb", "root_env_var"]
