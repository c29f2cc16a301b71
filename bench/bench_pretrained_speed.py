"""Training and inference speed and peak memory of the pretrained models against the scratch ones.

Models: hnf_lite0, hnf_llm_lite0, EfficientNet-Lite0 (the pretrained baseline), resnet18 and
hnf_small, all with one grey input channel, 3 classes, batch ``--batch`` at ``--img-size`` px, in
bf16 autocast and in fp32. Each (model, precision) runs in a fresh subprocess, so its peak resident
memory (``ru_maxrss``) is its own; within it, ``--steps`` AdamW training steps after one warm-up step,
then ``--steps`` inference passes (no gradient) after one warm-up pass, on random inputs (speed
does not depend on the pixels). Times are medians; every row is also given as a ratio to
resnet18's in the same precision, since absolute figures drift on a shared machine.

Usage: ``python bench/bench_pretrained_speed.py --json bench/results/pretrained/speed_cpu.json``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

from timing import interleaved_medians  # bench/timing.py, beside this script

MODELS = ("hnf_lite0", "hnf_llm_lite0", "efficientnet_lite0", "resnet18", "hnf_small")
REFERENCE = "resnet18"


def measure(name: str, precision: str, batch: int, img_size: int, steps: int, threads: int) -> dict[str, float]:
    """One model in this process: training and inference images/s, peak RSS in MiB."""
    import torch

    from hnf.models.factory import build_classifier
    from hnf.models.pretrained import LITE0_WHEEL

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    extra = {"weights": LITE0_WHEEL} if name == "efficientnet_lite0" else {}
    classes = ["network", "pearlite", "spheroidite"]
    model = build_classifier(name, num_classes=3, img_size=img_size, class_names=classes, **extra)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    x = torch.randn(batch, 1, img_size, img_size)
    y = torch.randint(0, 3, (batch,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def train_step() -> None:
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer() -> None:
        with torch.no_grad(), autocast:
            model(x)

    model.train()
    train = interleaved_medians({"train": train_step}, rounds=steps, warmup=1)["train"]
    model.eval()
    inference = interleaved_medians({"infer": infer}, rounds=steps, warmup=1)["infer"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"train_images_per_s": batch / train, "infer_images_per_s": batch / inference, "peak_rss_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.batch, args.img_size, args.steps, args.threads)))
        return
    rows = []
    for precision in args.precisions.split(","):
        for name in MODELS:
            command = [sys.executable, __file__, "--one", name, precision, "--batch", str(args.batch),
                       "--img-size", str(args.img_size), "--steps", str(args.steps), "--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append({"model": name, "precision": precision, **json.loads(output.strip().splitlines()[-1])})
            print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        reference = next(r for r in rows if r["model"] == REFERENCE and r["precision"] == row["precision"])
        for key in ("train_images_per_s", "infer_images_per_s", "peak_rss_mib"):
            row[f"{key}_vs_{REFERENCE}"] = row[key] / reference[key]
    lines = ["| model | precision | train img/s | x resnet18 | inference img/s | x resnet18 | peak RSS (MiB) | x resnet18 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['train_images_per_s']:.1f} | "
                     f"{r['train_images_per_s_vs_resnet18']:.2f} | {r['infer_images_per_s']:.1f} | "
                     f"{r['infer_images_per_s_vs_resnet18']:.2f} | {r['peak_rss_mib']:.0f} | {r['peak_rss_mib_vs_resnet18']:.2f} |")
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"batch": args.batch, "img_size": args.img_size, "threads": args.threads,
                                         "steps": args.steps, "rows": rows, "table": lines}, indent=2) + "\n")


if __name__ == "__main__":
    main()
