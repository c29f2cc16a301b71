"""TrainConfig derives the resize before the crop from the crop size (hnf.data.sizes.resize_for)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from hnf.train.config import TrainConfig


def test_a_caller_who_sets_only_img_size_gets_the_matching_resize() -> None:
    assert TrainConfig(data="d").resize == 256  # 224 px: round(224 * 8 / 7)
    assert TrainConfig(data="d", img_size=112).resize == 128
    assert TrainConfig(data="d", img_size=96).resize == 110
    assert TrainConfig(data="d", img_size=112, resize=160).resize == 160  # given: kept


def test_the_saved_config_reloads_with_its_resize(tmp_path: Path) -> None:
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps(asdict(TrainConfig(data="d", img_size=112))))
    assert TrainConfig(**json.loads(saved.read_text())).resize == 128

