"""The cache fingerprint's weights source is a tagged value (issue 27); fingerprints written before, with
the source as text ("pretrained:<tag>", "file:<name>", "random"), still read as the same value."""

from __future__ import annotations

import json

import pytest

from cafe_cache.errors import CafeError
from cafe_cache.extract.fingerprint import Fingerprint
from cafe_cache.extract.online import spec_of
from cafe_cache.extract.weights import Pretrained, RandomInit, WeightsFile, WeightsInfo

SHA = "ab" * 32
SOURCES = [Pretrained("openai"), WeightsFile("ViT-B-32.pt", SHA), RandomInit(7)]
SETTINGS = dict(preprocess="official", views=("clean", "hflip"), image_size=224, dtype="float16", precision="fp16")


def fingerprint(source) -> Fingerprint:
    return Fingerprint(WeightsInfo("ViT-B-32", source, "quickgelu"), **SETTINGS)


def old_form(source) -> str:
    """The JSON cafe wrote before the source was tagged (its flat keys)."""
    text = {"pretrained": "pretrained:openai", "file": "file:ViT-B-32.pt", "random": "random"}[source.kind]
    return json.dumps({"activation": "quickgelu", "dtype": "float16", "image_size": 224, "model": "ViT-B-32",
                       "precision": "fp16", "preprocess": "official", "views": ["clean", "hflip"],
                       "weights": text, "weights_sha256": SHA if source.kind == "file" else None,
                       "random_weights": source.kind == "random", "seed": 7 if source.kind == "random" else None})


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.kind)
def test_each_source_is_written_tagged_and_read_back(source):
    fp = fingerprint(source)
    stored = json.loads(fp.to_json())["weights"]
    assert stored["kind"] == source.kind and isinstance(stored, dict)
    assert Fingerprint.from_json(fp.to_json()) == fp


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.kind)
def test_a_fingerprint_of_the_old_text_form_reads_as_todays(source):
    old = Fingerprint.from_json(old_form(source))
    assert old.source == source and old == fingerprint(source)
    assert old.differences(fingerprint(source)) == [] and old.same_weights(fingerprint(source))
    assert old.random_weights == (source.kind == "random")


def test_another_source_is_named_as_before():
    """What a refused resume prints: the source's text, its sha256 and seed, field by field."""
    diff = fingerprint(RandomInit(7)).differences(fingerprint(WeightsFile("ViT-B-32.pt", SHA)))
    assert diff[0] == "weights: cache has 'random', asked for 'file:ViT-B-32.pt'"
    assert f"weights_sha256: cache has None, asked for '{SHA}'" in diff and "seed: cache has 7, asked for None" in diff


def test_an_unknown_source_is_one_clear_error():
    broken = json.loads(fingerprint(Pretrained("openai")).to_json())
    broken["weights"] = {"kind": "torrent", "tag": "x"}
    with pytest.raises(CafeError, match="unknown weights source.*pretrained, file, random"):
        Fingerprint.from_dict(broken)
    with pytest.raises(CafeError, match="unknown weights source 'magnet:x'"):
        Fingerprint.from_json(old_form(Pretrained("openai")).replace("pretrained:openai", "magnet:x"))


def test_the_online_extractor_is_rebuilt_from_the_tagged_source():
    assert spec_of(fingerprint(Pretrained("openai")), None).pretrained == "openai"
    random = spec_of(fingerprint(RandomInit(7)), None)
    assert random.random_weights and random.seed == 7
    assert spec_of(fingerprint(WeightsFile("ViT-B-32.pt", SHA)), "/w/ViT-B-32.pt").weights == "/w/ViT-B-32.pt"
    with pytest.raises(CafeError, match="weights file ViT-B-32.pt; pass it again with --clip-weights"):
        spec_of(fingerprint(WeightsFile("ViT-B-32.pt", SHA)), None)
