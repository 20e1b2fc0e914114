"""Issue 26 (26a): no silent wrong results after a kill, a flipped label or a second writer; one line
instead of a traceback or a crash for every write that fails. Each test names the scenario it guards."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch
from filelock import FileLock
from safetensors.torch import load_file

from cafe_cache.errors import CafeError
from cafe_cache.extract.integrity import ATTRS_DIGEST, ERRORS_DIGEST, ROWS_DIGEST
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.files import write_text
from cafe_cache.run.checkpoint import load_model, load_resume
from cafe_cache.run.config import TrainConfig
from cafe_cache.run.folder import RUN_LOCK
from cafe_cache.train import loop
from cafe_cache.train.loop import train
from cli.main import main

from .conftest import TINY_CLIP, make_cache, write_folder_dataset

REPO = Path(__file__).resolve().parents[1]
NAME = "toyset"


def cafe(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `cafe ARGS` in this process as the console script does: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["cafe", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str) -> str:
    """The run stopped with exit 2 and one error line, no traceback; that line (wrapping joined)."""
    assert code == 2, err
    assert "Traceback" not in err, err
    text = " ".join(err.split())
    assert "error: " in text, err
    return text[text.rindex("error: "):]


def cli_process(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "400"}, **kw)


def config(cache_dir: Path, **kw) -> TrainConfig:
    base = dict(source=NAME, cache_dir=str(cache_dir), backbone_weights="none", epochs=2, batch_size=7,
                image_size=32, workers=0, lr=1e-3, seed=5)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    """A tiny folder dataset, its cache and a two-epoch run."""
    base = tmp_path_factory.mktemp("i26")
    data = write_folder_dataset(base / NAME, {"train": 3, "test": 2})
    cache_dir = base / "cache"
    make_cache(data, cache_dir / f"{NAME}.h5")
    run = base / "run"
    train(config(cache_dir), run, log=lambda s: None)
    return {"data": data, "cache_dir": cache_dir, "cache": cache_dir / f"{NAME}.h5", "run": run, "base": base}


@pytest.fixture
def run_copy(env, tmp_path) -> Path:
    return Path(shutil.copytree(env["run"], tmp_path / "run"))


@pytest.fixture
def cache_copy(env, tmp_path) -> Path:
    (tmp_path / "cache").mkdir()
    return Path(shutil.copy(env["cache"], tmp_path / "cache" / f"{NAME}.h5"))


def train_args(cache_dir: Path, out: Path, *more: str) -> list[str]:
    return ["train", "--source", NAME, "--cache-dir", str(cache_dir), "--out", str(out), "--backbone-weights", "none",
            "--epochs", "1", "--batch-size", "7", "--image-size", "32", "--workers", "0", "--no-eval", "--no-plots",
            *more]


# -- item 1: checkpoint and resume state can never be paired wrongly ---------------------------------------
def test_a_kill_between_the_weights_and_the_resume_state_resumes_to_the_uninterrupted_weights(env, tmp_path,
                                                                                               monkeypatch):
    """The kill lands after epoch 2's last.safetensors is written and before its resume state is."""
    real = loop.save_resume

    def killed_at_epoch_2(run, state, *args, **kwargs):
        if len(state.history) == 2:
            raise KeyboardInterrupt  # the process dies here: last.safetensors already holds epoch 2
        return real(run, state, *args, **kwargs)

    monkeypatch.setattr(loop, "save_resume", killed_at_epoch_2)
    parts = tmp_path / "parts"
    with pytest.raises(KeyboardInterrupt):
        train(config(env["cache_dir"], epochs=3), parts, log=lambda s: None)
    monkeypatch.undo()
    kept = load_resume(parts)  # still epoch 1's state, while last.safetensors holds epoch 2's weights
    said = []
    history = train(config(env["cache_dir"], epochs=3), parts, resume=True, log=said.append)
    assert len(history) == 3 and any("resuming after epoch 1 of 3" in s for s in said)
    whole = tmp_path / "whole"
    train(config(env["cache_dir"], epochs=3), whole, log=lambda s: None)
    a, b = load_file(str(whole / "last.safetensors")), load_file(str(parts / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert kept.epoch == 1 and len(kept.history) == 1


def test_a_sigterm_whose_raise_python_swallowed_still_stops_training_at_the_next_step(env, tmp_path):
    """SIGTERM's handler raises where the signal lands; landing in a weakref callback or ``__del__`` Python only
    prints the exception and goes on (seen on CI in extraction). The next training step stops the run anyway,
    with the last finished epoch kept."""
    from cafe_cache import signals

    steps = []

    def swallowed_at_epoch_2(epoch, n):
        steps.append(epoch)
        if epoch == 1 and steps.count(1) == 1:
            try:
                signals._raise_terminated(signal.SIGTERM, None)
            except signals.Terminated:
                pass  # what Python does to an exception raised in a weakref callback
    signals.sigterm_as_interrupt()  # as the cafe command does
    try:
        with pytest.raises(signals.Terminated):
            train(config(env["cache_dir"], epochs=3), tmp_path / "run", log=lambda s: None,
                  on_step=swallowed_at_epoch_2)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert steps.count(1) == 1 and load_resume(tmp_path / "run").epoch == 1
    signals.raise_if_terminated()  # delivered once: nothing pending any more


def test_resume_state_reads_typed_and_that_of_older_versions_too(tmp_path):
    """resume.pt round-trips as a ResumeState; one written before the weights moved into it (no ``model``,
    no ``epoch``) reads with model None, so the resume takes last.safetensors; a mismatched epoch is one line."""
    from cafe_cache.history import EpochLog
    from cafe_cache.run.checkpoint import ResumeState, save_resume

    epochs = [EpochLog(epoch=i + 1, loss=1.0 / (i + 1), ce=0.5, sep=0.3, div=0.2, train_acc=50.0, source_test_acc=40.0,
                       lr=2e-4, images_per_s=10.0, seconds=1.0) for i in range(2)]
    state = ResumeState(optimizer={"state": {}, "param_groups": []}, scheduler={"last_epoch": 2}, history=epochs,
                        best=40.0, model={"fc.weight": torch.ones(2, 2)}, epoch=2)
    save_resume(tmp_path, state)
    back = load_resume(tmp_path)
    assert back.history == epochs and back.epoch == 2 and torch.equal(back.model["fc.weight"], torch.ones(2, 2))
    old = tmp_path / "old"
    old.mkdir()
    torch.save({"optimizer": {}, "scheduler": {}, "history": [e.to_dict() for e in epochs], "best": 40.0},
               old / "resume.pt")
    back = load_resume(old)
    assert back.model is None and back.epoch is None and back.history == epochs
    torch.save({"optimizer": {}, "scheduler": {}, "history": [e.to_dict() for e in epochs], "best": 40.0,
                "model": {}, "epoch": 3}, old / "resume.pt")
    with pytest.raises(CafeError, match="names epoch 3 but holds the history of 2"):
        load_resume(old)


def test_a_second_train_into_the_same_out_is_refused(env, run_copy, monkeypatch, capsys):
    with FileLock(str(run_copy / RUN_LOCK), timeout=0):  # another `cafe train` holds the run
        code, _, err = cafe(monkeypatch, capsys, "train", "--resume", "--out", str(run_copy), "--epochs", "3",
                            "--no-eval", "--no-plots")
    line = one_line_error(code, err)
    assert "being written by another `cafe train`" in line and str(run_copy) in line
    assert len(json.loads((run_copy / "metrics.json").read_text())) == 2  # the other run's files untouched


def test_resume_refuses_a_source_cache_made_otherwise(env, run_copy, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other"
    make_cache(env["data"], other / f"{NAME}.h5", activation="quickgelu")  # same width, another activation
    config = json.loads((run_copy / "config.json").read_text())
    config["train"]["cache_dir"] = str(other)  # as if the run's cache had been replaced by this one
    (run_copy / "config.json").write_text(json.dumps(config))
    code, _, err = cafe(monkeypatch, capsys, "train", "--resume", "--out", str(run_copy), "--epochs", "3",
                        "--no-eval", "--no-plots")
    line = one_line_error(code, err)
    assert "is not the cache this run trained on" in line and "activation" in line
    assert len(json.loads((run_copy / "metrics.json").read_text())) == 2


def test_resume_with_fewer_epochs_than_done_is_refused(run_copy, monkeypatch, capsys):
    code, _, err = cafe(monkeypatch, capsys, "train", "--resume", "--out", str(run_copy), "--epochs", "1",
                        "--no-eval", "--no-plots")
    line = one_line_error(code, err)
    assert "--epochs 1:" in line and "already finished 2 epochs" in line
    assert "resuming after epoch 2 of 1" not in err


def test_checkpoints_have_the_permissions_of_every_other_file(env):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in env["run"].iterdir() if p.is_file()}
    assert modes["last.safetensors"] == modes["config.json"] == modes["resume.pt"], modes


# -- item 1: the cache's labels, paths, counts and attributes are checked on every read -----------------
def test_a_label_flipped_to_another_valid_class_is_refused(cache_copy, run_copy, monkeypatch, capsys):
    with h5py.File(cache_copy, "r+") as f:
        labels = f["splits/test/labels"]
        labels[0] = (int(labels[0]) + 1) % 7  # still a valid class: only the checksum can tell
    with pytest.raises(CafeError, match=r"split 'test': its labels, paths or row count do not match"):
        FeatureCache(cache_copy).load("test")
    code, _, err = cafe(monkeypatch, capsys, "cache", "info", str(cache_copy), "--verify")
    assert "labels, paths or row count do not match" in one_line_error(code, err)
    code, _, err = cafe(monkeypatch, capsys, "eval", "-c", str(run_copy), "--cache-dir", str(cache_copy.parent),
                        "--workers", "0")
    assert "do not match the checksum" in one_line_error(code, err)


@pytest.mark.parametrize("value", [100, -3])
def test_a_label_out_of_range_is_one_line_not_an_index_error(cache_copy, monkeypatch, capsys, value):
    with h5py.File(cache_copy, "r+") as f:
        f["splits/train/labels"][4] = value
        del f["splits/train"].attrs[ROWS_DIGEST]  # as an old cache without checksums: the range check alone
    with pytest.raises(CafeError, match=rf"split 'train' row 4 has label {value}, not a class id 0-6"):
        FeatureCache(cache_copy).load("train")
    code, _, err = cafe(monkeypatch, capsys, "train", "--source", NAME, "--cache-dir", str(cache_copy.parent),
                        "--out", str(cache_copy.parent.parent / "run"), "--backbone-weights", "none", "--epochs", "1",
                        "--image-size", "32", "--workers", "0", "--no-eval", "--no-plots")
    assert f"has label {value}" in one_line_error(code, err)


def test_a_changed_attribute_is_refused(cache_copy):
    with h5py.File(cache_copy, "r+") as f:
        f.attrs["root"] = "/elsewhere"
    with pytest.raises(CafeError, match="its attributes .* do not match the checksum"):
        FeatureCache(cache_copy)


def test_a_changed_error_column_is_refused(cache_copy):
    with h5py.File(cache_copy, "r+") as f:
        f["splits/test/error"][2] = "unreadable"  # would silently drop a row from every evaluation
    with pytest.raises(CafeError, match="its error column does not match the checksum"):
        FeatureCache(cache_copy).load("test")


def test_a_complete_cache_with_missing_rows_is_refused(cache_copy, monkeypatch, capsys):
    with h5py.File(cache_copy, "r+") as f:
        f["splits/test"].attrs["n_done"] = 0
    with pytest.raises(CafeError, match=r"marked complete but not all its rows are written \(test 0/14, train 21/21\)"):
        FeatureCache(cache_copy).load("test")
    code, _, err = cafe(monkeypatch, capsys, "cache", "info", str(cache_copy), "--verify")
    assert "marked complete" in one_line_error(code, err)


def test_a_damaged_object_header_is_one_line_naming_the_file(cache_copy, monkeypatch, capsys):
    with h5py.File(cache_copy, "r") as f:
        address = h5py.h5o.get_info(f["splits/test"].id).addr
    with open(cache_copy, "r+b") as f:
        f.seek(address)
        f.write(b"\xa5" * 64)
    code, _, err = cafe(monkeypatch, capsys, "cache", "info", str(cache_copy))
    line = one_line_error(code, err)
    assert str(cache_copy) in line and "damaged" in line


def test_old_caches_without_the_checksums_still_read(cache_copy, monkeypatch, capsys):
    with h5py.File(cache_copy, "r+") as f:
        del f.attrs[ATTRS_DIGEST]
        for g in f["splits"].values():
            del g.attrs[ROWS_DIGEST], g.attrs[ERRORS_DIGEST]
    assert len(FeatureCache(cache_copy).load("test").labels) == 14
    code, out, err = cafe(monkeypatch, capsys, "cache", "info", str(cache_copy), "--verify")
    assert code == 0 and "intact" in out, err


def test_verify_names_the_new_checksums(env, monkeypatch, capsys):
    code, out, err = cafe(monkeypatch, capsys, "cache", "info", str(env["cache"]), "--verify")
    assert code == 0, err
    out = " ".join(out.split())
    assert "test: 14 of 14 rows read back, fletcher32, labels/paths/count sha256, errors sha256" in out


def test_readers_leave_no_lock_files(env, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cache"
    shutil.copytree(env["cache_dir"], folder)
    FeatureCache(folder / f"{NAME}.h5").load("test")
    code, _, err = cafe(monkeypatch, capsys, "cache", "list", str(folder))
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == [f"{NAME}.h5"]


# -- item 2: names that are not UTF-8 ------------------------------------------------------------------------
def test_file_names_that_are_not_utf8_are_stored_and_predicted_losslessly(env, tmp_path, monkeypatch, capsys):
    data = write_folder_dataset(tmp_path / "latin1", {"train": 1, "test": 1})
    raw = os.fsencode(data / "test" / "happy") + b"/caf\xe9.png"
    os.rename(data / "test" / "happy" / "000.png", raw)
    broken = os.fsencode(data / "train" / "sad") + b"/\xff.png"
    with open(broken, "wb") as f:
        f.write(b"not an image")  # its error reason names the file: stored with the name's bytes too
    cache = tmp_path / "cache" / "latin1.h5"
    make_cache(data, cache)  # dies in the layout on today's main (UnicodeEncodeError)
    paths = FeatureCache(cache).load("test").paths
    assert os.fsdecode(b"test/happy/caf\xe9.png") in paths
    assert [p for _, p, _ in FeatureCache(cache).errors()] == [os.fsdecode(b"train/sad/\xff.png")]
    assert len(FeatureCache(cache).verify()) == 2
    code, out, err = cafe(monkeypatch, capsys, "cache", "info", str(cache))
    assert code == 0 and "1 unreadable images" in out, err
    out = tmp_path / "faces.csv"
    code, _, err = cafe(monkeypatch, capsys, "predict", os.fsdecode(raw), str(data / "test" / "sad" / "000.png"),
                        "-c", str(env["run"]), "--no-detect", "--device", "cpu", "--out", str(out))
    assert code == 0, err
    lines = out.read_bytes().splitlines()
    assert len(lines) == 3 and raw in lines[1]  # the row is there, with the name's own bytes


# -- item 2: one write-error path ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_file_size_limit_while_a_cache_is_laid_out_is_one_line(env, tmp_path):
    cache_dir = tmp_path / "cache"

    def tiny_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    args = ["extract", "--dataset", "folder", "--root", str(env["data"]), "--model", TINY_CLIP, "--random-weights",
            "--cache-dir", str(cache_dir), "--workers", "0", "--device", "cpu"]
    proc = cli_process(args, preexec_fn=tiny_files)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr  # 139 (a segfault) on today's main
    assert "File too large (EFBIG)" in err and f"{NAME}.h5" in err, err
    assert "Traceback" not in err and "decrement" not in err, err
    assert not list(cache_dir.iterdir())  # no half cache, no .tmp, no lock file


@pytest.mark.slow
def test_a_full_run_folder_at_a_checkpoint_is_one_line_and_keeps_the_last_epoch(env, run_copy):
    def small_files():  # config.json and the JSON files fit, a checkpoint does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    before = {p.name: p.read_bytes() for p in run_copy.iterdir() if p.suffix in (".safetensors", ".pt")}
    proc = cli_process(["train", "--resume", "--out", str(run_copy), "--epochs", "3", "--cache-dir",
                        str(env["cache_dir"]), "--no-eval", "--no-plots"], preexec_fn=small_files)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert "last.safetensors: writing failed: File too large (EFBIG)" in err, err
    assert "The checkpoints of epoch 2 are kept" in err and "Traceback" not in err, err
    assert not list(run_copy.glob("*.tmp")) and not (run_copy / RUN_LOCK).exists()
    assert {p.name: p.read_bytes() for p in run_copy.iterdir() if p.suffix in (".safetensors", ".pt")} == before
    load_model(run_copy)  # still matches its recorded sha256
    assert load_resume(run_copy).epoch == 2


def test_an_unwritable_out_is_refused_before_training(env, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(loop, "setup", lambda *a, **k: pytest.fail("training started"))
    code, _, err = cafe(monkeypatch, capsys, *train_args(env["cache_dir"], blocker / "run"))
    line = one_line_error(code, err)
    assert f"--out {blocker / 'run'}: cannot write there" in line


def test_a_failed_train_leaves_no_empty_run_folder(env, cache_copy, tmp_path, monkeypatch, capsys):
    with h5py.File(cache_copy, "r+") as f:
        f.attrs["complete"] = False  # fails as training loads the data, after --out was taken
    out = tmp_path / "run"
    code, _, err = cafe(monkeypatch, capsys, *train_args(cache_copy.parent, out))
    assert "is unfinished" in one_line_error(code, err)
    assert not out.exists()


def test_a_refused_write_leaves_no_half_file(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("the previous results")
    real = Path.write_bytes

    def full_disk(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(CafeError, match=r"results\.json: writing failed: No space left on device \(ENOSPC\)"):
        write_text(target, "new results " * 100)
    monkeypatch.undo()
    assert target.read_text() == "the previous results" and sorted(tmp_path.iterdir()) == [target]


# -- cafe predict: SIGTERM, every input failing, unwritable outputs ------------------------------------------
def test_predict_on_sigterm_writes_the_rows_it_has(env, tmp_path, monkeypatch, capsys):
    from cafe_cache.predict import infer

    real = infer.predict_inputs

    def terminated_after_one(*args, **kwargs):
        for i, picture in enumerate(real(*args, **kwargs)):
            yield picture
            if i == 0:
                os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(infer, "predict_inputs", terminated_after_one)
    images = sorted((env["data"] / "test").glob("*/*.png"))[:4]
    out = tmp_path / "faces.csv"
    code, _, err = cafe(monkeypatch, capsys, "predict", *map(str, images), "-c", str(env["run"]), "--no-detect",
                        "--device", "cpu", "--batch-size", "1", "--out", str(out))
    assert code == 143, err  # not killed by the signal, not 0
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    rows = out.read_text().splitlines()
    assert len(rows) >= 2 and rows[1].startswith(str(images[0]))


def test_predict_with_every_input_failing_exits_non_zero(env, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "faces.csv"
    code, _, err = cafe(monkeypatch, capsys, "predict", str(bad), "-c", str(env["run"]), "--no-detect",
                        "--device", "cpu", "--out", str(out))
    assert "every one of the 1 inputs failed" in one_line_error(code, err)
    assert "broken.png" in out.read_text()  # the error rows are still written


@pytest.mark.parametrize("flag", ["--out", "--save-annotated"])
def test_predict_refuses_an_unwritable_output_before_the_work(env, tmp_path, monkeypatch, capsys, flag):
    from cafe_cache.predict import api

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(api, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    target = blocker / ("faces.csv" if flag == "--out" else "annotated")
    image = next((env["data"] / "test" / "happy").iterdir())
    code, _, err = cafe(monkeypatch, capsys, "predict", str(image), "-c", str(env["run"]), "--no-detect",
                        flag, str(target))
    assert "cannot write there" in one_line_error(code, err)


def test_a_full_disk_while_a_cache_is_laid_out_is_one_line_and_leaves_no_file(env, tmp_path, monkeypatch):
    real = Path.write_bytes

    def full_disk(self, data):
        real(self, data[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    path = tmp_path / "cache" / f"{NAME}.h5"
    with pytest.raises(CafeError, match=r"toyset\.h5: writing failed: No space left on device \(ENOSPC\)\. Nothing "
                                        "was extracted yet"):
        make_cache(env["data"], path)
    assert not list(path.parent.iterdir())


def test_train_on_sigterm_stops_cleanly_and_resumes(env, tmp_path, monkeypatch, capsys):
    real = loop.train_one_epoch

    def terminated_in_epoch_2(s, epoch, **kw):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(s, epoch, **kw)

    monkeypatch.setattr(loop, "train_one_epoch", terminated_in_epoch_2)
    out = tmp_path / "run"
    code, _, err = cafe(monkeypatch, capsys, *train_args(env["cache_dir"], out, "--epochs", "2"))  # the last wins
    assert code == 143 and "stopped by SIGTERM" in err and "Traceback" not in err, err
    assert load_resume(out).epoch == 1 and not list(out.glob("*.tmp")) and not (out / RUN_LOCK).exists()
    monkeypatch.setattr(loop, "train_one_epoch", real)
    code, _, err = cafe(monkeypatch, capsys, "train", "--resume", "--out", str(out), "--no-eval", "--no-plots")
    assert code == 0 and "resuming after epoch 1 of 2" in err, err


def test_a_path_byte_changed_in_a_cache_is_one_line_and_old_caches_read_it(cache_copy, monkeypatch, capsys):
    with h5py.File(cache_copy, "r+") as f:
        f["splits/test/paths"][0] = b"test/happy/\xff.png"  # not UTF-8: UnicodeDecodeError on today's main
    code, _, err = cafe(monkeypatch, capsys, "cache", "info", str(cache_copy), "--verify")
    assert "labels, paths or row count do not match" in one_line_error(code, err)
    with h5py.File(cache_copy, "r+") as f:  # a cache made before the checksums: the bytes read back as they are
        del f.attrs[ATTRS_DIGEST]
        for g in f["splits"].values():
            del g.attrs[ROWS_DIGEST], g.attrs[ERRORS_DIGEST]
    assert FeatureCache(cache_copy).load("test").paths[0] == os.fsdecode(b"test/happy/\xff.png")
    code, out, err = cafe(monkeypatch, capsys, "cache", "info", str(cache_copy), "--verify")
    assert code == 0 and "intact" in out, err


@pytest.mark.slow
def test_an_export_into_a_full_folder_names_the_file_not_the_opset(env, tmp_path):
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    out = tmp_path / "cafe.onnx"
    proc = cli_process(["export", "-c", str(env["run"]), "--out", str(out)], preexec_fn=small_files)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert "cafe.onnx: writing failed: File too large (EFBIG)" in err and "--opset" not in err, err
    assert not list(tmp_path.iterdir())


def test_a_figure_on_a_full_disk_is_one_line_and_no_half_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from cafe_cache import figures

    def full_disk(self, path, **kw):
        Path(path).write_bytes(b"half a png")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    with pytest.raises(CafeError, match=r"curves\.png: writing failed: No space left on device \(ENOSPC\)"):
        figures._save(Figure(), tmp_path / "figures" / "curves.png", 50)
    assert not list((tmp_path / "figures").iterdir())


def test_eval_into_a_blocked_results_folder_is_one_line(env, run_copy, monkeypatch, capsys):
    shutil.rmtree(run_copy / "eval-last", ignore_errors=True)
    (run_copy / "eval-last").write_text("a file where the results folder goes")
    code, _, err = cafe(monkeypatch, capsys, "eval", "-c", str(run_copy), "--cache-dir", str(env["cache_dir"]),
                        "--workers", "0")
    assert "eval-last/results.json: writing failed: File exists (EEXIST)" in one_line_error(code, err)


def test_a_file_system_error_no_check_caught_is_still_one_line(env, monkeypatch, capsys):
    from cafe_cache.extract import reader

    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/cache.h5")

    monkeypatch.setattr(reader.FeatureCache, "__init__", full)
    code, _, err = cafe(monkeypatch, capsys, "cache", "info", str(env["cache"]))
    assert "/somewhere/cache.h5: No space left on device (ENOSPC)" in one_line_error(code, err)
