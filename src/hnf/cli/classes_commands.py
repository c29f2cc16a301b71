"""``hnf classes ...``: extend a trained checkpoint with new classes (:mod:`hnf.classes`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hnf.cli.errors import reports_errors

classes_app = typer.Typer(no_args_is_help=True)


@classes_app.command("add")
@reports_errors
def add_command(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", "-c", help="Checkpoint folder (or run folder) to extend.")],
    name: Annotated[str, typer.Option("--name", help="Name of the new class.")],
    out: Annotated[Path, typer.Option("--out", help="New checkpoint folder (must not exist yet).")],
    images: Annotated[
        list[str] | None, typer.Option("--images", help="Images of the class: files, folders or globs (repeatable). "
                                                        "None: learn it from its descriptions alone.")
    ] = None,
    descriptions: Annotated[
        Path | None, typer.Option("--descriptions", help="Descriptions JSON with the class (text-fused models; "
                                                         "default: the shipped corpus).")
    ] = None,
    method: Annotated[
        str | None, typer.Option("--method", help="head (logistic fit against stored training features), "
                                                 "prototype (imprinted mean feature) or text (no images).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "cpu",
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the report here.")] = None,
) -> None:
    """Add a class to a trained checkpoint from a few images, without retraining it."""
    from hnf.atomic import atomic_write_json
    from hnf.classes import add_class

    report = add_class(checkpoint, name, images or [], out, descriptions, method, device, say=typer.echo)
    if report.new_images_assigned is not None:
        typer.echo(f"{report.new_images_assigned:.0%} of its {report.images} image(s) now assigned to {name!r}")
    if report.replay_kept is not None:
        typer.echo(f"{report.replay_kept:.0%} of the stored training features of the other classes keep their class")
    if json_file is not None:
        atomic_write_json(json_file, report.to_json())
