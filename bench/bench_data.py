"""Data pipeline speed: decoding + band detection per image, and what the in-memory cache buys.

    .venv/bin/python bench/bench_data.py

For each real dataset: images/s of ``read_micrograph`` (decode, band, crop) on one process, and
images/s of two epochs of the training pipeline (``MicrographDataset`` with the train transform,
batch 32, no workers) with ``cache=True``: the first epoch decodes, the second is served from
memory. The ratio is what caching saves per epoch after the first.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from hnf.data.dataset import index_dataset
from hnf.data.reading import read_micrograph
from hnf.data.torch_dataset import MicrographDataset
from hnf.data.transforms import build_train_transform

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def epoch_rate(loader: DataLoader) -> float:
    start = time.perf_counter()
    count = sum(images.shape[0] for images, _ in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print("| dataset | images | decode+band img/s | epoch 1 (decoding) img/s | epoch 2 (cached) img/s | cached / decoding |")
    print("|---|---|---|---|---|---|")
    for name in ("uhcs-3class", "neu-surface", "nffa-sample"):
        index = index_dataset(DATA / name)
        start = time.perf_counter()
        for sample in index.samples:
            read_micrograph(sample.path)
        decode_rate = len(index.samples) / (time.perf_counter() - start)
        dataset = MicrographDataset(index.samples, index.classes, build_train_transform(224), cache=True)
        loader = DataLoader(dataset, batch_size=32, shuffle=True)
        first, second = epoch_rate(loader), epoch_rate(loader)
        print(f"| {name} | {len(index.samples)} | {decode_rate:.0f} | {first:.0f} | {second:.0f} | {second / first:.1f}x |")


if __name__ == "__main__":
    main()
