"""Self-attention kernels on the CPU: PyTorch's fused SDPA against the explicit product.

    .venv/bin/python bench/bench_attention.py [--rounds 9] [--json out.json]

Two measurements, each interleaved over ``--rounds`` rounds in this one process (2 threads) and
reported as medians with the ratio explicit / SDPA (below 1: the explicit product is faster):

* one transformer block (timm ``Block``, d=192, 3 heads, as HNF's sequence expert), forward and
  backward at batch 32, for the token counts of HNF's scales at 112 and 224 px (16, 49, 196);
* one whole ``hnf_llm_small`` training step at the demo's setting (112 px, patch sizes 16 and 28,
  Euler ODE, batch 32, fused AdamW).

Each in fp32 and under bf16 autocast. :class:`hnf.models.attention.SelfAttention` takes the
explicit product only on the CPU under bf16 autocast; here the choice is forced both ways.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block

import hnf.models.attention as attention
from hnf.data.synth import SYNTH_CLASSES
from hnf.models.factory import build_classifier
from timing import interleaved_medians  # bench/timing.py, beside this script

BATCH = 32
TOKENS = (16, 49, 196)


def _block_step(tokens: int, bf16: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    block = Block(192, 3, 4.0, qkv_bias=True, attn_layer=attention.SelfAttention)
    x = torch.randn(BATCH, tokens, 192, requires_grad=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = block(x)
        y.float().sum().backward()
    return step


def _model_step(bf16: bool) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_classifier("hnf_llm_small", len(SYNTH_CLASSES), img_size=112, class_names=list(SYNTH_CLASSES),
                             scales=[16, 28], ode_method="euler").train()
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    images, targets = torch.randn(BATCH, 1, 112, 112), torch.randint(len(SYNTH_CLASSES), (BATCH,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def _forced(step: Callable[[], None], explicit: bool) -> Callable[[], None]:
    """``step`` with SelfAttention's kernel choice forced to the explicit product or to SDPA."""
    def run() -> None:
        chooser = attention.prefers_explicit_attention
        attention.prefers_explicit_attention = lambda x: explicit
        try:
            step()
        finally:
            attention.prefers_explicit_attention = chooser
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    cases: dict[tuple[str, str, bool], Callable[[], None]] = {}
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        steps = {f"block N={tokens}": _block_step(tokens, bf16) for tokens in TOKENS}
        steps["hnf_llm_small step"] = _model_step(bf16)
        for label, step in steps.items():
            for explicit in (False, True):
                cases[label, precision, explicit] = _forced(step, explicit)
    medians = interleaved_medians(cases, args.rounds)
    rows = [{"case": label, "precision": precision, "sdpa_ms": 1000 * medians[label, precision, False],
             "explicit_ms": 1000 * medians[label, precision, True]}
            for label, precision, explicit in cases if not explicit]
    print("| case | precision | SDPA (ms) | explicit (ms) | explicit / SDPA |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['precision']} | {row['sdpa_ms']:.1f} | {row['explicit_ms']:.1f} | "
              f"{row['explicit_ms'] / row['sdpa_ms']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
