"""Stage one: run a frozen image model (CLIP by default) once over a dataset and cache its features in HDF5.

- :mod:`.job`        ``cafe extract`` as one call: an ``ExtractJob`` (every option) and ``extract_dataset``,
                     which runs one process or, under torchrun, shards.
- :mod:`.extractor`  the seam: the ``FeatureExtractor`` protocol and the registry of extractors keyed by
                     the ``--model`` name's scheme (open_clip names, ``timm:NAME``); ``load_extractor``.
- :mod:`.weights`    which model to load (``ClipSpec``) and where its weights came from (``WeightsInfo``, its
                     tagged source: ``Pretrained``, ``WeightsFile``, ``RandomInit``).
- :mod:`.clip`       the open_clip extractor: the CLIP image tower (named config + pretrained tag, a local
                     file, or explicitly requested random weights) and fingerprints the weights.
- :mod:`.timm_model` the timm extractor: any timm image model, its pooled pre-logits features.
- :mod:`.hub`        Hugging Face weights from the local cache first; a miss without network fails at once.
- :mod:`.preprocess` turns images into the tensors CLIP sees ("official" or "clip" preprocessing)
                     and makes the views (clean, horizontally flipped).
- :mod:`.fingerprint` what changes the features (``Fingerprint``: the weights' tagged source and their use).
- :mod:`.paths`      where a cache and its side files are (``cache_path``, shards, lock, progress file).
- :mod:`.layout`     the HDF5 file format: its layout, made in memory and written whole; opening checked.
- :mod:`.lock`       one writer per cache; what readers see of a cache being written.
- :mod:`.writer`     ``CacheWriter``: create or resume a cache, write rows a batch at a time.
- :mod:`.reader`     ``FeatureCache``: a finished cache's attributes and rows (``SplitData``).
- :mod:`.integrity`  checksums, failed writes and damaged rows.
- :mod:`.loop`       the extraction loop (and ``Extraction``, one job made concrete).
- :mod:`.shards`     the same over several processes, joined into one cache.
- :mod:`.subset`     ``--splits``/``--limit``.
- :mod:`.online`     the extractor rebuilt from a cache's fingerprint and run on every batch (training,
                     BGR targets, predict, export) instead of read from a cache.
"""
