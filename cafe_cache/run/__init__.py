"""A run: what training writes and what evaluation, reports and deployment read back (below ``train/``,
``evaluate/`` and ``predict/``, so none of them depends on another to open a run).

- :mod:`.folder`      ``RunFolder`` (the names of what a run writes), ``RunConfig`` (its typed ``config.json``).
- :mod:`.config`      ``TrainConfig`` (every option of ``cafe train``, the paper's defaults), ``Augment``.
- :mod:`.checkpoint`  weights and resume state of a run folder; ``load_model``.
- :mod:`.data`        paired samples: the image for the mask branch and its cached CLIP feature.
- :mod:`.predictions` a model's predictions on one split (training's source test accuracy, evaluation's input).
- :mod:`.official`    ``PaperSettings``: the paper's official settings and the phrase naming each deviation.
"""
