"""Zero-shot baselines on cached CLIP image features: plain CLIP prompts and Exp-CLIP.

Both classify by cosine similarity between an image feature and class text features from
the CLIP text tower, so no FER labels are used.  They differ in how prompts are combined:

* CLIP (Radford et al.'s prompt-ensemble recipe): L2-normalise each prompt's text feature,
  average per class, renormalise (:func:`ensemble_embeddings`), then
  ``logit_scale * cosine`` (:func:`zero_shot_logits`).
* Exp-CLIP (Zhao et al., WACV 2025): a bias-free linear head maps BOTH image and text
  features (512 -> 4096 for ViT-B/32) into an expression space; each is L2-normalised and
  the per-prompt logits ``logit_scale * cosine`` are averaged over a class's prompts
  (their ``test.py``), which :meth:`ExpCLIPHead.logits` reproduces.

Caveats for comparing with published numbers: Exp-CLIP's test code feeds CLIP images that
are only resized to 224x224 and scaled to [0, 1] (no mean/std), while the CAFE feature
cache uses ImageNet mean/std, so zero-shot scores on cached features are not an exact
replication; and its FERPlus results are 8-class (with contempt), ours 7-class.

The per-prompt text features are what gets cached (:func:`text_embeddings_cached`), so both
recipes share one cache entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import CafeError
from .extract.fingerprint import Fingerprint
from .extract.online import clip_for
from .extract.reader import FeatureCache
from .files import write_text
from .metrics import markdown_table, metrics, summary
from .paper import ZERO_SHOT
from .results import TargetMetrics, ZeroShotTable

# Prompt templates: the five of Exp-CLIP's "Expression Ensemble Five" (models/Text.py in
# github.com/zengqunzhao/Exp-CLIP), written as templates.  The second is the one quoted in
# CAFE-NOTES.md.  (For sadness alone their list replaces the 2nd and 3rd with other
# wordings; we use the same five templates for every class.)
PROMPT_TEMPLATES: tuple[str, ...] = (
    "an expression of {}.",
    "a photo of a face with an expression of {}.",
    "a photo radiating {} in a person.",
    "a photo showing someone immersed in {}.",
    "a photo capturing {} within an individual.",
)

# The word put into the templates for each class, in cafe_cache.classes.CLASSES order
# (Surprise, Fear, Disgust, Happy, Sad, Anger, Neutral).  These are Exp-CLIP's class words;
# their own class order (happiness, sadness, neutral, anger, surprise, disgust, fear)
# differs, but logits are produced here in CLASSES order, so labels line up by name.
CLASS_PROMPT_NAMES: tuple[str, ...] = (
    "surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral",
)

Tokenizer = Callable[[list[str]], torch.Tensor]


def prompts_for(classnames: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """Every template filled with every class word: one list of prompts per class."""
    return [[t.format(name) for t in templates] for name in classnames]


@torch.no_grad()
def encode_prompts(model: nn.Module, tokenizer: Tokenizer, classnames: Sequence[str],
                   templates: Sequence[str], device: str | torch.device = "cpu"
                   ) -> torch.Tensor:
    """Raw CLIP text features of every prompt, (classes, templates, D) float32 on the CPU.

    Pass the model in eval mode; it must already be on ``device``.
    """
    if not classnames or not templates:
        raise ValueError("need at least one class name and one template")
    flat = [p for per_class in prompts_for(classnames, templates) for p in per_class]
    tokens = tokenizer(flat).to(device)
    features = model.encode_text(tokens).float().cpu()
    return features.reshape(len(classnames), len(templates), -1)


def ensemble_embeddings(prompt_features: torch.Tensor) -> torch.Tensor:
    """CLIP's prompt ensemble: (C, P, D) -> (C, D), normalise, average, renormalise."""
    if prompt_features.ndim == 2:
        prompt_features = prompt_features[:, None]
    mean = F.normalize(prompt_features.float(), dim=-1).mean(dim=1)
    return F.normalize(mean, dim=-1)


def _cache_file(cache_dir: Path, model_id: str, classnames: Sequence[str],
                templates: Sequence[str]) -> Path:
    """Where one (model, prompt set) entry lives; the hash covers everything that matters."""
    key = json.dumps({"model": model_id, "classnames": list(classnames),
                      "templates": list(templates)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("_") or "model"
    return cache_dir / f"text-{safe_id}-{digest}.npy"


def text_embeddings_cached(model_id: str,
                           load_model: Callable[[], tuple[nn.Module, Tokenizer]],
                           cache_dir: str | Path,
                           classnames: Sequence[str] = CLASS_PROMPT_NAMES,
                           templates: Sequence[str] = PROMPT_TEMPLATES,
                           device: str | torch.device = "cpu") -> torch.Tensor:
    """Per-prompt text features (C, P, D), from ``cache_dir`` when already computed.

    ``model_id`` must name the exact weights (e.g. "ViT-B-32/openai"): it keys the cache
    together with a hash of the class words and templates.  ``load_model()`` returns
    ``(model, tokenizer)`` and is called only on a miss, so a hit needs no CLIP at all.
    Feed the result to :func:`ensemble_embeddings` (CLIP) or :meth:`ExpCLIPHead.logits`.
    """
    path = _cache_file(Path(cache_dir), model_id, classnames, templates)
    if path.exists():
        return _read_cached(path, len(classnames), len(templates))
    model, tokenizer = load_model()
    features = encode_prompts(model, tokenizer, classnames, templates, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, features.numpy())
    os.replace(tmp, path)  # atomic: a parallel reader never sees half a file
    return features


def _read_cached(path: Path, n_classes: int, n_templates: int) -> torch.Tensor:
    """Load a cache entry, refusing one that is unreadable or of the wrong shape."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CafeError(f"{path}: unreadable text-embedding cache ({exc}); delete the file "
                        "to recompute it") from exc
    if array.ndim != 3 or array.shape[:2] != (n_classes, n_templates):
        raise CafeError(f"{path}: text-embedding cache has shape {array.shape}, expected "
                        f"({n_classes}, {n_templates}, D); delete the file to recompute it")
    return torch.from_numpy(array.astype(np.float32, copy=False))


def zero_shot_logits(image_features: torch.Tensor, text_emb: torch.Tensor,
                     logit_scale: float) -> torch.Tensor:
    """CLIP zero-shot logits (N, C) = ``logit_scale`` * cosine(image, class embedding).

    ``logit_scale`` is the exponentiated scale (``model.logit_scale.exp().item()``, 100 for
    the OpenAI weights).  Both inputs are L2-normalised here, so raw cached features work.
    """
    image = F.normalize(image_features.float(), dim=-1)
    text = F.normalize(text_emb.float().to(image.device), dim=-1)
    return logit_scale * image @ text.T


class ExpCLIPHead(nn.Module):
    """Exp-CLIP's projection: one bias-free linear map shared by image and text features."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.proj = nn.Linear(in_features, out_features, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Project CLIP features (..., in) and L2-normalise them (..., out)."""
        return F.normalize(self.proj(features.float()), dim=-1)

    def logits(self, image_features: torch.Tensor, prompt_features: torch.Tensor,
               logit_scale: float) -> torch.Tensor:
        """Zero-shot logits (N, C): per-prompt ``logit_scale`` * cosine, averaged per class.

        ``prompt_features`` are raw CLIP text features, (C, P, in) or (C, in).  Averaging
        the per-prompt logits equals one dot product with the mean of the normalised
        projected prompts, which is how it is computed.
        """
        if prompt_features.ndim == 2:
            prompt_features = prompt_features[:, None]
        image = self(image_features)
        classes = self(prompt_features.to(image.device)).mean(dim=1)
        return logit_scale * image @ classes.T


def _unwrap(checkpoint: Any) -> Mapping[str, Any] | None:
    """The state dict inside a checkpoint that may nest it under 'state_dict' or 'model'."""
    while isinstance(checkpoint, Mapping):
        inner = next((checkpoint[k] for k in ("state_dict", "model")
                      if isinstance(checkpoint.get(k), Mapping)), None)
        if inner is None:
            return checkpoint
        checkpoint = inner
    return None


def load_expclip_head(path: str | Path, clip_dim: int) -> ExpCLIPHead:
    """Build an :class:`ExpCLIPHead` from an Exp-CLIP checkpoint (their ``*-model.pth``).

    The checkpoint is a (possibly nested, possibly ``module.``-prefixed) state dict; the
    head's weight is its one 2-D tensor whose in-features equal ``clip_dim`` (the CLIP
    embedding width, 512 for ViT-B/32).  The out width (4096 for the published heads)
    comes from the checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CafeError(f"{path}: Exp-CLIP checkpoint not found; pass the projection head "
                        "file from the Exp-CLIP repository's ./checkpoint folder")
    try:
        state = _unwrap(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # torch raises many types for a non-checkpoint file
        raise CafeError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    if state is None:
        raise CafeError(f"{path}: holds no state dict; expected a dict of tensors as saved "
                        "by Exp-CLIP's train.py")

    matrices = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and v.ndim == 2}
    fits = {k: v for k, v in matrices.items() if v.shape[1] == clip_dim}
    expected = f"(out_features, {clip_dim}), e.g. (4096, {clip_dim})"
    if len(fits) != 1:
        found = ", ".join(f"{k} {tuple(v.shape)}" for k, v in matrices.items()) or "none"
        problem = "several candidate weights" if fits else "no matching 2-D weight"
        raise CafeError(f"{path}: {problem} for an Exp-CLIP head; 2-D weights found: {found}; "
                        f"expected exactly one of shape {expected}. Is it the head for this "
                        "CLIP model?")
    (weight,) = fits.values()
    head = ExpCLIPHead(clip_dim, weight.shape[0])
    head.proj.weight.data.copy_(weight.float())
    return head.eval()


# -- zero-shot evaluation of cached datasets (cafe zeroshot) -----------------------------------

# Only the argmax is reported, which no positive scale changes; 100 is the OpenAI CLIP value.
LOGIT_SCALE = 100.0

APPROXIMATION_NOTE = (
    "Zero-shot scores here use the cached image features (preprocess as recorded per table), not each "
    "method's own input pipeline: Exp-CLIP's test code feeds CLIP images scaled to [0, 1] without "
    "mean/std normalisation, and its FERPlus numbers are 8-class (ours 7), so our Exp-CLIP rows only "
    "approximate theirs.")


def text_model_id(fp: Fingerprint) -> str:
    """The CLIP weights a cache came from, as a text-cache key (a file's sha256 names the file)."""
    if fp.random_weights:
        return f"{fp.model}/random-seed{fp.seed}"
    if fp.weights_sha256:
        return f"{fp.model}/{fp.weights}-{fp.weights_sha256[:16]}"
    return f"{fp.model}/{fp.weights}"


def _text_model(fp: Fingerprint, clip_weights: str | None, device: torch.device,
                log: Callable[[str], None]) -> tuple[nn.Module, Any]:
    """The full CLIP of a cache and its tokenizer (only on a text-cache miss)."""
    import open_clip  # only on a text-cache miss

    log(f"encoding the prompts with CLIP {fp.weights_label} (once; cached afterwards)")
    clip = clip_for(fp, clip_weights, device, images=False)  # the text tower ignores image preprocessing
    return clip.model, open_clip.get_tokenizer(fp.model)


def require_text_towers(caches: dict[str, FeatureCache]) -> None:
    """Zero-shot needs CLIP's text tower: refuse a cache of an image-only extractor (timm) in one line."""
    from .extract.extractor import has_text_tower

    for cache in caches.values():
        if not has_text_tower(cache.fingerprint.model):
            raise CafeError(f"{cache.path} holds {cache.fingerprint.model} features, an image-only model without a "
                            "text tower: zero-shot needs a CLIP cache (--model ViT-B-32 or open_clip:NAME); pass "
                            "--cache-dir of one, or --targets without this cache.")


def clean_test_features(cache: FeatureCache) -> tuple[torch.Tensor, np.ndarray]:
    """(features (n, D), labels) of the clean view of a cache's test split."""
    if "clean" not in cache.fingerprint.views:
        raise CafeError(f"{cache.path} has no clean view (views: {', '.join(cache.fingerprint.views)}); "
                        "re-extract it with --views clean,hflip.")
    data = cache.load("test", views=["clean"])
    return torch.from_numpy(data.features[:, 0]), data.labels


def _group_by_clip(caches: dict[str, FeatureCache]) -> dict[str, dict[str, FeatureCache]]:
    """Caches made with the same CLIP weights share their text features and one table."""
    groups: dict[str, dict[str, FeatureCache]] = {}
    for name, cache in caches.items():
        groups.setdefault(text_model_id(cache.fingerprint), {})[name] = cache
    return groups


def _table(method: str, fp: Fingerprint, results: dict[str, TargetMetrics],
           datasets: dict[str, str], note: str = "") -> ZeroShotTable:
    """One method on one CLIP's caches, with its title and the published ViT-B/32 numbers."""
    title = f"Zero-shot {method} ({len(PROMPT_TEMPLATES)} prompt templates{note}), CLIP {fp.weights_label}"
    if fp.random_weights:
        title = "RANDOM CLIP WEIGHTS, not a real result: " + title
    published = {} if fp.random_weights else {
        name: ZERO_SHOT[method][ds] for name, ds in datasets.items() if ds in ZERO_SHOT[method]}
    return ZeroShotTable(method, title, fp.weights_label, fp.random_weights, fp.preprocess, results,
                         summary(results, None), published)


def zero_shot_tables(caches: dict[str, FeatureCache], *, text_dir: Path, expclip: Path | None,
                     clip_weights: str | None, device: torch.device,
                     log: Callable[[str], None] = lambda _: None) -> list[ZeroShotTable]:
    """Metrics of CLIP (and Exp-CLIP) per target, one table per method and CLIP weights."""
    require_text_towers(caches)
    tables = []
    for model_id, group in _group_by_clip(caches).items():
        fp = next(iter(group.values())).fingerprint
        prompts = text_embeddings_cached(model_id, lambda: _text_model(fp, clip_weights, device, log),
                                            text_dir, device=device)
        data = {name: clean_test_features(cache) for name, cache in group.items()}
        datasets = {name: cache.dataset for name, cache in group.items()}
        classes = ensemble_embeddings(prompts)
        clip_rows = {name: metrics(y, zero_shot_logits(x, classes, LOGIT_SCALE).argmax(1).numpy())
                     for name, (x, y) in data.items()}
        tables.append(_table("CLIP", fp, clip_rows, datasets))
        if expclip:
            head = load_expclip_head(expclip, prompts.shape[-1])
            with torch.no_grad():
                rows = {name: metrics(y, head.logits(x, prompts, LOGIT_SCALE).argmax(1).numpy())
                        for name, (x, y) in data.items()}
            tables.append(_table("Exp-CLIP", fp, rows, datasets, f", head {expclip.name}"))
    return tables


def markdown(tables: list[ZeroShotTable]) -> str:
    """results.md: one table per method, its CLIP input and the published numbers, then the caveat."""
    parts = []
    for t in tables:
        text = markdown_table(t.targets, None, t.title)
        text += f"- CLIP input: cached features, --preprocess {t.preprocess}\n"
        for name, p in t.published.items():
            text += (f"- published ViT-B/32 {t.method} zero-shot for {name}: UAR {p['uar']:.2f}, "
                     f"accuracy (WAR) {p['war']:.2f}\n")
        parts.append(text)
    return "\n".join(parts) + f"\n{APPROXIMATION_NOTE}\n"


def write_results(out: Path, tables: list[ZeroShotTable], expclip: Path | None) -> None:
    """``OUT/results.json`` (the prompts, the Exp-CLIP head, every table) and ``OUT/results.md``."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"templates": list(PROMPT_TEMPLATES), "class_words": list(CLASS_PROMPT_NAMES),
            "expclip": str(expclip) if expclip else None, "note": APPROXIMATION_NOTE,
            "tables": [t.to_dict() for t in tables]}
    write_text(out / "results.json", json.dumps(data, indent=2, sort_keys=True))
    write_text(out / "results.md", markdown(tables))
