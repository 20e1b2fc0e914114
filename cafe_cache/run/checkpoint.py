"""The checkpoints of a run folder (:mod:`cafe_cache.run.folder` names its files): weights as safetensors,
the resume state as a torch file, everything else as JSON.

Every checkpoint's sha256 is recorded in ``checksums.json`` when it is written and checked when it is
loaded (eval, predict, resume), so a damaged or swapped file is refused by name. A file is recorded
under both its old and its new hash while it is being replaced, so a kill at any moment leaves a hash
that matches. Run folders made before checksums were recorded load unchecked. The resume state is read
with ``torch.load(weights_only=True)``: tensors and plain containers only, never code.

The resume state is one file holding the weights of its epoch too (``model``, ``epoch``), so a kill
between writing ``last.safetensors`` and ``resume.pt`` cannot pair one epoch's weights with another's
optimiser: a resume always continues from the state of one finished epoch. (Resume files of older cafe
versions, without ``model``, resume from ``last.safetensors`` as before.) Every file is written through
:mod:`cafe_cache.files`: atomically, and a full disk is one line naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..errors import CafeError
from ..files import write_bytes, write_text
from ..history import EpochLog, history_from_json, history_to_json
from ..model.cafe import CAFEModel
from .folder import CHECKSUMS, RESUME, RunConfig, RunFolder

RESUME_KEYS = ("optimizer", "scheduler", "history", "best")


def sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hex)."""
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


def _save_checked(run: Path, name: str, data: bytes, kept: str) -> str:
    """Write ``data`` to ``run/name`` atomically and record its sha256 (old and new hash while the file is
    replaced); returns the sha256. A refused write is one line naming the file; the previous file stays."""
    digest = hashlib.sha256(data).hexdigest()
    sums = _checksums(run) or {}
    write_json(run / CHECKSUMS, sums | {name: [*sums.get(name, []), digest]}, kept)
    write_bytes(run / name, data, kept)
    write_json(run / CHECKSUMS, sums | {name: [digest]}, kept)
    return digest


def verify(run: Path, name: str) -> None:
    """Refuse ``run/name`` unless its sha256 is the one recorded when it was written."""
    sums = _checksums(run)
    if sums is None:
        return  # a run folder from before checksums were recorded
    f = run / name
    if sha256(f) not in sums.get(name, []):
        raise CafeError(f"{f} does not match the sha256 recorded in {run / CHECKSUMS} when it was written: the "
                        "file is damaged or was replaced. Use the run's other checkpoint (best/last) or retrain.")


def weights_state(model: CAFEModel) -> dict[str, torch.Tensor]:
    """The model's tensors as saved: detached, contiguous, on the CPU."""
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def save_weights(run: Path, which: str, model: CAFEModel, kept: str = "") -> str:
    """``run/<which>.safetensors`` (serialised in memory, written by :func:`~cafe_cache.files.write_bytes`);
    returns its sha256."""
    return _save_checked(run, RunFolder(run).weights(which).name, save(weights_state(model)), kept)


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


def write_json(path: Path, data: Any, kept: str = "") -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True), kept)


@dataclass
class ResumeState:
    """``resume.pt``, typed: what the last finished epoch leaves for a resume. ``optimizer``, ``scheduler``
    and ``model`` are torch ``state_dict``s; ``model`` and ``epoch`` are None in the resume state of cafe
    versions that kept the weights in ``last.safetensors`` only."""

    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    history: list[EpochLog]
    best: float
    model: dict[str, torch.Tensor] | None = None
    epoch: int | None = None

    def to_torch(self) -> dict[str, Any]:
        """Plain containers for ``torch.save`` (read back with ``weights_only=True``)."""
        out = {"optimizer": self.optimizer, "scheduler": self.scheduler, "history": history_to_json(self.history),
               "best": self.best}
        return out | ({"model": self.model, "epoch": self.epoch} if self.model is not None else {})

    @classmethod
    def from_torch(cls, state: Any, f: Path) -> ResumeState:
        """From what ``torch.load`` gave for ``f``, checked: one line naming the file when it is not ours."""
        if not isinstance(state, dict) or any(k not in state for k in RESUME_KEYS):
            raise CafeError(f"{f} is not cafe resume state (it needs {', '.join(RESUME_KEYS)}).")
        if "epoch" in state and state["epoch"] != len(state["history"]):
            raise CafeError(f"{f} is damaged: it names epoch {state['epoch']} but holds the history of "
                            f"{len(state['history'])}. Train into another --out.")
        return cls(optimizer=state["optimizer"], scheduler=state["scheduler"],
                   history=history_from_json(state["history"], f), best=state["best"],
                   model=state.get("model"), epoch=state.get("epoch"))


def save_resume(run: Path, state: ResumeState, kept: str = "") -> None:
    """``resume.pt``: one file holding everything a resume needs, the weights included (``model``) and
    the epoch it belongs to, so no kill between two writes can pair weights and optimiser of different
    epochs."""
    buffer = io.BytesIO()
    torch.save(state.to_torch(), buffer)
    _save_checked(run, RESUME, buffer.getvalue(), kept)


def load_resume(run: Path) -> ResumeState | None:
    """The optimiser, scheduler, history and weights saved after the last finished epoch (None: nothing to
    resume)."""
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
    return ResumeState.from_torch(state, f)


def restore_weights(run: Path, state: ResumeState, model: CAFEModel) -> None:
    """The weights of the resume state's own epoch into ``model``: those saved inside it, or, for resume
    state of cafe versions that did not save them, ``last.safetensors``."""
    if state.model is None:
        load_weights(run, "last", model)
        return
    last = RunFolder(run).weights("last")
    if last.is_file():
        verify(run, last.name)  # not read here, but a damaged file is refused now rather than left for eval
    try:
        model.load_state_dict(state.model)
    except (RuntimeError, TypeError, AttributeError) as e:
        first = " ".join(str(e).split())[:300]
        raise CafeError(f"{RunFolder(run).resume}: its weights do not fit the model described in "
                        f"{RunFolder(run).config} ({first}).") from None


def load_model(checkpoint: str | Path, which: str | None = None) -> tuple[CAFEModel, RunConfig]:
    """The model of a run folder (the final epoch, ``last``, unless told) and the run's config."""
    folder, default = RunFolder.of_checkpoint(checkpoint)
    which = which or default
    config = folder.read_config()
    model = CAFEModel(config.model)
    load_weights(folder.path, which, model)
    return model.eval(), config
