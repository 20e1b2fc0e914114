"""``cafe export``: a trained run (CLIP image tower + mask branch + FC) as one ONNX file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from cafe_cache.errors import CafeError

from .common import console, out


def export(
    checkpoint: str = typer.Option(..., "--checkpoint", "-c", help="Run folder of `cafe train` (or "
                                                                   "RUN/best.safetensors, RUN/last.safetensors), a "
                                                                   "`cafe package` folder or hf://ORG/NAME."),
    out_file: Path = typer.Option(..., "--out", "-o", help="The .onnx file to write."),
    clip_weights: str | None = typer.Option(None, help="The CLIP file the run's cache was made from, if it was made "
                                                       "from a file."),
    opset: int = typer.Option(17, min=14, help="ONNX opset version."),
    quantize: str | None = typer.Option(None, help="int8: onnxruntime dynamic quantisation for CPU deployment (about "
                                                   "3x smaller); kept only if its top-1 class agrees with fp32 on >= "
                                                   "98% of the inputs checked."),
) -> None:
    """Export to ONNX (dynamic batch, preprocessing in the metadata) and check it against PyTorch."""
    from cafe_cache.predict.api import load
    from cafe_cache.predict.onnx_export import (  # torch, onnx
        INPUTS,
        MIN_INT8_AGREEMENT,
        PARITY_BATCHES,
        PARITY_TOLERANCE,
        require_onnx,
    )

    if quantize not in (None, "int8"):
        raise CafeError(f"--quantize {quantize}: the one choice is int8.")
    require_onnx()
    model = load(checkpoint, device="cpu", clip_weights=clip_weights, warn=False)
    report = model.export_onnx(out_file, opset=opset, quantize=quantize)
    meta = report.metadata
    if meta["warning"]:
        console.print(f"[bold yellow]warning:[/] {escape(meta['warning'])}")
    sizes = ", ".join(f"{name} (batch, 3, {meta['inputs'][name]}, {meta['inputs'][name]})" for name in INPUTS)
    pre = meta["preprocessing"]
    out.print(f"wrote {report.path} (opset {report.opset})\n"
              f"inputs: {sizes}: the same face crop, {pre['resize']}, {pre['colour_order']}, {pre['scale']}, "
              f"mean {pre['mean']}, std {pre['std']}\n"
              f"output: logits (batch, {len(meta['classes'])}): {', '.join(meta['classes'])}\n"
              f"parity with PyTorch (batches {', '.join(map(str, PARITY_BATCHES))}): max |logit difference| "
              f"{report.max_abs_diff:.2e} (limit {PARITY_TOLERANCE:g})")
    if report.int8_agreement is not None:
        out.print(f"int8 (dynamic quantisation): top-1 class agrees with fp32 on {report.int8_agreement:.1%} of "
                  f"{report.int8_checked_on} (kept: at least {MIN_INT8_AGREEMENT:.0%} needed)", soft_wrap=True)
