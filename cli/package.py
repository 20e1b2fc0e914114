"""``cafe package``: a trained run as a Hugging Face Hub-ready folder (weights, config, model card)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from cafe_cache.options import WHICH

from .common import console, out


def package(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder of `cafe train` (or RUN/best.safetensors, "
                                                        "RUN/last.safetensors)."),
    out_dir: Path = typer.Argument(..., metavar="OUT", help="The folder to write (new or empty)."),
    which: str | None = typer.Option(None, help=f"Which weights: {' or '.join(WHICH)} (default: last, the final "
                                                "epoch the paper's numbers come from; or the checkpoint named)."),
    repo: str | None = typer.Option(None, help="ORG/NAME the package will have on the Hub, for the model card's "
                                               "example (default: the placeholder ORG/NAME)."),
) -> None:
    """Write OUT/model.safetensors, config.json and a README.md model card, ready for `huggingface-cli upload`."""
    from cafe_cache.errors import CafeError
    from cafe_cache.predict.package import package_run

    if which is not None and which not in WHICH:
        raise CafeError(f"--which {which}: choose {' or '.join(WHICH)}.")
    report = package_run(run, out_dir, which, repo)
    if report.warning:
        console.print(f"[bold yellow]warning:[/] {escape(report.warning)}")
    evaluated = ", ".join(report.evaluated) or (f"none (run `cafe eval --checkpoint {run} --which {report.which}` "
                                                "first to put them in the card)")
    out.print(f"wrote {report.folder}: model.safetensors ({report.which} weights, sha256 {report.weights_sha256}), "
              f"config.json, README.md\ncross-domain results in the card: {evaluated}\n"
              f"upload: huggingface-cli upload {repo or 'ORG/NAME'} {report.folder}\n"
              f"load:   cafe_cache.load(\"hf://{repo or 'ORG/NAME'}\")", soft_wrap=True, markup=False)
