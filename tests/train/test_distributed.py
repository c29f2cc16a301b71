"""torchrun with 2 CPU processes (gloo) trains exactly like one process at the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hnf.data.synth import write_synthetic_dataset

TINY = ["--model", "hnf_small", "--set", "embed_dim=32", "--set", "num_heads=2", "--set", "scales=[16,32]",
        "--img-size", "64", "--batch-size", "8", "--epochs", "2", "--precision", "fp32", "--seed", "0"]


def _run(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / "data", per_class=8, size=72, seed=5)
    bin_dir = Path(sys.executable).parent
    _run([str(bin_dir / "hnf"), "train", "--data", str(data), "--out", str(tmp_path / "single"), *TINY], tmp_path)
    _run([str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m", "hnf", "train",
          "--data", str(data), "--out", str(tmp_path / "ddp"), *TINY], tmp_path)
    single = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    ddp = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert len(single) == len(ddp) == 2
    assert ddp[0]["first_step_loss"] == pytest.approx(single[0]["first_step_loss"], abs=1e-5)
    for a, b in zip(single, ddp):
        assert b["step"] == a["step"]
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-3)
    final_single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    final_ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert final_ddp["top1"] == pytest.approx(final_single["top1"], abs=1 / final_single["images"] + 1e-9)
    assert final_ddp["test_loss"] == pytest.approx(final_single["test_loss"], abs=1e-3)
    assert (tmp_path / "ddp" / "split.json").read_text() == (tmp_path / "single" / "split.json").read_text()
