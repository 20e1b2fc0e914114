"""``cafe reproduce --models``: Table 1 once per frozen extractor, each in its own folders, and results/models.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cafe_cache import paper
from cafe_cache.errors import CafeError
from cafe_cache.extract.job import ExtractJob
from cafe_cache.extract.weights import ClipSpec
from cafe_cache.metrics import means
from cafe_cache.models_study import check_models, model_plans, model_slug, write_models_table
from cafe_cache.reproduce import ReproduceJob

from .conftest import configure_raf_and_mma, write_eval_results, write_run_config
from .test_reproduce import cafe, step_lines

TIMM = "timm:test_vit.r160_in1k"  # timm's tiny ViT: a real timm extractor, fast


@pytest.fixture
def two_datasets(tmp_path, monkeypatch):
    """RAF-DB and MMA in their native layouts (synthetic, 2 train and 1 test image per class), the others unset."""
    return configure_raf_and_mma(tmp_path, monkeypatch, train=2, test=1, size=32)


def test_dry_run_lists_one_plan_per_model_in_its_own_folders(two_datasets):
    proc = cafe("reproduce", "--models", f"ViT-B-32,{TIMM}", "--dry-run")  # the default --tables: Table 1 only
    assert proc.exit_code == 0, proc.stderr[-2000:] + repr(proc.exception)
    assert "--models makes Table 1 only" in proc.stderr
    plans = [line for line in proc.stderr.splitlines() if line.startswith("plan ")]
    assert [p.split(" — ")[0] for p in plans] == ["plan 1/2: model ViT-B-32", f"plan 2/2: model {TIMM}"]
    commands = [line[2:] for line in step_lines(proc.stderr)]
    slug = model_slug(TIMM)
    assert slug == "timm-test_vit.r160_in1k"
    for model, folder in (("ViT-B-32", "ViT-B-32"), (TIMM, slug)):
        extracts = [c for c in commands if c.startswith("cafe extract") and f"--cache-dir cache/{folder} " in c]
        assert len(extracts) == 2 and all(f" --model {model}" in c for c in extracts)
        trains = [c for c in commands if c.startswith("cafe train") and f"--cache-dir cache/{folder} " in c]
        assert {c.split("--out ")[1].split()[0] for c in trains} == {
            f"runs/reproduce/models/{folder}/table1/rafdb", f"runs/reproduce/models/{folder}/table1/mma"}
    assert len(commands) == 8 and not any("zeroshot" in c for c in commands)  # no text tower for timm
    assert not (two_datasets / "cache").exists() and not (two_datasets / "results").exists()


def test_models_need_table_1_only_and_set_the_model_themselves(tmp_path):
    with pytest.raises(CafeError, match="--tables 2,4 has no Table 1"):
        check_models(["ViT-B-32"], ReproduceJob(tables=("2", "4")))
    with pytest.raises(CafeError, match="remove --model from --extract-args"):
        check_models(["ViT-B-32"], ReproduceJob(tables=("1",), extract=ExtractJob("", clip=ClipSpec("ViT-L-14"))))
    with pytest.raises(CafeError, match="named twice"):
        check_models(["ViT-B-32", "open_clip:ViT-B-32"], ReproduceJob(tables=("1",)))
    with pytest.raises(CafeError, match="unknown extractor 'dino'"):
        check_models(["dino:vits14"], ReproduceJob(tables=("1",)))


def write_run(run: Path, acc: dict[str, float], label: str, random: bool) -> None:
    for which in ("last", "best"):
        write_eval_results(run, acc, which=which, random=random)
    write_run_config(run, {"online_clip": True}, backbone_init={"source": "/w/resnet18_msceleb.pth"},
                     mask_precision="fp32", clip={"random_weights": random, "label": label})


def test_models_table_has_both_means_per_source_and_the_paper_reference(tmp_path):
    job = ReproduceJob(tables=("1",), runs=tmp_path / "runs", results=tmp_path / "results")
    plans = model_plans(job, ["ViT-B-32", "timm:vit_base_patch14_dinov2.lvd142m"], ["rafdb", "mma"])
    numbers = {("ViT-B-32", "rafdb"): {"rafdb": 80.0, "mma": 50.0}, ("ViT-B-32", "mma"): {"rafdb": 60.0, "mma": 70.0},
               ("timm:vit_base_patch14_dinov2.lvd142m", "rafdb"): {"rafdb": 84.0, "mma": 56.0}}
    for p in plans:
        for e in p.experiments:
            if (p.model, e.source) in numbers:
                write_run(e.run, numbers[(p.model, e.source)], f"{p.model} pretrained:x", False)
    md, js, png = write_models_table(plans, job.results)
    text = md.read_text()
    assert text.startswith("## Frozen extractors: CAFE Table 1 per model (accuracy %, final epoch)\n")
    assert "| ViT-B-32 | ViT-B-32 pretrained:x | 50.00 | 65.00 | 60.00 | 65.00 | 55.00 |" in text
    assert "| timm:vit_base_patch14_dinov2.lvd142m | timm:vit_base_patch14_dinov2.lvd142m pretrained:x | 56.00 | " \
           "70.00 | - | - | - |" in text  # the MMA run is missing: never a mean over fewer runs
    ref = [paper.CAFE_CROSS_DOMAIN[s] for s in ("rafdb", "mma")]
    cells = [means(ref[0], "rafdb", ("rafdb", "mma")), means(ref[1], "mma", ("rafdb", "mma"))]
    assert (f"| CAFE ViT-B/32 (paper) | published (OpenAI ViT-B/32) | {cells[0][1]:.2f} | {cells[0][0]:.2f} | "
            f"{cells[1][1]:.2f} | {cells[1][0]:.2f} |") in text
    assert "RANDOM WEIGHTS" not in text and png.stat().st_size > 5_000
    data = json.loads(js.read_text())
    assert data["rows"][0]["sources"]["mma"] == {"unseen_mean": 60.0, "paper_mean": 65.0}
    assert data["deviations"] == []  # the official settings: nothing to name
    write_run(plans[1].experiments[0].run, {"rafdb": 84.0, "mma": 56.0}, "timm:x RANDOM WEIGHTS (seed 0)", True)
    text = write_models_table(plans, job.results)[0].read_text()
    assert "RANDOM CLIP WEIGHTS" in text.splitlines()[0] and "**RANDOM WEIGHTS — not a real result.**" in text


@pytest.mark.slow
def test_models_study_runs_end_to_end_and_resumes(two_datasets):
    args = ("--models", f"cafe-tiny,{TIMM}", "--tables", "1",
            "--extract-args", "--random-weights --workers 0 --batch-size 32",
            "--train-args", "--backbone-weights none --epochs 1 --image-size 32 --workers 0 --no-plots")
    proc = cafe("reproduce", *args)
    assert proc.exit_code == 0, proc.stdout[-2000:] + proc.stderr[-3000:] + repr(proc.exception)
    text = (two_datasets / "results" / "models.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| cafe-tiny", f"| {TIMM}", "| CAFE ViT-B/32 (paper)"]
    assert "RANDOM" in text.splitlines()[0] and "**RANDOM WEIGHTS — not a real result.**" in text
    assert all("-" not in r.split(" | ")[2:6] for r in rows[:2])  # every mean of both models is there
    for folder in ("cafe-tiny", model_slug(TIMM)):
        assert (two_datasets / "cache" / folder / "rafdb.h5").is_file()
        title = (two_datasets / "results" / "models" / folder / "table1.md").read_text().splitlines()[0]
        assert title.startswith("## Table 1: cross-domain accuracy") and title.endswith(
            f"frozen extractor {'cafe-tiny' if folder == 'cafe-tiny' else TIMM}")
    assert (two_datasets / "results" / "models.png").is_file()
    again = cafe("reproduce", *args, "--dry-run")  # what a rerun would do: no training again
    assert again.exit_code == 0 and again.stderr.count("done already") == 4
    assert not [line for line in step_lines(again.stderr) if line.startswith("$ cafe train")]
