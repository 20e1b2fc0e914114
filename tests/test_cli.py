"""The command line as a newcomer meets it: --version and every --help."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from cafe_cache import __version__
from cli.main import app

COMMANDS = ["synth", "datasets", "extract", "train", "eval", "reproduce", "zeroshot", "plot", "predict", "export",
            "package", "cache", "cache info", "cache list"]


def test_version():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"cafe {__version__}"


def test_top_level_help_lists_every_command():
    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in {c.split()[0] for c in COMMANDS}:
        assert cmd in r.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    r = CliRunner().invoke(app, [*command.split(), "--help"], terminal_width=120)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # rich pads and wraps lines
    usage_end = text.index("Usage: cafe " + command) + len("Usage: cafe " + command)
    description = text[usage_end:].split("╭")[0]  # between the usage line and the first option box
    assert len(description.split()) >= 5, f"{command}: no description in --help"


def test_the_cli_starts_without_torch():
    """`cafe --help` and friends stay instant: torch and open_clip load only inside a running command."""
    import subprocess
    import sys
    heavy = ("torch", "open_clip", "cv2", "matplotlib")
    code = f"import sys, cli.main; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`cafe ARGS` through the console-script entry point: (exit status, stderr with wrapping undone)."""
    from cli.main import main

    monkeypatch.setattr(sys, "argv", ["cafe", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, " ".join(capsys.readouterr().err.split())


def uninstall(monkeypatch, module: str) -> None:
    """As if ``module`` were not installed: importing it raises ModuleNotFoundError, as pip would leave it,
    and cafe's predict modules (which import it at their top) are imported afresh."""
    for name in [n for n in sys.modules if n.startswith("cafe_cache.predict")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("module", ["onnxruntime", "onnx"])
def test_a_missing_predict_extra_is_one_line_naming_it(monkeypatch, capsys, tmp_path, module):
    """`cafe export` names the extra before loading anything. (`cafe predict` needs OpenCV only for video and
    scikit-image only for the LBP detector: tests/test_api.py runs it with them unimportable.)"""
    uninstall(monkeypatch, module)
    args = ["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x.onnx")]
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 2 and "Traceback" not in err
    assert f"'{module}' is not installed" in err and "pip install 'cafe-fer[predict]'" in err


def test_another_missing_module_is_not_blamed_on_the_extra():
    from cafe_cache.errors import missing_extra

    assert missing_extra(ModuleNotFoundError("x", name="h5py")) is None
    assert "cafe-fer[predict]" in str(missing_extra(ModuleNotFoundError("x", name="skimage.feature")))
