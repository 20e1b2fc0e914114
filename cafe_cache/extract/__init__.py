"""Stage one: run a frozen CLIP image tower once over a dataset and cache its features in HDF5.

- :mod:`.job`        ``cafe extract`` as one call: an ``ExtractJob`` (every option) and ``extract_dataset``,
                     which runs one process or, under torchrun, shards.
- :mod:`.weights`    which CLIP to load (``ClipSpec``) and where its weights came from (``WeightsInfo``).
- :mod:`.clip`       loads the CLIP image tower (named config + pretrained tag, a local file, or
                     explicitly requested random weights) and fingerprints the weights.
- :mod:`.preprocess` turns images into the tensors CLIP sees ("official" or "clip" preprocessing)
                     and makes the views (clean, horizontally flipped).
- :mod:`.cache`      the HDF5 file: layout, fingerprint check, lock, resumable writes.
- :mod:`.integrity`  checksums, failed writes and damaged rows.
- :mod:`.loop`       the extraction loop (and ``Extraction``, one job made concrete).
- :mod:`.shards`     the same over several processes, joined into one cache.
- :mod:`.subset`     ``--splits``/``--limit``.
- :mod:`.online`     CLIP features computed during training instead of read from a cache.
"""
