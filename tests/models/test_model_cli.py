"""``hnf model info`` and ``hnf model list``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hnf.cli import app


def printed_rows(output: str) -> dict[str, list[str]]:
    """The cells of the table ``hnf model info`` prints, by component (box-drawn rows)."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        if len(cells) == 4 and cells[0] and cells[0] != "component":
            rows[cells[0]] = cells[1:]
    return rows


def test_model_info_prints_the_numbers_it_writes_as_json(tmp_path: Path) -> None:
    """Every printed row (params, MFLOPs, share of the FLOPs) is the JSON's figure, and the
    components add up to the total; the JSON's figures themselves are checked against
    FlopCounterMode below."""
    out = tmp_path / "info.json"
    result = CliRunner().invoke(app, ["model", "info", "hnf_small", "--json", str(out),
                                      "--no-speed"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert 0 < report["flops"] <= 1.5e9 and report["params"] > 0
    assert set(report["components"]) >= {"patch_embed", "attention", "ode", "graph", "gate",
                                         "readout", "head"}
    assert all(set(c) == {"params", "flops"} for c in report["components"].values())
    rows = printed_rows(result.output)
    assert set(rows) == {*report["components"], "total"}
    for name, figures in [*report["components"].items(), ("total", report)]:
        params, mflops, share = rows[name]
        assert int(params.replace(",", "")) == figures["params"], name
        assert float(mflops.replace(",", "")) == round(figures["flops"] / 1e6, 1), name
        assert float(share.rstrip("%")) == round(100 * figures["flops"] / report["flops"], 1), name
    assert sum(int(rows[name][0].replace(",", "")) for name in report["components"]) == report["params"]


def test_model_info_unknown_model_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["model", "info", "nope", "--no-speed"])
    assert result.exit_code == 2
    assert "unknown model 'nope'" in result.output


def test_model_list() -> None:
    result = CliRunner().invoke(app, ["model", "list"])
    assert result.exit_code == 0 and "hnf_small" in result.output


def test_model_info_works_for_every_registered_model_and_counts_per_image_flops(tmp_path: Path) -> None:
    import pytest
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hnf.models import create_model, list_models

    for name in list_models():
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(app, ["model", "info", name, "--json", str(out), "--no-speed"])
        assert result.exit_code == 0, (name, result.output)
        report = json.loads(out.read_text())
        torch.manual_seed(0)
        model = create_model(name).eval()
        x = torch.zeros(1, 1, 224, 224)
        with torch.no_grad():
            model(x)  # warm: text features are computed once, not per image
            with FlopCounterMode(display=False) as counter:
                model(x)
        assert report["flops"] == counter.get_total_flops(), name
        assert report["params"] == sum(p.numel() for p in model.parameters()), name
        assert sum(c["params"] for c in report["components"].values()) == report["params"], name
        assert sum(c["flops"] for c in report["components"].values()) == pytest.approx(report["flops"], rel=0.01), name
    lite0 = json.loads((tmp_path / "hnf_llm_lite0.json").read_text())
    assert {"trunk", "text", "cross_modal", "head"} <= set(lite0["components"])
