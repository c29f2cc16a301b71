"""New classes without retraining: extend a trained checkpoint's classifier from a few images.

A trained model maps an image x to its classifier feature h(x) (d_h), the input of its final
linear layer (:func:`hnf.trust.final_linear`), and scores class k as ``z_k = w_k . h + b_k`` (plus,
in a text-fused model, the cosine head's similarity to the class's descriptions). Adding a class
keeps every weight, appends one row (w, b) to that layer and, in a text-fused model, the class's
descriptions to its text set (so the cosine head and the cross-modal attention see it too).
The row comes from one of:

* ``head``: a logistic fit against a replay bank. The old rows stay fixed; (w, b) minimise the
  class-balanced cross-entropy of the (K+1)-way softmax over the old classes' training features
  kept at the end of training (:class:`hnf.trust.Replay`, up to 64 per class) and the new
  images' features, plus an L2 penalty:

      L(w, b) = 1/(K+1) sum_c 1/|S_c| sum_{i in S_c} -log softmax([W h_i + b_old ; w.h_i + b])_{y_i}
                + lam/2 ||w||^2

  L is convex in (w, b) (a log-sum-exp of affine functions minus an affine one), so L-BFGS from
  the imprinted row finds its minimum.
* ``prototype`` (weight imprinting, Qi et al., CVPR 2018): ``w = r m / ||m||`` with m the new
  images' mean feature less the replay bank's mean feature (the features of a ReLU network all
  point one way; uncentred without a bank) and r the mean norm of the old rows; b makes the new
  logit at that mean feature the mean of the old ones there.
* ``text`` (no images; text-fused models only): w predicted from the class's pooled description
  vector t by kernel ridge regression from the old classes' t_k (T, K x d_t) to their rows
  (W, K x d_h): ``w = t T^T (T T^T + lam_t I)^-1 W``; b the mean old bias.

Each image counts with its 8 dihedral views (a micrograph's class does not change under them,
:mod:`hnf.tta`). The unknown-input detector gains the new class's mean embedding and its images
in the k-NN bank (same precision and thresholds), the replay bank the new features; the temperature stays. The new checkpoint is
an ordinary one: ``predict``, ``serve``, ``evaluate`` and ``export onnx`` use it as any other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hnf.errors import HnfError

METHODS = ("head", "prototype", "text")
DEFAULT_METHOD = "head"
"""The row used when images are given (measured against ``prototype``: BENCHMARKS.md "New classes")."""
HEAD_L2 = 1e-3
"""lam of the ``head`` fit (fixed a priori, not tuned on any test side)."""
TEXT_RIDGE = 0.1
"""lam_t of the ``text`` row, relative to the mean of diag(T T^T)."""
VIEWS = 8


class ClassesError(HnfError, ValueError):
    """A class that cannot be added (name taken, no usable images, no descriptions, ...)."""


@dataclass
class AddReport:
    """What :func:`add_class` did: the class, its images (used and skipped), the row's method,
    and two checks on the data it was fitted to: the share of the new images (as given) that the
    new checkpoint assigns to the class, and the share of the replay bank's old-class features
    still assigned to their own class (both optimistic: the fit saw them)."""

    name: str
    method: str
    out: str
    images: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    descriptions: int = 0
    new_images_assigned: float | None = None
    replay_kept: float | None = None
    classes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- the new row ----------------------------------------------------------------------------------


def imprint_row(weight: Tensor, bias: Tensor, features: Tensor, centre: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``prototype``: w = r m / ||m|| (m the mean of ``features`` (N, d_h) less ``centre`` c (d_h,),
    the replay bank's mean feature where there is one, else 0; r the mean norm of the rows of
    ``weight`` (K, d_h)), and b such that the new logit at c is the old logits' mean there:
    b = mean_k (w_k . c + b_k) - w . c."""
    centre = torch.zeros_like(features[0]) if centre is None else centre.to(features)
    mean = features.mean(0) - centre
    row = weight.norm(dim=1).mean() * mean / mean.norm().clamp_min(1e-12)
    return row, (weight.to(features) @ centre + bias.to(features)).mean() - row @ centre


def fit_head_row(weight: Tensor, bias: Tensor, old_features: Tensor, old_labels: Tensor, new_features: Tensor,
                 l2: float = HEAD_L2, iterations: int = 200) -> tuple[Tensor, Tensor]:
    """``head``: the row (w (d_h,), b ()) minimising the class-balanced (K+1)-way cross-entropy
    over ``old_features`` (M, d_h) with ``old_labels`` (M,) in [0, K) and ``new_features``
    (N, d_h) of class K, plus l2/2 ||w||^2, with ``weight`` (K, d_h) and ``bias`` (K,) fixed
    (module docstring). float64 L-BFGS from the imprinted row."""
    dtype = torch.float64
    weight, bias = weight.to(dtype), bias.to(dtype)
    features = torch.cat([old_features, new_features]).to(dtype)
    k = weight.shape[0]
    labels = torch.cat([old_labels.long(), torch.full((len(new_features),), k, dtype=torch.long)])
    counts = torch.bincount(labels, minlength=k + 1).to(dtype)
    present = int((counts > 0).sum())
    sample_weight = (1.0 / (counts[labels] * present))
    fixed = features @ weight.t() + bias  # (M + N, K)
    w0, b0 = imprint_row(weight, bias, new_features.to(dtype))
    w = w0.clone().requires_grad_(True)
    b = b0.clone().reshape(1).requires_grad_(True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = torch.cat([fixed, (features @ w + b)[:, None]], dim=1)
        loss = (nn.functional.cross_entropy(logits, labels, reduction="none") * sample_weight).sum()
        loss = loss + 0.5 * l2 * w.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return w.detach(), b.detach()[0]


def text_row(weight: Tensor, bias: Tensor, old_text: Tensor, new_text: Tensor, ridge: float = TEXT_RIDGE
             ) -> tuple[Tensor, Tensor]:
    """``text``: w = t T^T (T T^T + lam_t I)^-1 W with T = ``old_text`` (K, d_t) and t = ``new_text``
    (d_t,) L2-normalised, lam_t = ``ridge`` x mean diag(T T^T); b = mean of ``bias``."""
    dtype = torch.float64
    t_old = nn.functional.normalize(old_text.to(dtype), dim=-1)
    t_new = nn.functional.normalize(new_text.to(dtype), dim=-1)
    gram = t_old @ t_old.t()
    lam = ridge * gram.diagonal().mean()
    coefficients = torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=dtype), t_old @ t_new)
    return coefficients @ weight.to(dtype), bias.mean()


# -- the model ------------------------------------------------------------------------------------


def _is_text_fused(model: nn.Module) -> bool:
    return getattr(model, "text", None) is not None and getattr(getattr(model, "cfg", None), "use_text", False)


def extended_model(model: nn.Module, directory: Path, meta: Any, name: str, texts: list[str] | None) -> nn.Module:
    """A copy of ``model`` with one more class ``name``: the final linear layer's new row zero
    (set by the caller), the class's ``texts`` in the text set of a text-fused model."""
    from hnf.train.checkpoint import build_model_of
    from hnf.trust import final_linear

    new_meta = replace(meta, classes=[*meta.classes, name])
    bigger = build_model_of(directory, new_meta)
    state = model.state_dict()
    prefix = {id(module): key for key, module in model.named_modules()}[id(final_linear(model))]
    weight, bias = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
    state[f"{prefix}.weight"] = torch.cat([weight, weight.new_zeros(1, weight.shape[1])])
    state[f"{prefix}.bias"] = torch.cat([bias, bias.new_zeros(1)])
    if texts is not None:
        key = next(k for k in state if k.endswith("text._extra_state"))
        old = state[key]
        state[key] = {"classes": [*old["classes"], name], "texts": [*old["texts"], list(texts)]}
    try:
        bigger.load_state_dict(state)
    except RuntimeError as err:
        raise ClassesError(f"{meta.model}: adding a class changes more than its final linear layer ({err})") from None
    return bigger.to(next(model.parameters()).device).eval()


@torch.no_grad()
def _features(model: nn.Module, images: Tensor, views: int) -> tuple[Tensor, Tensor]:
    """Classifier features h of every view (views * N, d_h) and embeddings of the images as given
    (N, d), batch by batch."""
    from hnf.trust import logits_embedding_and_head_input
    from hnf.tta import dihedral_views

    heads, embeddings = [], []
    for start in range(0, len(images), 16):
        batch = images[start : start + 16]
        _, embedding, head = logits_embedding_and_head_input(model, dihedral_views(batch, views))
        heads.append(head.float().cpu())
        embeddings.append(embedding[: len(batch)].float().cpu())
    return torch.cat(heads), torch.cat(embeddings)


# -- the command ----------------------------------------------------------------------------------


def _descriptions_of(name: str, model_name: str, path: Path | None) -> list[str]:
    from hnf.text.describe import load_or_offline

    try:
        texts = load_or_offline(path, [name]).texts_by_class([name])[name]
    except HnfError as err:
        raise ClassesError(f"{model_name} fuses class descriptions and needs some for {name!r}: give --descriptions "
                           f"FILE ({err})") from None
    if not texts:
        raise ClassesError(f"{path}: no description of {name!r}")
    return list(texts)


def add_class(checkpoint: str | Path, name: str, images: Sequence[str | Path], out: str | Path,
              descriptions: str | Path | None = None, method: str | None = None, device: str = "cpu",
              views: int = VIEWS, say: Callable[..., None] = print) -> AddReport:
    """Write to ``out`` a copy of ``checkpoint`` that also predicts ``name``, learned from
    ``images`` (files, folders or globs; none: from its descriptions alone, ``text``); see the
    module docstring for ``method`` (default :data:`DEFAULT_METHOD`, ``text`` without images).
    Unreadable images are skipped and listed; ``out`` is written whole or not at all."""
    from hnf.predict import Predictor, collect_inputs, resolve_checkpoint
    from hnf.train.checkpoint import load_checkpoint, save_checkpoint
    from hnf.train.device import pick_device
    from hnf.trust import final_linear, load_trust, save_trust

    name = name.strip()
    if not name:
        raise ClassesError("--name: the new class needs a name")
    directory = resolve_checkpoint(checkpoint)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ClassesError(f"{out} already exists; choose another --out (nothing is overwritten)")
    target = pick_device(device)
    model, meta = load_checkpoint(directory, map_location=target)
    if name in meta.classes:
        raise ClassesError(f"{name!r} is already a class of {directory} ({', '.join(meta.classes)})")
    trust = load_trust(directory, meta)
    text_fused = _is_text_fused(model)
    if descriptions is not None and not text_fused:
        raise ClassesError(f"--descriptions: {meta.model} fuses no text, so descriptions would not be used; "
                           "leave the option out")
    method = method or (DEFAULT_METHOD if images else "text")
    if method not in METHODS:
        raise ClassesError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "text" and images:
        raise ClassesError("--method text learns the class from its descriptions alone; give no --images")
    if method == "text" and not text_fused:
        raise ClassesError(f"{meta.model} fuses no class descriptions, so it cannot learn {name!r} without images: "
                           "give --images with a few images of the class")
    if method != "text" and not images:
        raise ClassesError(f"--method {method} needs --images with at least one image of {name!r}")
    if method == "head" and trust.replay is None:
        raise ClassesError(f"{directory}: holds no training features of its classes (written by an older hnf or "
                           "without hnf train's last step); use --method prototype, or train it again")
    texts = _descriptions_of(name, meta.model, Path(descriptions) if descriptions else None) if text_fused else None

    # -- the new class's images, read like predict reads them
    predictor = Predictor(model, meta, target)
    paths, problems = collect_inputs(list(images)) if images else ([], [])
    skipped = [{"file": p.file, "error": p.error or ""} for p in problems]
    prepared = []
    for path in paths:
        try:
            prepared.append(predictor.prepare(path).tensor)
        except HnfError as err:
            skipped.append({"file": str(path), "error": str(err)})
    for row in skipped:
        say(f"skipped {row['error']}")
    if images and not prepared:
        raise ClassesError(f"no readable image of {name!r} among {', '.join(map(str, images))}")

    # -- the bigger model and its new row
    bigger = extended_model(model, directory, meta, name, texts)
    layer = final_linear(bigger)
    weight, bias = layer.weight.detach()[:-1].cpu(), layer.bias.detach()[:-1].cpu()
    embeddings = None
    if prepared:
        heads, embeddings = _features(bigger, torch.stack(prepared).to(target), views)
    if method == "prototype":
        centre = torch.from_numpy(trust.replay.features).mean(0) if trust.replay is not None else None
        row, offset = imprint_row(weight, bias, heads, centre)
    elif method == "head":
        row, offset = fit_head_row(weight, bias, torch.from_numpy(trust.replay.features),
                                   torch.from_numpy(trust.replay.labels), heads)
    else:
        with torch.no_grad():
            pooled = bigger.text().pooled.float().cpu()
        row, offset = text_row(weight, bias, pooled[:-1], pooled[-1])
    with torch.no_grad():
        layer.weight[-1] = row.to(layer.weight)
        layer.bias[-1] = offset.to(layer.bias)

    # -- what the fit reached on its own data
    report = AddReport(name, method, str(out), len(prepared), skipped, len(texts or []),
                       classes=[*meta.classes, name])
    if prepared:
        with torch.no_grad():
            logits = bigger(torch.stack(prepared).to(target)).float()
        report.new_images_assigned = float((logits.argmax(1) == len(meta.classes)).float().mean())
    if trust.replay is not None:
        replay = torch.from_numpy(trust.replay.features).to(layer.weight)
        with torch.no_grad():
            kept = (layer(replay).argmax(1).cpu().numpy() == trust.replay.labels).mean()
        report.replay_kept = float(kept)

    # -- the new checkpoint, written beside ``out`` and moved into place whole
    ood = trust.ood
    if ood is not None and embeddings is not None:
        unit = torch.nn.functional.normalize(embeddings, dim=1).numpy()
        ood = replace(ood, means=np.concatenate([ood.means, embeddings.mean(0, keepdim=True).numpy()]).astype(np.float32),
                      bank=None if ood.bank is None else np.concatenate([ood.bank, unit]).astype(np.float32))
    elif ood is not None:
        ood = None  # a class without images has no mean embedding: the detector would call it unknown
        say("unknown-input detector dropped: the new class has no images to place it")
    replay = trust.replay.extended(heads.numpy(), len(meta.classes)) if trust.replay is not None and prepared else None
    new_meta = replace(meta, classes=[*meta.classes, name], ood=None,
                       added_classes=[*meta.added_classes, {"name": name, "method": method, "images": len(prepared),
                                                            "descriptions": len(texts or [])}])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_checkpoint(staging, bigger, new_meta)
        save_trust(staging, trust.temperature, ood, replay)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"added {name!r} ({method}, {len(prepared)} image(s), {len(texts or [])} description(s)) -> {out}")
    return report
