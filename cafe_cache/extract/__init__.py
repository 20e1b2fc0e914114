"""Stage one: run a frozen CLIP image tower once over a dataset and cache its features in HDF5.

- :mod:`.clip`       loads the CLIP image tower (named config + pretrained tag, a local file, or
                     explicitly requested random weights) and fingerprints the weights.
- :mod:`.preprocess` turns images into the tensors CLIP sees ("official" or "clip" preprocessing)
                     and makes the views (clean, horizontally flipped).
- :mod:`.cache`      the HDF5 file: layout, fingerprint check, lock, resumable writes.
- :mod:`.run`        the extraction loop.
"""
