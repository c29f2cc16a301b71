"""Atomic writes are durable: the file and, after the rename, its folder are fsynced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hnf.atomic import atomic_write_bytes


def test_a_durable_write_fsyncs_the_file_then_its_folder(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    target = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"payload")
    assert target.read_bytes() == b"payload" and synced == ["file", "dir"]
    synced.clear()
    atomic_write_bytes(tmp_path / "b.bin", b"again", durable=False)
    assert synced == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "sub"]  # no temporary file left
