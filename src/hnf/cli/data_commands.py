"""``hnf data ...``: inspect real datasets and write synthetic micrographs."""

from __future__ import annotations

import typer

data_app = typer.Typer(no_args_is_help=True)

from hnf.cli.inspect_command import inspect  # noqa: E402

data_app.command("inspect", help="Report on a dataset: classes, sizes, bands, duplicates, bad files.")(inspect)

from hnf.cli.synth_command import synth  # noqa: E402

data_app.command("synth", help="Write synthetic SEM micrographs of the ten NFFA classes.")(synth)
