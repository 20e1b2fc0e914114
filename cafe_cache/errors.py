"""The one base class for errors a user can fix; the CLI prints them as one line, no traceback."""


class CafeError(Exception):
    """Bad input, a missing file, a wrong cache, a bad flag: the message says what to do."""
