"""Train a backbone from scratch on synthetic micrographs and report held-out top-1.

A minimal, self-contained loop (the real training CLI is a later issue): images from
``hnf.data.synth.render_micrograph`` (train and test drawn from disjoint seeds), normalised with
mean 0.5 / std 0.25, flips and 90-degree rotations, AdamW (wd 0.05), one warm-up epoch then cosine,
label smoothing 0.1, fp32 (faster than bf16 autocast on CPUs without native bf16).

    .venv/bin/python bench/train_synth_backbone.py --per-class 200 --test-per-class 50 --epochs 6
    .venv/bin/python bench/train_synth_backbone.py --size 128 --scales 16 32 --epochs 5  # ~4x cheaper
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from hnf.data.synth import SYNTH_CLASSES, render_micrograph
from hnf.models import create_model


def synth_set(per_class: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, size, size) normalised images and (N,) labels, class-major."""
    images, labels = [], []
    for label, name in enumerate(SYNTH_CLASSES):
        for index in range(per_class):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(label, index)))
            images.append(torch.from_numpy(render_micrograph(name, size, rng)))
            labels.append(label)
    x = (torch.stack(images).unsqueeze(1) - 0.5) / 0.25
    return x, torch.tensor(labels)


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random horizontal/vertical flips and 90-degree rotations, one choice per batch."""
    if torch.rand(()) < 0.5:
        x = x.flip(-1)
    if torch.rand(()) < 0.5:
        x = x.flip(-2)
    return torch.rot90(x, int(torch.randint(4, ())), dims=(-2, -1))


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    model.eval()
    correct = sum((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum().item()
                  for i in range(0, len(x), batch))
    model.train()
    return correct / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hnf_small")
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--scales", type=int, nargs="+", default=None,
                        help="patch sizes (default: the model's); each must divide --size")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the summary here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    x_train, y_train = synth_set(args.per_class, args.size, seed=args.seed)
    x_test, y_test = synth_set(args.test_per_class, args.size, seed=args.seed + 1000)
    print(f"data: {len(x_train)} train / {len(x_test)} test, {time.time() - start:.0f}s", flush=True)

    overrides = {"scales": tuple(args.scales)} if args.scales else {}
    model = create_model(args.model, num_classes=len(SYNTH_CLASSES), img_size=args.size,
                         **overrides)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(x_train) / args.batch)
    total, warmup = args.epochs * steps_per_epoch, steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup))))))
    train_start = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x_train))
        losses = []
        for i in range(0, len(perm), args.batch):
            idx = perm[i:i + args.batch]
            loss = F.cross_entropy(model(augment(x_train[idx])), y_train[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        acc = accuracy(model, x_test, y_test, 64)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {np.mean(losses):.3f}, test top-1 {acc:.3f}, "
              f"{time.time() - train_start:.0f}s", flush=True)
    summary = {"model": args.model, "img_size": args.size, "scales": model.cfg.scales, "train_images": len(x_train), "test_images": len(x_test),
               "epochs": args.epochs, "test_top1": acc,
               "train_seconds": round(time.time() - train_start, 1),
               "total_seconds": round(time.time() - start, 1)}
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
