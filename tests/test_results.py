"""The one schema of results.json (cafe_cache/results.py) and of the per-epoch history (cafe_cache/history.py):
what is written reads back equal, the files of older cafe versions still read, a damaged file is one line."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from cafe_cache.classes import CLASSES
from cafe_cache.errors import CafeError
from cafe_cache.history import EpochLog, history_from_json, history_to_json, read_history
from cafe_cache.metrics import metrics, summary
from cafe_cache.report import cross_domain_matrix
from cafe_cache.results import (
    EvalResult,
    TargetMetrics,
    ZeroShotTable,
    read_eval_result,
    read_zero_shot_tables,
)

from .conftest import write_run_config

# What `cafe eval` wrote before issue 26 (no bgr_targets, no unreadable/left_out per target), verbatim in form.
OLD_RESULTS = {
    "title": "rafdb -> targets (last weights, CLIP ViT-B-32 pretrained:openai)", "source": "rafdb", "which": "last",
    "random_weights": False, "clip": "ViT-B-32 pretrained:openai",
    "targets": {
        "rafdb": {"n": 4, "accuracy": 75.0, "uar": 75.0, "bgr": False,
                  "per_class": {"Surprise": None, "Fear": None, "Disgust": None, "Happy": 100.0,
                                "Sad": 50.0, "Anger": None, "Neutral": None},
                  "confusion": [[0] * 7, [0] * 7, [0] * 7, [0, 0, 0, 2, 0, 0, 0], [0, 0, 0, 1, 1, 0, 0],
                                [0] * 7, [0] * 7]},
        "sfew": {"n": 2, "accuracy": 50, "uar": 50.0, "bgr": True,
                 "per_class": {c: (50.0 if c == "Anger" else None) for c in CLASSES},
                 "confusion": [[0] * 7] * 5 + [[0, 0, 0, 0, 0, 1, 1]] + [[0] * 7]}},
    "summary": {"paper_mean": 62.5, "unseen_mean": 50.0, "source": 75.0},
}
# metrics.json of a single-source run before issue 25: no source_test_accs; sep off (None)
OLD_HISTORY = [{"epoch": 1, "loss": 2.1, "ce": 1.9, "sep": None, "div": 0.2, "train_acc": 30.0,
                "source_test_acc": 28.5, "lr": 1e-4, "seconds": 12.0, "images_per_s": 100}]


def evaluated() -> EvalResult:
    rng = np.random.default_rng(0)
    a = metrics(rng.integers(0, 7, 50), rng.integers(0, 7, 50))
    b = replace(metrics(np.arange(7), np.arange(7)), bgr=True, unreadable=2, left_out="2 unreadable images left out")
    targets = {"rafdb": a, "sfew": b}
    return EvalResult("t", "rafdb", "last", True, "clip", targets, summary(targets, "rafdb"))


def test_results_round_trip_through_the_file(tmp_path):
    result = evaluated()
    path = tmp_path / "results.json"
    path.write_text(json.dumps(result.to_dict()))
    assert read_eval_result(path) == result
    assert result.to_dict()["bgr_targets"] == ["sfew"] and result.accuracies["sfew"] == 100.0
    table = ZeroShotTable("CLIP", "zs", "clip", False, "none", result.targets, result.summary,
                          {"rafdb": {"uar": 1.0, "war": 2.0}})
    path.write_text(json.dumps({"tables": [table.to_dict()]}))
    assert read_zero_shot_tables(path) == [table]


def test_results_of_an_older_cafe_still_read(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(OLD_RESULTS))
    result = read_eval_result(path)
    assert result.bgr_targets == ["sfew"] and result.targets["rafdb"].unreadable == 0
    assert result.targets["rafdb"].left_out is None and result.summary.paper_mean == 62.5
    assert result.targets["sfew"].accuracy == 50.0 and isinstance(result.targets["sfew"].accuracy, float)
    assert list(result.targets["rafdb"].per_class) == list(CLASSES)  # the classes' order, whatever the file's


@pytest.mark.parametrize("damage, named", [
    (lambda d: d["targets"]["rafdb"].update(accuracy="75.0"), "'accuracy' is '75.0', not"),
    (lambda d: d["targets"]["rafdb"].update(n=True), "'n' is True"),
    (lambda d: d["targets"]["sfew"].pop("confusion"), "target sfew: 'confusion' is missing"),
    (lambda d: d["targets"]["sfew"]["per_class"].pop("Anger"), "'per_class' names"),
    (lambda d: d.update(targets=[]), "'targets' is []"),
])
def test_a_mistyped_field_is_one_line_for_every_reader(tmp_path, damage, named):
    """The cross-domain figure's reader gets the schema's one line naming the file and the field, never a
    TypeError from formatting a string as a number further on."""
    run = tmp_path / "run"
    (run / "eval-last").mkdir(parents=True)
    write_run_config(run, {"source": "rafdb"}, clip={"random_weights": False})
    data = json.loads(json.dumps(OLD_RESULTS))
    damage(data)
    (run / "eval-last" / "results.json").write_text(json.dumps(data))
    with pytest.raises(CafeError, match="results.json is not the results file cafe writes") as e:
        cross_domain_matrix([run])
    assert named in str(e.value)


def test_results_that_are_not_json_are_one_line(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{not json")
    with pytest.raises(CafeError, match="is not valid JSON"):
        read_eval_result(path)


def test_target_metrics_from_metrics_are_plain_numbers():
    m = metrics(np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert type(m.accuracy) is float and type(m.n) is int and all(type(v) is int for row in m.confusion for v in row)
    assert TargetMetrics.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_history_round_trips_and_an_old_history_reads(tmp_path):
    history = [EpochLog(1, 2.0, 1.5, 0.3, None, 40.0, 35.0, 1e-3, 3.0, 20.0, {"a": 30.0, "b": 40.0})]
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(history_to_json(history)))
    assert read_history(path) == history
    path.write_text(json.dumps(OLD_HISTORY))
    [old] = read_history(path)
    assert old.source_test_accs == {} and old.sep is None and old.images_per_s == 100.0 and old.epoch == 1


def test_a_damaged_history_is_one_line(tmp_path):
    with pytest.raises(CafeError, match="resume.pt does not hold the per-epoch history.*'loss' is missing"):
        history_from_json([{k: v for k, v in OLD_HISTORY[0].items() if k != "loss"}], tmp_path / "resume.pt")
    with pytest.raises(CafeError, match="'train_acc' is '30', not a number"):
        history_from_json([OLD_HISTORY[0] | {"train_acc": "30"}], tmp_path / "metrics.json")
