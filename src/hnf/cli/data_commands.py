"""``hnf data ...``: inspect real datasets and write synthetic micrographs."""

from __future__ import annotations

import typer

data_app = typer.Typer(no_args_is_help=True)
