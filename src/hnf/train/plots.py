"""Training curves as a PNG (matplotlib's object API: no global state, no display needed)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from hnf.atomic import atomic_write_bytes


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Loss (train, validation) and top-1 (train, validation) per epoch."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4))
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], "o-", label="validation")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    accuracy_axis.plot(epochs, [row["train_top1"] for row in history], "o-", label="train")
    accuracy_axis.plot(epochs, [row["val_top1"] for row in history], "o-", label="validation")
    accuracy_axis.set(xlabel="epoch", ylabel="top-1", title="accuracy", ylim=(0, 1))
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())
