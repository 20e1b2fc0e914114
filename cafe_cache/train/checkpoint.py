"""The checkpoints of a run folder (:mod:`cafe_cache.runs` names its files): weights as safetensors,
the resume state as a torch file, everything else as JSON.

Every checkpoint's sha256 is recorded in ``checksums.json`` when it is written and checked when it is
loaded (eval, predict, resume), so a damaged or swapped file is refused by name. A file is recorded
under both its old and its new hash while it is being replaced, so a kill at any moment leaves a hash
that matches. Run folders made before checksums were recorded load unchecked. The resume state is read
with ``torch.load(weights_only=True)``: tensors and plain containers only, never code.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CafeError
from ..model.cafe import CAFEModel, ModelConfig
from ..runs import CHECKSUMS, RESUME, RunConfig, RunFolder

RESUME_KEYS = ("optimizer", "scheduler", "history", "best")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)  # a kill mid-write never leaves a half file under the real name


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _checksums(run: Path) -> dict[str, list[str]] | None:
    f = run / CHECKSUMS
    if not f.is_file():
        return None
    try:
        sums = json.loads(f.read_text())
        if isinstance(sums, dict) and all(isinstance(v, list) for v in sums.values()):
            return sums
    except (ValueError, UnicodeDecodeError):
        pass
    raise CafeError(f"{f} is damaged (not the JSON `cafe train` writes); its checkpoints cannot be checked. "
                    "Retrain into another --out.")


def _save_checked(run: Path, name: str, write) -> None:
    """Write ``run/name`` atomically and record its sha256 (old and new hash while the file is replaced)."""
    path = run / name
    tmp = path.with_name(name + ".tmp")
    write(tmp)
    digest = sha256(tmp)
    sums = _checksums(run) or {}
    write_json(run / CHECKSUMS, sums | {name: [*sums.get(name, []), digest]})
    os.replace(tmp, path)
    write_json(run / CHECKSUMS, sums | {name: [digest]})


def verify(run: Path, name: str) -> None:
    """Refuse ``run/name`` unless its sha256 is the one recorded when it was written."""
    sums = _checksums(run)
    if sums is None:
        return  # a run folder from before checksums were recorded
    f = run / name
    if sha256(f) not in sums.get(name, []):
        raise CafeError(f"{f} does not match the sha256 recorded in {run / CHECKSUMS} when it was written: the "
                        "file is damaged or was replaced. Use the run's other checkpoint (best/last) or retrain.")


def save_weights(run: Path, which: str, model: CAFEModel) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _save_checked(run, RunFolder(run).weights(which).name, lambda p: save_file(state, str(p)))


def load_weights(run: Path, which: str, model: CAFEModel) -> None:
    """Load ``run/<which>.safetensors`` into ``model`` after checking its hash; bad files are one clear error."""
    f = RunFolder(run).weights(which)
    if not f.is_file():
        raise CafeError(f"{f} does not exist (a run writes best and last after its first epoch).")
    verify(run, f.name)
    try:
        state = load_file(str(f))
    except (SafetensorError, OSError, ValueError) as e:
        raise CafeError(f"{f} is not a readable safetensors file ({e}); it is truncated or damaged.") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise CafeError(f"{f} does not fit the model described in {RunFolder(run).config} ({first}); the "
                        "weights come from another run.") from None


def write_json(path: Path, data: Any) -> None:
    _atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True)))


def save_resume(run: Path, state: dict[str, Any]) -> None:
    _save_checked(run, RESUME, lambda p: torch.save(state, p))


def load_resume(run: Path) -> dict[str, Any] | None:
    """The optimiser, scheduler and history saved after the last finished epoch (None: nothing to resume)."""
    f = RunFolder(run).resume
    if not f.is_file():
        return None
    verify(run, f.name)
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)  # tensors and containers only, never code
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged or foreign file
        raise CafeError(f"{f} cannot be read as cafe resume state ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}). Train into another --out, or delete it to restart "
                        "this run from epoch 1.") from None
    if not isinstance(state, dict) or any(k not in state for k in RESUME_KEYS):
        raise CafeError(f"{f} is not cafe resume state (it needs {', '.join(RESUME_KEYS)}).")
    return state


def load_model(checkpoint: str | Path, which: str | None = None) -> tuple[CAFEModel, RunConfig]:
    """The model of a run folder (the final epoch, ``last``, unless told) and the run's config."""
    folder, default = RunFolder.of_checkpoint(checkpoint)
    which = which or default
    config = folder.read_config(need=("model",))
    try:
        model = CAFEModel(ModelConfig.from_dict(config.model))
    except (KeyError, TypeError, ValueError) as e:
        raise CafeError(f"{folder.config}: its 'model' entry does not describe a CAFE model ({e}).") from None
    load_weights(folder.path, which, model)
    return model.eval(), config
