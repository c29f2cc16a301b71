"""Plain against test-time-augmented scores of finished runs on their own test side.

    .venv/bin/python bench/tta_table.py --data ../shared/data/neu-surface RUN [RUN ...]

Every RUN is a run folder of ``hnf train`` (``checkpoint/`` and ``split.json``). Each checkpoint is
scored once with ``hnf.train.evaluate.evaluate_checkpoint(views=V)``, which gives the averaged
scores and, from the same forward passes, those of the images as given; prints a Markdown table
with the evaluation time of each run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hnf.train.evaluate import evaluate_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--views", type=int, default=8)
    args = parser.parse_args()
    print(f"| run | top-1 | top-1, {args.views} views | macro-F1 | macro-F1, {args.views} views | "
          f"evaluation (s) |\n|---|---|---|---|---|---|")
    for run in args.runs:
        start = time.perf_counter()
        m = evaluate_checkpoint(run / "checkpoint", args.data, run / "split.json", views=args.views)
        seconds = time.perf_counter() - start
        print(f"| {run} | {m['identity_top1']:.4f} | {m['top1']:.4f} | {m['identity_macro_f1']:.4f} | "
              f"{m['macro_f1']:.4f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
