"""Training-step time of hnf_llm_small with a fixed-size random subset of the text tokens (what
``TextEncoder`` takes) against a coin per token (a count that varies from step to step).

    .venv/bin/python bench/bench_token_subset.py [--rounds 40] [--precision bf16|fp32]

The demo's setting (112 px, patch sizes 16 and 28, Euler ODE, batch 32, 2 threads, a quarter of
the tokens). One step of each variant in turn per round, after two warm-up steps; medians and
their ratio. Under CPU bf16 autocast oneDNN makes its kernels per shape, so a token count that
changes at every step costs kernel creation that a fixed count pays once.
"""

from __future__ import annotations

import argparse
import types

import torch
import torch.nn.functional as F

from hnf.data.synth import SYNTH_CLASSES
from hnf.models.factory import build_classifier
from timing import interleaved_medians  # bench/timing.py, beside this script


def coin_per_token(self) -> torch.Tensor:
    """The sampler this replaced: each real token kept with probability ``token_fraction``,
    the first token of each class always (indices into the real tokens, ascending)."""
    keep = torch.rand(self.token_positions.shape, device=self.token_positions.device) < self.token_fraction
    keep[self.class_anchors] = True
    return keep.nonzero().squeeze(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    args = parser.parse_args()
    torch.set_num_threads(2)
    images, targets = torch.randn(32, 1, 112, 112), torch.randint(len(SYNTH_CLASSES), (32,))
    cases = {}
    for name in ("fixed count (TextEncoder)", "coin per token"):
        torch.manual_seed(0)
        model = build_classifier("hnf_llm_small", len(SYNTH_CLASSES), img_size=112, class_names=list(SYNTH_CLASSES),
                                 scales=[16, 28], ode_method="euler").train()
        if name == "coin per token":
            model.text._sample_tokens = types.MethodType(coin_per_token, model.text)
        optimizer = torch.optim.AdamW(model.parameters(), fused=True)

        def step(model=model, optimizer=optimizer) -> None:
            with torch.autocast("cpu", torch.bfloat16, enabled=args.precision == "bf16"):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        cases[name] = step
    medians = interleaved_medians(cases, args.rounds)
    reference = medians["coin per token"]
    print(f"{args.precision}, {args.rounds} rounds, median step:")
    for name, seconds in medians.items():
        print(f"  {name:28s} {seconds * 1000:7.1f} ms  {seconds / reference:.2f}x")


if __name__ == "__main__":
    main()
