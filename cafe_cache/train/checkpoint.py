"""A run folder: weights as safetensors, everything else as JSON.

    runs/<name>/config.json         model config, training config, CLIP weights, backbone init, caches
    runs/<name>/last.safetensors    the last finished epoch: the weights the paper's numbers come from
    runs/<name>/best.safetensors    best accuracy on the source's own test set (test-set selection, an extra)
    runs/<name>/resume.pt           optimiser, scheduler and history after the last finished epoch
    runs/<name>/metrics.json        per-epoch history
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import CafeError
from ..options import DEFAULT_WHICH
from .model import CAFEModel, ModelConfig



def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)  # a kill mid-write never leaves a half file under the real name


def save_weights(run: Path, which: str, model: CAFEModel) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic(run / f"{which}.safetensors", lambda p: save_file(state, str(p)))


def write_json(path: Path, data: Any) -> None:
    _atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True)))


def save_resume(run: Path, state: dict[str, Any]) -> None:
    _atomic(run / "resume.pt", lambda p: torch.save(state, p))


def load_resume(run: Path) -> dict[str, Any] | None:
    f = run / "resume.pt"
    return torch.load(f, map_location="cpu", weights_only=False) if f.is_file() else None


def read_config(run: Path) -> dict[str, Any]:
    f = run / "config.json"
    if not f.is_file():
        raise CafeError(f"{run} is not a cafe run folder (no config.json); pass the folder `cafe train` wrote.")
    return json.loads(f.read_text())


def resolve_run(checkpoint: str | Path) -> tuple[Path, str]:
    """``runs/x``, ``runs/x/best.safetensors`` or ``runs/x/last.safetensors`` -> (run folder, which)."""
    p = Path(checkpoint)
    if p.suffix == ".safetensors":
        return p.parent, p.stem
    return p, DEFAULT_WHICH


def load_model(checkpoint: str | Path, which: str | None = None) -> tuple[CAFEModel, dict[str, Any]]:
    """The model of a run folder (the final epoch, ``last``, unless told) and the run's config."""
    run, default = resolve_run(checkpoint)
    which = which or default
    config = read_config(run)
    f = run / f"{which}.safetensors"
    if not f.is_file():
        raise CafeError(f"{f} does not exist (a run writes best and last after its first epoch).")
    model = CAFEModel(ModelConfig.from_dict(config["model"]))
    model.load_state_dict(load_file(str(f)))
    return model.eval(), config
