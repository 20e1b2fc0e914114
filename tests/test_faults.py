"""Fault trial (issue 17), on the tiny model: full disks, file-size limits, damaged caches and
checkpoints, odd images and files, and one clear line for every bad input. Numbers in the test names
are the issue's items."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from cafe_cache import synth
from cafe_cache.datasets import build_reader
from cafe_cache.datasets.base import DatasetError, open_rgb
from cafe_cache.errors import CafeError
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.run.checkpoint import load_model
from cafe_cache.run.config import TrainConfig
from cafe_cache.train.loop import train
from cli.main import main

from .conftest import TINY_CLIP, make_cache, write_folder_dataset

REPO = Path(__file__).resolve().parents[1]
NAME = "toyset"


def cafe_error(monkeypatch, capsys, *args: str) -> str:
    """Run `cafe ARGS` as the console script does; it must stop with exit 2 and one error, no traceback."""
    monkeypatch.setattr(sys, "argv", ["cafe", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err
    return last


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    """A tiny folder dataset, its cache and a one-epoch run."""
    base = tmp_path_factory.mktemp("faults")
    data = write_folder_dataset(base / NAME, {"train": 3, "test": 2})
    cache_dir = base / "cache"
    make_cache(data, cache_dir / f"{NAME}.h5")
    run_dir = base / "run"
    train(TrainConfig(source=NAME, cache_dir=str(cache_dir), backbone_weights="none", epochs=1, batch_size=7,
                      image_size=32, workers=0, lr=1e-3), run_dir, log=lambda s: None)
    return {"data": data, "cache_dir": cache_dir, "cache": cache_dir / f"{NAME}.h5", "run": run_dir, "base": base}


@pytest.fixture
def run_copy(env, tmp_path) -> Path:
    return Path(shutil.copytree(env["run"], tmp_path / "run"))


def extract_args(data: Path, cache_dir: Path) -> list[str]:
    return ["extract", "--dataset", "folder", "--root", str(data), "--model", TINY_CLIP, "--random-weights",
            "--cache-dir", str(cache_dir), "--batch-size", "4", "--store-images", "32", "--dtype", "float32",
            "--workers", "0", "--device", "cpu"]


def assert_resumable_then_equal(path: Path, reference: Path) -> None:
    """A cache stopped by a write error: opens, not complete, its flushed rows equal the reference's."""
    with h5py.File(path) as f, h5py.File(reference) as ref:
        assert not f.attrs["complete"]
        done = {s: int(g.attrs["n_done"]) for s, g in f["splits"].items()}
        assert 0 < sum(done.values()) < sum(len(g["labels"]) for g in f["splits"].values())
        for s, n in done.items():
            assert np.array_equal(f[f"splits/{s}/features"][:n], ref[f"splits/{s}/features"][:n])
            assert np.array_equal(f[f"splits/{s}/images"][:n], ref[f"splits/{s}/images"][:n])


def assert_same_cache(path: Path, reference: Path) -> None:
    a, b = FeatureCache(path), FeatureCache(reference)
    assert a.complete
    for split in ("train", "test"):
        assert np.array_equal(a.load(split).features, b.load(split).features)


def cli_process(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, **kw)


@pytest.fixture(scope="module")
def reference(env) -> Path:
    """The stored-images cache every disk-fault run must end up equal to."""
    cache_dir = env["base"] / "reference"
    proc = cli_process(extract_args(env["data"], cache_dir))
    assert proc.returncode == 0, proc.stderr
    return cache_dir / f"{NAME}.h5"


# -- 1, 2: write errors during extraction -----------------------------------------------------------------
@pytest.mark.slow
def test_1_2_file_size_limit_stops_with_one_line_and_the_rerun_continues(env, reference, tmp_path):
    limit = reference.stat().st_size // 2  # RLIMIT_FSIZE; Python ignores SIGXFSZ, so writes fail with EFBIG
    cache_dir = tmp_path / "cache"

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = cli_process(extract_args(env["data"], cache_dir), preexec_fn=small_files)
    assert proc.returncode == 2, proc.stderr  # not 139: no segfault
    err = " ".join(proc.stderr.split())
    assert "File too large (EFBIG)" in err and f"{NAME}.h5" in err and "Traceback" not in err
    assert_resumable_then_equal(cache_dir / f"{NAME}.h5", reference)
    proc = cli_process(extract_args(env["data"], cache_dir))
    assert proc.returncode == 0 and "resuming" in proc.stderr, proc.stderr
    assert_same_cache(cache_dir / f"{NAME}.h5", reference)


TINY_FS_SCRIPT = """
import json, os, subprocess, sys, shutil
mnt, data, reference, out = sys.argv[1:5]
args = json.loads(sys.argv[5])
free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
with open(os.path.join(mnt, "filler"), "wb") as f:
    f.write(b"x" * max(0, free - os.path.getsize(reference) // 2))
env = dict(os.environ)
first = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env)
shutil.copy(os.path.join(mnt, "cache", "toyset.h5"), os.path.join(out, "stopped.h5"))
os.remove(os.path.join(mnt, "filler"))
second = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env)
shutil.copy(os.path.join(mnt, "cache", "toyset.h5"), os.path.join(out, "finished.h5"))
json.dump({"first": [first.returncode, first.stderr], "second": [second.returncode, second.stderr]},
          open(os.path.join(out, "result.json"), "w"))
"""


@pytest.mark.slow
def test_1_full_disk_on_a_tiny_filesystem_stops_with_one_line_and_the_rerun_continues(env, reference, tmp_path):
    """A real 1 MiB tmpfs, mounted in a user namespace (no root needed); skipped where that is not allowed."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mnt}"],
                           capture_output=True)
    if probe.returncode:
        pytest.skip("no user namespaces here to mount a tiny filesystem")
    script = tmp_path / "tiny_fs.py"
    script.write_text(TINY_FS_SCRIPT)
    args = json.dumps(extract_args(env["data"], mnt / "cache"))
    shell = f"mount -t tmpfs -o size=1m tmpfs {mnt} && exec {sys.executable} {script} {mnt} {env['data']} " \
            f"{reference} {tmp_path} '{args}'"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    (rc, err), (rc2, err2) = result["first"], result["second"]
    err = " ".join(err.split())
    assert rc == 2 and "No space left on device (ENOSPC)" in err and f"{NAME}.h5" in err and "Traceback" not in err
    assert_resumable_then_equal(tmp_path / "stopped.h5", reference)
    assert rc2 == 0, err2
    assert_same_cache(tmp_path / "finished.h5", reference)


def test_1_an_io_error_mid_run_keeps_the_flushed_rows(env, tmp_path, monkeypatch):
    clean = tmp_path / "clean.h5"
    make_cache(env["data"], clean)
    calls = []
    real = h5py.Dataset.__setitem__

    def failing(self, key, value):
        if self.name.endswith("/features"):
            calls.append(key)
            if len(calls) == 3:
                raise OSError(errno.EIO, "Can't synchronously write data")
        return real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", failing)
    with pytest.raises(CafeError, match=r"damaged\.h5: writing the cache failed: Input/output error \(EIO\)"):
        make_cache(env["data"], tmp_path / "damaged.h5")
    monkeypatch.undo()
    with h5py.File(tmp_path / "damaged.h5") as f:
        assert f["splits/train"].attrs["n_done"] == 8 and not f.attrs["complete"]
    report = make_cache(env["data"], tmp_path / "damaged.h5")
    assert report.resumed_from["train"] == 8
    assert_same_cache(tmp_path / "damaged.h5", clean)


# -- 3: damaged caches -------------------------------------------------------------------------------------
def overwrite_chunk(path: Path, dataset: str, n: int = 256) -> None:
    with h5py.File(path) as f:
        offset = f[dataset].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset + 64)
        f.write(os.urandom(n))


def test_3_overwritten_feature_bytes_are_refused_by_name(env, tmp_path, monkeypatch, capsys):
    path = Path(shutil.copy(env["cache"], tmp_path / f"{NAME}.h5"))
    overwrite_chunk(path, "splits/train/features")
    with pytest.raises(CafeError, match=r"toyset\.h5: dataset /splits/train/features is damaged"):
        FeatureCache(path).load("train")
    msg = cafe_error(monkeypatch, capsys, "cache", "info", str(path), "--verify")
    assert "/splits/train/features is damaged" in msg


def test_3_verify_passes_an_intact_cache(env, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["cafe", "cache", "info", str(env["cache"]), "--verify"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code in (0, None)
    out = capsys.readouterr().out
    assert "train: 21 of 21 rows read back, fletcher32" in out and "intact" in out


def test_3_nan_features_are_refused_by_train_and_eval_naming_split_and_row(env, tmp_path, monkeypatch, capsys):
    cache_dir = tmp_path / "cache"
    path = Path(shutil.copy(env["cache"], cache_dir.mkdir() or cache_dir / f"{NAME}.h5"))
    with h5py.File(path, "r+") as f:
        f["splits/test/features"][3] = np.nan
    with pytest.raises(CafeError, match=r"split 'test' row 3 \(test/\w+/\d+\.png\) has NaN/inf features"):
        FeatureCache(path).load("test")
    msg = cafe_error(monkeypatch, capsys, "eval", "-c", str(env["run"]), "--cache-dir", str(cache_dir),
                     "--workers", "0")
    assert "split 'test' row 3" in msg
    with pytest.raises(CafeError, match="split 'test' row 3"):
        train(TrainConfig(source=NAME, cache_dir=str(cache_dir), backbone_weights="none", epochs=1, batch_size=7,
                          image_size=32, workers=0), tmp_path / "run", log=lambda s: None)


# -- 4: damaged and foreign checkpoints --------------------------------------------------------------------
def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-100:-60] = bytes(b ^ 0xFF for b in data[-100:-60])  # inside the tensors, the header still parses
    path.write_bytes(bytes(data))


def test_4_changed_checkpoint_bytes_are_refused_by_eval_predict_and_resume(env, run_copy, monkeypatch, capsys):
    flip_bytes(run_copy / "best.safetensors")
    with pytest.raises(CafeError, match=r"best\.safetensors does not match the sha256 recorded"):
        load_model(run_copy, "best")
    assert "best.safetensors does not match the sha256" in cafe_error(
        monkeypatch, capsys, "eval", "-c", str(run_copy / "best.safetensors"), "--cache-dir", str(env["cache_dir"]),
        "--workers", "0")
    image = next((env["data"] / "test" / "happy").iterdir())
    assert "best.safetensors does not match the sha256" in cafe_error(
        monkeypatch, capsys, "predict", str(image), "-c", str(run_copy / "best.safetensors"), "--no-detect",
        "--device", "cpu")
    flip_bytes(run_copy / "last.safetensors")
    assert "last.safetensors does not match the sha256" in cafe_error(
        monkeypatch, capsys, "train", "--resume", "--out", str(run_copy), "--no-eval", "--no-plots")


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_4_resume_state_never_runs_code(env, run_copy, tmp_path, monkeypatch, capsys):
    """A run folder from elsewhere whose resume.pt would execute code when unpickled (its checksum recorded)."""
    marker = tmp_path / "code-ran"
    torch.save({"optimizer": RunsCode(marker), "scheduler": {}, "history": [], "best": 0.0}, run_copy / "resume.pt")
    sums_file = run_copy / "checksums.json"
    sums = json.loads(sums_file.read_text()) if sums_file.is_file() else {}
    sums["resume.pt"] = [hashlib.sha256((run_copy / "resume.pt").read_bytes()).hexdigest()]
    sums_file.write_text(json.dumps(sums))
    msg = cafe_error(monkeypatch, capsys, "train", "--resume", "--out", str(run_copy), "--no-eval", "--no-plots")
    assert "resume.pt cannot be read as cafe resume state" in msg
    assert not marker.exists()


# -- 5: high-bit-depth images, odd entries ----------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_5_sixteen_bit_grey_is_scaled_to_eight_bits(tmp_path, suffix):
    gradient = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (8, 1))
    Image.fromarray(gradient).save(tmp_path / f"g{suffix}")
    assert Image.open(tmp_path / f"g{suffix}").mode == "I;16"
    rgb = np.asarray(open_rgb(tmp_path / f"g{suffix}"))
    assert rgb.shape == (8, 64, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    np.testing.assert_allclose(rgb[0, :, 0], gradient[0] / 257, atol=0.51)  # 0..65535 -> 0..255, not all white
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and (np.diff(rgb[0, :, 0].astype(int)) >= 0).all()


def test_5_7_dangling_links_and_folders_named_like_images_are_recorded(tmp_path):
    root = write_folder_dataset(tmp_path / "d", {"train": 1})
    (root / "train" / "happy" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "train" / "sad" / "album.jpg").mkdir()
    result = build_reader("folder", root).read()
    skipped = dict(result.skipped)
    assert "dangling symbolic link" in skipped["train/happy/gone.jpg"]
    assert "folder named like an image" in skipped["train/sad/album.jpg"]
    assert len(result.samples) == 7


# -- 6: one clear line instead of a traceback --------------------------------------------------------------
def test_6_truncated_safetensors_of_an_old_run(env, run_copy, monkeypatch, capsys):
    (run_copy / "checksums.json").unlink(missing_ok=True)  # a run folder from before checksums were recorded
    best = run_copy / "best.safetensors"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    msg = cafe_error(monkeypatch, capsys, "eval", "-c", str(run_copy / "best.safetensors"),
                     "--cache-dir", str(env["cache_dir"]))
    assert "best.safetensors is not a readable safetensors file" in msg


def test_6_invalid_config_json(env, run_copy, monkeypatch, capsys):
    (run_copy / "config.json").write_text('{"model": {"backbone": ')
    msg = cafe_error(monkeypatch, capsys, "eval", "-c", str(run_copy / "best.safetensors"),
                     "--cache-dir", str(env["cache_dir"]))
    assert "config.json is not valid JSON" in msg


def test_6_weights_of_another_width(env, run_copy, monkeypatch, capsys):
    from safetensors.torch import save_file

    from cafe_cache.model.cafe import CAFEModel
    from cafe_cache.model.config import ModelConfig
    (run_copy / "checksums.json").unlink(missing_ok=True)
    other = CAFEModel(ModelConfig("resnet18", clip_dim=64, variant="cafe"))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(run_copy / "best.safetensors"))
    msg = cafe_error(monkeypatch, capsys, "eval", "-c", str(run_copy / "best.safetensors"),
                     "--cache-dir", str(env["cache_dir"]))
    assert "best.safetensors does not fit the model described in" in msg


def test_6_corrupt_resume_state(run_copy, monkeypatch, capsys):
    (run_copy / "checksums.json").unlink(missing_ok=True)
    (run_copy / "resume.pt").write_bytes(b"PK\x03\x04 not a torch file")
    msg = cafe_error(monkeypatch, capsys, "train", "--resume", "--out", str(run_copy), "--no-eval", "--no-plots")
    assert "resume.pt cannot be read as cafe resume state" in msg


def test_6_read_only_cache_folder(env, tmp_path, monkeypatch, capsys):
    import filelock

    def refuse(self, *a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")  # what a read-only folder gives (root ignores modes)

    monkeypatch.setattr(filelock.UnixFileLock, "acquire", refuse)
    args = extract_args(env["data"], tmp_path / "ro")
    msg = cafe_error(monkeypatch, capsys, *args)
    assert "cannot write the lock file toyset.h5.lock (Permission denied)" in msg and "writable --cache-dir" in msg


@pytest.mark.parametrize("device", ["nosuch", "cuda"])
def test_6_unknown_or_missing_device(env, device, monkeypatch, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    msg = cafe_error(monkeypatch, capsys, "train", "--source", NAME, "--cache-dir", str(env["cache_dir"]),
                     "--device", device, "--no-eval", "--no-plots")
    assert f"--device {device}" in msg


@pytest.mark.parametrize("flag,value", [("--lr", "-1"), ("--lr", "nan"), ("--weight-decay", "-1"),
                                        ("--lr", "0"), ("--gamma", "-1"), ("--gamma", "1.5"), ("--w-sep", "-5"),
                                        ("--w-div", "inf")])
def test_6_7_bad_training_numbers(env, tmp_path, flag, value, monkeypatch, capsys):
    msg = cafe_error(monkeypatch, capsys, "train", "--source", NAME, "--cache-dir", str(env["cache_dir"]),
                     "--out", str(tmp_path / "run"), "--backbone-weights", "none", "--epochs", "1",
                     "--image-size", "32", "--workers", "0", "--no-eval", "--no-plots", flag, value)
    assert msg.startswith(f"error: {flag} ")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_6_label_list_that_is_not_utf8(tmp_path, monkeypatch, capsys):
    root = tmp_path / "raf"
    synth.write_rafdb(root, "line", 1, 1, size=16)
    labels = root / "EmoLabel" / "list_patition_label.txt"
    lines = labels.read_bytes().splitlines()
    lines[2] = lines[2] + b" caf\xe9"
    labels.write_bytes(b"\n".join(lines))
    msg = cafe_error(monkeypatch, capsys, "datasets", "rafdb", "--root", str(root))
    assert "list_patition_label.txt:3: not UTF-8 text (byte 0xe9)" in msg


# -- 7: silently accepted before ---------------------------------------------------------------------------
def test_7_duplicate_rafdb_lines(tmp_path):
    root = tmp_path / "raf"
    synth.write_rafdb(root, "line", 1, 1, size=16)
    labels = root / "EmoLabel" / "list_patition_label.txt"
    first = labels.read_text().splitlines()[0]
    name, label = first.split()
    n = len(labels.read_text().splitlines())
    labels.write_text(labels.read_text() + f"{first}\n")  # the same line again: counted once
    result = build_reader("rafdb", root).read()
    assert len(result.samples) == n and any("repeats line 1" in r for _, r in result.skipped)
    labels.write_text(labels.read_text() + f"{name} {int(label) % 7 + 1}\n")
    with pytest.raises(DatasetError, match=f"{name} is listed twice with different labels: line 1 .* line {n + 2}"):
        build_reader("rafdb", root).read()


def test_7_pretrained_with_random_weights(env, tmp_path, monkeypatch, capsys):
    msg = cafe_error(monkeypatch, capsys, *extract_args(env["data"], tmp_path), "--pretrained", "openai")
    assert "--random-weights with --pretrained" in msg


def test_7_resume_refuses_a_changed_lr_and_honours_epochs(env, run_copy, monkeypatch, capsys):
    msg = cafe_error(monkeypatch, capsys, "train", "--resume", "--out", str(run_copy), "--lr", "0.5", "--no-eval")
    assert "--lr 0.5 differs from the saved 0.001" in msg
    monkeypatch.setattr(sys, "argv", ["cafe", "train", "--resume", "--out", str(run_copy), "--epochs", "2",
                                      "--no-eval", "--no-plots"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code in (0, None)
    assert len(json.loads((run_copy / "metrics.json").read_text())) == 2


# -- 8: checked too late, or not at all --------------------------------------------------------------------
def test_8_unknown_targets_fail_before_training(env, tmp_path, monkeypatch, capsys):
    msg = cafe_error(monkeypatch, capsys, "train", "--source", NAME, "--cache-dir", str(env["cache_dir"]),
                     "--out", str(tmp_path / "run"), "--backbone-weights", "none", "--epochs", "1",
                     "--image-size", "32", "--workers", "0", "--targets", "nosuch", "--no-plots")
    assert "no cache for target 'nosuch'" in msg
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_8_cache_list_skips_a_cache_being_written(env, tmp_path, monkeypatch, capsys):
    from filelock import FileLock
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    shutil.copy(env["cache"], cache_dir / "a.h5")
    shutil.copy(env["cache"], cache_dir / "b.h5")
    lock = FileLock(str(cache_dir / "b.h5.lock"))
    with lock:
        monkeypatch.setattr(sys, "argv", ["cafe", "cache", "list", str(cache_dir)])
        with pytest.raises(SystemExit) as stop:
            main()
    assert stop.value.code in (0, None)
    captured = capsys.readouterr()
    assert "a.h5" in captured.out and "complete" in captured.out
    err = " ".join(captured.err.split())  # rich wraps at the terminal width, where the temp path ends
    assert "skipped b.h5" in err and "being written" in err


def test_8_error_lines_show_square_brackets(capsys):
    from cli.common import fail
    with pytest.raises(SystemExit):
        fail("or add it under [datasets] in cafe.toml")
    assert "add it under [datasets] in cafe.toml" in capsys.readouterr().err
