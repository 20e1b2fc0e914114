"""Stage two: train CAFE's mask branch against cached, frozen CLIP features.

- :mod:`.sources`    one source or the union of several (``--balance`` samplers).
- :mod:`.loop`       the training loop (plan_run: new or resumed; setup, train_one_epoch, end_epoch).

The run's config, folder, checkpoints, samples and predictions are in :mod:`cafe_cache.run`; evaluation is
:mod:`cafe_cache.evaluate` and ``cafe train`` as one call (train, evaluate, plot) is
:mod:`cafe_cache.pipeline`. Nothing in training imports evaluation.
"""
