"""``hnf data inspect DIR``: per-class table, JSON report and contact sheet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hnf.cli.errors import reports_errors

console = Console()

if TYPE_CHECKING:
    from hnf.data.inspect import InspectionReport


@reports_errors
def inspect(
    source: Annotated[Path, typer.Argument(help="Dataset folder (one subfolder per class) or CSV manifest.")],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Where to write the JSON report [default: OUT/report.json].")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the report and contact sheet [default: ./hnf-inspect/<dataset name>]."),
    ] = None,
    sheet_per_class: Annotated[int, typer.Option(help="Images per class on the contact sheet.")] = 6,
    bands: Annotated[bool, typer.Option("--bands/--no-bands", help="Look for information bands.")] = True,
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = one per core).")] = 0,
) -> None:
    """Table per class (count, sizes, modes, bands, duplicates, unreadable files), JSON report, contact sheet."""
    from hnf.data.inspect import inspect_dataset, save_report, write_contact_sheet

    out = out or Path("hnf-inspect") / source.resolve().name.removesuffix(".csv")
    json_path = json_path or out / "report.json"
    with Progress(
        TextColumn("decoding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task("decode", total=None)
        report = inspect_dataset(
            source,
            detect_bands=bands,
            workers=workers or None,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )

    print_report(report)
    save_report(report, json_path)
    console.print(f"JSON report: {json_path}")
    if report.images:
        sheet = write_contact_sheet(report, out / "contact_sheet.png", per_class=sheet_per_class)
        console.print(f"contact sheet: {sheet}")
    else:
        console.print(f"[red]error:[/red] {source}: no readable images")
        raise typer.Exit(1)


def print_report(report: InspectionReport) -> None:
    """Print the per-class table, the bands, metadata, duplicates and skipped files of a report."""
    from hnf.data.inspect import metadata_summary

    table = Table(title=f"{report.root}  ({len(report.images)} images, {len(report.classes)} classes)")
    for column in ("class", "images", "sizes", "modes", "bands", "exact dups", "near dups", "unreadable", "pixel size"):
        table.add_column(column, justify="left" if column in ("class", "sizes", "modes", "pixel size") else "right")
    for row in report.class_rows():
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)
    banded = [r for r in report.images if r.band]
    if report.detect_bands:
        console.print(f"information band found in {len(banded)} of {len(report.images)} images")
        for record in banded[:10]:
            console.print(f"  {record.path}: rows {record.band.top}-{record.band.bottom} of {record.height} ({record.band.source})")
        if len(banded) > 10:
            console.print(f"  ... {len(banded) - 10} more in the JSON report")
    for line in metadata_summary(report):
        console.print(line)
    console.print(f"duplicates: {len(report.exact)} exact group(s), {len(report.near)} near group(s)")
    for group in report.exact[:5]:
        console.print(f"  exact: {' = '.join(group)}")
    for problem in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {problem}")
    for problem in report.unreadable:
        console.print(f"[yellow]skipped:[/yellow] {problem}")
