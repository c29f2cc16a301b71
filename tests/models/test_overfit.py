"""hnf_small can fit 32 synthetic micrographs: 100% training accuracy within 100 steps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hnf.data.synth import SYNTH_CLASSES, render_micrograph
from hnf.models import create_model


def test_hnf_small_overfits_32_synthetic_micrographs() -> None:
    rng = np.random.default_rng(0)
    labels = torch.arange(32) % len(SYNTH_CLASSES)
    images = torch.stack([torch.from_numpy(render_micrograph(SYNTH_CLASSES[i], 224, rng))
                          for i in labels.tolist()]).unsqueeze(1)
    x = (images - 0.5) / 0.25
    model = create_model("hnf_small", num_classes=len(SYNTH_CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    history = []
    for _ in range(100):
        logits = model(x)  # no dropout in hnf_small: these are the current model's predictions
        history.append((logits.argmax(-1) == labels).float().mean().item())
        if history[-1] == 1.0:
            break
        opt.zero_grad()
        F.cross_entropy(logits, labels).backward()
        opt.step()
    assert history[-1] == 1.0, f"train accuracy after {len(history)} steps: {history[-5:]}"
