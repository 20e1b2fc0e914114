"""Zero-shot baselines on a tiny random open_clip model (offline), and the Exp-CLIP head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from cafe_cache import zeroshot as zs
from cafe_cache.classes import CLASSES
from cafe_cache.errors import CafeError

CONFIG_DIR = Path(zs.__file__).parent / "extract" / "model_configs"
TINY = "cafe-tiny"


@pytest.fixture(scope="module")
def tiny():
    """(model, tokenizer) of the random 32-d tiny CLIP; nothing is downloaded."""
    open_clip.add_model_config(CONFIG_DIR)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None).eval()
    return model, open_clip.get_tokenizer(TINY)


def test_prompt_set_matches_classes():
    assert len(zs.CLASS_PROMPT_NAMES) == len(CLASSES)
    assert "a photo of a face with an expression of {}." in zs.PROMPT_TEMPLATES
    prompts = zs.prompts_for(zs.CLASS_PROMPT_NAMES, zs.PROMPT_TEMPLATES)
    assert prompts[3][1] == "a photo of a face with an expression of happiness."


def test_class_embeddings_and_logits(tiny):
    model, tokenizer = tiny
    raw = zs.encode_prompts(model, tokenizer, zs.CLASS_PROMPT_NAMES, zs.PROMPT_TEMPLATES)
    emb = zs.ensemble_embeddings(raw)
    assert emb.shape == (7, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(7), atol=1e-5)
    assert raw.shape == (7, len(zs.PROMPT_TEMPLATES), 32)
    # The ensemble is the renormalised mean of the unit-length prompt embeddings.
    expected = F.normalize(F.normalize(raw, dim=-1).mean(dim=1), dim=-1)
    assert torch.allclose(emb, expected, atol=1e-6)

    with torch.no_grad():
        images = model.encode_image(torch.randn(5, 3, 32, 32))
    scale = model.logit_scale.exp().item()
    logits = zs.zero_shot_logits(images, emb, scale)
    assert logits.shape == (5, 7)
    assert torch.allclose(logits.softmax(dim=-1).sum(dim=-1), torch.ones(5), atol=1e-5)
    assert logits.abs().max() <= scale + 1e-4  # a scaled cosine


def test_text_cache_hit_skips_the_model(tiny, tmp_path):
    model, tokenizer = tiny
    calls = {"load": 0, "encode": 0}
    encode_text = model.encode_text

    def counting_encode(tokens):
        calls["encode"] += 1
        return encode_text(tokens)

    def load():
        calls["load"] += 1
        return model, tokenizer

    model.encode_text = counting_encode
    try:
        first = zs.text_embeddings_cached("cafe-tiny/random", load, tmp_path)
        second = zs.text_embeddings_cached("cafe-tiny/random", load, tmp_path)
        assert calls == {"load": 1, "encode": 1}
        assert torch.equal(first, second)
        assert len(list(tmp_path.glob("*.npy"))) == 1

        # Another prompt set or another model id is another entry.
        zs.text_embeddings_cached("cafe-tiny/random", load, tmp_path,
                                  templates=zs.PROMPT_TEMPLATES[:2])
        zs.text_embeddings_cached("cafe-tiny/other", load, tmp_path)
        assert calls["encode"] == 3 and len(list(tmp_path.glob("*.npy"))) == 3
    finally:
        del model.encode_text


def test_text_cache_refuses_a_damaged_entry(tmp_path):
    def load():
        raise AssertionError("must not load the model")

    path = zs._cache_file(tmp_path, "m", zs.CLASS_PROMPT_NAMES, zs.PROMPT_TEMPLATES)
    np.save(path, np.zeros((3, 2, 4), dtype=np.float32))
    with pytest.raises(CafeError, match="delete the file"):
        zs.text_embeddings_cached("m", load, tmp_path)


def save_head(path: Path, weight: torch.Tensor, prefix: str = "", nest: str | None = None):
    state = {f"{prefix}projection_head.mlp.weight": weight}
    torch.save({nest: state, "epoch": 3} if nest else state, path)
    return path


@pytest.mark.parametrize("prefix,nest", [("", None), ("module.", None), ("module.", "state_dict"),
                                         ("", "model")])
def test_expclip_head_loads(tmp_path, prefix, nest):
    weight = torch.randn(64, 32)
    head = zs.load_expclip_head(save_head(tmp_path / "h.pth", weight, prefix, nest), 32)
    assert head.proj.out_features == 64 and head.proj.bias is None
    assert torch.equal(head.proj.weight, weight)

    image = torch.randn(4, 32)
    prompts = torch.randn(7, 3, 32)
    logits = head.logits(image, prompts, 100.0)
    # Exp-CLIP averages the per-prompt logits of projected, normalised features.
    img = F.normalize(image @ weight.T, dim=-1)
    per_prompt = 100.0 * torch.einsum("nd,cpd->ncp", img, F.normalize(prompts @ weight.T, dim=-1))
    assert torch.allclose(logits, per_prompt.mean(dim=-1), atol=1e-4)
    assert head.logits(image, prompts[:, 0], 100.0).shape == (4, 7)


def test_expclip_head_refuses_wrong_checkpoints(tmp_path):
    wrong = save_head(tmp_path / "l14.pth", torch.randn(4096, 768), "module.")
    with pytest.raises(CafeError) as err:
        zs.load_expclip_head(wrong, 512)
    message = str(err.value)
    assert "l14.pth" in message and "(4096, 768)" in message and "512)" in message

    torch.save({"a.weight": torch.randn(8, 32), "b.weight": torch.randn(16, 32)},
               tmp_path / "two.pth")
    with pytest.raises(CafeError, match="several candidate"):
        zs.load_expclip_head(tmp_path / "two.pth", 32)

    torch.save({"bias": torch.randn(32)}, tmp_path / "none.pth")
    with pytest.raises(CafeError, match="found: none"):
        zs.load_expclip_head(tmp_path / "none.pth", 32)

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CafeError, match="not a readable"):
        zs.load_expclip_head(tmp_path / "junk.pth", 32)
    with pytest.raises(CafeError, match="not found"):
        zs.load_expclip_head(tmp_path / "missing.pth", 32)
