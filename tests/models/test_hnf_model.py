"""The HNF model: registry, ablation switches, gradients, gate, explanation outputs, sizes."""

from __future__ import annotations

import pytest
import torch

import hnf
from hnf.models import ConfigError, HNFFeatures, ImageSizeError, create_model, list_models, scales_for_image
from hnf.models.info import model_report

# switch -> substrings of parameter names (with a leading dot) that must be absent when it is off
ABLATIONS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "full": ({}, ()),
    "patch_stem": ({"stem": "patch"}, (".stem.",)),
    "conv_stem": ({"stem": "conv"}, ()),
    "no_ode": ({"use_ode": False}, (".ode.",)),
    "no_graph": ({"use_graph": False}, (".graph.", ".interaction.")),
    "no_sequence": ({"use_sequence": False}, (".sequence.", ".interaction.")),
    "no_gate": ({"use_gate": False}, (".gate.",)),
    "one_scale": ({"scales": (16,)}, (".layers.1.", ".scale_logits", ".cross.")),
    "no_cross_scale": ({"cross_scale": False}, (".cross.",)),
}


def test_registry_and_top_level_api() -> None:
    assert {"hnf_small", "hnf_base"} <= set(list_models())
    assert hnf.list_models() == list_models()
    model = hnf.create_model("hnf_small", num_classes=3, in_chans=3)
    assert model.cfg.num_classes == 3 and model.cfg.in_chans == 3
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 3)
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("hnf_huge")
    with pytest.raises(ConfigError, match="unknown config field"):
        create_model("hnf_small", use_odes=False)
    with pytest.raises(ConfigError, match="no expert"):
        create_model("hnf_small", use_sequence=False, use_graph=False)


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_parameter_gets_a_gradient_and_switched_off_parts_are_absent(name: str) -> None:
    overrides, absent = ABLATIONS[name]
    model = create_model("hnf_small", num_classes=4, **overrides)
    names = ["." + n for n, _ in model.named_parameters()]
    for fragment in absent:
        assert not [n for n in names if fragment in n], f"{fragment} present with {overrides}"
    logits, feats = model(torch.randn(2, 1, 224, 224), return_explain=True)
    (logits.logsumexp(-1).sum() + feats.balance_loss).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"no gradient for {missing}"


def test_explanation_outputs() -> None:
    model = create_model("hnf_small").eval()
    logits, feats = model(torch.randn(2, 1, 224, 224), return_explain=True)
    assert isinstance(feats, HNFFeatures)
    assert logits.shape == (2, 10)
    assert feats.embedding.shape == (2, 192)
    assert feats.grids == ((14, 14), (8, 8), (7, 7))
    assert feats.experts == ("sequence", "graph", "interaction")
    for tokens, grid, gate, attn, pooled in zip(feats.tokens, feats.grids, feats.gate_weights,
                                                feats.readout_attn, feats.pooled):
        n = grid[0] * grid[1]
        assert tokens.shape == (2, n, 192) and pooled.shape == (2, 192)
        assert gate.shape == (2, n, 3)
        assert (gate >= 0).all()
        torch.testing.assert_close(gate.sum(-1), torch.ones(2, n))
        assert attn.shape == (2, n) and (attn >= 0).all()
        torch.testing.assert_close(attn.sum(-1), torch.ones(2))
    torch.testing.assert_close(feats.scale_weights.sum(), torch.tensor(1.0))
    torch.testing.assert_close(model(torch.zeros(1, 1, 224, 224)),
                               model.forward_head(model.forward_features(torch.zeros(1, 1, 224, 224))))


def test_uniform_weights_without_gate() -> None:
    model = create_model("hnf_small", use_gate=False)
    _, feats = model(torch.randn(1, 1, 224, 224), return_explain=True)
    for gate in feats.gate_weights:
        torch.testing.assert_close(gate, torch.full_like(gate, 1 / 3))
    assert feats.balance_loss.abs() < 1e-6


def test_other_input_sizes_interpolate_positional_embeddings() -> None:
    model = create_model("hnf_small").eval()
    _, feats = model(torch.randn(1, 1, 448, 448), return_explain=True)
    assert feats.grids == ((28, 28), (16, 16), (14, 14))
    small = create_model("hnf_small", scales=(16, 32)).eval()
    _, feats = small(torch.randn(1, 1, 256, 256), return_explain=True)
    assert feats.grids == ((16, 16), (8, 8))
    with pytest.raises(ImageSizeError, match="not divisible by patch size 28"):
        model(torch.randn(1, 1, 256, 256))
    with pytest.raises(ConfigError, match="not divisible by patch size 28"):
        create_model("hnf_small", img_size=256)


def test_scales_for_image_keep_the_design_token_grids() -> None:
    assert scales_for_image(224) == (16, 28, 32) and scales_for_image(448) == (32, 56, 64)
    assert scales_for_image(112) == (8, 14, 16)
    assert scales_for_image(112, stem="conv") == (8, 16)  # 14 is not a multiple of the stem's stride
    for img_size, stem in ((112, "patch"), (112, "conv"), (224, "conv")):
        model = create_model("hnf_small", img_size=img_size, stem=stem, scales=scales_for_image(img_size, stem)).eval()
        _, feats = model(torch.randn(1, 1, img_size, img_size), return_explain=True)
        design = {16: (14, 14), 28: (8, 8), 32: (7, 7)}
        assert feats.grids == tuple(design[p * 224 // img_size] for p in scales_for_image(img_size, stem))
    with pytest.raises(ConfigError) as caught:
        create_model("hnf_small", img_size=112)
    assert str(caught.value) == ("img_size 112 is not divisible by patch size 32; the patch sizes that keep the "
                                 "design's token grids at 112 px are --set \"scales=[8,14,16]\"")
    with pytest.raises(ConfigError, match=r"got scales \(8, 14\); the patch sizes .* are --set \"scales=\[8,16\]\"$"):
        create_model("hnf_small", img_size=112, stem="conv", scales=(8, 14))
    with pytest.raises(ConfigError, match="no patch size of the design .* at img_size 100"):
        scales_for_image(100)


def test_bf16_autocast_forward() -> None:
    model = create_model("hnf_small").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 1, 224, 224))
    assert logits.shape == (2, 10) and torch.isfinite(logits.float()).all()


@pytest.mark.parametrize("overrides", [{}, {"ode_adjoint": True, "ode_method": "midpoint"}])
def test_budget_and_components(overrides: dict) -> None:
    report = model_report(create_model("hnf_small", **overrides))
    assert report["flops"] <= 1.5e9
    assert sum(c["params"] for c in report["components"].values()) == report["params"]
    assert sum(c["flops"] for c in report["components"].values()) == report["flops"]
