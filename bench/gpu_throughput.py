"""Training throughput on a GPU: ``hnf_base`` against timm ``vit_small_patch16_224``.

Both models train for ``--steps`` AdamW steps on 224x224 synthetic micrographs (the ten NFFA
classes of ``hnf data synth``, drawn once and kept on the GPU) at batch ``--batch`` under bf16
autocast; images/s is measured over the steps after ``--warmup``, with the GPU synchronised at
both ends. The two models run in the same process, one after the other, so their ratio is
meaningful even where absolute numbers drift. ``--modes compiled`` runs both under ``torch.compile``.

Usage (on a CUDA machine): ``python bench/gpu_throughput.py --json gpu.json``
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

from hnf import create_model
from hnf.data.synth import SYNTH_CLASSES, synth_image


def _draw(args: tuple[int, int, int]) -> np.ndarray:
    class_index, image_index, size = args
    return synth_image(0, class_index, image_index, size)[0]


def synthetic_batch_pool(count: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` synthetic micrographs (classes round-robin), normalised, on ``device``."""
    jobs = [(i % len(SYNTH_CLASSES), i // len(SYNTH_CLASSES), size) for i in range(count)]
    with ProcessPoolExecutor() as pool:
        images = list(pool.map(_draw, jobs, chunksize=8))
    x = torch.from_numpy(np.stack(images)).float().sub(0.5).div(0.25).unsqueeze(1)
    y = torch.tensor([j[0] for j in jobs])
    return x.to(device), y.to(device)


def train_throughput(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int,
                     steps: int, warmup: int) -> dict[str, float]:
    """Images/s of full AdamW training steps under bf16 autocast, and the loss trajectory."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    gen = torch.Generator(device=x.device).manual_seed(0)
    losses = []
    start = 0.0
    torch.cuda.reset_peak_memory_stats()
    for step in range(steps):
        if step == warmup:
            torch.cuda.synchronize()
            start = time.perf_counter()
        idx = torch.randint(0, x.shape[0], (batch,), device=x.device, generator=gen)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            losses.append(round(loss.item(), 4))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images_per_s": (steps - warmup) * batch / seconds, "timed_steps": steps - warmup,
            "seconds": seconds, "loss_every_50_steps": losses,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=1280)
    parser.add_argument("--modes", nargs="+", default=["eager"], choices=["eager", "compiled"],
                        help="compiled: the model wrapped in torch.compile (default mode)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    t0 = time.perf_counter()
    x, y = synthetic_batch_pool(args.images, 224, device)
    result: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                    "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
                    "precision": "bf16 autocast", "images_drawn": args.images,
                    "draw_seconds": time.perf_counter() - t0, "runs": {}}
    builders = {
        "hnf_base": lambda: create_model("hnf_base", num_classes=10),
        "vit_small_patch16_224": lambda: timm.create_model(
            "vit_small_patch16_224", pretrained=False, in_chans=1, num_classes=10),
    }
    for mode in args.modes:
        for name, build in builders.items():
            torch.manual_seed(0)
            model = build().to(device)
            if mode == "compiled":
                model = torch.compile(model)
            t1 = time.perf_counter()
            run = train_throughput(model, x, y, args.batch, args.steps, args.warmup)
            run["wall_seconds"] = time.perf_counter() - t1
            result["runs"][f"{name}/{mode}"] = run
            print(f"{name:24s} {mode:8s} {run['images_per_s']:8.1f} img/s  "
                  f"peak {run['peak_memory_gib']:.1f} GiB  losses {run['loss_every_50_steps']}",
                  flush=True)
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
            del model
            torch.cuda.empty_cache()
        hnf = result["runs"][f"hnf_base/{mode}"]["images_per_s"]
        vit = result["runs"][f"vit_small_patch16_224/{mode}"]["images_per_s"]
        print(f"{mode}: hnf_base / vit_small = {hnf / vit:.3f}", flush=True)


if __name__ == "__main__":
    main()
