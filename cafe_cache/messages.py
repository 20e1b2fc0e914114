"""What the library says, as plain text: every log callback gets a ``str`` it may print as it is.

No Rich markup here or anywhere in the library (``tests/test_plain_output.py``): a line that deserves a
colour is a :class:`Message`, a ``str`` carrying its :class:`Tone` and how many of its leading characters
the tone covers. A front end that colours (the CLI: ``cli/common.py``) styles it; anything else sees text.
"""

from __future__ import annotations

from enum import Enum


class Tone(Enum):
    PLAIN = "plain"
    WARNING = "warning"  # worth a look; the job goes on
    ALERT = "alert"  # the results mean nothing (random weights)
    DONE = "done"  # a step finished
    HEADING = "heading"  # the start of one part of a long job
    COMMAND = "command"  # what is about to run
    STOP = "stop"  # what would stop the job


class Message(str):
    """A line of text (``head + rest``) whose first ``len(head)`` characters have a tone."""

    tone: Tone
    span: int

    def __new__(cls, head: str, rest: str = "", tone: Tone = Tone.PLAIN) -> Message:
        line = super().__new__(cls, head + rest)
        line.tone, line.span = tone, len(head)
        return line


def warning(head: str, rest: str = "") -> Message:
    return Message(head, rest, Tone.WARNING)


def alert(head: str, rest: str = "") -> Message:
    return Message(head, rest, Tone.ALERT)


def done(head: str, rest: str = "") -> Message:
    return Message(head, rest, Tone.DONE)


def heading(head: str, rest: str = "") -> Message:
    return Message(head, rest, Tone.HEADING)


def command(text: str) -> Message:
    return Message(text, "", Tone.COMMAND)


def stop(head: str, rest: str = "") -> Message:
    return Message(head, rest, Tone.STOP)
