"""cafe reproduce --protocol lodo: the plan on 3 and 5 datasets, the table from finished runs, one real run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cafe_cache import paper, synth
from cafe_cache.errors import CafeError
from cafe_cache.lodo import plan_lodo, write_lodo
from cafe_cache.reproduce import Experiment

from .conftest import write_eval_results, write_run_config
from .test_reproduce import cafe, step_lines

REPO = Path(__file__).resolve().parents[1]


def configure(tmp_path: Path, monkeypatch, datasets: tuple[str, ...]) -> Path:
    """Roots for ``datasets`` (empty folders: a dry run reads none), none for the others."""
    for d in paper.DATASETS:
        monkeypatch.delenv(f"CAFE_{d.upper()}_ROOT", raising=False)
    for d in datasets:
        (tmp_path / d).mkdir()
        monkeypatch.setenv(f"CAFE_{d.upper()}_ROOT", str(tmp_path / d))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def dry_run(*args: str) -> list[str]:
    proc = cafe("reproduce", "--protocol", "lodo", "--dry-run", *args)
    assert proc.exit_code == 0, proc.stderr[-2000:] + repr(proc.exception)
    return step_lines(proc.stderr)


def source_of(line: str) -> list[str]:
    return re.search(r"--source (\S+)", line).group(1).split(",")


@pytest.mark.parametrize("datasets", [("rafdb", "ferplus", "mma"), paper.DATASETS])
def test_dry_run_plans_every_held_out_set(tmp_path, monkeypatch, datasets):
    configure(tmp_path, monkeypatch, datasets)
    lines = dry_run()
    n = len(datasets)
    assert [line.split()[4] for line in lines if line.startswith("$ cafe extract")] == list(datasets)
    trains = [line for line in lines if line.startswith("$ cafe train")]
    assert len(trains) == n + 2 * n  # Table 1's single sources, then CAFE and no_mask per held-out set
    assert [source_of(t) for t in trains[:n]] == [[d] for d in datasets]
    for k, held_out in enumerate(datasets):
        cafe, baseline = trains[n + 2 * k], trains[n + 2 * k + 1]
        others = [d for d in datasets if d != held_out]
        assert source_of(cafe) == source_of(baseline) == others
        assert f"lodo/{held_out}/cafe" in cafe and f"lodo/{held_out}/no_mask" in baseline
        assert "--variant no_mask" in baseline and "--variant" not in cafe
        assert all(f"--targets {','.join(datasets)} " in t for t in (cafe, baseline))
        assert "--precision fp32" in cafe and "--precision fp32" in baseline  # trained the same way
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_two_datasets_are_table_one_not_lodo(tmp_path):
    with pytest.raises(CafeError, match="at least 3 datasets"):
        plan_lodo(["rafdb", "mma"], tmp_path)


def fake_run(run: Path, acc: dict[str, float], random: bool = False) -> None:
    write_eval_results(run, acc, random=random)
    write_run_config(run, {"online_clip": False}, backbone_init={"source": "imagenet"}, mask_precision="fp32",
                     clip={"random_weights": random})


def test_table_puts_the_best_single_source_beside_each_held_out_set(tmp_path):
    datasets = ["rafdb", "ferplus", "mma"]
    runs = plan_lodo(datasets, tmp_path / "runs")
    for r in runs:  # CAFE scores 60 on every held-out set, the baseline 40
        fake_run(r.run, {d: (60.0 if r.method == "CAFE" else 40.0) + (10 if d != r.held_out else 0)
                         for d in datasets} | {"jaffe": 33.0})
    singles = []
    single_acc = {"rafdb": {"ferplus": 50.0, "mma": 58.0}, "ferplus": {"rafdb": 55.0, "mma": 52.0},
                  "mma": {"rafdb": 45.0, "ferplus": 62.0}}
    for s, acc in single_acc.items():
        fake_run(tmp_path / "runs" / "table1" / s, acc | {s: 80.0})
        singles.append(Experiment("1", "CAFE", s, tmp_path / "runs" / "table1" / s))
    written = write_lodo(runs, singles, tmp_path / "results")
    md = (tmp_path / "results" / "lodo.md").read_text()
    assert md.startswith("## Leave-one-domain-out accuracy (%) on the held-out set, final epoch — ImageNet init")
    assert "| RAF-DB | FERPlus + MMA | 60.00 | 40.00 | FERPlus: 55.00 | +5.00 |" in md
    assert "| FERPlus | RAF-DB + MMA | 60.00 | 40.00 | MMA: 62.00 | -2.00 |" in md
    assert "| MMA | RAF-DB + FERPlus | 60.00 | 40.00 | RAF-DB: 58.00 | +2.00 |" in md
    assert "| **mean over held-out sets** | | 60.00 | 40.00 | 58.33 | +1.67 |" in md
    assert "| CAFE | RAF-DB | 60.00* | 70.00 | 70.00 | 33.00 |" in md  # every test set, the extra target too
    data = json.loads((tmp_path / "results" / "lodo.json").read_text())
    assert data["held_out"][0]["best_single_source"] == ["ferplus", 55.0] and not data["random_weights"]
    assert [p.name for p in written] == ["lodo.md", "lodo.json", "lodo.png"]
    assert (tmp_path / "results" / "lodo.png").stat().st_size > 5_000


def test_unfinished_runs_show_as_dashes_and_random_weights_are_named(tmp_path):
    runs = plan_lodo(["rafdb", "ferplus", "mma"], tmp_path / "runs")
    fake_run(runs[0].run, {"rafdb": 20.0, "ferplus": 30.0, "mma": 30.0}, random=True)
    written = write_lodo(runs, [], tmp_path / "results")
    md = written[0].read_text()
    assert "RANDOM WEIGHTS" in md.splitlines()[0] + md
    assert "| FERPlus | RAF-DB + MMA | - | - | - | - |" in md
    assert "| **mean over held-out sets** | | - | - | - | - |" in md


@pytest.mark.slow
def test_lodo_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    """Three tiny generated datasets, tiny random CLIP, one epoch: 3 extractions, 9 trainings, the table."""
    from cafe_cache.lodo import reproduce_lodo
    from cafe_cache.reproduce import ReproduceJob
    from cli.reproduce import parse_extract_args, parse_train_args

    synth.write_rafdb(tmp_path / "raf", "line", 2, 1, size=32, seed=1)
    synth.write_folder(tmp_path / "mma", "color", 2, 1, size=32, seed=2)
    synth.write_folder(tmp_path / "sfew", "lowres", 2, 1, size=32, seed=3)
    (tmp_path / "sfew" / "train").rename(tmp_path / "sfew" / "Train")
    (tmp_path / "sfew" / "test").rename(tmp_path / "sfew" / "Val")
    configure(tmp_path, monkeypatch, ())
    for d, folder in (("rafdb", "raf"), ("mma", "mma"), ("sfew", "sfew")):
        monkeypatch.setenv(f"CAFE_{d.upper()}_ROOT", str(tmp_path / folder))
    train, plots = parse_train_args("--backbone-weights none --epochs 1 --image-size 32 --workers 0 --no-plots", "fp32")
    job = ReproduceJob(protocol="lodo", extract=parse_extract_args("--model cafe-tiny --random-weights --workers 0"),
                       train=train, plots=plots)
    lines: list[str] = []
    written = reproduce_lodo(job, lines.append)
    assert [p.name for p in written] == ["lodo.md"]
    md = written[0].read_text()
    assert "RANDOM WEIGHTS" in md
    assert re.search(r"\| RAF-DB \| SFEW2.0 \+ MMA \| \d+\.\d\d \| \d+\.\d\d \| (SFEW2.0|MMA): \d+\.\d\d \|", md), md
    config = json.loads((tmp_path / "runs/reproduce/lodo/rafdb/no_mask/config.json").read_text())
    assert config["train"]["source"] == "sfew,mma" and config["model"]["variant"] == "no_mask"
    assert (tmp_path / "results" / "lodo.png").is_file() and any("lodo.png" in line for line in lines)
    again: list[str] = []
    reproduce_lodo(job, again.append)
    assert sum("done already" in line for line in again) == 9


def test_lodo_refuses_the_paper_protocols_table_flags():
    from cafe_cache.reproduce import ReproduceJob

    with pytest.raises(CafeError, match="--tables and --sweep choose the paper's tables"):
        ReproduceJob(protocol="lodo", sweep=True)
    with pytest.raises(CafeError, match="--protocol 'loo'"):
        ReproduceJob(protocol="loo")
