"""``hnf demo`` end to end on a small synthetic set."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hnf.cli import app


def test_demo_writes_report_and_checks_bands(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--per-class", "4", "--size", "128", "--band-prob", "0.5"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert len(report["classes"]) == 10 and all(count == 4 for count in report["classes"].values())
    assert (out / "contact_sheet.png").stat().st_size > 10_000
    assert "band detector against the generator's truth" in result.output
    assert f"report: {out / 'report.json'}" in result.output.replace("\n", "")
