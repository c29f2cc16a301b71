"""Acceptance numbers of information-band detection (foundation issue), printed as Markdown.

    .venv/bin/python bench/band_acceptance.py [--per-class 50] [--size 256]

* nffa-sample: detected top row against ``banners.json`` (must be within 4 rows for all three);
* uhcs-3class and neu-surface (no bands): share of images flagged (must be <= 1%);
* synthetic micrographs (all ten classes, PNG round trip): with a burnt-in band, share found with
  the top row within 4 rows (>= 98%); without, share flagged (<= 1%).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hnf.data.band import detect_band
from hnf.data.dataset import index_dataset
from hnf.data.reading import read_grey
from hnf.data.synth import SYNTH_CLASSES, synth_image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def png_round_trip(image: np.ndarray) -> np.ndarray:
    """What the reader sees after the image is written as an 8-bit PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    buffer.seek(0)
    return np.asarray(Image.open(buffer), dtype=np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    start = time.perf_counter()

    truth = json.loads((DATA / "nffa-sample/banners.json").read_text())
    print("| image | banners.json top | detected top | error (rows) |\n|---|---|---|---|")
    for name, rows in truth.items():
        if name.startswith("_"):
            continue
        band = detect_band(read_grey(DATA / "nffa-sample" / name)[0])
        top = band.top if band else None
        error = abs(top - rows["top"]) if band else "missed"
        print(f"| {name} | {rows['top']} | {top} | {error} |")

    print("\n| dataset | images | flagged | share |\n|---|---|---|---|")
    for dataset in ("uhcs-3class", "neu-surface"):
        samples = index_dataset(DATA / dataset).samples
        flagged = sum(detect_band(read_grey(s.path)[0]) is not None for s in samples)
        print(f"| {dataset} | {len(samples)} | {flagged} | {flagged / len(samples):.2%} |")

    found = flagged = total = 0
    for class_index in range(len(SYNTH_CLASSES)):
        for image_index in range(args.per_class):
            clean, _ = synth_image(0, class_index, image_index, args.size, band_prob=0.0)
            banded, rows = synth_image(0, class_index, image_index, args.size, band_prob=1.0)
            flagged += detect_band(png_round_trip(clean)) is not None
            band = detect_band(png_round_trip(banded))
            found += band is not None and abs(band.top - rows[0]) <= 4
            total += 1
    print(f"\n| synthetic ({total} images, {args.size} px) | share |\n|---|---|")
    print(f"| band found, top within 4 rows | {found / total:.2%} |")
    print(f"| band-free images flagged | {flagged / total:.2%} |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
