"""The expert table: the layer's experts, the config's expert list, the component report and the
ablation rows all follow :data:`hnf.models.experts.EXPERTS`, and a third base expert needs one row."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

import pytest
import torch
from torch import nn

from hnf.models import HNF, HNFConfig, experts
from hnf.models.config import ConfigError
from hnf.models.experts import EXPERTS, ExpertSpec, InteractionExpert, active_experts, base_experts
from hnf.models.info import model_report
from hnf.models.layer import HNFLayer
from hnf.train.experiments import ablation_grid

TINY = dict(embed_dim=32, num_heads=2, readout_heads=2, scales=(16, 32), img_size=64)


def test_the_table_names_each_expert_once_and_switches_base_experts_by_config_fields() -> None:
    names = [spec.name for spec in EXPERTS]
    assert len(set(names)) == len(names)
    bool_fields = {f.name for f in fields(HNFConfig) if f.type in (bool, "bool")}
    assert {spec.flag for spec in base_experts()} <= bool_fields
    assert HNFConfig().experts == ("sequence", "graph", "interaction")


@pytest.mark.parametrize("switches", [dict(zip(("use_sequence", "use_graph"), values))
                                      for values in itertools.product((True, False), repeat=2) if any(values)])
def test_the_layer_builds_the_configs_experts_in_gate_order(switches: dict[str, bool]) -> None:
    cfg = HNFConfig(**TINY, **switches)
    layer = HNFLayer(cfg, 16, first=True, drop_path=0.0)
    assert isinstance(layer.experts, nn.ModuleDict)
    assert tuple(layer.experts) == cfg.experts == tuple(spec.name for spec in active_experts(cfg))
    tokens, grid, weights = layer(torch.randn(2, 1, 64, 64))
    assert tokens.shape == (2, 16, 32) and grid == (4, 4) and weights.shape == (2, 16, len(cfg.experts))


def test_no_base_expert_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="use_sequence and use_graph cannot both be False"):
        HNFConfig(use_sequence=False, use_graph=False)


def test_the_interaction_expert_reads_as_many_inputs_as_there_are_base_experts() -> None:
    expert = InteractionExpert(8, 3)
    assert expert.mlp.fc1.in_features == 24
    x = torch.randn(2, 5, 8)
    assert expert(x, [torch.randn(2, 5, 8) for _ in range(3)]).shape == (2, 5, 8)


@dataclass(frozen=True)
class _ThreeExperts(HNFConfig):
    use_linear: bool = True


def _linear(cfg: HNFConfig, drop_path: float, num_base: int) -> nn.Module:
    return nn.Linear(cfg.embed_dim, cfg.embed_dim)


def test_a_third_base_expert_is_one_table_row(monkeypatch: pytest.MonkeyPatch) -> None:
    row = ExpertSpec("linear", _linear, "use_linear", (("linear", ""),))
    table = (*base_experts(), row, *(spec for spec in EXPERTS if spec.combines))
    monkeypatch.setattr(experts, "EXPERTS", table)
    cfg = _ThreeExperts(**TINY)
    assert cfg.experts == ("sequence", "graph", "linear", "interaction")
    model = HNF(cfg)
    layer = model.layers[0]
    assert tuple(layer.experts) == cfg.experts
    assert layer.experts["interaction"].mlp.fc1.in_features == 3 * cfg.embed_dim
    logits, features = model(torch.randn(2, 1, 64, 64), return_explain=True)
    assert logits.shape == (2, 10) and features.gate_weights[0].shape == (2, 16, 4)
    assert features.experts == cfg.experts
    report = model_report(model)
    assert report["components"]["linear"]["params"] == len(cfg.scales) * (32 * 32 + 32)
    assert sum(c["params"] for c in report["components"].values()) == report["params"]
    grid = ablation_grid("hnf_small", overrides={"scales": [16, 32]})  # (the registered configs lack the field)
    assert {"use_linear": False} in [variant.overrides for variant in grid]
    two = _ThreeExperts(**TINY, use_graph=False)  # two base experts left: the interaction reads two
    assert two.experts == ("sequence", "linear", "interaction")
    assert HNFLayer(two, 16, first=True, drop_path=0.0).experts["interaction"].mlp.fc1.in_features == 64


def test_the_ablation_grid_has_one_without_row_per_base_expert() -> None:
    rows = {variant.label: variant.overrides for variant in ablation_grid("hnf_small")}
    for spec in base_experts():
        assert rows[f"without {spec.name} expert"] == {spec.flag: False}
