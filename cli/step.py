"""``python -m cli.step FILE``: one step of ``cafe reproduce`` on every process torchrun starts.

``cafe reproduce --nproc-per-node N`` writes the step's typed settings to FILE
(:func:`cafe_cache.steps.write_step`) and launches ``torchrun --nproc-per-node N -m cli.step FILE``; each
process reads them back and runs the extraction or the training with the lines and bars of
``cafe extract`` / ``cafe train``. No command line is parsed again.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .common import progress, say, say_plain
from .evaluate import show_evaluation
from .extract import bars
from .main import guarded


def run(path: Path) -> None:
    from cafe_cache.extract.job import ExtractJob, extract_dataset  # torch: only when running
    from cafe_cache.pipeline import train_and_evaluate
    from cafe_cache.steps import read_step

    step = read_step(path)
    if isinstance(step, ExtractJob):
        extract_dataset(step, say=say, stopped=say_plain, bars=bars)
    else:
        train_and_evaluate(step, log=say, plain=say_plain, bars=progress, show=show_evaluation)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m cli.step FILE (a step file written by cafe reproduce)")
    guarded(lambda: run(Path(sys.argv[1])))
