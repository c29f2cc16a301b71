"""AdamW step time on a model's parameters: PyTorch's per-tensor loop, foreach and fused kernels.

    .venv/bin/python bench/bench_optimizer.py [--model hnf_small] [--steps 20] [--repeats 3]

The training loop uses the fused kernel on CPU and CUDA (``hnf.train.loop.FUSED_ADAMW_DEVICES``).
Each implementation updates the same parameters (of ``--model`` at 112 px, random gradients,
the loop's weight-decay groups) in this one process, interleaved over ``--repeats`` rounds; the
median step time of each and its ratio to the per-tensor loop (the CPU default) are printed,
next to the time of one forward and backward pass at batch 32 for scale.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hnf.data.synth import SYNTH_CLASSES
from hnf.models import create_model
from hnf.train.loop import param_groups

IMPLEMENTATIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def step_seconds(optimizer: torch.optim.Optimizer, steps: int) -> float:
    optimizer.step()  # state initialised outside the timing
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hnf_small")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    extra = {"class_names": list(SYNTH_CLASSES)} if args.model.startswith("hnf_llm") else {}
    model = create_model(args.model, num_classes=len(SYNTH_CLASSES), img_size=112, scales=(16, 28), **extra)
    images, labels = torch.randn(32, 1, 112, 112), torch.randint(0, len(SYNTH_CLASSES), (32,))
    start = time.perf_counter()
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    pass_seconds = time.perf_counter() - start
    for param in model.parameters():
        if param.requires_grad:
            param.grad = torch.randn_like(param)
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(args.repeats):
        for name, flags in IMPLEMENTATIONS.items():
            optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-6, **flags)
            times[name].append(step_seconds(optimizer, args.steps))
    reference = statistics.median(times["for-loop"])
    print(f"{args.model}: {count / 1e6:.2f} M trainable parameters, {torch.get_num_threads()} threads; "
          f"one forward+backward at batch 32, 112 px: {pass_seconds * 1e3:.0f} ms")
    print("| AdamW | ms per step | x for-loop time |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1e3:.1f} | {median / reference:.2f} |")


if __name__ == "__main__":
    main()
