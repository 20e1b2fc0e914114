"""Evaluation: a trained run's metrics on every cached target (``cafe eval``).

- :mod:`.targets`  the target caches, the same-weights check, ``evaluate_run`` and the files it writes.

Training never imports evaluation; both read runs through :mod:`cafe_cache.run`.
"""
