"""Inputs for ``cafe predict``: reading photos and videos, finding and aligning faces."""
