"""Where the time of a model goes: ``torch.profiler`` table by operator (CPU, 2 threads).

    .venv/bin/python bench/profile_backbone.py [--model hnf_small] [--bf16] [--train]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import profile

from hnf.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hnf_small")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--train", action="store_true", help="profile forward + backward")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = create_model(args.model).train(args.train)
    x, y = torch.randn(args.batch, 1, 224, 224), torch.randint(10, (args.batch,))

    def step() -> None:
        with torch.set_grad_enabled(args.train), torch.autocast("cpu", torch.bfloat16,
                                                                enabled=args.bf16):
            logits = model(x)
        if args.train:
            F.cross_entropy(logits.float(), y).backward()

    step()
    with profile() as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
