"""``cafe``: generalizable facial expression recognition on a frozen-CLIP feature cache.

Each sub-command lives in its own module of this package; this file only lists them.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from cafe_cache import __version__
from cafe_cache.errors import CafeError, RaisedOnRankZero, missing_extra
from cafe_cache.files import file_system_error
from cafe_cache.signals import Terminated, sigterm_as_interrupt

from . import cache as cache_cmd
from . import datasets as datasets_cmd
from . import evaluate as evaluate_cmd
from . import export as export_cmd
from . import extract as extract_cmd
from . import package as package_cmd
from . import plot as plot_cmd
from . import predict as predict_cmd
from . import reproduce as reproduce_cmd
from . import synth as synth_cmd
from . import train as train_cmd
from . import zeroshot as zeroshot_cmd
from .common import console, fail

app = typer.Typer(
    name="cafe",
    help="Generalizable facial expression recognition (CAFE, ECCV 2024).\n\n"
         "Stage one: [bold]cafe extract[/] runs frozen CLIP once per dataset into an HDF5 cache.\n"
         "Stage two: [bold]cafe train[/] learns the ResNet-18 mask branch on the cached features, "
         "then [bold]cafe eval[/] tests it on every cached dataset.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cafe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_version, is_eager=True)) -> None:
    pass


# -- the commands, in the order a user meets them --------------------------------------------
app.command("synth")(synth_cmd.synth)
app.command("datasets")(datasets_cmd.datasets)
app.command("extract")(extract_cmd.extract)
app.add_typer(cache_cmd.app, name="cache")
app.command("train")(train_cmd.train)
app.command("eval")(evaluate_cmd.evaluate)
app.command("predict")(predict_cmd.predict)
app.command("export")(export_cmd.export)
app.command("package")(package_cmd.package)
app.command("reproduce")(reproduce_cmd.reproduce)
app.command("zeroshot")(zeroshot_cmd.zeroshot)
app.command("plot")(plot_cmd.plot)


def main() -> None:
    """Console-script entry point: user errors (a missing optional extra, a file-system error no library check
    caught) become one red line, exit 2; SIGTERM stops a command as Ctrl-C does (what was finished is kept),
    one line, exit 143."""
    guarded(app)


def guarded(run: Callable[[], object]) -> None:
    """``run()`` with the errors a user can fix as one line (:func:`main`)."""
    sigterm_as_interrupt()
    try:
        run()
    except Terminated:
        console.print("[yellow]stopped by SIGTERM[/]: files already written are kept (a training run continues "
                      "with `cafe train --resume --out RUN`).", soft_wrap=True)
        raise SystemExit(143) from None
    except RaisedOnRankZero:
        raise SystemExit(2) from None  # rank 0 prints the message once
    except CafeError as e:
        fail(str(e))
    except OSError as e:  # a file-system error no library check caught: still one line naming the file
        line = file_system_error(e)
        if line is None:
            raise
        fail(str(line))
    except ModuleNotFoundError as e:
        extra = missing_extra(e)
        if extra is None:
            raise
        fail(str(extra))  # fail() escapes markup: [predict] stays text


if __name__ == "__main__":
    main()
