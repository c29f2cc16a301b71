"""``hnf model info`` and ``hnf model list``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hnf.cli import app


def test_model_info_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "info.json"
    result = CliRunner().invoke(app, ["model", "info", "hnf_small", "--json", str(out),
                                      "--no-speed"])
    assert result.exit_code == 0, result.output
    assert "ode" in result.output and "total" in result.output
    report = json.loads(out.read_text())
    assert 0 < report["flops"] <= 1.5e9 and report["params"] > 0
    assert set(report["components"]) >= {"patch_embed", "attention", "ode", "graph", "gate",
                                         "readout", "head"}
    assert all(set(c) == {"params", "flops"} for c in report["components"].values())


def test_model_info_unknown_model_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["model", "info", "nope", "--no-speed"])
    assert result.exit_code == 2
    assert "unknown model 'nope'" in result.output


def test_model_list() -> None:
    result = CliRunner().invoke(app, ["model", "list"])
    assert result.exit_code == 0 and "hnf_small" in result.output
