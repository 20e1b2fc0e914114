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
import threading

_PENDING = threading.Event()  # set by the handler: a raise Python swallowed still stops at the next safe point


class Terminated(BaseException):
    """SIGTERM arrived; raised where Ctrl-C's KeyboardInterrupt would be (not a KeyboardInterrupt itself,
    which Typer would turn into a silent exit 130)."""


def _raise_terminated(signum, frame) -> None:
    _PENDING.set()
    raise Terminated()


def raise_if_terminated() -> None:
    """Called at a safe point of a long loop (after each training step): a SIGTERM whose raise landed in a
    weakref callback or ``__del__``, where Python only prints it and goes on, stops the job here."""
    if _PENDING.is_set():
        _PENDING.clear()
        raise Terminated()


def sigterm_as_interrupt() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (a no-op in other threads)."""
    _PENDING.clear()
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        pass
