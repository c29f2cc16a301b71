"""HNF-LLM: the HNF backbone fused with LLM-written class descriptions (DESIGN.md 2.2-2.3).

Image side: the HNF backbone's image embedding e (B, d) and per-scale vectors p_s (B, d).
Text side: the projected token embeddings of every description of every class (T tokens, d),
the same for every image, so no label reaches the input.

Cross-modal attention, H heads of width d_h = d / H, queries Q = [e; p_1; ...; p_S] (B, 1+S, d),
keys and values from the T real text tokens (padding never enters)::

    A = softmax((LN(Q) W_q)(X W_k)^T / sqrt(d_h)),   Z = (A X W_v) W_o,   z = mean_rows(Z)

The keys and values are projected once per forward and broadcast over the batch (the text does
not depend on the image), so their cost does not grow with the batch.

Gated fusion and head (tanh gates initialised at zero, as in Flamingo's gated cross-attention,
so training starts from the image-only model and lets the text in as far as it helps)::

    f = e + tanh(g) * z                                   (g in R^d, per channel)
    h = f + MLP(LN(f))      (only when classifier_ratio > 0; MLP output layer initialised at zero)
    logits = W LN(h) + b + tanh(c) * s * cos(W_i e, t_c)  (c scalar, s learned temperature)

a classifier on the fused vector (by default the backbone's linear head; the residual MLP of the
paper is ``classifier_ratio=1``), plus the auxiliary CLIP-style head scoring the image embedding
against each class's pooled text embedding t_c. At initialisation the model is
``hnf_small`` exactly: same seed, same weights, same logits (the text parts start switched off).
The residual MLP is off by default: on synthetic micrographs it scored below the linear head,
with and without the text (BENCHMARKS.md); so did the alternatives tried for this head
(concatenating [e; z] with the cosine head at full strength, the gates with a plain MLP
classifier ``MLP(LN(f))``, a zero-initialised output projection in place of the tanh gate).

Ablation switches: ``use_text=False`` leaves the HNF backbone and a classifier on e (no text
parts are built); ``use_cross_attention=False`` replaces z by the mean of all text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from timm.layers import Mlp
from torch import Tensor, nn
from torch.nn import functional as F

from hnf.models.config import ConfigError, HNFConfig
from hnf.models.hnf import HNF, HNFFeatures, hnf_base, hnf_lite0
from hnf.models.registry import register_model


@dataclass(frozen=True)
class HNFLLMConfig(HNFConfig):
    """The backbone's fields plus the language branch's.

    Language branch:
        use_text: False drops every text part (the HNF backbone alone, with this head).
        use_cross_attention: False pools the text tokens instead of attending over them.
        text_encoder: Hugging Face name or folder (e.g. what ``hnf text pretrain`` wrote); None is
            the packaged all-MiniLM-L6-v2 (offline).
        text_finetune: ``"frozen"`` (only the projection to width d learns; the encoder's states
            are computed once), ``"all"``, or ``"last:n"``. Frozen is the CPU default: fine-tuning
            runs the encoder over every description at every step.
        text_max_length: tokens per encoder window (longer descriptions are windowed, not cut).
        text_token_fraction: fraction of the text tokens each training step takes (a fresh random
            subset per step; evaluation takes all; 1 takes all in training too). The projection
            and keys/values of every token of the shipped corpus are a large part of a training
            step, and a subset keeps the held-out accuracy (BENCHMARKS.md). The text encoder
            checks the value.
        descriptions: a descriptions JSON (``hnf describe``); None takes the shipped corpus.
        fusion_heads: heads of the cross-modal attention.
        classifier_ratio: hidden width of the residual classifier MLP as a multiple of its input;
            0 (the default) leaves the MLP out (see the module docstring).
        cosine_scale_init: initial temperature s of the auxiliary cosine head.
    """

    use_text: bool = True
    use_cross_attention: bool = True
    text_encoder: str | None = None
    text_finetune: str = "frozen"
    text_max_length: int = 128
    text_token_fraction: float = 0.25
    descriptions: str | None = None
    fusion_heads: int = 4
    classifier_ratio: float = 0.0
    cosine_scale_init: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embed_dim % self.fusion_heads:
            raise ConfigError("embed_dim must be divisible by fusion_heads")

    def backbone_config(self) -> HNFConfig:
        return HNFConfig(**{name: getattr(self, name) for name in HNFConfig.field_names()})


def build_hnf_llm(config: HNFLLMConfig, *, class_names: list[str] | None = None, load_descriptions: bool = True,
                  load_weights: bool = True) -> HNFLLM:
    """The registry's builder for :class:`HNFLLM` (:class:`~hnf.models.registry.ModelBuilder`).

    ``class_names`` None takes the ten NFFA classes; ``load_weights=False`` builds the trunk (as
    ``trunk_weights="none"``) and the text encoder without their pretrained weights.
    """
    if class_names is None:
        from hnf.data.synth import SYNTH_CLASSES

        class_names = list(SYNTH_CLASSES)
    if not load_weights:
        config = replace(config, trunk_weights="none")
    return HNFLLM(config, class_names, load_descriptions=load_descriptions, load_encoder_weights=load_weights)


@register_model(build_hnf_llm)
def hnf_llm_small() -> HNFLLMConfig:
    """``hnf_small`` fused with the frozen packaged all-MiniLM-L6-v2 (CPU default)."""
    return HNFLLMConfig()


@register_model(build_hnf_llm)
def hnf_llm_base() -> HNFLLMConfig:
    """``hnf_base`` fused with the text encoder, its last two layers fine-tuned (GPU)."""
    return HNFLLMConfig(**{**vars(hnf_base()), "text_finetune": "last:2", "fusion_heads": 6})


@register_model(build_hnf_llm)
def hnf_llm_lite0() -> HNFLLMConfig:
    """``hnf_lite0`` (EfficientNet-Lite0 trunk) fused with the frozen packaged all-MiniLM-L6-v2."""
    return HNFLLMConfig(**vars(hnf_lite0()))


class CrossModalAttention(nn.Module):
    """Image queries attend over all text tokens (see the module docstring for the math).

    Args:
        dim: width d of queries and text tokens.
        heads: attention heads H (d divisible by H).

    Shapes:
        - **input:** queries (B, Q, d); ``text`` (T, d), the real text tokens only, shared by the
          batch
        - **output:** (B, Q, d)
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, text: Tensor) -> Tensor:
        batch, count, dim = queries.shape
        head_dim = dim // self.heads
        q = self.q(self.norm(queries)).view(batch, count, self.heads, head_dim).transpose(1, 2)
        k, v = self.kv(text).view(-1, 2, self.heads, head_dim).permute(1, 2, 0, 3)  # (H, T, dh) each
        scores = torch.einsum("bhqc,htc->bhqt", q, k) * head_dim**-0.5
        mixed = torch.einsum("bhqt,htc->bhqc", scores.softmax(dim=-1), v).transpose(1, 2).reshape(batch, count, dim)
        return self.out(mixed)


class ResidualMLPClassifier(nn.Module):
    """h = f + MLP(LN(f)), logits = head(h), ``head`` the backbone's own (LN, dropout, linear).

    The MLP's output layer starts at zero, so the classifier starts as the backbone's linear head
    and learns how much of the extra non-linearity it needs. ``hidden=0`` leaves the MLP out
    (logits = head(f)).
    """

    def __init__(self, head: nn.Sequential, hidden: int) -> None:
        super().__init__()
        dim = head[-1].in_features
        self.norm = nn.LayerNorm(dim) if hidden else None
        self.mlp = Mlp(dim, hidden, dim) if hidden else None
        if self.mlp is not None:
            nn.init.zeros_(self.mlp.fc2.weight)
            nn.init.zeros_(self.mlp.fc2.bias)
        self.head = head

    def forward(self, fused: Tensor) -> Tensor:
        if self.mlp is not None:
            fused = fused + self.mlp(self.norm(fused))
        return self.head(fused)


class HNFLLM(nn.Module):
    """HNF backbone + text encoder + cross-modal attention + classifier (+ cosine head).

    ``class_names`` fixes the class order; descriptions for them come from ``descriptions`` (a
    ``{class: [text, ...]}`` mapping), else from ``config.descriptions`` or the shipped corpus.
    ``load_descriptions=False`` skips that (a checkpoint's state dict brings its own), and
    ``load_encoder_weights=False`` builds the text encoder's architecture without its weights
    (a checkpoint brings them too).

    Shapes:
        - **input:** images x (B, C, H, W)
        - **output:** logits (B, num_classes) in ``class_names`` order; with
          ``return_explain=True`` also the backbone's :class:`~hnf.models.hnf.HNFFeatures`
    """

    def __init__(
        self,
        config: HNFLLMConfig,
        class_names: list[str],
        descriptions: dict[str, list[str]] | None = None,
        load_descriptions: bool = True,
        load_encoder_weights: bool = True,
    ) -> None:
        super().__init__()
        if len(class_names) != config.num_classes:
            config = replace(config, num_classes=len(class_names))
        self.cfg = config
        self.class_names = list(class_names)
        self.backbone = HNF(config.backbone_config())
        image_head, self.backbone.head = self.backbone.head, nn.Identity()  # reused by the classifier
        dim = config.embed_dim
        # The fusion parts draw their initial weights from a forked random stream, so the global
        # one (and with it the data augmentation of a training run) continues exactly as after
        # building the backbone alone: with the same seed, hnf_llm_small and hnf_small start from
        # the same weights and see the same augmented images, a paired comparison.
        with torch.random.fork_rng(devices=[]):
            if config.use_text:
                from hnf.models.text_encoder import TextEncoder

                self.text = TextEncoder(dim, config.text_encoder, finetune=config.text_finetune,
                                        max_length=config.text_max_length,
                                        token_fraction=config.text_token_fraction,
                                        load_weights=load_encoder_weights)
                if load_descriptions:
                    self.text.set_descriptions(descriptions or self._descriptions(), self.class_names)
                self.cross = CrossModalAttention(dim, config.fusion_heads) if config.use_cross_attention else None
                self.image_proj = nn.Linear(dim, dim)
                self.cosine_scale = nn.Parameter(torch.tensor(float(config.cosine_scale_init)).log())
                self.text_gate = nn.Parameter(torch.zeros(dim))
                self.cosine_gate = nn.Parameter(torch.zeros(()))
            self.classifier = ResidualMLPClassifier(image_head, int(dim * config.classifier_ratio))

    def _descriptions(self) -> Any:
        from hnf.text.describe import load_or_offline

        return load_or_offline(self.cfg.descriptions, self.class_names)

    def forward_features(self, x: Tensor) -> HNFFeatures:
        return self.backbone.forward_features(x)

    def forward(self, x: Tensor, return_explain: bool = False) -> Tensor | tuple[Tensor, HNFFeatures]:
        features = self.backbone.forward_features(x)
        embedding = features.embedding
        if not self.cfg.use_text:
            logits = self.classifier(embedding)
            return (logits, features) if return_explain else logits
        text = self.text()
        tokens = text.packed.to(embedding.dtype)  # real tokens only: nothing to mask
        if self.cross is not None:
            queries = torch.stack([embedding, *features.pooled], dim=1)
            context = self.cross(queries, tokens).mean(dim=1)
        else:
            context = tokens.mean(0).expand_as(embedding)
        logits = self.classifier(embedding + torch.tanh(self.text_gate) * context)
        image = F.normalize(self.image_proj(embedding), dim=-1)
        classes = F.normalize(text.pooled.to(image.dtype), dim=-1)
        cosine = torch.tanh(self.cosine_gate) * self.cosine_scale.exp()
        logits = logits + cosine * image @ classes.t()
        return (logits, features) if return_explain else logits
