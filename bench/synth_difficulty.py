"""How hard the synthetic classes are: logistic regression on 32x32 pixels vs a small CNN.

Renders train and held-out images of the ten classes (different image indices of the same seed),
fits a logistic regression (scikit-learn, standardised 32x32 block-averaged pixels) and a small
CNN (64x64 block-averaged input, a few epochs), and prints both top-1 scores and the CNN's
per-class recall. Target: logistic regression under 60% (we aim <= 50%), CNN over 80% (>= 85%).

    .venv/bin/python bench/synth_difficulty.py --size 128 --train 100 --test 50 --epochs 8
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hnf.data.synth import SYNTH_CLASSES  # noqa: E402
from hnf.data.synth.difficulty import cnn_predictions, downsample, logreg_top1, synth_arrays  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="render size (a multiple of 64)")
    parser.add_argument("--train", type=int, default=100, help="training images per class")
    parser.add_argument("--test", type=int, default=50, help="held-out images per class")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    train_x, train_y = synth_arrays(args.train, args.size, args.seed)
    test_x, test_y = synth_arrays(args.test, args.size, args.seed, first=args.train)
    print(f"rendered {len(train_x)} + {len(test_x)} images at {args.size}px in {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    linear = logreg_top1(train_x, train_y, test_x, test_y)
    print(f"logistic regression, 32x32 pixels: top-1 {100 * linear:.1f}% ({time.perf_counter() - start:.1f} s)")

    start = time.perf_counter()
    small_train, small_test = downsample(train_x, 64), downsample(test_x, 64)
    pred = cnn_predictions(small_train, train_y, small_test, epochs=args.epochs, seed=args.seed)
    cnn = float((pred == test_y).mean())
    print(f"small CNN, 64x64, {args.epochs} epochs: top-1 {100 * cnn:.1f}% ({time.perf_counter() - start:.1f} s)")
    for index, name in enumerate(SYNTH_CLASSES):
        mask = test_y == index
        print(f"  recall {name:28s} {100 * float((pred[mask] == index).mean()):5.1f}%")
    chance = 100 / len(SYNTH_CLASSES)
    print(f"summary: logreg {100 * linear:.1f}% (need < 60), CNN {100 * cnn:.1f}% (need > 80), chance {chance:.0f}%")


if __name__ == "__main__":
    main()
