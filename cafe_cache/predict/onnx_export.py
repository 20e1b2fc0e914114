"""``cafe export``: a trained run as one ONNX graph, and ``cafe predict --onnx`` from that file.

The graph is :class:`~cafe_cache.predict.infer.InferenceGraph`: CLIP image tower + ResNet
mask branch + FC, from two preprocessed face tensors to logits:

``clip_image``  (batch, 3, S, S)  S = CLIP's input size
``mask_image``  (batch, 3, s, s)  s = the run's ``image_size`` (the same picture, resized separately)
``logits``      (batch, 7)        classes in ``CLASSES`` order; softmax gives probabilities

Both inputs are the same face crop (RAF-DB-style aligned, 100x100 for detected faces)
resized with PIL bilinear, aspect ratio not kept, to S and to s, scaled to [0, 1], then
standardised with the ImageNet mean/std, colours in RGB order; the batch axis is dynamic.
All of this is stored in the model's metadata (``metadata_props``, each value JSON) so the
file alone is enough: :class:`OnnxPredictor` needs onnxruntime and no CAFE model code.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..classes import CLASSES
from ..errors import CafeError
from ..files import check_writable, write_error
from ..version import __version__
from .infer import FacePredictor, Predictor, Preprocess

INPUTS = ("clip_image", "mask_image")
PARITY_TOLERANCE = 1e-3  # fp32 logits, onnxruntime vs PyTorch
PARITY_BATCHES = (1, 3)  # two batch sizes: proves the batch axis is really dynamic
FORMAT = "cafe-onnx-1"
QUANTIZE_CHECK_FACES = 32  # face crops on which int8 and fp32 top-1 classes are compared (check_faces)
MIN_INT8_AGREEMENT = 0.98  # below this the int8 file is not kept
INT8_OPS = ("MatMul", "Gemm")  # the ops --quantize int8 quantises (see quantize_int8)


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_diff: float  # largest |logit difference| onnxruntime vs PyTorch over the parity batches
    opset: int
    metadata: dict[str, Any]
    int8_agreement: float | None = None  # with --quantize int8: top-1 agreement with fp32 on the checked faces
    int8_checked_on: str | None = None  # which faces (CheckFaces.source)


def metadata(predictor: Predictor, source: str | Path, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a user of the file needs besides the graph (see the module docstring); ``info``: the
    ``Recognizer.info`` of the model, so that ``cafe_cache.load`` of the file can tell it again."""
    return {
        "format": FORMAT,
        "cafe_version": __version__,
        "checkpoint": str(source),
        "classes": list(CLASSES),
        "inputs": {"clip_image": predictor.clip_size, "mask_image": predictor.mask_size},
        "preprocessing": predictor.preprocess.to_dict(),
        "output": "logits (batch, classes); softmax gives probabilities",
        "model": predictor.name,
        "random_weights": predictor.warning is not None,
        "warning": predictor.warning,
        "info": info,
    }


def require_onnx() -> None:
    """Import onnx and onnxruntime now, so that a missing predict extra is named before any work."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401


def export_onnx(checkpoint: str | Path, out: str | Path, *, which: str | None = None,
                clip_weights: str | None = None, opset: int = 17, seed: int = 0,
                quantize: str | None = None) -> ExportReport:
    """:func:`write_onnx` of a run folder's model (``cafe_cache.load(...).export_onnx`` takes any source)."""
    predictor = Predictor.from_run(checkpoint, which=which, clip_weights=clip_weights, device="cpu")
    return write_onnx(predictor, out, source=checkpoint, opset=opset, seed=seed, quantize=quantize)


def write_onnx(predictor: Predictor, out: str | Path, *, source: str | Path, info: dict[str, Any] | None = None,
               opset: int = 17, seed: int = 0, quantize: str | None = None) -> ExportReport:
    """Write ``predictor`` (a model loaded from ``source``, see ``Recognizer.export_onnx``) to ``out`` and check
    it against PyTorch; a file that fails the check is not kept.

    Uses the TorchScript exporter (``dynamo=False``): it needs nothing beyond torch and onnx,
    whereas the newer exporter needs the ``onnxscript`` package.
    """
    import onnx
    import onnxruntime  # noqa: F401  (the parity check needs it: a missing extra is named before any work)

    out = Path(out)
    check_writable(out.parent, "--out")  # before the work, not after it
    meta = metadata(predictor, source, info)
    generator = torch.Generator().manual_seed(seed)
    examples = [_random_inputs(predictor, b, generator) for b in PARITY_BATCHES]
    tmp = out.with_name(out.name + ".tmp")
    try:
        _trace(predictor, examples[-1], tmp, opset)
        model = onnx.load(str(tmp))
        onnx.helper.set_model_props(model, {k: json.dumps(v) for k, v in meta.items()})
        model.doc_string = (f"CAFE facial expression recognition: {INPUTS[0]} (batch, 3, {predictor.clip_size}, "
                            f"{predictor.clip_size}) and {INPUTS[1]} (batch, 3, {predictor.mask_size}, "
                            f"{predictor.mask_size}), the same face preprocessed as metadata_props['preprocessing'] "
                            "says -> logits (batch, 7).")
        onnx.save(model, str(tmp))
        session = _session(tmp, "cpu")
        diff = max(_parity(predictor, session, x) for x in examples)
        if not diff <= PARITY_TOLERANCE:
            raise CafeError(f"the ONNX graph's logits differ from PyTorch's by up to {diff:.2e} "
                            f"(> {PARITY_TOLERANCE:g}); nothing was written. Try another --opset (used {opset}).")
        agreement, checked_on = _quantize_int8(tmp, session, predictor, source) if quantize else (None, None)
    except OSError as e:  # a full disk or a file-size limit: the file, the cause, never "try another --opset"
        tmp.unlink(missing_ok=True)
        raise write_error(out, e, "Nothing was written.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return ExportReport(out, diff, opset, meta, agreement, checked_on)


def _quantize_int8(path: Path, fp32, predictor: Predictor, checkpoint: str | Path) -> tuple[float, str]:
    """Replace the fp32 file at ``path`` by its int8 version (:func:`quantize_int8`), kept only if its top-1
    class agrees with fp32's on at least ``MIN_INT8_AGREEMENT`` of ``QUANTIZE_CHECK_FACES`` face crops
    (:func:`~cafe_cache.predict.check_faces.check_faces`); returns the agreement and which faces."""
    from .check_faces import check_faces

    q = path.with_name(path.name + ".int8")
    try:
        quantize_int8(path, q)
        faces = check_faces(checkpoint, predictor.clip_size, predictor.mask_size, QUANTIZE_CHECK_FACES)
        agreement = top1_agreement(fp32, _session(q, "cpu"), faces.inputs)
        if agreement < MIN_INT8_AGREEMENT:
            raise CafeError(f"int8 quantisation changes the top class on {1 - agreement:.1%} of {faces.source} "
                            f"(needs >= {MIN_INT8_AGREEMENT:.0%} agreement with fp32); nothing was written. Export "
                            "without --quantize.")
        os.replace(q, path)
        return agreement, faces.source
    finally:
        q.unlink(missing_ok=True)


@contextlib.contextmanager
def root_logging_quiet() -> Iterator[None]:
    """onnxruntime's quantiser logs advice through the root logger (``logging.warning``), which prints a raw
    ``WARNING:root:`` line; a handler on the root logger for the call keeps it from configuring one."""
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)
        root.removeHandler(handler)


def quantize_int8(src: Path, dst: Path) -> None:
    """onnxruntime's dynamic int8 quantisation of ``src`` into ``dst``, with ``src``'s cafe metadata and a
    ``quantization`` entry.

    Only MatMul/Gemm (CLIP's transformer and the FC: most of the weights) get int8 weights, their
    activations quantised at run time; the convolutions stay fp32, as onnxruntime's ConvInteger is
    slower than its fp32 convolution on CPUs (``make bench``, AMD EPYC: all ops 0.64x fp32's speed,
    MatMul/Gemm only 1.9x).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with root_logging_quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=list(INT8_OPS))
    model = onnx.load(str(dst))
    props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    note = f"int8 dynamic (onnxruntime), {'/'.join(INT8_OPS)} only"
    onnx.helper.set_model_props(model, {**props, "quantization": json.dumps(note)})
    onnx.save(model, str(dst))


def top1_agreement(a, b, inputs: tuple[torch.Tensor, ...]) -> float:
    """Share of ``inputs`` (``clip_image``, ``mask_image``) on which sessions ``a`` and ``b`` pick the same class."""
    arrays = dict(zip(INPUTS, (x.numpy() for x in inputs)))
    top = [s.run(["logits"], {n: arrays[n] for n in _input_names(s)})[0].argmax(1) for s in (a, b)]
    return float((top[0] == top[1]).mean())


@contextlib.contextmanager
def mha_fast_path_disabled() -> Iterator[None]:
    """PyTorch's MultiheadAttention fast path off, restored after.

    In eval mode without gradients ``nn.MultiheadAttention`` (open_clip's ViT blocks) may run as one
    fused ``aten::_native_multi_head_attention`` op, which the ONNX exporter cannot write; the
    cafe-tiny CLIP's single head avoids it by chance, ViT-B-32's 12 heads do not.  The slow path
    computes the same attention from ops ONNX has.
    """
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def _trace(predictor: Predictor, example: tuple[torch.Tensor, ...], path: Path, opset: int) -> None:
    """``torch.onnx.export`` of the inference graph into memory, then ``path``; a graph it cannot write is one
    CafeError line, a disk that refuses the file an OSError (told apart from the graph's own errors)."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), mha_fast_path_disabled():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's concern
            torch.onnx.export(predictor.graph, example, buffer, dynamo=False, opset_version=opset,
                              input_names=list(INPUTS), output_names=["logits"],
                              dynamic_axes={name: {0: "batch"} for name in (*INPUTS, "logits")})
    except Exception as e:  # UnsupportedOperatorError, SymbolicValueError, ... carry a graph dump: first line only
        first = next((line for line in str(e).splitlines() if line.strip()), "")[:300]
        raise CafeError(f"cannot export {predictor.name} to ONNX opset {opset}: {type(e).__name__}: {first}. "
                        "Try another --opset (e.g. 18), or predict with `cafe predict --checkpoint` (PyTorch) "
                        "instead of --onnx.") from e
    path.write_bytes(buffer.getvalue())


def _random_inputs(predictor: Predictor, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Normalised-image-like inputs (roughly unit Gaussian, as standardised pixels are)."""
    return tuple(torch.randn(batch, 3, s, s, generator=generator) for s in (predictor.clip_size, predictor.mask_size))


def _parity(predictor: Predictor, session, inputs: tuple[torch.Tensor, ...]) -> float:
    reference = predictor.logits(*inputs).numpy()
    arrays = dict(zip(INPUTS, (x.numpy() for x in inputs)))
    got = session.run(["logits"], {name: arrays[name] for name in _input_names(session)})[0]
    return float(np.abs(got - reference).max())


def _input_names(session) -> list[str]:
    """The graph's inputs: ``clip_image`` is absent for the ``no_mask`` variant, which never uses CLIP."""
    return [i.name for i in session.get_inputs()]


def _session(path: str | Path, device: str):
    import onnxruntime as ort

    available = ort.get_available_providers()
    wants_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
    providers = (["CUDAExecutionProvider"] if wants_cuda and "CUDAExecutionProvider" in available else [])
    try:
        return ort.InferenceSession(str(path), providers=providers + ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/NoSuchFile types
        raise CafeError(f"{path}: onnxruntime cannot load it ({type(e).__name__}: {str(e)[:300]}). "
                        "Pass a file written by `cafe export`.") from e


def _metadata_of(session, path: str | Path) -> dict[str, Any]:
    props = session.get_modelmeta().custom_metadata_map
    if props.get("format") != json.dumps(FORMAT):
        raise CafeError(f"{path} was not written by `cafe export` (no cafe metadata); export the run with it.")
    return {k: json.loads(v) for k, v in props.items()}


class OnnxPredictor(FacePredictor):
    """Predictions from an exported file with onnxruntime; preprocessing read from its metadata."""

    def __init__(self, path: str | Path, device: str = "auto", batch_size: int = 32):
        self.session = _session(path, device)
        self.meta = _metadata_of(self.session, path)
        if self.meta["classes"] != list(CLASSES):
            raise CafeError(f"{path} predicts classes {self.meta['classes']}, this cafe expects {list(CLASSES)}.")
        pre = self.meta["preprocessing"]
        self.preprocess = Preprocess(self.meta["inputs"]["clip_image"], self.meta["inputs"]["mask_image"],
                                     tuple(pre["mean"]), tuple(pre["std"]))
        self.batch_size, self.warning = batch_size, self.meta["warning"]
        self.name = f"{path} (ONNX export of {self.meta['model']})"
        self.runs_on = "onnxruntime " + self.session.get_providers()[0].replace("ExecutionProvider", "")

    def _logits(self, crops: list[Image.Image]) -> np.ndarray:
        inputs = dict(zip(INPUTS, self.preprocess(crops)))
        return self.session.run(["logits"], {name: inputs[name].numpy() for name in _input_names(self.session)})[0]
