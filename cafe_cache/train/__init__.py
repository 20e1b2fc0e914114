"""Stage two: train CAFE's mask branch against cached, frozen CLIP features, then evaluate it.

- :mod:`.config`     ``TrainConfig`` (every option of ``cafe train``, the paper's defaults), ``Augment``.
- :mod:`.data`       paired samples: the image for the mask branch and its cached CLIP feature.
- :mod:`.loop`       the training loop (plan_run: new or resumed; setup, train_one_epoch, end_epoch).
- :mod:`.checkpoint` weights and resume state of a run folder (:mod:`cafe_cache.runs` names its files).
- :mod:`.predictions` a model's predictions on one split (the loop's source test accuracy, evaluation's input).
- :mod:`.evaluate`   metrics of a trained run on every cached target (``cafe eval``).
- :mod:`.pipeline`   ``cafe train`` as one call: train, evaluate, plot.

Imports go one way: pipeline imports loop and evaluate; loop and evaluate both import predictions;
evaluate imports checkpoint and data, never loop or pipeline; nothing in training imports evaluation.
"""
