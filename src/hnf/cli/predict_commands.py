"""``hnf predict``, ``hnf export onnx`` and ``hnf serve``: using a trained checkpoint."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated

import typer

from hnf.cli.errors import fail, reports_errors
from hnf.cli.train_commands import TtaViews

export_app = typer.Typer(no_args_is_help=True)

_CHECKPOINT_HELP = "Checkpoint folder (RUN/checkpoint, or the run folder RUN itself) written by `hnf train`."


def csv_text(rows: list[dict], top_k: int) -> str:
    """``--out F.csv``: path, top1_class, top1_prob, ..., topK_prob, abstain, unknown, ood_score,
    band_top, band_bottom, error (``abstain`` and ``unknown`` as true/false, empty when null)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["path"]
    for i in range(1, top_k + 1):
        header += [f"top{i}_class", f"top{i}_prob"]
    writer.writerow(header + ["abstain", "unknown", "ood_score", "band_top", "band_bottom", "error"])
    for row in rows:
        cells = [row["path"]]
        for i in range(top_k):
            entry = row["top_k"][i] if i < len(row["top_k"]) else None
            cells += [entry["class"], f"{entry['prob']:.6f}"] if entry else ["", ""]
        band = row["band"] or {}
        flags = ["" if row[k] is None else str(row[k]).lower() for k in ("abstain", "unknown")]
        cells += [*flags, "" if row["ood_score"] is None else f"{row['ood_score']:.6g}"]
        cells += [band.get("top", ""), band.get("bottom", ""), row["error"] or ""]
        writer.writerow(cells)
    return buffer.getvalue()


def _explain_name(path: str, used: set[str]) -> str:
    stem = Path(path).name.replace(" ", "_")
    name, n = f"{stem}.explain.png", 1
    while name in used:
        n += 1
        name = f"{stem}.{n}.explain.png"
    used.add(name)
    return name


@reports_errors
def predict_command(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or glob patterns.")],
    checkpoint: Annotated[Path, typer.Option(help=_CHECKPOINT_HELP)],
    top_k: Annotated[int, typer.Option(min=1, help="Classes listed per image.")] = 5,
    out: Annotated[Path | None, typer.Option(help="Write the rows to F.csv or F.json.")] = None,
    explain: Annotated[Path | None, typer.Option(help="Write one explanation PNG per image into this folder.")] = None,
    explain_style: Annotated[str, typer.Option(help=(
        "summary: the micrograph with the analysed region, the heat map with its colour scale, the top-k and "
        "the verdict; experts: the same plus, per scale, the attention map and each patch's expert (ML users)."))] = "summary",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 16,
    threads: Annotated[int, typer.Option(min=1, help="Torch CPU threads.")] = 2,
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:1, ...")] = "auto",
    tta_views: TtaViews = 1,
    min_confidence: Annotated[float | None, typer.Option(help=(
        "Abstain below this calibrated top probability (0 to 1): such rows get abstain true, and the "
        "coverage (share of images answered) is printed."))] = None,
) -> None:
    """Classify micrographs with a checkpoint: a table, optional CSV/JSON rows and explanation PNGs.

    Probabilities are calibrated with the checkpoint's temperature; rows say whether they abstain
    (--min-confidence) and, for checkpoints with an unknown-input detector, whether the image looks
    unlike every class (unknown, ood_score). Unreadable images get a row with their error and the
    rest go on; the exit status is 1 only when no image could be predicted (2 for an unusable
    checkpoint or option).
    """
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from hnf.atomic import atomic_write_bytes, atomic_write_text
    from hnf.data.metadata import format_length
    from hnf.predict import Predictor, collect_inputs

    console = Console(stderr=True)
    torch.set_num_threads(threads)
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        fail(f"--out {out}: the file name must end in .csv or .json")
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        fail(f"--min-confidence {min_confidence}: expected a probability between 0 and 1")
    predictor = Predictor.from_checkpoint(checkpoint, device=device, views=tta_views)
    files, missing = collect_inputs(paths)
    rows = [p for p in missing]
    if explain_style not in ("summary", "experts"):
        fail(f"--explain-style {explain_style}: expected summary or experts")
    if explain is not None:
        explain.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    written = 0

    def save_explanation(row) -> None:
        nonlocal written
        from hnf.explain import render_prediction

        if row.error is not None or row.explanation is None or explain is None:
            return
        png = render_prediction(row, predictor.pre, predictor.model_name, explain_style, min_confidence)
        atomic_write_bytes(explain / _explain_name(row.path, used), png)
        row.prepared = None  # free the images once drawn
        written += 1

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        task = progress.add_task("predicting", total=len(files))
        for row in predictor.predict_files(files, top_k, batch_size, explain is not None,
                                           min_confidence=min_confidence):
            save_explanation(row)
            row.prepared = None
            rows.append(row)
            progress.advance(task)

    table = Table(title=f"{predictor.model_name}: {len(rows)} item(s)")
    for column in ("path", "class", "prob", "verdict", "band", "pixel size", "field of view", "error"):
        table.add_column(column, overflow="fold")
    for row in rows[:200]:
        best = row.top_k[0] if row.top_k else None
        verdict = ", ".join(text for flag, text in ((row.unknown, "not one of my classes"), (row.abstain, "not sure"))
                            if flag)
        band = f"{row.band.top}-{row.band.bottom}" if row.band is not None else ""
        pixel = format_length(row.pixel_size_m) if row.pixel_size_m is not None else ""
        field = " x ".join(format_length(v) for v in row.field_of_view_m) if row.field_of_view_m else ""
        table.add_row(row.path, best["class"] if best else "", f"{best['prob']:.3f}" if best else "", verdict, band,
                      pixel, field, row.error or "", style="red" if row.error else None)
    if len(rows) > 200:
        table.caption = f"first 200 of {len(rows)} rows; use --out for all"
    Console().print(table)

    json_rows = [r.to_json() for r in rows]
    if out is not None:
        if out.suffix.lower() == ".json":
            atomic_write_text(out, json.dumps(json_rows, indent=1) + "\n")
        else:
            atomic_write_text(out, csv_text(json_rows, min(top_k, len(predictor.classes))))
        console.print(f"wrote {out}")
    if explain is not None:
        console.print(f"wrote {written} explanation(s) to {explain}")
    good = sum(1 for r in rows if r.error is None)
    errors = len(rows) - good
    console.print(f"{good} image(s) predicted, {errors} error(s)")
    if min_confidence is not None and good:
        answered = sum(1 for r in rows if r.error is None and not r.abstain)
        console.print(f"coverage {answered / good:.1%}: {answered} of {good} image(s) at confidence >= "
                      f"{min_confidence:g}, {good - answered} abstained")
    if predictor.trust.ood is not None and good:
        unknown = sum(1 for r in rows if r.unknown)
        console.print(f"{unknown} of {good} image(s) not one of the model's classes "
                      f"({predictor.trust.ood.method} score above {predictor.trust.ood.thresholds[predictor.trust.ood.method]:.4g})")
    if good == 0:
        raise typer.Exit(1)


@export_app.command("onnx")
@reports_errors
def export_onnx_command(
    checkpoint: Annotated[Path, typer.Option(help=_CHECKPOINT_HELP)],
    out: Annotated[Path, typer.Option(help="The .onnx file to write.")] = Path("model.onnx"),
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Compare onnxruntime with PyTorch on synthetic micrographs.")] = True,
    threads: Annotated[int, typer.Option(min=1, help="Torch CPU threads.")] = 2,
) -> None:
    """Export a checkpoint to ONNX (class names and preprocessing in its metadata); see docs/onnx.md."""
    import torch

    from hnf.export import export_checkpoint

    torch.set_num_threads(threads)
    images = synthetic_batch(checkpoint) if check else None
    report = export_checkpoint(checkpoint, out, opset, images)
    typer.echo(f"wrote {report.path} ({report.bytes / 1e6:.1f} MB): {report.model}, {len(report.classes)} classes, "
               f"input image [N, {report.in_chans}, {report.img_size}, {report.img_size}], output logits, opset {report.opset}")
    if report.max_abs_diff is not None:
        typer.echo(f"onnxruntime vs PyTorch on {len(images)} synthetic micrographs: max |logit diff| = {report.max_abs_diff:.2e}")
        if report.max_abs_diff > 1e-3:
            fail("the exported model's logits differ from PyTorch by more than 1e-3", 1)


def synthetic_batch(checkpoint: Path, count: int = 4, seed: int = 0):
    """Prepared synthetic micrographs (one per class, cycling) for a checkpoint's preprocessing."""
    import torch

    from hnf.data.synth.writer import synth_image
    from hnf.predict import prepare_grey, resolve_checkpoint
    from hnf.train.checkpoint import read_meta

    _, meta = read_meta(resolve_checkpoint(checkpoint))
    images = [synth_image(seed, i % 10, i, meta.preprocessing.resize)[0] for i in range(count)]
    return torch.stack([prepare_grey(image, meta.preprocessing)[0] for image in images])


@reports_errors
def serve_command(
    checkpoint: Annotated[Path, typer.Option(help=_CHECKPOINT_HELP)],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for the whole network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body in MB.")] = 50.0,
    max_pixels: Annotated[int, typer.Option(help="Largest pixel count per image (decompression bombs).")] = 100_000_000,
    max_files: Annotated[int, typer.Option(min=1, help="Most files per request.")] = 64,
    max_request_pixels: Annotated[int, typer.Option(
        min=1, help="Most pixels the images of one request may declare together (refused before decoding).")] = 200_000_000,
    decode_slots: Annotated[int, typer.Option(min=1, help="Images decoded at once across all requests.")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="Torch CPU threads.")] = 2,
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else the CPU), cpu, cuda, cuda:1, ...")] = "auto",
) -> None:
    """Serve a checkpoint: REST API (/v1/predict, /v1/classes, /v1/model, /healthz, /docs) and a web page at /."""
    import torch

    from hnf.serve import ServeSettings, run_server

    torch.set_num_threads(threads)
    settings = ServeSettings(int(max_upload_mb * 1024 * 1024), max_pixels, max_files, max_request_pixels, decode_slots)
    typer.echo(f"hnf serve: http://{host}:{port}/ (API docs at /docs)", err=True)
    run_server(str(checkpoint), host, port, settings, device=device)
