"""``cafe package``: a trained run as a folder ready for the Hugging Face Hub, and reading one back.

    OUT/model.safetensors   the mask branch (backbone) and FC of the run's CAFEModel (CLIP is not in it)
    OUT/config.json         everything ``cafe_cache.load`` needs: classes, preprocessing, input sizes, the
                            CLIP (model, pretrained tag or weights sha256, activation), the weights' sha256,
                            random-weights flags, deviations from the paper, and the run's own config.json
    OUT/README.md           the model card

Upload with ``huggingface-cli upload ORG/NAME OUT``; load with ``cafe_cache.load("hf://ORG/NAME")``.
``model.safetensors`` is checked against the sha256 in ``config.json`` before it is read.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file

from ..classes import CLASSES
from ..errors import CafeError
from ..extract.fingerprint import Fingerprint
from ..model.cafe import CAFEModel
from ..model.variants import CAFE
from ..results import EvalResult, read_eval_result_if_any
from ..run.checkpoint import load_model, load_weights, sha256, write_json
from ..run.folder import RunConfig, RunFolder
from ..run.official import PaperSettings
from ..version import __version__
from .infer import Preprocess, random_warning
from .model_card import model_card
from .package_config import PACKAGE_FORMAT, WEIGHTS_FILE, PackageConfig, PackagedClip

CONFIG_FILE = "config.json"
CARD_FILE = "README.md"


@dataclass(frozen=True)
class PackageReport:
    """What :func:`package_run` wrote."""

    folder: Path
    which: str
    weights_sha256: str
    warning: str | None  # the random-weights warning the card carries, None for a real model
    evaluated: tuple[str, ...]  # the targets in the card's cross-domain table (none: the run was not evaluated)


def is_package(folder: Path) -> bool:
    """Whether ``folder`` holds a ``cafe package`` config.json (a run folder's config has no ``format``);
    a package of another format version is refused here, naming it."""
    try:
        found = json.loads((Path(folder) / CONFIG_FILE).read_text()).get("format")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return False
    if isinstance(found, str) and found.startswith("cafe-package") and found != PACKAGE_FORMAT:
        raise CafeError(f"{Path(folder) / CONFIG_FILE} is a {found} package; this cafe {__version__} reads "
                        f"{PACKAGE_FORMAT}. Upgrade cafe (pip install -U cafe-fer).")
    return found == PACKAGE_FORMAT


def package_run(run: str | Path, out: str | Path, which: str | None = None, repo: str | None = None) -> PackageReport:
    """Write the package of ``run``'s ``which`` weights (default ``last``) into the new or empty folder ``out``;
    ``repo`` (ORG/NAME) is the Hub name the card's example loads. Nothing is left in ``out`` on failure."""
    folder, default = RunFolder.of_checkpoint(run)
    which = which or default
    out = Path(out)
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise CafeError(f"{out} is not an empty folder; `cafe package` writes a new one. Pick another OUT.")
    model, config = load_model(folder.path, which)  # checks the run's recorded sha256
    results = _eval_results(folder, which)
    tmp = out.with_name(out.name + ".tmp-package")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        digest = sha256(tmp / WEIGHTS_FILE)
        package = package_config(config, which, digest)
        write_json(tmp / CONFIG_FILE, package.to_json())
        (tmp / CARD_FILE).write_text(model_card(package, results, repo or "ORG/NAME"))
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as e:  # disk full, no permission, ...
        shutil.rmtree(tmp, ignore_errors=True)
        raise CafeError(f"cannot write the package {out} ({e.strerror or e}); nothing was kept. Free space or "
                        "pick another OUT.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PackageReport(out, which, digest, package.warning, tuple(results.targets if results else ()))


def _eval_results(folder: RunFolder, which: str) -> EvalResult | None:
    """``RUN/eval-<which>/results.json`` of ``cafe eval``, None when the run was not evaluated."""
    return read_eval_result_if_any(folder.results_json(which))


def deviations(config: RunConfig, which: str) -> list[str]:
    """Every way the run differs from the paper's official setting (the phrases of ``cafe reproduce``'s titles)."""
    settings = PaperSettings(which=which, backbone_init=config.backbone_init.source or "imagenet",
                        mask_precision=config.mask_precision or "fp32",
                        clip_input=config.clip_input or "cached-views", random_clip=config.clip.random_weights)
    extra = [] if config.variant == CAFE.name else [f"variant {config.variant} (an ablation), not CAFE"]
    return settings.deviations() + extra


def package_config(config: RunConfig, which: str, weights_sha256: str) -> PackageConfig:
    """The package's config.json (see :mod:`.package_config`)."""
    fp = Fingerprint.from_json(config.clip.fingerprint)
    clip = PackagedClip(fp.model, fp.weights, fp.weights_sha256, fp.activation, fp.random_weights, fp.seed)
    return PackageConfig(clip=clip, preprocess=Preprocess(fp.image_size, config.image_size),
                         weights_sha256=weights_sha256, which=which, random_clip=config.clip.random_weights,
                         random_backbone=config.backbone_init.random_init,
                         warning=random_warning(config.clip.random_weights, config.backbone_init.random_init),
                         deviations=tuple(deviations(config, which)), run=config)


def read_package(folder: Path) -> tuple[CAFEModel, RunConfig]:
    """The model of a package folder and its run's config, after checking model.safetensors' sha256."""
    config_path = Path(folder) / CONFIG_FILE
    try:
        data = json.loads(config_path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CafeError(f"{config_path} is not the config.json `cafe package` writes ({type(e).__name__}: {e}); "
                        "download or write the package again.") from None
    package = PackageConfig.from_json(data, config_path)
    if package.classes != CLASSES:
        raise CafeError(f"{config_path} predicts classes {list(package.classes)}; this cafe expects {list(CLASSES)}.")
    try:
        model = CAFEModel(package.run.model)
    except CafeError as e:
        raise CafeError(f"{config_path} is not the config.json `cafe package` writes ({e}); "
                        "download or write the package again.") from None
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise CafeError(f"{weights} is missing; the package is incomplete. Download or write it again.")
    if sha256(weights) != package.weights_sha256:
        raise CafeError(f"{weights} does not match the sha256 in {config_path}: the file is damaged or was "
                        "replaced. Download the package again (or rerun `cafe package`).")
    load_weights(Path(folder), Path(WEIGHTS_FILE).stem, model)
    return model.eval(), package.run
