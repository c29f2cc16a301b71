"""How sharp training crops are against test crops, per class and crop size.

    .venv/bin/python bench/crop_sharpness.py --data ../shared/data/neu-surface --classes crazing rolled-in_scale

Sharpness is the mean absolute difference between neighbouring pixels of the normalised crop
(the images are standardised per image, so it compares texture, not contrast). Each image is
resized as training resizes it (``resize_for(img_size)``), then cropped by the evaluation
transform (centre crop, no resampling) and by the training transform (random resized crop, which
resamples; the mean over ``--draws`` draws). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hnf.data.reading import IMAGE_EXTENSIONS, read_micrograph
from hnf.data.torch_dataset import resize_short_side
from hnf.data.transforms import build_eval_transform, build_train_transform, resize_for


def neighbour_difference(x: torch.Tensor) -> float:
    """Mean |x[i+1, j] - x[i, j]| and |x[i, j+1] - x[i, j]| over a ``...xHxW`` tensor."""
    rows = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    cols = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return float(rows + cols) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--classes", nargs="+", required=True)
    parser.add_argument("--sizes", nargs="+", type=int, default=[112, 224])
    parser.add_argument("--images", type=int, default=40, help="first N images of each class")
    parser.add_argument("--draws", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    print("| img size | class | test crops | training crops | ratio |\n|---|---|---|---|---|")
    for size in args.sizes:
        evaluate, augment = build_eval_transform(size), build_train_transform(size)
        for name in args.classes:
            paths = sorted(p for p in (args.data / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            test = train = 0.0
            for path in paths[: args.images]:
                image = resize_short_side(read_micrograph(path).grey, resize_for(size))
                test += neighbour_difference(evaluate(image))
                train += sum(neighbour_difference(augment(image)) for _ in range(args.draws)) / args.draws
            count = min(len(paths), args.images)
            print(f"| {size} | {name} | {test / count:.3f} | {train / count:.3f} | {train / test:.2f} |")


if __name__ == "__main__":
    main()
