"""The README.md model card of a ``cafe package`` folder (Hugging Face's card format: YAML front matter)."""

from __future__ import annotations

from ..classes import CLASSES
from ..extract.extractor import display_name
from ..metrics import means
from ..paper import CAFE_CROSS_DOMAIN, DATASET_NAMES
from ..results import EvalResult
from .package_config import PackageConfig

CITATION = "\n".join([
    "@inproceedings{zhang2024generalizable,",
    "  title={Generalizable Facial Expression Recognition},",
    "  author={Zhang, Yuhang and Zheng, Xiuqi and Liang, Chenyi and Hu, Jiani and Deng, Weihong},",
    "  booktitle={Computer Vision--ECCV 2024: 18th European Conference, Milan, Italy, September 29--October 4, "
    "2024, Proceedings},",
    "  year={2024}",
    "}",
])


def model_card(package: PackageConfig, results: EvalResult | None, repo: str) -> str:
    """The card of a package: ``package`` its config.json, ``results`` its run's eval results.json."""
    config = package.run
    source = config.source
    random = package.random
    title = f"CAFE facial expression recognition, trained on {DATASET_NAMES.get(source, source)}"
    parts = [_front_matter(source), f"# {title}" + (" (RANDOM WEIGHTS: not a real model)" if random else ""), ""]
    if package.warning:
        parts += [f"> **RANDOM WEIGHTS.** {package.warning[0].upper()}{package.warning[1:]}", ""]
    parts += _what_it_is(package) + _how_to_use(repo) + _results(results, source, package.which)
    parts += _training(package) + _license_and_citation(source)
    return "\n".join(parts) + "\n"


def _front_matter(source: str) -> str:
    return ("---\nlibrary_name: cafe-fer\nlicense: other\npipeline_tag: image-classification\n"
            f"tags:\n- facial-expression-recognition\n- cafe\n- clip\n- {source}\n---\n")


def _what_it_is(package: PackageConfig) -> list[str]:
    clip, config, pre = package.clip, package.run, package.preprocess
    weights = "RANDOM WEIGHTS" if clip.random_weights else clip.weights
    sha = f", sha256 {clip.weights_sha256}" if clip.weights_sha256 else ""
    return [
        "## What it is", "",
        "CAFE (Zhang et al., ECCV 2024, *Generalizable Facial Expression Recognition*): a frozen image tower "
        f"({display_name(clip.model)}, weights {weights}{sha}, {clip.activation}) gives general face features; a "
        f"{config.model.backbone} mask branch (variant `{config.variant}`) learns a sigmoid mask "
        "that selects the expression channels; an FC gives the 7 basic expressions: " + ", ".join(CLASSES) + ".", "",
        f"`model.safetensors` holds the mask branch and FC (sha256 `{package.weights_sha256}`, the `"
        f"{package.which}` weights of the run). CLIP is not in it: `cafe_cache.load` rebuilds it from "
        "`config.json`'s `clip` entry (an open_clip pretrained tag downloads once into your Hugging Face cache).", "",
        f"Input: a face crop (a detected face is aligned first: {pre.to_dict()['face_crop']}), resized to "
        f"{pre.clip_size} px for CLIP and {pre.mask_size} px for the mask branch, "
        f"{pre.colour_order}, ImageNet mean/std.", "",
    ]


def _how_to_use(repo: str) -> list[str]:
    return [
        "## How to use", "",
        "```python",
        "import cafe_cache as cafe                  # pip install cafe-fer",
        f'faces = cafe.load("hf://{repo}").predict("photo.jpg")   # [FacePrediction(box, score, probs, label)]',
        "```", "",
        "Faces are found with MTCNN (`pip install --no-deps facenet-pytorch==2.6.0`) or else the LBP detector of "
        "`pip install 'cafe-fer[predict]'`, which video needs too; `predict(crop, detect=False)` takes a ready face "
        f"crop. On the command line: `cafe predict --checkpoint hf://{repo} photos/`.", "",
    ]


def _results(results: EvalResult | None, source: str, which: str) -> list[str]:
    """Accuracy per evaluated test set, with CAFE's Table 1 number for the same source and target beside it."""
    if not results:
        return ["## Cross-domain results", "", f"The run's `{which}` weights were not evaluated (`cafe eval "
                f"--which {which}` writes the results `cafe package` puts here), so there are no numbers.", ""]
    paper = CAFE_CROSS_DOMAIN.get(source, {})
    rows = ["| test set | n | accuracy (%) | UAR (%) | paper, CAFE Table 1 (%) |", "|---|---:|---:|---:|---:|"]
    for name, m in results.targets.items():
        tag = " (source)" if name == source else ""
        ref = f"{paper[name]:.2f}" if name in paper else "–"
        name_cell = f"{DATASET_NAMES.get(name, name)}{tag}"
        rows.append(f"| {name_cell} | {m.n} | {m.accuracy:.2f} | {m.uar:.2f} | {ref} |")
    accs = results.accuracies
    paper_mean, unseen_mean = means(accs, source)
    notes = [] if paper_mean is None else [
        f"- mean over the {len(accs)} test sets (source included, as Table 1's Mean): {paper_mean:.2f}"]
    if unseen_mean is not None:
        notes.append(f"- mean over the unseen test sets: {unseen_mean:.2f}")
    return ["## Cross-domain results", "", results.title, "", *rows, "", *notes, ""]


def _training(package: PackageConfig) -> list[str]:
    config = package.run
    t = config.train
    lines = ["## Training", "",
             f"- source: {t.source} ({(config.samples or {}).get('train', '?')} training images), "
             f"epochs {t.epochs}, batch {t.batch_size}, Adam lr {t.lr}, weight decay "
             f"{t.weight_decay}, ExponentialLR {t.gamma}, seed {t.seed}, mask input "
             f"{t.image_size} px",
             f"- losses: CE + {t.w_sep} separation + {t.w_div} channel-diverse",
             f"- backbone init: {config.backbone_init.source or '?'}; mask branch precision: "
             f"{config.mask_precision or '?'}; CLIP input: {config.clip_input}",
             f"- cafe {config.cafe_version or '?'}", "",
             "## Deviations from the paper's official setting", ""]
    lines += [f"- {d}" for d in package.deviations] or ["- none"]
    return lines + [""]


def _license_and_citation(source: str) -> list[str]:
    return [
        "## License and citation", "",
        "The code that made this model, cafe (`pip install cafe-fer`), is MIT-licensed. The weights were trained "
        f"on {DATASET_NAMES.get(source, source)}, whose own terms of use (most FER datasets: research only) "
        "apply to them; the card says `license: other` for that reason. The CAFE method and its official code "
        "(https://github.com/zyh-uaiaaaa/Generalizable-FER) are by the paper's authors; cite the paper:", "",
        "```bibtex", CITATION, "```",
    ]
