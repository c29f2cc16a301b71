"""Summarise `hnf cv` runs as one table, and keep their raw outputs under bench/results.

For each ``LABEL=CV_DIR``: mean +- std over folds of top-1 and macro-F1, as given and with the
test-time views the runs averaged, train seconds per fold and peak memory; each fold's
``metrics.json`` and the run's ``report.md`` are copied to ``--keep/LABEL/`` (its ``folds.json`` is
recorded by SHA-256 in the summary: the runs share one saved folds file).
Folds not finished yet are left out and counted. Writes ``--json`` and prints a Markdown table.

Usage: ``python bench/pretrained_summary.py --keep bench/results/pretrained/uhcs_cv5 \
    --json bench/results/pretrained/uhcs_cv5/summary.json probe=runs/pretrained-cv/uhcs_lite0_probe ...``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
from pathlib import Path


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise(label: str, cv_dir: Path, keep: Path | None) -> dict:
    folds = sorted(cv_dir.glob("fold-*/metrics.json"))
    rows = [json.loads(p.read_text()) for p in folds]
    if keep is not None:
        target = keep / label
        target.mkdir(parents=True, exist_ok=True)
        for path in folds:
            shutil.copyfile(path, target / f"{path.parent.name}.metrics.json")
        if (cv_dir / "report.md").is_file():
            shutil.copyfile(cv_dir / "report.md", target / "report.md")
    if not rows:
        return {"label": label, "folds": 0}
    folds_file = cv_dir / "folds.json"
    summary = {"label": label, "folds": len(rows), "model": rows[0].get("model"),
               "tta_views": rows[0].get("tta_views", 1),
               "folds_sha256": hashlib.sha256(folds_file.read_bytes()).hexdigest() if folds_file.is_file() else None}
    for key in ("identity_top1", "identity_macro_f1", "top1", "macro_f1", "train_seconds"):
        values = [r.get(key, r.get(key.removeprefix("identity_"))) for r in rows]
        summary[key] = _stats([float(v) for v in values])
    memory = [r["peak_memory_mib"] for r in rows if "peak_memory_mib" in r]
    summary["peak_memory_mib"] = max(memory) if memory else None
    summary["per_fold_identity_top1"] = [r.get("identity_top1", r["top1"]) for r in rows]
    return summary


def table(summaries: list[dict], expected_folds: int) -> str:
    lines = ["| model | folds | top-1 as given | macro-F1 as given | top-1, 8 views | macro-F1, 8 views | "
             "train s / fold | peak RSS (MiB) |", "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        if not s["folds"]:
            lines.append(f"| {s['label']} | 0 of {expected_folds} | - | - | - | - | - | - |")
            continue

        def cell(key: str) -> str:
            return f"{100 * s[key]['mean']:.1f} +- {100 * s[key]['std']:.1f}"

        memory = f"{s['peak_memory_mib']:.0f}" if s["peak_memory_mib"] else "-"
        lines.append(f"| {s['label']} | {s['folds']} of {expected_folds} | {cell('identity_top1')} | "
                     f"{cell('identity_macro_f1')} | {cell('top1')} | {cell('macro_f1')} | "
                     f"{s['train_seconds']['mean']:.0f} | {memory} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=CV_DIR")
    parser.add_argument("--keep", type=Path, help="copy the raw outputs here")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    summaries = []
    for pair in args.runs:
        label, _, directory = pair.partition("=")
        summaries.append(summarise(label, Path(directory), args.keep))
    text = table(summaries, args.folds)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summaries": summaries, "table": text}, indent=2) + "\n")


if __name__ == "__main__":
    main()
