"""The command line starts without torch: help and argument errors import no heavy library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "timm", "transformers", "fastapi", "torchvision", "onnxruntime")
COMMANDS = [[], ["train"], ["evaluate"], ["cv"], ["ablate"], ["baselines"], ["demo"], ["describe"],
            ["predict"], ["serve"], ["data"], ["data", "inspect"], ["data", "synth"], ["model"],
            ["model", "info"], ["text"], ["text", "pretrain"], ["export"], ["export", "onnx"]]
PROBE = """
import json, sys
from typer.testing import CliRunner
from hnf.cli import app
result = CliRunner().invoke(app, json.loads(sys.argv[1]))
print(json.dumps({"exit": result.exit_code, "output": result.output[:200] + result.output[-400:],
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))}))
"""


def _invoke(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hnf")
def test_help_imports_no_heavy_library(command: list[str]) -> None:
    result = _invoke([*command, "--help"])
    assert result["exit"] == 0, result["output"]
    assert "Usage" in result["output"]
    assert result["heavy"] == []


def test_argument_errors_import_no_heavy_library() -> None:
    for args, message in [(["train"], "give the dataset with --data"), (["cv", "--folds", "1", "--data", "x"], "greater than or equal to 2"),
                          (["baselines", "--data", "x", "--timm", "resnet18"], "expected NAME=WEIGHTS")]:
        result = _invoke(args)
        assert result["exit"] == 2, (args, result)
        assert message in result["output"], (args, result["output"])
        assert result["heavy"] == [], args


def test_a_device_this_machine_lacks_is_one_line_naming_what_is_available(tmp_path) -> None:
    import torch

    from hnf.errors import HnfError
    from hnf.train.device import pick_device

    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(HnfError, match=rf"^device '{missing}' is not available on this machine; available here: cpu"):
        pick_device(missing)
    with pytest.raises(HnfError, match=r"^unknown device 'gpu0'; available here: cpu"):
        pick_device("gpu0")
    assert pick_device("cpu") == torch.device("cpu")
    done = subprocess.run([sys.executable, "-m", "hnf", "train", "--data", str(tmp_path), "--device", missing,
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert f"device '{missing}' is not available on this machine" in done.stdout + done.stderr
    assert not (tmp_path / "run").exists()  # nothing written for a run that cannot start
