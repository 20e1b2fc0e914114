"""SIGTERM handled like Ctrl-C in every long command.

A batch system, ``timeout``, ``kill`` or torchrun stops a job with SIGTERM. :func:`sigterm_as_interrupt`
(installed by the ``cafe`` entry point) turns it into :class:`Terminated`, an exception that unwinds
like Ctrl-C's ``KeyboardInterrupt`` (a ``BaseException``, so no ``except Exception`` swallows it), so
every path that keeps its work on Ctrl-C (predict writes the rows it has, checkpoints are whole, caches
keep their flushed rows, a failed start removes its run folder) keeps it on SIGTERM too, and the command
ends with one line and exit 143 instead of dying mid-write.
"""

from __future__ import annotations

import signal


class Terminated(BaseException):
    """SIGTERM arrived; raised where Ctrl-C's KeyboardInterrupt would be (not a KeyboardInterrupt itself,
    which Typer would turn into a silent exit 130)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def sigterm_as_interrupt() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (a no-op in other threads)."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        pass
