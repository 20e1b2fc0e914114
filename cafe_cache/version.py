"""The one version number: written into every cache, run and package (no imports, so every room may read it)."""

__version__ = "0.2.0"
