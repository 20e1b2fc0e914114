"""The command line as a newcomer meets it: --version and every --help."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cafe_cache import __version__
from cli.main import app

COMMANDS = ["synth", "datasets", "extract", "train", "eval", "reproduce", "zeroshot", "plot", "predict", "export",
            "cache", "cache info", "cache list"]


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
    code = "import sys, cli.main; print(sorted(m for m in ('torch', 'open_clip', 'cv2', 'matplotlib') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
