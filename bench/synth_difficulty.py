"""How hard the synthetic classes are: logistic regression on 32x32 pixels vs a small CNN.

Renders train and held-out images of the ten classes (different image indices of the same seed),
fits a logistic regression (scikit-learn, standardised 32x32 block-averaged pixels) and a small
CNN (64x64 block-averaged input, a few epochs), and prints both top-1 scores and the CNN's
per-class recall. Target: logistic regression under 60% (we aim <= 50%), CNN over 80% (>= 85%):
global intensity statistics must not give the class away, while the classes differ in shape and
texture. ``tests/data/test_synth.py`` loads this file for the same check on fewer images.

    .venv/bin/python bench/synth_difficulty.py --size 128 --train 100 --test 50 --epochs 8
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from hnf.data.synth import SYNTH_CLASSES, synth_image  # noqa: E402


def downsample(images: np.ndarray, out: int) -> np.ndarray:
    """Block-average a stack (N, S, S) to (N, out, out); S must be a multiple of ``out``."""
    n, size, _ = images.shape
    k = size // out
    return images.reshape(n, out, k, out, k).mean(axis=(2, 4))


def synth_arrays(per_class: int, size: int, seed: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images ``first .. first+per_class-1`` of every class as (N, size, size) float32, labels."""
    images, labels = [], []
    for class_index in range(len(SYNTH_CLASSES)):
        for image_index in range(first, first + per_class):
            images.append(synth_image(seed, class_index, image_index, size)[0])
            labels.append(class_index)
    return np.stack(images), np.asarray(labels)


def logreg_top1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Top-1 of a standardised multinomial logistic regression on 32x32 downsampled pixels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def flat(x: np.ndarray) -> np.ndarray:
        return downsample(x, 32).reshape(len(x), -1)

    from threadpoolctl import threadpool_limits

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=0.1))
    with threadpool_limits(1):  # small problem: BLAS threads only fight on a busy machine
        model.fit(flat(train_x), train_y)
        return float((model.predict(flat(test_x)) == test_y).mean())


def cnn_predictions(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                    epochs: int = 8, seed: int = 0, width: int = 16, lr: float = 1e-2) -> np.ndarray:
    """Class predictions for ``test_x`` of a small CNN (a stride-2 stem and three conv blocks,
    global pooling) trained from scratch with flips and quarter turns; each image is standardised
    (zero mean, unit variance) first."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    def tensor(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
        mean = t.mean(dim=(2, 3), keepdim=True)
        std = t.std(dim=(2, 3), keepdim=True)
        return (t - mean) / (std + 1e-6)

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True))

    w = width
    model = nn.Sequential(
        nn.Conv2d(1, w, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
        block(w, w), nn.MaxPool2d(2), block(w, 2 * w), nn.MaxPool2d(2), block(2 * w, 4 * w),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, len(SYNTH_CLASSES)),
    )
    xs, ys = tensor(train_x), torch.from_numpy(train_y).long()
    batch = 16
    steps = epochs * ((len(xs) + batch - 1) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=gen)
        for start in range(0, len(xs), batch):
            idx = order[start:start + batch]
            xb = xs[idx]
            if torch.rand(1, generator=gen).item() < 0.5:
                xb = xb.flip(3)
            xb = torch.rot90(xb, int(torch.randint(0, 4, (1,), generator=gen)), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        return model(tensor(test_x)).argmax(1).numpy()


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
