"""HNF vision backbone: multi-scale patch sequences and vision graphs (DESIGN.md 2.1).

One module per part: :mod:`~hnf.models.patch_embed`, :mod:`~hnf.models.graph` (k-NN graph,
Chebyshev convolution), :mod:`~hnf.models.ode` (bidirectional neural ODE),
:mod:`~hnf.models.gate` (mixture-of-experts gate), :mod:`~hnf.models.layer` (HNF layer),
:mod:`~hnf.models.hnf` (backbone, read-out, registered configs), :mod:`~hnf.models.hnf_llm` (the
backbone fused with class descriptions), :mod:`~hnf.models.registry` (names -> configs and
builders; imports no model module), :mod:`~hnf.models.factory` (``create_model``: registered
models and timm baselines).
"""

from hnf.models.config import ConfigError, HNFConfig, scales_for_image
from hnf.models.hnf import HNF, HNFFeatures
from hnf.models.hnf_llm import HNFLLM, HNFLLMConfig
from hnf.models.patch_embed import ImageSizeError
from hnf.models.factory import create_model
from hnf.models.registry import get_config, list_models, register_model

__all__ = [
    "HNF",
    "ConfigError",
    "HNFConfig",
    "HNFFeatures",
    "HNFLLM",
    "HNFLLMConfig",
    "ImageSizeError",
    "create_model",
    "get_config",
    "list_models",
    "register_model",
    "scales_for_image",
]
