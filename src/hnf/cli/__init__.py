"""The ``hnf`` command line: thin wrappers that parse, call the library and print.

Each command group lives in its own module and is mounted here.
"""

from __future__ import annotations

import typer

from hnf.cli.classes_commands import classes_app
from hnf.cli.data_commands import data_app
from hnf.cli.demo_command import demo
from hnf.cli.model_commands import model_app
from hnf.cli.predict_commands import export_app, predict_command, serve_command
from hnf.cli.text_commands import describe, text_app
from hnf.cli.train_commands import ablate_command, baselines_command, cv_command, evaluate_command, train_command

app = typer.Typer(
    name="hnf",
    help="Classify electron micrographs by the nanomaterial they show.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(data_app, name="data", help="Read, inspect and synthesise micrograph datasets.")
app.add_typer(model_app, name="model", help="Inspect the models: parameters, FLOPs, speed.")
app.command("train", help="Train a model on a dataset (checkpoints, metrics, curves; --resume).")(train_command)
app.add_typer(classes_app, name="classes", help="Add classes to a trained checkpoint from a few images.")
app.command("evaluate", help="Score a checkpoint on a dataset: top-1/5, macro-F1, confusion matrix.")(evaluate_command)
app.command("cv", help="k-fold cross-validation with mean and spread of each metric.")(cv_command)
app.command("ablate", help="Train the ablation grid on one split; one table.")(ablate_command)
app.command("baselines", help="Train timm baselines under the same protocol and split.")(baselines_command)
app.command("demo", help="Run the main job on built-in synthetic micrographs (no download).")(demo)
app.command("describe", help="Write class descriptions with an LLM (openai, local) or take them from the shipped corpus (offline).")(describe)
app.add_typer(text_app, name="text", help="The small language model: domain-adaptive masked-LM pretraining.")
app.command("predict", help="Classify micrographs (files, folders, globs) with a checkpoint; --explain draws where it looked.")(predict_command)
app.add_typer(export_app, name="export", help="Export a checkpoint (ONNX).")
app.command("serve", help="Serve a checkpoint: REST API and a web page for dragging micrographs.")(serve_command)


def main() -> None:
    """Entry point of the console script."""
    app()
