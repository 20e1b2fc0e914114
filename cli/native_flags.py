"""The flags of the native CK+ and KDEF readers, shared by ``cafe datasets`` and ``cafe extract``
(:class:`cafe_cache.datasets.options.NativeFlags`)."""

from __future__ import annotations

import typer

CKPLUS_PEAK = typer.Option(None, "--ckplus-peak", min=1, help="ckplus only: the last N frames of each labelled "
                           "sequence are its expression (default 1).")
CKPLUS_NEUTRAL = typer.Option(None, "--ckplus-neutral", help="ckplus only: first (default: each labelled "
                              "sequence's first frame is Neutral) or none.")
CKPLUS_FOLD = typer.Option(None, "--ckplus-fold", help="ckplus only: I/K, subject-wise fold I of K is the test "
                           "split and the rest train (default: every image is a test image).")
KDEF_VIEWS = typer.Option(None, "--kdef-views", help="kdef only: views read, S (default, straight), a list of "
                          "FL,HL,S,HR,FR, or all.")
