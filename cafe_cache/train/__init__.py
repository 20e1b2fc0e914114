"""Stage two: train CAFE's mask branch against cached, frozen CLIP features, then evaluate it.

- :mod:`.config`     ``TrainConfig``, every option of ``cafe train``.
- :mod:`.data`       paired samples: the image for the mask branch and its cached CLIP feature.
- :mod:`.loop`       the training loop (setup, one epoch, end of epoch).
- :mod:`.checkpoint` weights and resume state of a run folder.
- :mod:`.evaluate`   predictions and metrics of a trained run on every cached target.
"""
