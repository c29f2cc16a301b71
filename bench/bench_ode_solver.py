"""The ODE flows: ``torchdiffeq.odeint`` against our fixed-step solver, eager and compiled.

    .venv/bin/python bench/bench_ode_solver.py [--model hnf_small] [--rounds 7] [--bf16] [--no-compile] [--json out.json]

One training step (forward, cross-entropy, backward, fused AdamW) of ``--model`` at the demo's
setting (112 px, patch sizes 16 and 28, batch 32, 2 threads; ``--bf16``: under bf16 autocast, as
training runs on a CPU with bf16 instructions) is timed three ways in this one
process, over ``--rounds`` interleaved rounds after two warm-up steps:

- ``torchdiffeq``: ``hnf.models.ode.integrate`` replaced by ``torchdiffeq.odeint`` (what
  ``hnf`` used before its own solver), eager;
- ``native``: our solver (``hnf.models.ode``), eager;
- ``native_compiled``: the same model under ``torch.compile`` (inductor), the model's first
  compiled steps (compile time) reported apart.

All three start from the same weights. Medians and ratios to ``torchdiffeq`` are printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchdiffeq import odeint

from hnf.data.synth import SYNTH_CLASSES
from hnf.models import ode
from hnf.models.factory import build_classifier
from timing import interleaved_medians  # bench/timing.py, beside this script

BATCH, IMG_SIZE, SCALES = 32, 112, [16, 28]


def torchdiffeq_integrate(func: nn.Module, h0: Tensor, t0: float, t1: float, method: str = "rk4",
                          steps: int = 1, adjoint: bool = False) -> Tensor:
    """``integrate`` as it was: ``torchdiffeq.odeint`` on a two-point time grid."""
    t = torch.tensor([t0, t1], dtype=torch.float32, device=h0.device)
    return odeint(func, h0, t, method=method, options={"step_size": abs(t1 - t0) / steps})[-1]


def training_step(model: nn.Module, images: Tensor, targets: Tensor, bf16: bool,
                  solver: Callable[..., Tensor] | None = None) -> Callable[[], None]:
    """A closure running one AdamW step of ``model``, with ``solver`` patched in when given."""
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()

    def step() -> None:
        with mock.patch.object(ode, "integrate", solver) if solver else nullcontext(), autocast:
            loss = F.cross_entropy(model(images).float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hnf_small")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    images, targets = torch.randn(BATCH, 1, IMG_SIZE, IMG_SIZE), torch.randint(len(SYNTH_CLASSES), (BATCH,))
    model = build_classifier(args.model, len(SYNTH_CLASSES), img_size=IMG_SIZE,
                             class_names=list(SYNTH_CLASSES), scales=SCALES).train()
    steps = {"torchdiffeq": training_step(copy.deepcopy(model), images, targets, args.bf16, torchdiffeq_integrate),
             "native": training_step(copy.deepcopy(model), images, targets, args.bf16)}
    result: dict = {"model": args.model, "batch": BATCH, "img_size": IMG_SIZE, "bf16": args.bf16}
    if not args.no_compile:
        steps["native_compiled"] = training_step(torch.compile(copy.deepcopy(model)), images, targets, args.bf16)
        start = time.perf_counter()
        steps["native_compiled"]()
        result["compile_s"] = time.perf_counter() - start
        print(f"first compiled step (compilation): {result['compile_s']:.1f} s", flush=True)
    medians = interleaved_medians(steps, args.rounds)
    reference = medians["torchdiffeq"]
    result["rows"] = {name: {"step_ms": 1000 * m, "ratio": m / reference} for name, m in medians.items()}
    print(f"{args.model}, batch {BATCH}, {IMG_SIZE} px, {'bf16' if args.bf16 else 'fp32'}, median of {args.rounds} rounds:")
    for name, row in result["rows"].items():
        print(f"  {name:16s} {row['step_ms']:8.1f} ms  x{row['ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
