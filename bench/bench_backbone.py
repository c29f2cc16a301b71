"""Speed, memory and FLOP-efficiency of hnf_small beside timm's vit_tiny and resnet18 (CPU).

One run measures, at batch 32 with 2 threads, fp32 and bf16 autocast:
  * images/s of inference (no_grad, eval) and of a training step (forward, cross-entropy,
    backward, AdamW step), median of ``--iters`` timed repetitions after one warm-up;
  * peak memory of a training step: each model runs in its own subprocess; the peak resident
    set size of that process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after the training
    steps, and its growth over the RSS measured right after building the model and the batch;
  * achieved FLOP/s = FLOPs (FlopCounterMode, forward; forward+backward for training) x images/s,
    as a share of the machine's matmul peak, measured in the same run (1024^3 ``torch.mm``,
    fp32 and under bf16 autocast), before and after the models; the higher value counts.

    .venv/bin/python bench/bench_backbone.py [--iters 2] [--json results.json]

Ratios within one run are the numbers to trust: the machine is shared and absolute times drift.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

MODELS = ("hnf_small", "vit_tiny_patch16_224", "resnet18")
BATCH, THREADS, SIZE, CLASSES = 32, 2, 224, 10


def build(name: str) -> torch.nn.Module:
    if name.startswith("hnf"):
        from hnf.models import create_model

        return create_model(name, num_classes=CLASSES)
    import timm

    return timm.create_model(name, in_chans=1, num_classes=CLASSES)


def _median_time(fn, iters: int) -> float:
    fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def worker(name: str, iters: int) -> dict[str, Any]:
    """All measurements of one model, in this (fresh) process."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = build(name)
    x, y = torch.randn(BATCH, 1, SIZE, SIZE), torch.randint(CLASSES, (BATCH,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    base_rss = _rss_mib()

    def train_step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer(bf16: bool) -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(x)

    out: dict[str, Any] = {"model": name, "params": sum(p.numel() for p in model.parameters())}
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])
    out["flops_infer"] = counter.get_total_flops()
    model.train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x[:1]), y[:1]).backward()
    out["flops_train"] = counter.get_total_flops()
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        model.train()
        out[f"train_{precision}"] = BATCH / _median_time(lambda: train_step(bf16), iters)
        out[f"peak_rss_mib_after_train_{precision}"] = (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        model.eval()
        out[f"infer_{precision}"] = BATCH / _median_time(lambda: infer(bf16), iters)
    out["base_rss_mib"] = base_rss
    return out


def matmul_peak(iters: int) -> dict[str, float]:
    """FLOP/s of a 1024^3 matmul, fp32 and under bf16 autocast."""
    torch.set_num_threads(THREADS)
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    peak = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            seconds = _median_time(lambda: torch.mm(a, b), iters + 2)
        peak[precision] = 2 * n**3 / seconds
    return peak


def report(results: list[dict[str, Any]], peak: dict[str, float]) -> str:
    ref = next(r for r in results if r["model"].startswith("vit_tiny"))
    lines = [
        f"matmul peak (1024^3 mm, {THREADS} threads): fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, "
        f"bf16 autocast {peak['bf16'] / 1e9:.1f} GFLOP/s",
        "",
        "| model | params (M) | GFLOPs/img (fwd) | precision | infer img/s | x vit_tiny | "
        "train img/s | x vit_tiny | infer % peak | train % peak | peak RSS train (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for p in ("fp32", "bf16"):
            inf, tr = r[f"infer_{p}"], r[f"train_{p}"]
            lines.append(
                f"| {r['model']} | {r['params'] / 1e6:.2f} | {r['flops_infer'] / 1e9:.2f} | {p} | "
                f"{inf:.1f} | {inf / ref[f'infer_{p}']:.2f} | {tr:.1f} | "
                f"{tr / ref[f'train_{p}']:.2f} | {100 * r['flops_infer'] * inf / peak[p]:.0f}% | "
                f"{100 * r['flops_train'] * tr / peak[p]:.0f}% | "
                f"{r[f'peak_rss_mib_after_train_{p}']:.0f} (base {r['base_rss_mib']:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.iters)))
        return
    peak = matmul_peak(args.iters)
    results = []
    for name in args.models:
        proc = subprocess.run([sys.executable, __file__, "--worker", name, "--iters",
                               str(args.iters)], capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    # the matmul peak once more at the end: the machine is shared, keep the higher value
    peak = {k: max(v, matmul_peak(args.iters)[k]) for k, v in peak.items()}
    print(report(results, peak))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"matmul_peak": peak, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
