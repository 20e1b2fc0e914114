"""The ``cafe`` command line (Typer). The library lives in :mod:`cafe_cache`."""
