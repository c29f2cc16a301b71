"""HNF-LLM fusion: no label in the input, class-order equivariance, ablation switches, gradients."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from hnf.data.synth import write_synthetic_dataset
from hnf.models import HNFLLM, create_model, get_config
from hnf.text.describe import load_or_offline
from hnf.train.loop import TrainConfig, train

CLASSES = ["Nanowires", "Particles", "Fibres", "Tips"]
TINY = dict(embed_dim=32, num_heads=2, readout_heads=2, fusion_heads=2, scales=(16, 32), img_size=64, text_max_length=64)


@pytest.fixture(scope="module")
def model() -> HNFLLM:
    """A fused model with its gates opened (they start at zero), so the tests see the text at work."""
    torch.manual_seed(0)
    fused = create_model("hnf_llm_small", class_names=CLASSES, num_classes=len(CLASSES), **TINY).eval()
    with torch.no_grad():
        fused.text_gate.fill_(0.5)
        fused.cosine_gate.fill_(0.5)
    return fused


def test_the_text_reaches_the_logits(model: HNFLLM) -> None:
    images = torch.randn(2, 1, 64, 64)
    other = copy.deepcopy(model)
    texts = load_or_offline(None, CLASSES).texts_by_class(CLASSES)
    other.text.set_descriptions({name: texts[name][:1] for name in CLASSES}, CLASSES)
    with torch.no_grad():
        assert (model(images) - other(images)).abs().max() > 1e-3


def test_text_input_is_the_same_for_every_image(model: HNFLLM) -> None:
    images = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        batch = model(images)
        alone = torch.cat([model(image[None]) for image in images])
        first, second = model.text(), model.text()
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    assert torch.equal(first.packed, second.packed)
    assert model.text.classes == CLASSES


def test_permuting_the_class_order_permutes_the_logits_only(model: HNFLLM) -> None:
    permutation = [2, 0, 3, 1]
    permuted = copy.deepcopy(model)
    texts = load_or_offline(None, CLASSES).texts_by_class(CLASSES)
    permuted.text.set_descriptions({CLASSES[i]: texts[CLASSES[i]] for i in permutation}, [CLASSES[i] for i in permutation])
    head = permuted.classifier.head[-1]
    with torch.no_grad():
        head.weight.copy_(head.weight[permutation])
        head.bias.copy_(head.bias[permutation])
        images = torch.randn(2, 1, 64, 64)
        expected = model(images)[:, permutation]
        torch.testing.assert_close(permuted(images), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("switches", "absent"),
    [({}, ()), ({"use_cross_attention": False}, ("cross.",)), ({"use_text": False}, ("text.", "cross.", "image_proj", "cosine_scale"))],
)
def test_switches_remove_parts_and_every_trainable_parameter_learns(switches: dict, absent: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    model = create_model("hnf_llm_small", class_names=CLASSES, num_classes=len(CLASSES), **{**TINY, **switches})
    model(torch.randn(2, 1, 64, 64)).logsumexp(1).sum().backward()
    names = [name for name, _ in model.named_parameters()]
    for prefix in absent:
        assert not any(name.startswith(prefix) for name in names), prefix
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(n.startswith("text.encoder.") for n in frozen)


def test_config_fields_and_registry() -> None:
    config = get_config("hnf_llm_base")
    assert config.embed_dim == 384 and config.text_finetune == "last:2"
    with pytest.raises(Exception, match="unknown config field"):
        get_config("hnf_llm_small", no_such_field=1)


@pytest.mark.parametrize("classifier_ratio", [0.0, 1.0])
def test_fused_model_starts_as_the_image_only_model(classifier_ratio: float) -> None:
    """Zero-initialised gates and MLP output, the backbone's own head, the fusion parts drawn from a
    forked random stream: with the same seed the fused model is ``hnf_small`` (same weights, same
    logits), and the global random stream (the data augmentation) continues identically."""
    backbone_fields = {k: v for k, v in TINY.items() if k not in ("fusion_heads", "text_max_length")}
    torch.manual_seed(0)
    image_only = create_model("hnf_small", num_classes=len(CLASSES), **backbone_fields).eval()
    after_image_only = torch.rand(4)
    torch.manual_seed(0)
    fused = create_model("hnf_llm_small", class_names=CLASSES, num_classes=len(CLASSES),
                         classifier_ratio=classifier_ratio, **TINY).eval()
    assert (fused.classifier.mlp is not None) == (classifier_ratio > 0)
    after_fused = torch.rand(4)
    assert torch.equal(after_fused, after_image_only)
    for name, value in image_only.state_dict().items():
        twin = fused.classifier.head if name.startswith("head.") else fused.backbone
        assert torch.equal(twin.state_dict()[name.removeprefix("head.")], value), name
    images = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(images), image_only(images), atol=1e-6, rtol=1e-6)


def test_fused_model_trains_to_the_backbones_accuracy_under_the_same_budget(tmp_path) -> None:
    """Same seed, data, epochs and batch for both (the fused model starts as the backbone); the
    issue's criterion at test scale, on the fit of the training side (more images than the test
    side of so small a set). The full-scale comparison is in BENCHMARKS.md."""
    torch.set_num_threads(2)
    data = write_synthetic_dataset(tmp_path / "data", per_class=10, size=72, seed=5)
    backbone = {k: v for k, v in TINY.items() if k not in ("fusion_heads", "text_max_length", "img_size")} | {"embed_dim": 64}
    fit = {}
    for name, overrides in (("hnf_small", backbone), ("hnf_llm_small", {**backbone, "fusion_heads": 2, "text_max_length": 64})):
        config = TrainConfig(data=str(data), out=str(tmp_path / name), model=name, model_overrides=overrides, epochs=16,
                             batch_size=8, lr=2e-3, img_size=64, resize=72, precision="fp32", seed=0)
        train(config)
        log = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        fit[name] = (log[0]["first_step_loss"], log[-1]["train_top1"])
    assert fit["hnf_llm_small"][0] == pytest.approx(fit["hnf_small"][0], abs=1e-5)  # same start
    assert fit["hnf_small"][1] > 0.25  # both learn: chance is 0.1
    assert fit["hnf_llm_small"][1] >= fit["hnf_small"][1] - 0.02
