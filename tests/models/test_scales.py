"""One rule carries the design's patch sizes to other image sizes (hnf.models.scales_for_image)."""

from __future__ import annotations

import pytest

from hnf.models import ConfigError, scales_for_image


def test_the_two_ways_of_carrying_the_design_agree_at_224() -> None:
    assert scales_for_image(224, keep="grids") == scales_for_image(224, keep="patches") == (16, 28, 32)


def test_keeping_the_patch_sizes_is_the_demo_setting_at_112() -> None:
    assert scales_for_image(112, keep="patches") == (16, 28)  # grids of 7x7 and 4x4
    assert scales_for_image(112, stem="conv", keep="patches") == (16, 28)  # multiples of the stride already
    assert scales_for_image(448, keep="patches") == (16, 28, 32)


def test_no_carried_size_or_an_unknown_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="divides img_size 100"):
        scales_for_image(100, keep="patches")
    with pytest.raises(ConfigError, match="keep must be one of grids, patches"):
        scales_for_image(112, keep="pixels")
