"""Where a model looked: heat maps and expert shares for predictions, and their pictures.

HNF models (anything whose ``forward(x, return_explain=True)`` returns features with
``readout_attn``, ``gate_weights``, ``grids``, ``scales``, ``scale_weights`` and ``experts``, as
:class:`hnf.models.hnf.HNFFeatures` does) are explained from what they computed anyway, in the same
forward pass as the prediction:

* per scale, the read-out attention over the token grid (mean over heads, sums to 1): the patches
  that made up the scale's image vector;
* combined: ``sum_s a_s * N_s * attn_s`` upsampled to the input, with ``a_s`` the learned scale
  weights of the image embedding (``N_s * attn_s`` is attention relative to uniform, so scales
  with different token counts are comparable); maps are scaled to [0, 1] for display;
* per scale, the share of each expert (sequence, graph, interaction): the gate weights averaged
  over tokens weighted by the read-out attention, so the share is of what the read-out used; the
  dominant expert is the largest share; per token, the expert of largest gate weight.

Other models (timm baselines) have no attention read-out or gates. They get a gradient-free
**occlusion map** instead (Zeiler and Fergus 2014): the input is cut into a 7 x 7 grid, each cell
in turn is set to the normalised mean grey (0), and the drop of the predicted class's probability
is the cell's importance (negative drops count as 0). It costs 49 extra forward passes per image
and has no expert shares.
"""

from __future__ import annotations

import base64
import inspect
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

OCCLUSION_GRID = 7
EXPERT_COLOURS = {"sequence": "#1f77b4", "graph": "#2ca02c", "interaction": "#d62728"}


@dataclass
class ScaleExplanation:
    """One scale of an HNF model: patch size, token grid, its weight in the image embedding,
    the read-out attention ``attention`` (h, w), expert ``shares`` (name -> fraction), the
    ``dominant`` expert and, per token, the index of the largest gate weight (``expert_map``)."""

    patch: int
    grid: tuple[int, int]
    weight: float
    attention: np.ndarray
    shares: dict[str, float]
    dominant: str
    expert_map: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {
            "patch": self.patch,
            "grid": list(self.grid),
            "weight": self.weight,
            "experts": self.shares,
            "dominant": self.dominant,
        }


@dataclass
class Explanation:
    """Why one image got its prediction. ``combined`` is an (S, S) map in [0, 1] over the model's
    input (the centre crop); ``method`` is ``"hnf"`` (attention and gates) or ``"occlusion"``."""

    method: str
    target: int
    combined: np.ndarray
    scales: list[ScaleExplanation] = field(default_factory=list)
    experts: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "scales": [s.to_json() for s in self.scales]}


def _unit(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    values = values - values.min()
    top = float(values.max())
    return values / top if top > 0 else values


def upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A small (h, w) map resized bilinearly to ``size`` (rows, columns)."""
    tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def supports_hnf_explanation(model: torch.nn.Module) -> bool:
    """True when ``model.forward`` takes ``return_explain`` (HNF models)."""
    try:
        return "return_explain" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _features_usable(features: Any) -> bool:
    needed = ("readout_attn", "gate_weights", "grids", "scales", "scale_weights", "experts")
    return all(hasattr(features, name) for name in needed)


def _hnf_explanations(features: Any, probs: torch.Tensor, size: tuple[int, int]) -> list[Explanation]:
    experts = tuple(features.experts)
    scale_weights = features.scale_weights.detach().float().cpu().numpy().reshape(-1)
    out = []
    for b in range(probs.shape[0]):
        combined = np.zeros(size, dtype=np.float32)
        scales = []
        for s, (patch, grid) in enumerate(zip(features.scales, features.grids)):
            h, w = int(grid[0]), int(grid[1])
            attn = features.readout_attn[s][b].detach().float().cpu().numpy()
            gates = features.gate_weights[s][b].detach().float().cpu().numpy()  # (N, E)
            weight = float(scale_weights[s]) if s < len(scale_weights) else 1.0 / len(features.scales)
            combined += weight * upsample(attn.reshape(h, w) * attn.size, size)
            shares_arr = (attn[:, None] * gates).sum(0) / max(float(attn.sum()), 1e-12)
            shares = {name: float(v) for name, v in zip(experts, shares_arr)}
            scales.append(ScaleExplanation(
                patch=int(patch), grid=(h, w), weight=weight, attention=attn.reshape(h, w),
                shares=shares, dominant=experts[int(np.argmax(shares_arr))] if experts else "",
                expert_map=gates.argmax(-1).reshape(h, w),
            ))
        out.append(Explanation("hnf", int(probs[b].argmax()), _unit(combined), scales, experts))
    return out


def occlusion_maps(model: torch.nn.Module, x: torch.Tensor, probs: torch.Tensor,
                   grid: int = OCCLUSION_GRID, chunk: int = 16) -> list[Explanation]:
    """Occlusion explanations (see the module docstring) for a batch ``x`` with probabilities ``probs``."""
    _, _, height, width = x.shape
    rows = np.linspace(0, height, grid + 1).round().astype(int)
    cols = np.linspace(0, width, grid + 1).round().astype(int)
    out = []
    for b in range(x.shape[0]):
        target = int(probs[b].argmax())
        variants = []
        for i in range(grid):
            for j in range(grid):
                v = x[b].clone()
                v[:, rows[i] : rows[i + 1], cols[j] : cols[j + 1]] = 0.0
                variants.append(v)
        drops = []
        for start in range(0, len(variants), chunk):
            logits = model(torch.stack(variants[start : start + chunk]))
            drops.append(probs[b, target] - logits.float().softmax(-1)[:, target])
        cells = torch.cat(drops).clamp_min(0).reshape(grid, grid).cpu().numpy()
        out.append(Explanation("occlusion", target, _unit(upsample(cells, (height, width)))))
    return out


@torch.inference_mode()
def explain_batch(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, list[Explanation]]:
    """Probabilities (B, C) of a prepared batch and an :class:`Explanation` per image."""
    model.eval()
    size = (int(x.shape[-2]), int(x.shape[-1]))
    if supports_hnf_explanation(model):
        result = model(x, return_explain=True)
        if isinstance(result, tuple) and len(result) == 2 and _features_usable(result[1]):
            logits, features = result
            probs = logits.float().softmax(-1)
            return probs.cpu().numpy(), _hnf_explanations(features, probs, size)
        logits = result[0] if isinstance(result, tuple) else result
    else:
        logits = model(x)
    probs = logits.float().softmax(-1)
    return probs.cpu().numpy(), occlusion_maps(model, x, probs)


# -- pictures ------------------------------------------------------------------------------------


def _colourise(view: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    from matplotlib import colormaps

    grey = np.repeat(np.clip(view, 0, 1)[..., None], 3, axis=-1)
    colour = colormaps["inferno"](np.clip(heat, 0, 1))[..., :3]
    weight = alpha * (0.25 + 0.75 * np.clip(heat, 0, 1))[..., None]
    return np.clip((1 - weight) * grey + weight * colour, 0, 1)


def _png(rgb_or_grey: np.ndarray) -> bytes:
    from PIL import Image

    image = Image.fromarray((np.clip(rgb_or_grey, 0, 1) * 255).round().astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def overlay_png(view: np.ndarray, explanation: Explanation) -> bytes:
    """The model's input with the combined heat map blended over it, as PNG bytes."""
    return _png(_colourise(view, explanation.combined))


def view_png(view: np.ndarray) -> bytes:
    """The model's input (centre crop, [0, 1]) as a grey PNG."""
    return _png(view)


def render_explanation(
    grey: np.ndarray,
    view: np.ndarray,
    explanation: Explanation,
    top_k: Sequence[dict[str, Any]],
    title: str,
    band: Any = None,
    model_name: str = "",
) -> bytes:
    """A PNG with the micrograph, the combined heat map over the model's input, the top-k bars,
    and per scale the attention map and the dominant expert per patch (or the occlusion map)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    scales = explanation.scales
    columns = max(3, len(scales))
    rows = 3 if scales else 1
    fig = Figure(figsize=(3.4 * columns, 3.3 * rows + 0.5), dpi=80)
    fig.suptitle(title, fontsize=10)
    grid = fig.add_gridspec(rows, columns)

    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
    ax.set_title("micrograph" + (f" (band rows {band.top}-{band.bottom} cut)" if band is not None else ""),
                 fontsize=8)
    ax.axis("off")

    ax = fig.add_subplot(grid[0, 1])
    ax.imshow(_colourise(view, explanation.combined))
    how = "read-out attention, all scales" if explanation.method == "hnf" else "occlusion (no gates in this model)"
    ax.set_title(f"where it looked: {how}", fontsize=8)
    ax.axis("off")

    ax = fig.add_subplot(grid[0, 2])
    names = [e["class"] for e in top_k][::-1]
    values = [e["prob"] for e in top_k][::-1]
    ax.barh(range(len(names)), values, color="#4c72b0")
    ax.set_yticks(range(len(names)), [n[:22] for n in names], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_title(f"top-{len(names)} ({model_name})" if model_name else f"top-{len(names)}", fontsize=8)
    for i, v in enumerate(values):
        ax.text(min(v + 0.02, 0.8), i, f"{v:.2f}", va="center", fontsize=7)

    if scales:
        colours = [EXPERT_COLOURS.get(name, "#7f7f7f") for name in explanation.experts]
        cmap = ListedColormap(colours)
        for s, scale in enumerate(scales):
            ax = fig.add_subplot(grid[1, s])
            heat = upsample(_unit(scale.attention), view.shape)
            ax.imshow(_colourise(view, heat))
            ax.set_title(f"patch {scale.patch} ({scale.grid[0]}x{scale.grid[1]}), weight {scale.weight:.2f}",
                         fontsize=8)
            ax.axis("off")
            ax = fig.add_subplot(grid[2, s])
            ax.imshow(view, cmap="gray", vmin=0, vmax=1, extent=(0, scale.grid[1], scale.grid[0], 0))
            ax.imshow(scale.expert_map, cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5, alpha=0.5,
                      extent=(0, scale.grid[1], scale.grid[0], 0), interpolation="nearest")
            shares = ", ".join(f"{k} {v:.0%}" for k, v in scale.shares.items())
            ax.set_title(f"dominant: {scale.dominant}\n{shares}", fontsize=7)
            ax.axis("off")
        fig.legend(handles=[Patch(color=c, label=n) for n, c in zip(explanation.experts, colours)],
                   loc="lower center", ncol=len(colours), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
