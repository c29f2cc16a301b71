"""Exact and near duplicate groups.

* Exact: identical file bytes (SHA-256).
* Near: 256-bit perceptual hashes (``imagehash.phash`` with ``hash_size=16``: the signs of the
  lowest 16x16 DCT coefficients of the 64x64 grey thumbnail, against their median) that differ in
  at most ``NEAR_HAMMING_BITS`` = 24 bits (9%). Micrographs are textures: the common 64-bit pHash
  puts unrelated fields of one steel within 4-6 bits of each other, while at 256 bits distinct
  fields of ``uhcs-3class`` lie 56 or more bits apart and the re-imaged fields of one sample
  (shifted, re-contrasted) lie 4-22 bits apart (measured with ``hnf data inspect``).

Groups are the connected components of the "is a duplicate of" relation (union-find), so a
chain of near copies forms one group.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

HASH_SIZE = 16
NEAR_HAMMING_BITS = 24
_CHUNK = 256


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def perceptual_hash(grey: np.ndarray) -> str:
    """256-bit pHash of a grey float image in [0, 1], as 64 hex digits."""
    image = Image.fromarray(np.round(grey * 255).astype(np.uint8), mode="L")
    return str(imagehash.phash(image, hash_size=HASH_SIZE))


def _hash_words(hashes: Sequence[str]) -> np.ndarray:
    """Hex hashes as an (n, words) uint64 array, for vectorised Hamming distances."""
    raw = b"".join(bytes.fromhex(h) for h in hashes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), -1)


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)

    def groups(self) -> list[list[int]]:
        members: dict[int, list[int]] = defaultdict(list)
        for item in range(len(self.parent)):
            members[self.find(item)].append(item)
        return [group for group in members.values() if len(group) > 1]


def exact_groups(digests: Sequence[str]) -> list[list[int]]:
    """Indices of items with identical digests, one list per group of two or more."""
    by_digest: dict[str, list[int]] = defaultdict(list)
    for index, digest in enumerate(digests):
        by_digest[digest].append(index)
    return sorted(group for group in by_digest.values() if len(group) > 1)


def near_pairs(hashes: Sequence[str], max_bits: int = NEAR_HAMMING_BITS) -> list[tuple[int, int]]:
    """All index pairs (i < j) whose hashes differ in at most ``max_bits`` bits."""
    if not hashes:
        return []
    values = _hash_words(hashes)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(values), _CHUNK):
        block = values[start : start + _CHUNK]
        distance = np.bitwise_count(block[:, None, :] ^ values[None, :, :]).sum(axis=-1)
        rows, cols = np.nonzero(distance <= max_bits)
        keep = cols > rows + start
        pairs.extend(zip((rows[keep] + start).tolist(), cols[keep].tolist()))
    return pairs


def near_groups(hashes: Sequence[str], max_bits: int = NEAR_HAMMING_BITS) -> list[list[int]]:
    """Connected groups of near-duplicate items (pHash distance <= ``max_bits``)."""
    union = _UnionFind(len(hashes))
    for a, b in near_pairs(hashes, max_bits):
        union.union(a, b)
    return sorted(union.groups())


def duplicate_group_ids(size: int, groups: Sequence[Sequence[int]]) -> list[int]:
    """A group id per item such that items of overlapping groups share one id."""
    union = _UnionFind(size)
    for group in groups:
        for other in group[1:]:
            union.union(group[0], other)
    return [union.find(item) for item in range(size)]
