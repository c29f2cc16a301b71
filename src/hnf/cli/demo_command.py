"""``hnf demo``: the main job on built-in synthetic micrographs, with no download.

Today it generates a synthetic dataset (some images with an information band), inspects it like a
real one, checks the band detector against the generator's ground truth and writes the report and
contact sheet. Training and evaluation join it as they land.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hnf.cli.inspect_command import console, print_report
from hnf.data.inspect import InspectionReport, inspect_dataset, save_report, write_contact_sheet
from hnf.data.synth import SYNTH_CLASSES, write_synthetic_dataset

BAND_TOLERANCE_ROWS = 4


def band_agreement(report: InspectionReport, labels_csv: Path) -> tuple[int, int, int, int]:
    """(found within tolerance, images with a band, band-free images flagged, band-free images)."""
    detected = {record.path: record.band for record in report.images}
    found = banded = flagged = clean = 0
    with labels_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            band = detected.get(row["path"])
            if row["band_top"]:
                banded += 1
                found += band is not None and abs(band.top - int(row["band_top"])) <= BAND_TOLERANCE_ROWS
            else:
                clean += 1
                flagged += band is not None
    return found, banded, flagged, clean


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the synthetic data and the report.")] = Path("hnf-demo"),
    per_class: Annotated[int, typer.Option(help="Synthetic images per class.")] = 40,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    band_prob: Annotated[float, typer.Option(help="Share of images given an information band.")] = 0.3,
) -> None:
    """Generate synthetic micrographs, inspect them, and write a report with a contact sheet."""
    start = time.perf_counter()
    synthetic = out / "synthetic"
    total = per_class * len(SYNTH_CLASSES)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("generating", total=total)
        write_synthetic_dataset(synthetic, per_class, size, seed, band_prob, on_image=lambda done: progress.update(task, completed=done))
        task = progress.add_task("inspecting", total=total)
        report = inspect_dataset(synthetic, on_progress=lambda done, _: progress.update(task, completed=done))
    print_report(report)
    found, banded, flagged, clean = band_agreement(report, synthetic / "labels.csv")
    console.print(
        f"band detector against the generator's truth: {found}/{banded} bands found within "
        f"{BAND_TOLERANCE_ROWS} rows, {flagged}/{clean} band-free images flagged"
    )
    save_report(report, out / "report.json")
    sheet = write_contact_sheet(report, out / "contact_sheet.png")
    console.print(f"contact sheet: {sheet}")
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s; report: {out / 'report.json'}")
