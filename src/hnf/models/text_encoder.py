"""Text encoder of the language branch (DESIGN.md 2.2.3-2.2.4).

:class:`TextEncoder` wraps a Hugging Face encoder (default: the packaged all-MiniLM-L6-v2, or the
folder that ``hnf text pretrain`` wrote). Given the descriptions of every class it returns
:class:`TextFeatures`: the embeddings of the real tokens of every description projected to width
``dim`` (no padding), and one pooled embedding per class.

- Long descriptions are split into windows of ``max_length`` tokens (special tokens included) rather
  than truncated, so every token of every description takes part.
- ``finetune``: ``"frozen"`` (encoder fixed, only the projection learns), ``"all"``, or an int ``n`` /
  ``"last:n"`` (the last ``n`` transformer layers learn, embeddings and earlier layers stay fixed).
- Caching: with a frozen encoder its hidden states are computed once, in memory. In eval mode without gradients the
  projected features themselves are cached, so inference computes the text side once. ``train()``,
  ``load_state_dict`` and ``set_descriptions`` clear what they invalidate.
- ``token_fraction`` < 1: in training, each forward keeps a fresh random subset of that fraction
  of the tokens (a fixed count, at least one per class), the text-side analogue of FLIP's
  image-token masking.
  The projection, the fusion's keys and values and their gradients are computed for the kept
  tokens only; attention over a random subset estimates attention over all of them, and the
  class means stay unbiased. Evaluation always takes every token. Tokens are gathered by index
  (positions fixed when the descriptions are set, a subset of fixed size), never by boolean mask,
  so no shape depends on the data: no host synchronisation, one graph for ``torch.compile``.
- The descriptions travel in the state dict (``extra_state``), so a checkpoint needs no corpus.

The text input is the same for every image: no label can reach it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hnf.errors import HnfError

log = logging.getLogger(__name__)


@dataclass
class TextFeatures:
    """Text side for fusion: T tokens taken from the description windows, C classes, width d."""

    packed: Tensor  # [T, d] projected embeddings of the tokens taken, in (window, position) order
    pooled: Tensor  # [C, d] mean of each class's token embeddings


def _find_layers(model: nn.Module) -> nn.ModuleList:
    n = getattr(model.config, "num_hidden_layers", None)
    candidates = [m for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not candidates:
        raise HnfError(f"{type(model).__name__}: cannot find its {n} transformer layers to fine-tune the last n")
    return candidates[0]


def parse_finetune(spec: str | int) -> str | int:
    """``"frozen"``, ``"all"``, ``n`` or ``"last:n"`` -> ``"frozen" | "all" | n``."""
    if isinstance(spec, int):
        if spec < 0:
            raise HnfError("finetune: the number of layers must be >= 0")
        return "frozen" if spec == 0 else spec
    s = str(spec).strip().lower()
    if s in {"frozen", "none", "0"}:
        return "frozen"
    if s == "all":
        return "all"
    if s.startswith("last:"):
        s = s[5:]
    if s.isdigit():
        return parse_finetune(int(s))
    raise HnfError(f"finetune must be 'frozen', 'all', 'last:N' or N, got {spec!r}")


class TextEncoder(nn.Module):
    """Token embeddings of every class description, projected to width ``dim``."""

    def __init__(
        self,
        dim: int,
        encoder: str | os.PathLike | None = None,
        *,
        finetune: str | int = "frozen",
        max_length: int = 128,
        dropout: float = 0.0,
        batch_size: int = 32,
        token_fraction: float = 1.0,
        descriptions: dict[str, list[str]] | Any | None = None,
        load_weights: bool = True,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from hnf.text.encoders import load_error, quiet_transformers, resolve_encoder

        self.encoder_name = resolve_encoder(encoder)
        try:
            with quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(self.encoder_name)
                if load_weights:
                    self.encoder = AutoModel.from_pretrained(self.encoder_name)
                else:  # the architecture only: a checkpoint brings the weights
                    self.encoder = AutoModel.from_config(AutoConfig.from_pretrained(self.encoder_name))
        except (OSError, ValueError) as err:
            raise load_error(self.encoder_name, err) from None
        self.hidden_size = int(self.encoder.config.hidden_size)
        self.dim = int(dim)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        if not 0.0 < token_fraction <= 1.0:
            raise HnfError(f"token_fraction must be in (0, 1], got {token_fraction}")
        self.token_fraction = float(token_fraction)
        self.proj = nn.Linear(self.hidden_size, self.dim)
        self.norm = nn.LayerNorm(self.dim)
        self.drop = nn.Dropout(dropout)
        self.finetune = parse_finetune(finetune)
        self._apply_finetune()
        self.classes: list[str] = []
        self.texts: list[list[str]] = []
        self.register_buffer("input_ids", torch.zeros(0, 0, dtype=torch.long), persistent=False)
        self.register_buffer("attention_mask", torch.zeros(0, 0, dtype=torch.long), persistent=False)
        # the real tokens, fixed by the descriptions: flat (S * L) positions in row-major order,
        # their classes, and the index into them of each class's first token
        self.register_buffer("token_positions", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("token_class", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("class_anchors", torch.zeros(0, dtype=torch.long), persistent=False)
        self._hidden_cache: Tensor | None = None
        self._feature_cache: TextFeatures | None = None
        if descriptions is not None:
            self.set_descriptions(descriptions)

    # -- configuration ---------------------------------------------------------------------------
    def _apply_finetune(self) -> None:
        ft = self.finetune
        for p in self.encoder.parameters():
            p.requires_grad_(ft == "all")
        if isinstance(ft, int):
            layers = _find_layers(self.encoder)
            if ft > len(layers):
                raise HnfError(f"finetune last {ft} layers, but the encoder has {len(layers)}")
            for layer in list(layers)[len(layers) - ft :]:
                for p in layer.parameters():
                    p.requires_grad_(True)
        self._clear(hidden=True)

    @property
    def encoder_frozen(self) -> bool:
        return self.finetune == "frozen"

    def set_descriptions(self, descriptions: Any, classes: list[str] | None = None) -> None:
        """Set the class descriptions: ``{class: [text, ...]}`` or a :class:`DescriptionSet`.

        ``classes`` fixes the class order (default: the mapping's order / the set's classes).
        """
        if hasattr(descriptions, "texts_by_class"):
            descriptions = descriptions.texts_by_class(classes)
        elif classes is not None:
            descriptions = {c: descriptions[c] for c in classes}
        if not descriptions:
            raise HnfError("no descriptions given to the text encoder")
        empty = [c for c, t in descriptions.items() if not t]
        if empty:
            raise HnfError(f"no description for class(es) {', '.join(empty)}")
        self.classes = list(descriptions)
        self.texts = [list(descriptions[c]) for c in self.classes]
        ids, cls = [], []
        for ci, texts in enumerate(self.texts):
            for text in texts:
                enc = self.tokenizer(
                    text, truncation=True, max_length=self.max_length, return_overflowing_tokens=True
                )
                for window in enc["input_ids"]:
                    ids.append(list(window))
                    cls.append(ci)
        length = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id or 0
        device = self.proj.weight.device
        self.input_ids = torch.tensor([x + [pad] * (length - len(x)) for x in ids], dtype=torch.long, device=device)
        self.attention_mask = torch.tensor(
            [[1] * len(x) + [0] * (length - len(x)) for x in ids], dtype=torch.long, device=device
        )
        real = self.attention_mask.bool()
        self.token_positions = real.view(-1).nonzero().squeeze(1)
        self.token_class = torch.tensor(cls, dtype=torch.long, device=device).repeat_interleave(real.sum(1))
        self.class_anchors = torch.searchsorted(self.token_class, torch.arange(len(self.classes), device=device))
        self._clear(hidden=True)

    # -- caches ----------------------------------------------------------------------------------
    def _clear(self, hidden: bool = False) -> None:
        self._feature_cache = None
        if hidden:
            self._hidden_cache = None

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()  # no dropout in a frozen encoder: its cached states stay exact
        self._clear(hidden=not self.encoder_frozen)
        return self

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._clear(hidden=True)
        return out

    def get_extra_state(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "texts": [list(t) for t in self.texts]}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state and state.get("classes"):
            self.set_descriptions(dict(zip(state["classes"], state["texts"], strict=True)))

    # -- computation -----------------------------------------------------------------------------
    def save_definition(self, folder: Path) -> Path:
        """Write what rebuilds this encoder without its weights (its config and tokenizer files,
        about 1 MB for MiniLM) into ``folder``: with a checkpoint's weights it needs nothing else."""
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return folder

    def _run_encoder(self) -> Tensor:
        outs = []
        for i in range(0, self.input_ids.shape[0], self.batch_size):
            out = self.encoder(
                input_ids=self.input_ids[i : i + self.batch_size],
                attention_mask=self.attention_mask[i : i + self.batch_size],
            )
            outs.append(out.last_hidden_state)
        return torch.cat(outs)

    def hidden_states(self) -> Tensor:
        """Encoder output ``[S, L, hidden]`` for every description window (cached when frozen)."""
        if self.input_ids.numel() == 0:
            raise HnfError("the text encoder has no descriptions: call set_descriptions() first")
        if not self.encoder_frozen:
            return self._run_encoder()
        if self._hidden_cache is not None and self._hidden_cache.device == self.input_ids.device:
            return self._hidden_cache
        was_training = self.encoder.training
        self.encoder.eval()
        with torch.no_grad():
            hidden = self._run_encoder()
        self.encoder.train(was_training)
        self._hidden_cache = hidden
        return hidden

    def subset_size(self) -> int:
        """Tokens a training step takes: ``round(token_fraction * n)`` of the ``n`` real tokens,
        at least one per class."""
        return max(len(self.classes), round(self.token_fraction * len(self.token_positions)))

    def _sample_tokens(self) -> Tensor:
        """Indices into the real tokens of a uniformly random subset of :meth:`subset_size`,
        ascending, always with each class's first token so that every class keeps one. The count
        is fixed, so every training step has the same shapes: with a count that varied from step
        to step (a coin per token) a bf16 CPU step took 1.05x as long (oneDNN makes kernels per
        shape; bench/bench_token_subset.py), and nothing reads a count back to the host."""
        scores = torch.rand(self.token_positions.shape, device=self.token_positions.device)
        scores[self.class_anchors] = 2.0  # one token per class: always taken
        return scores.topk(self.subset_size()).indices.sort().values

    def forward(self) -> TextFeatures:
        if self._feature_cache is not None and not self.training and not torch.is_grad_enabled():
            return self._feature_cache
        positions, token_class = self.token_positions, self.token_class
        if self.training and self.token_fraction < 1.0:
            taken = self._sample_tokens()
            positions, token_class = positions[taken], token_class[taken]
        # Only the tokens taken are projected (padding is a quarter of the slots of the shipped
        # corpus, and this projection runs at every training step). Gathers with indices of a
        # fixed count, not boolean masks: the shapes do not depend on the data, so the step needs
        # no host synchronisation and torch.compile traces it whole.
        hidden = self.hidden_states().flatten(0, 1)[positions]
        packed = self.drop(self.norm(self.proj(hidden.to(self.proj.weight.dtype))))
        num_classes = len(self.classes)
        summed = packed.new_zeros(num_classes, self.dim).index_add_(0, token_class, packed)
        counts = packed.new_zeros(num_classes).index_add_(0, token_class, packed.new_ones(token_class.shape))
        pooled = summed / counts.clamp_min(1).unsqueeze(-1)
        feats = TextFeatures(packed=packed, pooled=pooled)
        if not self.training and not torch.is_grad_enabled():
            self._feature_cache = feats
        return feats

    def extra_repr(self) -> str:
        return (
            f"encoder={Path(self.encoder_name).name!r}, dim={self.dim}, finetune={self.finetune!r}, "
            f"token_fraction={self.token_fraction}, "
            f"classes={len(self.classes)}, sequences={int(self.input_ids.shape[0])}"
        )


__all__ = ["TextEncoder", "TextFeatures", "parse_finetune"]
