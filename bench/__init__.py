"""Speed and memory benchmarks of cafe (``make bench`` -> ``python -m bench.run``).

Everything runs on generated images with RANDOM CLIP and backbone weights: speed does not depend
on weight values, and no download is needed. See :mod:`bench.run` for what is measured.
"""
