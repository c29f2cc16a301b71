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

Pictures (:func:`explanation_figure`, :func:`render_prediction`): by default a summary for the
scientist (the micrograph with the analysed region and a scale bar, the finest heat map with a
labelled colour bar, the full class names, the verdict); ``style="experts"`` adds the per-scale
attention and expert panels.
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
    cells: np.ndarray | None = None  # occlusion: the raw probability drop per grid cell

    @property
    def finest(self) -> ScaleExplanation | None:
        """The scale with the most tokens (None for occlusion)."""
        return max(self.scales, key=lambda s: s.grid[0] * s.grid[1]) if self.scales else None

    def fine_map(self) -> np.ndarray:
        """The heat map on the finest grid the model has, in its own units: for HNF models the
        read-out attention of the scale with the most tokens times its token count (1 = an even
        spread, 2 = twice the average patch), for occlusion the probability drop per cell."""
        finest = self.finest
        if finest is not None:
            return np.asarray(finest.attention, dtype=np.float32) * finest.attention.size
        if self.cells is not None:
            return np.asarray(self.cells, dtype=np.float32)
        return np.asarray(self.combined, dtype=np.float32)

    def fine_label(self, class_name: str) -> str:
        """What :meth:`fine_map` measures, for the colour bar."""
        finest = self.finest
        if finest is not None:
            return (f"attention relative to an even spread (1 = average)\n"
                    f"finest grid: {finest.grid[0]}x{finest.grid[1]} patches of {finest.patch} px")
        if self.cells is not None:
            rows, cols = self.cells.shape
            return f"drop in P({class_name}) when the cell is hidden\n({rows}x{cols} occlusion grid)"
        return "relative importance (0 = least, 1 = most)"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "scales": [s.to_json() for s in self.scales]}


def _unit(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    values = values - values.min()
    top = float(values.max())
    return values / top if top > 0 else values


def upsample(values: np.ndarray, size: tuple[int, int], mode: str = "bilinear") -> np.ndarray:
    """A small (h, w) map resized to ``size`` (rows, columns), ``bilinear`` or ``bicubic`` (then
    clipped to the map's own range, so the smoother curve never overshoots)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    tensor = torch.from_numpy(values)[None, None]
    out = F.interpolate(tensor, size=size, mode=mode, align_corners=False)[0, 0].numpy()
    return np.clip(out, values.min(), values.max()) if mode == "bicubic" else out


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
        out.append(Explanation("occlusion", target, _unit(upsample(cells, (height, width))), cells=cells))
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
#
# The default picture ("summary") answers "why this class, and how sure" for a scientist: the
# band-cut micrograph with the analysed region (the centre crop the model saw) marked and a scale
# bar where the file states its pixel size; that region with the heat map of the model's finest
# grid upsampled smoothly over it and a colour bar saying what it measures; the top-k classes
# with their full names; and the abstain / unknown verdict where the prediction carries one.
# ``style="experts"`` adds, for ML users, the per-scale attention maps and the expert with the
# largest gate weight per patch below it.

EXPLAIN_STYLES = ("summary", "experts")
"""``hnf predict --explain-style``: ``summary`` (default) or ``summary`` plus the expert panels."""

DPI = 100
SUMMARY_SIZE = (14.5, 6.2)  # inches: 1450 x 620 pixels at DPI
EXPERT_ROW_HEIGHT = 3.1  # inches per row of per-scale panels
PANEL_RATIOS = (1.25, 1.15, 1.0)  # micrograph, analysed region, top-k
MAX_DISPLAY_SIDE = 1600  # the full micrograph is box-averaged to at most this many pixels a side
REGION_COLOUR = "#00d5ff"
VERDICT_COLOURS = {"unknown": "#c62828", "abstain": "#e67e00", "accepted": "#2e7d32", "note": "#5d6577"}


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


@dataclass(frozen=True)
class Region:
    """The part of the band-cut micrograph the model's centre crop covers, in its pixels."""

    top: float
    left: float
    height: float
    width: float


def analysed_region(height: int, width: int, pre: Any, metadata: Any = None) -> Region:
    """Where the centre crop of :func:`hnf.predict.prepare_grey` lies in a band-cut ``height x width``
    image prepared with the checkpoint's ``pre`` (:class:`hnf.train.checkpoint.Preprocessing`) and
    the file's ``metadata``: the same scale as the preparation (resampled to ``pre.pixel_size_nm``
    when the image states a pixel size and fills the window at that scale, else short side to
    ``pre.resize``; grown to ``pre.img_size`` when ``resize`` is smaller), centred."""
    size, resize = int(pre.img_size), int(pre.resize)
    scale_x = scale_y = resize / max(1, min(height, width))
    pixel = getattr(metadata, "pixel_size_m", None)
    target = getattr(pre, "pixel_size_nm", None)
    if target and pixel:
        sx = pixel * 1e9 / target
        sy = (getattr(metadata, "pixel_height_m", None) or pixel) * 1e9 / target
        if min(height * sy, width * sx) >= resize:
            scale_x, scale_y = sx, sy
    grow = max(1.0, size / resize)
    box_h = min(float(height), size / (scale_y * grow))
    box_w = min(float(width), size / (scale_x * grow))
    return Region((height - box_h) / 2, (width - box_w) / 2, box_h, box_w)


def verdict_of(row: Any, min_confidence: float | None = None) -> dict[str, Any] | None:
    """``{"abstain", "unknown", "ood_score", "min_confidence"}`` of a prediction row (None for a row
    without ``abstain`` and ``unknown`` attributes). A row that does not abstain while no
    ``min_confidence`` was set counts as not checked (``abstain`` None)."""
    if not hasattr(row, "abstain") and not hasattr(row, "unknown"):
        return None
    abstain = getattr(row, "abstain", None)
    if min_confidence is None and not abstain:
        abstain = None
    return {"abstain": abstain, "unknown": getattr(row, "unknown", None),
            "ood_score": getattr(row, "ood_score", None), "min_confidence": min_confidence}


def verdict_lines(verdict: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Plain-language lines ``(text, kind)`` for a verdict; kind is a key of :data:`VERDICT_COLOURS`."""
    if verdict is None:
        return []
    unknown, abstain = verdict.get("unknown"), verdict.get("abstain")
    score, floor = verdict.get("ood_score"), verdict.get("min_confidence")
    lines = []
    if unknown:
        extra = f" (unknown-input score {score:.3g})" if score is not None else ""
        lines.append((f"UNKNOWN INPUT: unlike the images the model was trained on{extra}; "
                      "the class above is only the nearest guess", "unknown"))
    if abstain:
        below = f" of {floor:.0%}" if floor is not None else ""
        lines.append((f"NOT SURE: the top probability is below the minimum confidence{below}, so the "
                      "model abstains", "abstain"))
    passed = ([f"top probability at least {floor:.0%}"] if abstain is False and floor is not None else []) + (
        ["like the images the model was trained on"] if unknown is False else [])
    if passed and not unknown and not abstain:
        lines.append(("ACCEPTED: " + " and ".join(passed), "accepted"))
    if unknown is None:
        lines.append(("no unknown-input check in this checkpoint", "note"))
    if abstain is None:
        lines.append(("no minimum confidence set (hnf predict --min-confidence)", "note"))
    return lines


def nice_length(metres: float) -> float:
    """The largest 1, 2 or 5 x 10^n metres not above ``metres``."""
    exponent = np.floor(np.log10(metres))
    for step in (5.0, 2.0, 1.0):
        if step * 10**exponent <= metres:
            return float(step * 10**exponent)
    return float(10**exponent)


def _scale_bar(ax: Any, pixel_size_m: float, width_px: float, height_px: float) -> None:
    """A white scale bar about a fifth of the panel wide (data coordinates are pixels of size
    ``pixel_size_m``), labelled with its length; its gid is ``scale-bar``."""
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    from hnf.data.metadata import format_length

    metres = nice_length(width_px * pixel_size_m / 5)
    bar = AnchoredSizeBar(ax.transData, metres / pixel_size_m, format_length(metres), "lower right",
                          pad=0.4, borderpad=0.6, sep=3, color="white", frameon=True,
                          size_vertical=max(1.0, height_px / 90), fontproperties=FontProperties(size=9))
    bar.patch.set_facecolor("black")
    bar.patch.set_alpha(0.55)
    bar.patch.set_edgecolor("none")
    bar.set_gid("scale-bar")
    ax.add_artist(bar)


def _display_image(grey: np.ndarray) -> np.ndarray:
    """The micrograph box-averaged to at most :data:`MAX_DISPLAY_SIDE` pixels a side (for drawing)."""
    from PIL import Image

    factor = int(np.ceil(max(grey.shape) / MAX_DISPLAY_SIDE))
    if factor <= 1:
        return grey
    image = Image.fromarray((np.clip(grey, 0, 1) * 255).round().astype(np.uint8)).reduce(factor)
    return np.asarray(image, dtype=np.float32) / 255.0


def _fit_lines(text: str, width_px: float, size: float, renderer: Any, min_size: float = 5.0) -> tuple[str, float]:
    """``text`` wrapped at spaces (never cut) into lines at most ``width_px`` wide at the largest
    font size from ``size`` down to ``min_size`` (a single word wider than that at ``min_size`` is
    broken); returns the wrapped text and the font size."""
    from matplotlib.font_manager import FontProperties

    def width(line: str, points: float) -> float:
        return renderer.get_text_width_height_descent(line, FontProperties(size=points), ismath=False)[0]

    while True:
        lines: list[str] = []
        words = text.split(" ")
        fits = True
        for word in words:
            if width(word, size) > width_px:
                fits = False
                if size > min_size:
                    break
            candidate = f"{lines[-1]} {word}" if lines else word
            if lines and width(candidate, size) <= width_px:
                lines[-1] = candidate
            else:
                lines.append(word)
        if fits or size <= min_size:
            break
        size = max(min_size, size - 0.5)
    if not fits:  # a word too long even at min_size: break it into pieces that fit
        broken: list[str] = []
        for line in lines:
            piece = ""
            for char in line:
                if piece and width(piece + char, size) > width_px:
                    broken.append(piece)
                    piece = ""
                piece += char
            broken.append(piece)
        lines = broken
    return "\n".join(lines), size


def _micrograph_panel(ax: Any, grey: np.ndarray, region: Region, band: Any,
                      pixel_size_m: float | None, field_of_view_m: Sequence[float] | None) -> None:
    from matplotlib.patches import Rectangle

    from hnf.data.metadata import format_length

    height, width = grey.shape
    ax.imshow(_display_image(grey), cmap="gray", vmin=0, vmax=1, extent=(0, width, height, 0),
              interpolation="antialiased")
    box = Rectangle((region.left, region.top), region.width, region.height, fill=False,
                    edgecolor=REGION_COLOUR, linewidth=2.0, gid="analysed-region")
    ax.add_patch(box)
    ax.text(region.left + 4, region.top + 4, "analysed region", color=REGION_COLOUR, fontsize=8,
            va="top", ha="left", bbox={"facecolor": "black", "alpha": 0.5, "edgecolor": "none", "pad": 1.5})
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    cut = f", information band (rows {band.top}-{band.bottom}) cut" if band is not None else ""
    ax.set_title(f"micrograph{cut}", fontsize=9)
    if pixel_size_m:
        _scale_bar(ax, pixel_size_m, width, height)
        field = (f", field of view {format_length(field_of_view_m[0])} x {format_length(field_of_view_m[1])}"
                 if field_of_view_m else "")
        ax.set_xlabel(f"{width} x {height} px, pixel size {format_length(pixel_size_m)}{field}", fontsize=8)
    else:
        ax.set_xlabel(f"{width} x {height} px; pixel size not stated in the file (no scale bar)", fontsize=8)


def _region_panel(fig: Any, ax: Any, view: np.ndarray, explanation: Explanation, region: Region,
                  class_name: str, pixel_size_m: float | None) -> None:
    extent = (0, region.width, region.height, 0)  # pixels of the file, so the scale bar is the file's
    heat = upsample(explanation.fine_map(), view.shape, mode="bicubic")
    ax.imshow(view, cmap="gray", vmin=0, vmax=1, extent=extent)
    low, high = float(heat.min()), float(heat.max())
    if high - low < 1e-6:  # an even map: a small range around its value
        low, high = low - 0.5 * max(abs(low), 1e-3), high + 0.5 * max(abs(high), 1e-3)
    image = ax.imshow(heat, cmap="inferno", alpha=0.55, vmin=low, vmax=high, extent=extent,
                      interpolation="bilinear")
    bar = fig.colorbar(image, ax=ax, fraction=0.06, pad=0.02)
    bar.set_label(explanation.fine_label(class_name), fontsize=8)
    bar.ax.tick_params(labelsize=7)
    bar.ax.set_gid("heat-colorbar")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("analysed region: where the model looked", fontsize=9)
    ax.set_xlabel(f"centre crop the model saw ({view.shape[1]} x {view.shape[0]} px model input)", fontsize=8)
    if pixel_size_m:
        _scale_bar(ax, pixel_size_m, region.width, region.height)


def _top_k_panel(fig: Any, ax: Any, top_k: Sequence[dict[str, Any]], verdict: dict[str, Any] | None,
                 width_px: float, model_name: str) -> None:
    renderer = fig.canvas.get_renderer()
    lines = verdict_lines(verdict)
    y = 0.0
    ax.set_title(f"most likely classes ({model_name})" if model_name else "most likely classes", fontsize=9)
    for rank, entry in enumerate(top_k):
        name, size = _fit_lines(entry["class"], width_px * 0.97, 11.0 if rank == 0 else 9.5, renderer)
        rows = name.count("\n") + 1
        y -= 0.18 * rows * size / 9.5 + 0.05
        ax.text(0, y, name, fontsize=size, va="bottom", ha="left", gid=f"class-name-{rank}",
                fontweight="bold" if rank == 0 else "normal")
        y -= 0.3
        ax.barh(y + 0.12, entry["prob"], height=0.22, left=0, color="#2f6fdf" if rank == 0 else "#8fa8d8")
        ax.text(min(entry["prob"], 0.84) + 0.015, y + 0.12, f"{entry['prob']:.1%}", va="center", fontsize=9)
        y -= 0.12
    for text, kind in lines:
        wrapped, size = _fit_lines(text, width_px * 0.97, 9.5, renderer)
        y -= 0.2 * (wrapped.count("\n") + 1) * size / 9.5 + 0.08
        ax.text(0, y, wrapped, fontsize=size, va="bottom", ha="left", color=VERDICT_COLOURS[kind],
                fontweight="bold" if kind != "note" else "normal", gid=f"verdict-{kind}")
    ax.set_xlim(0, 1)
    ax.set_ylim(min(y - 0.1, -3.2), 0.05)
    ax.axis("off")


def _expert_panels(fig: Any, view: np.ndarray, explanation: Explanation) -> None:
    """Per scale: the read-out attention over the input, and the expert of largest gate weight per
    patch with each expert's share (the picture for ML users)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    scales = explanation.scales
    if not scales:
        fig.text(0.5, 0.5, "no expert gates in this model (its heat map is an occlusion map)",
                 ha="center", va="center", fontsize=10)
        return
    grid = fig.add_gridspec(2, max(3, len(scales)))
    colours = [EXPERT_COLOURS.get(name, "#7f7f7f") for name in explanation.experts]
    cmap = ListedColormap(colours)
    for s, scale in enumerate(scales):
        ax = fig.add_subplot(grid[0, s])
        ax.imshow(_colourise(view, upsample(_unit(scale.attention), view.shape)))
        ax.set_title(f"read-out attention, patch {scale.patch} ({scale.grid[0]}x{scale.grid[1]}), "
                     f"scale weight {scale.weight:.2f}", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(grid[1, s])
        extent = (0, scale.grid[1], scale.grid[0], 0)
        ax.imshow(view, cmap="gray", vmin=0, vmax=1, extent=extent)
        ax.imshow(scale.expert_map, cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5, alpha=0.5,
                  extent=extent, interpolation="nearest")
        shares = ", ".join(f"{k} {v:.0%}" for k, v in scale.shares.items())
        ax.set_title(f"largest gate per patch; dominant: {scale.dominant}\n{shares}", fontsize=8)
        ax.axis("off")
    fig.legend(handles=[Patch(color=c, label=n) for n, c in zip(explanation.experts, colours)],
               loc="outside lower center", ncol=len(colours), fontsize=8, frameon=False)


def explanation_figure(
    grey: np.ndarray,
    view: np.ndarray,
    explanation: Explanation,
    top_k: Sequence[dict[str, Any]],
    title: str,
    band: Any = None,
    model_name: str = "",
    *,
    region: Region | None = None,
    pixel_size_m: float | None = None,
    field_of_view_m: Sequence[float] | None = None,
    verdict: dict[str, Any] | None = None,
    style: str = "summary",
) -> Any:
    """The explanation picture as a matplotlib ``Figure`` (see the comment above
    :data:`EXPLAIN_STYLES`). ``grey`` is the band-cut micrograph, ``view`` the model's input crop in
    [0, 1], ``region`` where that crop lies in ``grey`` (default: the centred square of the short
    side, as when ``resize`` equals the crop size), ``pixel_size_m`` the file's pixel width (None:
    unknown, no scale bar), ``verdict`` the row's abstain / unknown fields (:func:`verdict_of`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if style not in EXPLAIN_STYLES:
        raise ValueError(f"explanation style must be one of {', '.join(EXPLAIN_STYLES)}, got {style!r}")
    if region is None:
        side = float(min(grey.shape))
        region = Region((grey.shape[0] - side) / 2, (grey.shape[1] - side) / 2, side, side)
    experts = style == "experts"
    rows_below = 2 if experts and explanation.scales else (1 if experts else 0)
    height = SUMMARY_SIZE[1] + EXPERT_ROW_HEIGHT * rows_below
    fig = Figure(figsize=(SUMMARY_SIZE[0], height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    if experts:
        summary, below = fig.subfigures(2, 1, height_ratios=(SUMMARY_SIZE[1], height - SUMMARY_SIZE[1]))
    else:
        summary, below = fig, None
    best = top_k[0] if top_k else {"class": "", "prob": float("nan")}
    summary.suptitle(f"{title}\npredicted: {best['class']} ({best['prob']:.1%})", fontsize=11)
    grid = summary.add_gridspec(1, 3, width_ratios=PANEL_RATIOS)
    _micrograph_panel(summary.add_subplot(grid[0, 0]), grey, region, band, pixel_size_m, field_of_view_m)
    _region_panel(summary, summary.add_subplot(grid[0, 1]), view, explanation, region, best["class"], pixel_size_m)
    width_px = SUMMARY_SIZE[0] * DPI * PANEL_RATIOS[2] / sum(PANEL_RATIOS) * 0.9
    _top_k_panel(summary, summary.add_subplot(grid[0, 2]), top_k, verdict, width_px, model_name)
    if below is not None:
        _expert_panels(below, view, explanation)
    return fig


def render_explanation(*args: Any, **options: Any) -> bytes:
    """:func:`explanation_figure` (the same arguments) as PNG bytes."""
    fig = explanation_figure(*args, **options)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def prediction_figure_options(row: Any, pre: Any, style: str = "summary",
                              min_confidence: float | None = None) -> dict[str, Any]:
    """The keyword arguments of :func:`explanation_figure` for a :class:`hnf.predict.Prediction`
    whose ``prepared`` images are kept, prepared with the checkpoint's ``pre`` (``min_confidence``:
    the threshold its ``abstain`` was decided with, None when none was set)."""
    prepared = row.prepared
    height, width = prepared.grey.shape
    return {
        "region": analysed_region(height, width, pre, prepared.metadata),
        "pixel_size_m": row.pixel_size_m,
        "field_of_view_m": row.field_of_view_m,
        "verdict": verdict_of(row, min_confidence),
        "style": style,
    }


def render_prediction(row: Any, pre: Any, model_name: str = "", style: str = "summary",
                      min_confidence: float | None = None) -> bytes:
    """The explanation PNG of one prediction row (``row.explanation`` and ``row.prepared`` set;
    arguments as for :func:`prediction_figure_options`)."""
    prepared = row.prepared
    return render_explanation(prepared.grey, prepared.view, row.explanation, row.top_k, row.path, row.band,
                              model_name, **prediction_figure_options(row, pre, style, min_confidence))
