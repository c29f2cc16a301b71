"""New classes without retraining (``hnf classes add``): recall of the added class and what the
old classes lose, from 0, 5, 10 and 20 images.

Two steps. ``prepare`` takes a dataset and one class to hold out, and a train/test split of the
whole dataset (``--split``; without it one is drawn, group-aware, seed 0, 20% test): it writes
``DIR/data`` (the other classes, as links to their folders) and ``DIR/split_old.json`` (the
split without the held-out class) to train on with ``hnf train --data DIR/data --split
DIR/split_old.json``, and ``DIR/split_full.json``. ``measure`` then adds the held-out class to
that checkpoint for every method, image count and seed: the images come from the held-out class's
training side of the full split (seeded draws, the smaller sets inside the larger ones), and
every new checkpoint is scored on the full split's test side (all classes, images as given):

* recall of the added class, and top-1 of the old classes before and after (their loss);
* top-1 and macro-F1 over all classes;
* the share of the added class's test images the old checkpoint's detector flagged unknown
  (a class it never saw: a near-OOD measurement) and the share the new one flags.

    python bench/bench_classes_add.py prepare --data DATA --hold CLASS --out DIR [--split SPLIT]
    hnf train --data DIR/data --split DIR/split_old.json --out RUN ...
    python bench/bench_classes_add.py measure --checkpoint RUN --prepared DIR --json OUT.json

Prints JSON (``--json`` writes it too); means and spreads over seeds per (method, images).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from hnf.classes import add_class
from hnf.data.splits import Fold, Split, load_split, save_split, stratified_group_train_test
from hnf.predict import Predictor, resolve_checkpoint
from hnf.train.data import readable_dataset


def prepare(data: Path, hold: str, out: Path, split_path: Path | None) -> dict:
    """The dataset without ``hold`` (links) and the two splits; returns their sizes."""
    if split_path is not None:
        full = load_split(split_path)
    else:
        readable = readable_dataset(data)
        paths = sorted(readable.by_path)
        full = stratified_group_train_test(paths, [p.split("/")[0] for p in paths], [readable.groups[p] for p in paths],
                                           0.2, 0)
    if hold not in full.classes:
        raise SystemExit(f"--hold {hold!r}: not a class of the split ({', '.join(full.classes)})")
    old_classes = [c for c in full.classes if c != hold]
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name in old_classes:
        link = out / "data" / name
        if not link.exists():
            link.symlink_to((data / name).resolve(), target_is_directory=True)
    fold = full.folds[0]
    keep = lambda paths: [p for p in paths if p.split("/")[0] != hold]  # noqa: E731
    save_split(Split(full.kind, full.seed, old_classes, [Fold(keep(fold.train), keep(fold.test))]), out / "split_old.json")
    save_split(full, out / "split_full.json")
    (out / "prepared.json").write_text(json.dumps({"data": str(data.resolve()), "hold": hold}) + "\n")
    return {"old_classes": old_classes, "hold": hold, "train": len(fold.train), "test": len(fold.test),
            "hold_train": len(fold.train) - len(keep(fold.train)), "hold_test": len(fold.test) - len(keep(fold.test))}


def _tensors(predictor: Predictor, files: list[Path]) -> torch.Tensor:
    return torch.stack([predictor.prepare(f).tensor for f in files])


def _scores(predictor: Predictor, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    probs, unknown = [], []
    for start in range(0, len(batch), 32):
        p, ood = predictor.scores(batch[start : start + 32])
        probs.append(p)
        if ood is not None:
            unknown.append(predictor.trust.ood.unknown(ood))
    return np.concatenate(probs), (np.concatenate(unknown) if unknown else None)


def _summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def measure(checkpoint: Path, prepared: Path, shots: list[int], seeds: list[int], methods: list[str],
            zero_shot: bool, device: str) -> dict:
    info = json.loads((prepared / "prepared.json").read_text())
    data, hold = Path(info["data"]), info["hold"]
    fold = load_split(prepared / "split_full.json").folds[0]
    directory = resolve_checkpoint(checkpoint)
    before = Predictor.from_checkpoint(directory, device)
    classes = [*before.classes, hold]
    test = fold.test
    labels = np.array([classes.index(p.split("/")[0]) for p in test])
    batch = _tensors(before, [data / p for p in test])
    old = labels < len(before.classes)
    probs, unknown = _scores(before, batch)
    before_old_top1 = float((probs.argmax(1)[old] == labels[old]).mean())
    pool = [p for p in fold.train if p.split("/")[0] == hold]
    result = {"checkpoint_classes": before.classes, "added": hold, "test_images": len(test),
              "added_test_images": int((~old).sum()), "added_pool_images": len(pool),
              "old_top1_before": before_old_top1,
              "added_flagged_unknown_before": None if unknown is None else float(unknown[~old].mean()),
              "old_flagged_unknown_before": None if unknown is None else float(unknown[old].mean()),
              "rows": []}
    runs = [(m, n) for m in methods for n in shots] + ([("text", 0)] if zero_shot else [])
    with tempfile.TemporaryDirectory() as tmp:
        for method, n in runs:
            per_seed = []
            for seed in seeds if n else [0]:
                chosen = [data / p for p in np.random.default_rng(seed).permutation(pool)[:n]]
                out = Path(tmp) / f"{method}-{n}-{seed}"
                start = time.perf_counter()
                report = add_class(directory, hold, chosen, out, method=method, device=device, say=lambda *a: None)
                seconds = time.perf_counter() - start
                after = Predictor.from_checkpoint(out, device)
                p, flagged = _scores(after, batch)
                predicted = p.argmax(1)
                per_seed.append({
                    "seed": seed, "seconds": seconds,
                    "added_recall": float((predicted[~old] == labels[~old]).mean()),
                    "old_top1": float((predicted[old] == labels[old]).mean()),
                    "top1": float((predicted == labels).mean()),
                    "macro_f1": float(f1_score(labels, predicted, labels=list(range(len(classes))), average="macro",
                                               zero_division=0)),
                    "added_flagged_unknown": None if flagged is None else float(flagged[~old].mean()),
                    "old_flagged_unknown": None if flagged is None else float(flagged[old].mean()),
                    "replay_kept": report.replay_kept,
                })
            row = {"method": method, "images": n, "seeds": [r["seed"] for r in per_seed], "per_seed": per_seed}
            for key in ("added_recall", "old_top1", "top1", "macro_f1"):
                row[key] = _summary([r[key] for r in per_seed])
            row["old_top1_loss"] = before_old_top1 - row["old_top1"]["mean"]
            result["rows"].append(row)
            print(f"{method:9s} {n:3d} images: added recall {row['added_recall']['mean']:.3f} "
                  f"+- {row['added_recall']['std']:.3f}, old top-1 {row['old_top1']['mean']:.3f} "
                  f"(before {before_old_top1:.3f})", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--hold", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--split", type=Path)
    m = sub.add_parser("measure")
    m.add_argument("--checkpoint", type=Path, required=True)
    m.add_argument("--prepared", type=Path, required=True)
    m.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20])
    m.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    m.add_argument("--methods", nargs="+", default=["head", "prototype"])
    m.add_argument("--zero-shot", action="store_true", help="also the text row from descriptions alone")
    m.add_argument("--device", default="cpu")
    m.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    if args.step == "prepare":
        out = prepare(args.data, args.hold, args.out, args.split)
    else:
        out = measure(args.checkpoint, args.prepared, args.shots, args.seeds, args.methods, args.zero_shot, args.device)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        out = {"command": " ".join(sys.argv), "commit": commit, "machine": platform.processor() or platform.machine(),
               "date": time.strftime("%Y-%m-%d"), **out}
    text = json.dumps(out, indent=2)
    print(text)
    if getattr(args, "json", None):
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
