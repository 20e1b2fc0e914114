"""The one base class for errors a user can fix; the CLI prints them as one line, no traceback."""


class CafeError(Exception):
    """Bad input, a missing file, a wrong cache, a bad flag: the message says what to do."""


class RaisedOnRankZero(CafeError):
    """Raised on the other processes of a torchrun launch when rank 0 stopped with a CafeError, so
    they stop too; rank 0 prints the message, they stay quiet."""
