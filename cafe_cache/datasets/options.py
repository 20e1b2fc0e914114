"""Reader options from the command line's dataset flags, shared by ``cafe datasets`` and ``cafe extract``:
``--class-map`` and ``--name`` (folder datasets only), ``--ferplus-ties`` (FERPlus only) and the flags of the
native CK+ and KDEF readers (:class:`NativeFlags`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..classes import CLASSES, class_id
from ..errors import CafeError
from ..options import split_list
from .base import parse_int
from .folder import CLASS_ID_HELP, SKIP


def parse_class_map(text: str) -> dict[str, int]:
    """``'contempt=-1,AN=anger,HA=3'`` -> ``{'contempt': -1, 'AN': 5, 'HA': 3}``.

    A value is a target id (-1 skips the folder) or an English class name.
    """
    mapping: dict[str, int] = {}
    for entry in split_list(text) or []:
        key, sep, value = (part.strip() for part in entry.partition("="))
        target = parse_int(value) if value.lstrip("-").isdecimal() else class_id(value)
        if not sep or not key or target is None or not SKIP <= target < len(CLASSES):
            raise CafeError(f"--class-map entry {entry!r} is not NAME=ID; ID is a class name or one of "
                            f"{CLASS_ID_HELP} (e.g. --class-map contempt=-1,AN=anger)")
        mapping[key] = target
    return mapping


@dataclass(frozen=True)
class NativeFlags:
    """The flags of the CK+ and KDEF readers; None = not given (the reader's default)."""

    ckplus_peak: int | None = None  # last N frames of each labelled sequence (default 1)
    ckplus_neutral: str | None = None  # first (the first frame as Neutral, default) or none
    ckplus_fold: str | None = None  # "I/K": subject-wise fold I of K is the test split
    kdef_views: str | None = None  # S (default), a comma list of FL,HL,S,HR,FR, or all

    def options(self, dataset: str) -> dict[str, Any]:
        """The reader options they give ``dataset``; a flag given for another dataset is refused."""
        given = {"ckplus": {"peak": self.ckplus_peak, "neutral": self.ckplus_neutral, "fold": self.ckplus_fold},
                 "kdef": {"views": self.kdef_views}}
        options: dict[str, Any] = {}
        for reader, values in given.items():
            flags = ", ".join(f"--{reader}-{k}" for k, v in values.items() if v is not None)
            if flags and dataset != reader:
                raise CafeError(f"{flags} applies only to --dataset {reader}, not {dataset!r}")
            options.update({k: v for k, v in values.items() if v is not None})
        return options


def reader_options(dataset: str, class_map: str | None, name: str | None, ferplus_ties: str | None = None,
                   native: NativeFlags | None = None) -> dict[str, Any]:
    """Reader keyword options from the ``--class-map`` and ``--name`` flags (folder datasets only),
    ``--ferplus-ties`` (FERPlus only) and the CK+ and KDEF flags (``native``)."""
    options: dict[str, Any] = (native or NativeFlags()).options(dataset)
    if ferplus_ties is not None:
        if dataset != "ferplus":
            raise CafeError(f"--ferplus-ties applies only to --dataset ferplus, not {dataset!r}")
        options["ties"] = ferplus_ties
    if class_map:
        options["class_map"] = parse_class_map(class_map)
    if name:
        options["name"] = name
    if (class_map or name) and dataset != "folder":
        raise CafeError("--class-map and --name apply only to --dataset folder "
                        f"({dataset!r} has its own fixed classes and cache name)")
    return options
