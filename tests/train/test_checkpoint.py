"""Checkpoints: round trip, and clear errors for truncated, foreign and mismatched files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hnf.models.factory import build_classifier
from hnf.train.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, load_train_state, save_checkpoint


def _saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_classifier("resnet18", num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 64, 64)).sum().backward()
    optimizer.step()
    meta = CheckpointMeta(model="resnet18", classes=["a", "b", "c"], epoch=1, step=1)
    return save_checkpoint(tmp_path / "ckpt", model, meta, optimizer, {"step": 1}), model


def test_round_trip_restores_weights_and_optimizer(tmp_path: Path) -> None:
    folder, model = _saved(tmp_path)
    loaded, meta = load_checkpoint(folder)
    assert meta.classes == ["a", "b", "c"] and meta.epoch == 1
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    optimizer = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
    assert load_train_state(folder, meta, optimizer) == {"step": 1}
    assert optimizer.state_dict()["state"][0]["exp_avg"].abs().sum() > 0
    assert not any(p.suffix == ".pt" or p.suffix == ".pkl" for p in folder.iterdir())


def test_truncated_weights(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path)
    weights = next(folder.glob("model-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"weights do not match checkpoint.json \(SHA-256 differs; truncated or replaced file\)"):
        load_checkpoint(folder)


def test_other_format_version(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path)
    meta = json.loads((folder / "checkpoint.json").read_text())
    meta["format"] = "hnf-checkpoint/99"
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"not an hnf checkpoint of format 'hnf-checkpoint/1' \(found 'hnf-checkpoint/99'\)"):
        load_checkpoint(folder)


def test_other_architecture(tmp_path: Path) -> None:
    folder, _ = _saved(tmp_path)
    meta = json.loads((folder / "checkpoint.json").read_text())
    meta["model"] = "convnext_atto"
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"weights do not fit the architecture 'convnext_atto'"):
        load_checkpoint(folder)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nothing: no such checkpoint"):
        load_checkpoint(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: not a checkpoint folder \(no checkpoint.json\)"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "empty" / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"unreadable checkpoint metadata"):
        load_checkpoint(tmp_path / "empty")


def _tiny_text_model() -> tuple[torch.nn.Module, CheckpointMeta]:
    """A small hnf_llm_small (frozen packaged text encoder) and the metadata to save it with."""
    classes = ["Nanowires", "Particles"]
    tiny = dict(embed_dim=32, num_heads=2, readout_heads=2, fusion_heads=2, scales=[16, 32], text_max_length=64)
    model = build_classifier("hnf_llm_small", 2, img_size=64, class_names=classes, **tiny).eval()
    meta = CheckpointMeta(model="hnf_llm_small", classes=classes, model_overrides=tiny)
    meta.preprocessing.img_size = 64
    return model, meta


def test_text_fused_model_round_trips_with_its_descriptions(tmp_path: Path) -> None:
    model, meta = _tiny_text_model()
    save_checkpoint(tmp_path / "ckpt", model, meta)
    saved = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert any("Nanowires" in json.dumps(value) for value in saved["extra_state"].values())
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    images = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), loaded.eval()(images))


def test_frozen_parameters_are_written_once_per_content(tmp_path: Path) -> None:
    model, meta = _tiny_text_model()
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, model, meta)
    frozen = sorted(folder.glob("frozen-*.safetensors"))
    assert len(frozen) == 1 and frozen[0].name == meta.frozen_weights
    assert frozen[0].stat().st_size > 10 * (folder / meta.weights).stat().st_size  # the encoder, stored apart
    stamp = frozen[0].stat().st_mtime_ns
    with torch.no_grad():
        model.classifier.head[-1].weight.add_(1.0)  # trained parts change, the encoder does not
    meta.epoch = 1
    save_checkpoint(folder, model, meta)
    assert sorted(folder.glob("frozen-*.safetensors")) == frozen and frozen[0].stat().st_mtime_ns == stamp
    assert len(list(folder.glob("model-*.safetensors"))) == 1
    with torch.no_grad():
        next(model.text.encoder.parameters()).add_(1.0)  # a changed frozen part gets a new file
    meta.epoch = 2
    save_checkpoint(folder, model, meta)
    assert [p.name for p in folder.glob("frozen-*.safetensors")] == [meta.frozen_weights] != [frozen[0].name]
    loaded, _ = load_checkpoint(folder)
    images = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), loaded.eval()(images))
    (folder / meta.frozen_weights).write_bytes((folder / meta.frozen_weights).read_bytes()[:-8])
    with pytest.raises(CheckpointError, match=rf"{meta.frozen_weights}: weights do not match checkpoint.json"):
        load_checkpoint(folder)


def test_a_new_checkpoint_removes_only_the_files_the_trainer_wrote(tmp_path: Path) -> None:
    folder, model = _saved(tmp_path)
    first = {p.name for p in folder.iterdir()}
    mine = ["my-experiment-settings.json", "notes-e1-s2.txt", "model-e0001-s00000001.safetensors.bak"]
    for name in mine:
        (folder / name).write_text("kept")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    save_checkpoint(folder, model, CheckpointMeta(model="resnet18", classes=["a", "b", "c"], epoch=2, step=2), optimizer, {"step": 2})
    names = {p.name for p in folder.iterdir()}
    assert all((folder / name).read_text() == "kept" for name in mine)
    assert "model-e0001-s00000001.safetensors" in first and "model-e0001-s00000001.safetensors" not in names
    assert {"model-e0002-s00000002.safetensors", "train-e0002-s00000002.json", "checkpoint.json"} <= names


def test_a_replaced_training_state_is_refused_by_its_checksum(tmp_path: Path) -> None:
    folder, model = _saved(tmp_path)
    meta = json.loads((folder / "checkpoint.json").read_text())
    for suffix in ("json", "safetensors"):
        state = folder / f"{meta['train_state']}.{suffix}"
        original = state.read_bytes()
        state.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        loaded, loaded_meta = load_checkpoint(folder)
        optimizer = torch.optim.AdamW(loaded.parameters(), lr=1e-3)
        with pytest.raises(CheckpointError, match=rf"{state.name}.*(does not match|SHA-256 differs)"):
            load_train_state(folder, loaded_meta, optimizer)
        state.write_bytes(original)
    assert load_train_state(folder, loaded_meta, torch.optim.AdamW(loaded.parameters(), lr=1e-3)) == {"step": 1}


def test_a_checkpoint_names_the_files_it_was_built_from_without_their_local_paths(tmp_path: Path) -> None:
    weights_file = tmp_path / "private" / "folder" / "imagenet.safetensors"
    model = build_classifier("resnet18", num_classes=3)
    meta = CheckpointMeta(model="resnet18", classes=["a", "b", "c"],
                          model_overrides={"weights": str(weights_file), "drop_rate": 0.1})
    folder = save_checkpoint(tmp_path / "ckpt", model, meta)
    assert str(tmp_path) not in (folder / "checkpoint.json").read_text()
    _, loaded = load_checkpoint(folder)  # the weights file is not read again (it never existed)
    assert loaded.model_overrides == {"weights": "imagenet.safetensors", "drop_rate": 0.1}


def test_a_checkpoint_with_the_expert_keys_of_older_versions_loads(tmp_path: Path) -> None:
    import re

    from safetensors.torch import load_file as read_tensors
    from safetensors.torch import save as write_tensors

    from hnf.train.checkpoint import _sha256

    torch.manual_seed(0)
    model = build_classifier("hnf_small", num_classes=3, img_size=64, scales=[16, 32])
    meta = CheckpointMeta("hnf_small", ["a", "b", "c"], {"scales": [16, 32]})
    meta.preprocessing.img_size = 64
    folder = save_checkpoint(tmp_path / "ckpt", model, meta)
    meta = json.loads((folder / "checkpoint.json").read_text())
    current = read_tensors(folder / meta["weights"])
    older = {re.sub(r"experts\.interaction\.mlp\.", "interaction.", re.sub(r"experts\.(sequence|graph)\.", r"\1.", k)): v
             for k, v in current.items()}
    assert any(k.startswith("layers.0.graph.") for k in older) and not any(".experts." in k for k in older)
    payload = write_tensors(older)
    (folder / meta["weights"]).write_bytes(payload)
    (folder / "checkpoint.json").write_text(json.dumps({**meta, "weights_sha256": _sha256(payload)}))
    loaded, _ = load_checkpoint(folder)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
