"""``hnf data synth``: write synthetic SEM micrographs of the ten NFFA classes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hnf.cli.errors import reports_errors

console = Console()


@reports_errors
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output folder (one subfolder per class, plus labels.csv).")],
    per_class: Annotated[int, typer.Option("--per-class", help="Images per class.")] = 200,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels (at least 64).")] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same arguments give identical files.")] = 0,
    band_prob: Annotated[
        float, typer.Option("--band-prob", help="Probability that an image gets a microscope information band.")
    ] = 0.0,
) -> None:
    """Write PNG micrographs of the ten NFFA classes, one folder per class, and labels.csv."""
    from hnf.data.synth import SYNTH_CLASSES, write_synthetic_dataset
    from hnf.data.synth.writer import check_synth_arguments

    try:
        check_synth_arguments(per_class, size, band_prob)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a folder", param_hint="--out")
    total = per_class * len(SYNTH_CLASSES)
    start = time.perf_counter()
    with Progress(
        TextColumn("synthesising"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task("synth", total=total)
        write_synthetic_dataset(
            out, per_class, size, seed, band_prob, on_image=lambda done: progress.update(task, completed=done)
        )
    seconds = time.perf_counter() - start
    console.print(
        f"wrote {total} images ({len(SYNTH_CLASSES)} classes x {per_class}, {size}x{size}) in {seconds:.1f} s "
        f"({total / max(seconds, 1e-9):.0f} images/s) to {out}"
    )
