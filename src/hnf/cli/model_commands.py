"""``hnf model ...``: inspect the registered models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hnf.cli.errors import reports_errors

model_app = typer.Typer(no_args_is_help=True)


@model_app.command("list")
@reports_errors
def list_command() -> None:
    """List the registered model names."""
    from hnf.models import list_models

    for name in list_models():
        typer.echo(name)


@model_app.command("info")
@reports_errors
def info_command(
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. hnf_small.")],
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write params, flops and components here.")
    ] = None,
    img_size: Annotated[int, typer.Option(help="Square input size for the FLOP count.")] = 224,
    speed: Annotated[
        bool, typer.Option("--speed/--no-speed", help="Measure inference images/s here.")
    ] = True,
    threads: Annotated[int, typer.Option(help="Torch CPU threads for the speed test.")] = 2,
) -> None:
    """Parameters and FLOPs per component (one 1xCxSxS image) and CPU throughput."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from hnf.atomic import atomic_write_json
    from hnf.models import create_model
    from hnf.models.info import model_report, throughput

    torch.set_num_threads(threads)
    model = create_model(name)
    report = model_report(model, img_size)
    table = Table(title=f"{name} at {img_size}x{img_size}, {model.cfg.in_chans} channel(s)")
    for column in ("component", "params", "MFLOPs", "share"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for comp, row in report["components"].items():
        share = row["flops"] / report["flops"] if report["flops"] else 0.0
        table.add_row(comp, f"{row['params']:,}", f"{row['flops'] / 1e6:,.1f}", f"{share:.1%}")
    table.add_row("total", f"{report['params']:,}", f"{report['flops'] / 1e6:,.1f}", "100.0%",
                  style="bold")
    console = Console()
    console.print(table)
    if speed:
        ips = throughput(model, model.cfg.in_chans, img_size)
        report["throughput_images_per_s"] = ips
        console.print(f"inference throughput: {ips:.1f} images/s "
                      f"(batch 8, fp32, {threads} threads, this machine)")
    if json_file is not None:
        atomic_write_json(json_file, report)
        console.print(f"wrote {json_file}")
