"""The model registry is a leaf of names -> (configuration, builder); ``create_model`` builds
registered models with their builders and every other name through timm."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import hnf.models.registry as registry
from hnf.models import HNF, HNFLLM, ConfigError, create_model, list_models
from hnf.models.factory import build_classifier
from hnf.models.hnf import build_hnf
from hnf.models.hnf_llm import build_hnf_llm
from hnf.models.info import model_report

TINY = dict(embed_dim=32, num_heads=2, readout_heads=2, scales=(16, 32), img_size=64)


def test_the_registry_imports_no_model_module() -> None:
    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {name for name in imported if name and name.startswith("hnf.")} == {"hnf.models.config"}


def test_every_registered_name_has_its_models_builder() -> None:
    for name in list_models():
        expected = build_hnf_llm if name.startswith("hnf_llm_") else build_hnf
        assert registry.model_builder(name) is expected, name
    with pytest.raises(ConfigError, match="unknown model 'hnf_huge'; known: hnf_base"):
        registry.model_builder("hnf_huge")


def test_a_name_registers_once() -> None:
    with pytest.raises(ConfigError, match="registered twice"):
        registry.register_model(build_hnf)(registry._MODELS["hnf_small"].config)


def test_create_model_builds_registered_models_with_their_builder_and_others_with_timm() -> None:
    assert type(create_model("hnf_small", num_classes=3, **TINY)) is HNF
    fused = create_model("hnf_llm_small", fusion_heads=2, text_max_length=64, **TINY)
    assert type(fused) is HNFLLM and len(fused.class_names) == 10  # the ten NFFA classes
    baseline = create_model("resnet18", num_classes=3)
    assert baseline.conv1.in_channels == 1 and baseline.fc.out_features == 3  # grey, as hnf models
    assert baseline(torch.randn(1, 1, 64, 64)).shape == (1, 3)
    with pytest.raises(ConfigError, match="no pretrained weights of its own"):
        create_model("hnf_small", weights="hub")
    with pytest.raises(ConfigError, match="unknown model 'nope': expected an hnf model"):
        create_model("nope")
    with pytest.raises(ConfigError, match="needs an hnf model, not ResNet"):
        model_report(baseline)


def test_build_classifier_calls_create_model_with_the_class_count_and_placeholder_names() -> None:
    fused = build_classifier("hnf_llm_small", 3, load_descriptions=False, fusion_heads=2, text_max_length=64, **TINY)
    assert fused.class_names == ["class_0", "class_1", "class_2"] and fused.cfg.num_classes == 3
    unloaded = build_classifier("hnf_lite0", 3, load_weights_now=False)
    assert unloaded.cfg.trunk_weights == "none"
