"""Rank the fine-tuning recipes of ``bench/pretrained_tune.sh`` by validation loss.

Reads, for every run folder ``OUT/<model>/<recipe>/fold-<k>``, the last epoch's validation loss
and top-1 from its ``metrics.jsonl`` (never its test metrics), averages them over the folds
every recipe of that model has finished, and names each model's recipe with the lowest mean
validation loss (ties: higher validation top-1). Writes the table as JSON.

    python bench/pretrained_tune_summary.py runs/pretrained-tune --json bench/results/pretrained/tune.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def last_validation(run: Path) -> dict[str, float] | None:
    """The last epoch's validation loss and top-1 of a finished run, else None."""
    if not (run / "metrics.json").exists():
        return None
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = [r for r in records if "val_loss" in r][-1]
    return {"val_loss": last["val_loss"], "val_top1": last["val_top1"], "epoch": last["epoch"]}


def summarise(root: Path) -> dict:
    models = {}
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        recipes = {recipe.name: {fold.name: last_validation(fold) for fold in sorted(recipe.glob("fold-*"))}
                   for recipe in sorted(p for p in model_dir.iterdir() if p.is_dir())}
        finished = [{f for f, v in folds.items() if v is not None} for folds in recipes.values()]
        common = sorted(set.intersection(*finished)) if finished else []
        rows = []
        for name, folds in recipes.items():
            if not common:
                continue
            scores = [folds[f] for f in common]
            rows.append({"recipe": name, "folds": common,
                         "val_loss": statistics.fmean(s["val_loss"] for s in scores),
                         "val_top1": statistics.fmean(s["val_top1"] for s in scores),
                         "per_fold": {f: folds[f] for f in common}})
        rows.sort(key=lambda r: (r["val_loss"], -r["val_top1"]))
        models[model_dir.name] = {"recipes": rows, "chosen": rows[0]["recipe"] if rows else None}
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    models = summarise(args.root)
    for model, result in models.items():
        print(f"\n{model} (chosen: {result['chosen']})\n\n| recipe | folds | validation loss | validation top-1 |\n|---|---|---|---|")
        for row in result["recipes"]:
            print(f"| {row['recipe']} | {len(row['folds'])} | {row['val_loss']:.3f} | {100 * row['val_top1']:.1f}% |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(models, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
