"""Training-step time of model variants at the demo's setting, as ratios to the first variant.

    .venv/bin/python bench/bench_train_step.py [--rounds 7] [--json out.json] [NAME=JSON ...]
    .venv/bin/python bench/bench_train_step.py 'all={"text_token_fraction": 1.0}' 'quarter={}'

Each variant is ``NAME=JSON``: ``model`` (default hnf_llm_small) and any model overrides. Every
variant is built in this one process (seed 0, ten synthetic class names, 112 px, patch sizes
16 and 28, as ``hnf demo`` trains), and one training step (forward, cross-entropy, backward, fused
AdamW) at batch 32 on 2 threads is timed for each in turn, over ``--rounds`` interleaved rounds
after two warm-up steps. The median per variant and its ratio to the first are printed: ratios
within one run are the numbers to trust on a shared machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from hnf.data.synth import SYNTH_CLASSES
from hnf.models.factory import build_classifier
from timing import interleaved_medians  # bench/timing.py, beside this script

DEFAULT_VARIANTS = (
    'all_tokens_rk4={"model": "hnf_llm_small", "text_token_fraction": 1.0}',
    'quarter_rk4={"model": "hnf_llm_small"}',
    'quarter_euler={"model": "hnf_llm_small", "ode_method": "euler"}',
    'hnf_small_rk4={"model": "hnf_small"}',
    'hnf_small_euler={"model": "hnf_small", "ode_method": "euler"}',
)
"""The rows of BENCHMARKS.md: all or a quarter of the text tokens, rk4 or Euler, and the backbone."""
BATCH, IMG_SIZE, SCALES = 32, 112, [16, 28]


def parse_variant(spec: str) -> tuple[str, str, dict]:
    name, _, overrides = spec.partition("=")
    options = json.loads(overrides or "{}")
    return name, options.pop("model", "hnf_llm_small"), options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    images, targets = torch.randn(BATCH, 1, IMG_SIZE, IMG_SIZE), torch.randint(len(SYNTH_CLASSES), (BATCH,))
    steps = {}
    for spec in args.variants:
        name, model_name, overrides = parse_variant(spec)
        torch.manual_seed(0)
        model = build_classifier(model_name, len(SYNTH_CLASSES), img_size=IMG_SIZE, class_names=list(SYNTH_CLASSES),
                                 scales=SCALES, **overrides).train()
        optimizer = torch.optim.AdamW(model.parameters(), fused=True)

        def step(model=model, optimizer=optimizer) -> None:
            loss = F.cross_entropy(model(images).float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[name] = step
    medians = interleaved_medians(steps, args.rounds)
    reference = next(iter(medians.values()))
    rows = {name: {"step_ms": 1000 * m, "ratio": m / reference} for name, m in medians.items()}
    for name, row in rows.items():
        print(f"{name:16s} {row['step_ms']:8.1f} ms  {row['ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"variants": args.variants, "rounds": args.rounds, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
