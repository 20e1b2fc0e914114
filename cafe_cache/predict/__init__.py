"""Trained models on photos and video: the Python API (``recognizer``: ``cafe_cache.load``), reading
inputs, finding and aligning faces, ONNX export, ``cafe package`` and ``hf://`` loading."""
