"""The ``shadow-edge`` command line: a thin root that only wires the sub-commands.

One module per command group: ``export`` (export, verify), ``generate`` (generate, chat),
``classify``, ``info``, ``bench``, ``train`` and ``demo``. Shared option types live in
``options``, the pure error formatters in ``errors`` and the error boundary in ``group``.
Importing this package does not import torch: commands import their libraries lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated

import typer

from . import bench, classify, demo, export, generate, info, train
from .group import ShadowEdgeGroup

# our packages, whose log level -v / -vv raise (third-party loggers stay at WARNING)
LOGGED_PACKAGES = ("shadow_edge", "exporters", "runtime")

app = typer.Typer(
    name="shadow-edge",
    cls=ShadowEdgeGroup,
    help="Train, detach, export, verify and run ShadowPEFT shadow models on the edge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from shadow_edge import __version__

        typer.echo(f"shadow-edge {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True,
                          help="Log more: -v for info, -vv for debug (on stderr).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Train, detach, export, verify and run ShadowPEFT shadow models on the edge."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    # no-op when the host (e.g. pytest) already configured logging
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for package in LOGGED_PACKAGES:
        logging.getLogger(package).setLevel(level)


app.command("export")(export.export_command)
app.command("verify")(export.verify_command)
app.command("generate")(generate.generate_command)
app.command("chat")(generate.chat_command)
app.command("classify")(classify.classify_command)
app.command("info")(info.info_command)
app.command("bench")(bench.bench_command)
app.command("train")(train.train_command)
app.command(
    "demo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)(demo.demo_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``shadow-edge = "shadow_edge.cli:main"``).

    Runs the command line ``argv`` (default ``sys.argv[1:]``) and exits with its code.
    """
    app(args=list(argv) if argv is not None else None, prog_name="shadow-edge")
