"""Unknown-input detection of a trained checkpoint: Mahalanobis, energy and k-NN (hnf.trust).

Scores every image of the in-distribution folders (``--in``, e.g. the test side of the model's own
dataset) and of the out-of-distribution folders (``--out``, e.g. another material or optical
images), and reports per score and per out-folder the AUROC (sklearn.metrics.roc_auc_score, the
unknown images the positives) and the share of unknown images caught at the checkpoint's
threshold (the one accepting 95% of its validation images), with the share of in-distribution
images flagged beside it. Prints JSON; ``--json F`` writes it too.

    python bench/bench_ood.py --checkpoint RUN --in DATA/test_images --out ../shared/data/neu-surface \\
        --out ../shared/data/uhcs-3class --json bench/results/ood/NAME.json

``--split RUN/split.json`` with ``--in DATA`` keeps only the split's test side of DATA.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from hnf.predict import Predictor, collect_inputs


def _scores(predictor: Predictor, paths: list[Path], batch_size: int) -> dict[str, np.ndarray]:
    """Both scores of every readable image in ``paths`` (unreadable ones are skipped)."""
    from hnf.trust import logits_and_embedding

    out: dict[str, list[float]] = {name: [] for name in predictor.trust.ood.methods}
    for start in range(0, len(paths), batch_size):
        prepared = []
        for path in paths[start : start + batch_size]:
            try:
                prepared.append(predictor.prepare(path))
            except Exception:  # noqa: BLE001 - a bench skips what it cannot read
                continue
        if not prepared:
            continue
        with torch.no_grad():
            logits, embedding = logits_and_embedding(predictor.model, torch.stack([p.tensor for p in prepared]).to(predictor.device))
        for name, values in predictor.trust.ood.scores(embedding.float().cpu().numpy(), logits.float().cpu().numpy()).items():
            out[name].extend(values.tolist())
    return {name: np.asarray(values) for name, values in out.items()}


def _files(folder: str, split: str | None) -> list[Path]:
    files, _ = collect_inputs([folder])
    if split:
        wanted = set(json.loads(Path(split).read_text())["folds"][0]["test"])
        files = [f for f in files if str(f.relative_to(folder)) in wanted]
    return files


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--in", dest="inside", action="append", required=True, help="in-distribution folder (repeatable)")
    parser.add_argument("--out", dest="outside", action="append", required=True, help="unknown-image folder (repeatable)")
    parser.add_argument("--split", help="with one --in: keep only this split's test side of it")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    predictor = Predictor.from_checkpoint(args.checkpoint)
    if predictor.trust.ood is None:
        sys.exit(f"{args.checkpoint}: the checkpoint has no unknown-input detector (train it with this hnf)")
    ood = predictor.trust.ood
    inside_files = [f for folder in args.inside for f in _files(folder, args.split)]
    inside = _scores(predictor, inside_files, args.batch_size)
    report: dict = {
        "checkpoint": str(args.checkpoint), "model": predictor.meta.model, "classes": predictor.classes,
        "temperature": predictor.trust.temperature, "default_method": ood.method, "accept": ood.accept,
        "thresholds": ood.thresholds, "in_distribution": args.inside, "in_images": int(len(inside[ood.method])),
        "in_flagged": {m: float(np.mean(inside[m] > ood.thresholds[m])) for m in ood.methods},
        "unknown": {},
    }
    for folder in args.outside:
        outside = _scores(predictor, _files(folder, None), args.batch_size)
        row: dict = {"images": int(len(outside[ood.method]))}
        for method in ood.methods:
            labels = np.r_[np.zeros(len(inside[method])), np.ones(len(outside[method]))]
            values = np.r_[inside[method], outside[method]]
            row[method] = {"auroc": float(roc_auc_score(labels, values)),
                           "caught": float(np.mean(outside[method] > ood.thresholds[method]))}
        report["unknown"][folder] = row
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report.update(seconds=round(time.perf_counter() - start, 1), commit=commit, machine=platform.platform(),
                  cpus=torch.get_num_threads(), date=time.strftime("%Y-%m-%d"))
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
