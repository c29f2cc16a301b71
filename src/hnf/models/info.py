"""Parameters and FLOPs of a model by component, and its inference throughput."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hnf.models import experts
from hnf.models.config import ConfigError, HNFConfig
from hnf.models.hnf import HNF


def _layer_parts() -> dict[str, str]:
    """Component -> module path below ``layers.<i>``: the token embedding, the cross-scale
    exchange, each expert's components (:data:`hnf.models.experts.EXPERTS`, below
    ``experts.<name>``), the gate."""
    parts = {"patch_embed": "patch_embed", "cross_scale": "cross"}
    for spec in experts.EXPERTS:
        for comp, sub in spec.components:
            parts[comp] = ".".join(filter(None, ("experts", spec.name, sub)))
    return {**parts, "gate": "gate"}


def _component_modules(model: nn.Module) -> dict[str, list[str]]:
    """Component name -> module paths it covers (only those that exist in this model): an
    :class:`HNF`, or an ``HNFLLM`` (its backbone's parts, then the text encoder, the cross-modal
    attention and the classifier)."""
    names = {name for name, _ in model.named_modules()}
    backbone: HNF = getattr(model, "backbone", model)
    prefix = "backbone." if backbone is not model else ""
    parts: dict[str, list[str]] = {}
    for comp in ("trunk", "stem"):
        if f"{prefix}{comp}" in names:
            parts[comp] = [f"{prefix}{comp}"]
    for i in range(len(backbone.layers)):
        for comp, sub in _layer_parts().items():
            if f"{prefix}layers.{i}.{sub}" in names:
                parts.setdefault(comp, []).append(f"{prefix}layers.{i}.{sub}")
    parts["readout"] = [f"{prefix}readout.{i}" for i in range(len(backbone.readout))]
    for comp, path in (("text", "text"), ("cross_modal", "cross"), ("image_proj", "image_proj")):
        if path in names:
            parts[comp] = [path]
    parts["head"] = ["classifier"] if "classifier" in names else ["head"]
    return parts


def model_report(model: HNF, img_size: int | None = None) -> dict[str, Any]:
    """``{"params", "flops", "components": {name: {"params", "flops"}}}`` for one
    1 x C x S x S image (S = the config's image size unless given); FLOPs from
    ``FlopCounterMode`` (a multiply-add counts 2). ``params`` counts all trainable parameters;
    the components cover every one of them (the scale weights of the read-out go to ``readout``).

    Raises:
        ConfigError: ``model`` is not an hnf model (a timm baseline has no HNF components).
    """
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, HNFConfig):
        raise ConfigError(f"a component report needs an hnf model, not {type(model).__name__}")
    size = img_size or cfg.img_size
    x = torch.zeros(1, cfg.in_chans, size, size)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(x)  # warm: a frozen text encoder's one-off pass over the descriptions is not per image
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    modules = dict(model.named_modules())
    components: dict[str, dict[str, int]] = {}
    for comp, paths in _component_modules(model).items():
        params = sum(p.numel() for path in paths for p in modules[path].parameters())
        flops = sum(sum(counts.get(f"{root}.{path}", {}).values()) for path in paths)
        components[comp] = {"params": int(params), "flops": int(flops)}
    covered = {id(p) for paths in _component_modules(model).values() for path in paths
               for p in modules[path].parameters()}
    loose = sum(p.numel() for p in model.parameters() if id(p) not in covered)  # scale weights, text gates
    components["readout"]["params"] += loose
    return {
        "model_config": {k: getattr(cfg, k) for k in cfg.field_names()},
        "img_size": size,
        "params": int(sum(p.numel() for p in model.parameters())),
        "flops": int(counter.get_total_flops()),
        "components": components,
    }


def throughput(model: nn.Module, in_chans: int = 1, img_size: int = 224, batch: int = 8,
               iters: int = 3, bf16: bool = False) -> float:
    """Inference images/s on CPU at ``batch`` (one warm-up pass, median of ``iters`` passes)."""
    x = torch.randn(batch, in_chans, img_size, img_size)
    was_training = model.training
    model.eval()
    times = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x)
        for _ in range(iters):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    model.train(was_training)
    return batch / sorted(times)[len(times) // 2]
