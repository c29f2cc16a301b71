"""The training loop, readable top to bottom (in the spirit of nanoGPT's ``train.py``).

AdamW (no weight decay on biases, norms and embeddings; PyTorch's fused kernel on CPU and CUDA,
one pass over all parameters instead of a dozen small ops per tensor), linear warm-up then
cosine decay per step, label-smoothed cross-entropy, gradient clipping, bf16 autocast where the
hardware has it, and optionally ``torch.compile`` of the training step's model.
With ``time_budget_s`` set, ``epochs`` is an upper bound and :class:`~hnf.train.budget.EpochBudget`
plans (after the warm-up) and re-plans (after every later epoch, longer or shorter until the final
decay phase) how many fit the budget; a resumed run keeps the plan it had.
Every epoch ends with a validation pass, a line in ``metrics.jsonl`` and an atomic checkpoint;
``resume=True`` continues from the last checkpoint, mid-epoch included (the epoch's batch order is
a function of the seed and the epoch). SIGINT finishes the current step, writes a checkpoint and
stops cleanly. After the last epoch the checkpoint gains its temperature (fitted on the validation
side) and unknown-input detector (fitted on the training side; :func:`hnf.trust.fit_run_trust`),
then the test side is evaluated once, calibrated.

:func:`_train` runs in sections (settings, data, model, training, test). The body of its step
loop is the step itself (learning rate, forward, loss, backward, clipping, optimiser step) and its
counters; resuming, validation, budget re-planning, checkpoints and the out-of-memory advice are
the named helpers above it.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.nn.parallel import DistributedDataParallel

from hnf.atomic import atomic_write_json, atomic_write_text
from hnf.data.transforms import MEAN, NORMALISATIONS, STD
from hnf.errors import HnfError
from hnf.models.factory import build_classifier, pretrained_architecture, trunk_modules
from hnf.models.hnf import HNF
from hnf.models.hnf_llm import HNFLLM
from hnf.models.pretrained import grey_normalisation
from hnf.models.registry import trunk_crop_multiple
from hnf.train.budget import EpochBudget, budget_epoch
from hnf.train.config import TRUNK_BN, TrainConfig
from hnf.train.checkpoint import CheckpointMeta, Preprocessing, load_checkpoint, load_train_state, save_checkpoint
from hnf.train.data import RunData, build_loaders, class_count_warnings, prepare_run_data, upsampling_warning
from hnf.train.data import pixel_size_warnings
from hnf.train.device import autocast_dtype, pick_device
from hnf.train.distributed import DistContext, init_distributed, shutdown_distributed
from hnf.train.evaluate import plot_confusion, predict_loader, score, score_predictions
from hnf.train.plots import plot_curves
from hnf.trust import fit_run_trust, plot_reliability, plot_risk_coverage
from hnf.tta import check_views

console = Console()

FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # measured: bench/bench_optimizer.py


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    epochs_done: int
    interrupted: bool
    seconds: float
    images_per_s: float
    budget_note: str | None = None  # a budgeted run far shorter than its quiet pace allows (EpochBudget.shortfall)


NO_DECAY_NAMES = ("pos_embed", "token", ".pos", ".query")
"""Name parts of the parameters that are embeddings or learned queries, not weight matrices:
timm's ``pos_embed`` / ``cls_token``, HNF's positional grids (``patch_embed.pos``) and its
read-out queries (``readout.N.query``)."""


def param_groups(model: torch.nn.Module, weight_decay: float, trunk_lr_factor: float = 1.0) -> list[dict[str, Any]]:
    """Weight decay on matrices and kernels only, not on biases, norm scales, embeddings or
    learned queries (:data:`NO_DECAY_NAMES`); the pretrained trunk's parameters
    (:func:`~hnf.models.factory.trunk_modules`) in groups of their own whose ``lr_scale`` is
    ``trunk_lr_factor`` (the others' is 1). Empty groups are left out."""
    trunk = {id(p) for module in trunk_modules(model) for p in module.parameters()}
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim <= 1 or any(part in name for part in NO_DECAY_NAMES)
        groups.setdefault((id(param) in trunk, exempt), []).append(param)
    return [{"params": params, "weight_decay": 0.0 if exempt else weight_decay,
             "lr_scale": trunk_lr_factor if in_trunk else 1.0}
            for (in_trunk, exempt), params in sorted(groups.items())]


def set_trunk_mode(model: torch.nn.Module, frozen: bool, bn_frozen: bool) -> None:
    """Freeze (no gradients) or unfreeze the pretrained trunk; its batch norm in evaluation mode
    (fixed running statistics) while frozen or when ``bn_frozen``. Call after ``model.train()``."""
    for module in trunk_modules(model):
        module.requires_grad_(not frozen)
        if frozen or bn_frozen:
            for sub in module.modules():
                if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                    sub.eval()


def resolve_normalisation(config: TrainConfig) -> tuple[str, float, float]:
    """(normalisation, mean, std) of a run: a pretrained model's grey mean and std
    (:func:`~hnf.models.pretrained.grey_normalisation`) for ``"fixed"``, which ``"auto"`` means
    for it; ``"auto"`` is ``"per_image"`` for a model trained from scratch."""
    architecture = pretrained_architecture(config.model, config.model_overrides)
    mean, std = grey_normalisation(architecture) if architecture else (MEAN, STD)
    if config.normalisation == "auto":
        return ("fixed" if architecture else "per_image"), mean, std
    return config.normalisation, mean, std


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@contextmanager
def stop_on_sigint() -> Iterator[dict[str, bool]]:
    """Turn the first SIGINT into a flag the loop checks after each step; a second one aborts."""
    flag = {"stop": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        flag["stop"] = True
        console.print("[yellow]interrupt: finishing this step, then writing a checkpoint (Ctrl-C again to abort)[/yellow]")

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave SIGINT alone
        previous = None
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError`` or the CPU allocator's failure."""
    text = str(err)
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def out_of_memory_error(config: TrainConfig, device: torch.device, run_dir: Path, err: BaseException) -> HnfError:
    """The message a user needs when a batch does not fit: what, where, and what to do."""
    detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    kept = (" The checkpoint of the last finished epoch is kept in "
            f"{run_dir / 'checkpoint'}.") if (run_dir / "checkpoint").exists() else ""
    return HnfError(
        f"batch size {config.batch_size} of {config.model} at {config.img_size}x{config.img_size} does not fit in "
        f"the memory of {device} ({detail}); start again with a smaller --batch-size, e.g. "
        f"{max(1, config.batch_size // 2)}, or a smaller --img-size.{kept}"
    )


def keep_epochs_up_to(log: Path, epoch: int) -> None:
    """Drop log records of epochs after ``epoch`` (a run killed after logging an epoch but before
    its checkpoint resumes from the checkpoint, and repeats that epoch)."""
    if not log.exists():
        return
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epoch]
    if len(kept) != len(lines):
        atomic_write_text(log, "".join(line + "\n" for line in kept))


def peak_memory(device: torch.device) -> dict[str, Any]:
    """``peak_memory_mib`` and what it measures: on CUDA the peak of tensors allocated on the
    device; on CPU the process's peak resident memory so far (``ru_maxrss``: for folds trained one
    after another in one process, the largest of them up to this one)."""
    if device.type == "cuda":
        return {"peak_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20, "peak_memory_kind": "cuda_allocated"}
    import resource

    return {"peak_memory_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_memory_kind": "process_rss"}


def class_weights(labels: list[int], classes: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1 (for ``class_balanced``)."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    weights = counts.sum() / np.maximum(counts, 1) / classes
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


@dataclass
class TrainState:
    """The counters a checkpoint carries besides weights, optimizer and RNG states.

    ``step``: optimiser steps taken; ``epoch``: epochs finished (a run interrupted mid-epoch has
    ``step > epoch * steps_per_epoch``); ``seconds``: time spent in training steps (validation and
    checkpoints excluded); ``images_seen``: training images over all processes.
    """

    step: int = 0
    epoch: int = 0
    seconds: float = 0.0
    images_seen: int = 0


@dataclass
class EpochTally:
    """Running sums of one epoch's training steps in this process, from clock ``start`` on.

    ``loss_sum`` = sum_b loss_b * |b| and ``correct`` = sum_b #(argmax logits = target) over the
    batches b, ``seen`` = sum_b |b|; ``first_loss``: the epoch's first step loss, averaged over the
    processes.
    """

    start: float
    loss_sum: float = 0.0
    correct: float = 0
    seen: float = 0
    first_loss: float | None = None

    def add(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, context: DistContext,
            device: torch.device) -> None:
        """Count one step: ``loss`` (scalar), ``logits`` (B, classes), ``targets`` (B,)."""
        self.loss_sum += loss.item() * len(targets)
        self.correct += (logits.argmax(1) == targets).sum().item()
        self.seen += len(targets)
        if self.first_loss is None:
            self.first_loss = context.sum([loss.item()], device)[0] / context.world_size

    def status(self, world_size: int) -> str:
        """The progress line: mean loss, top-1 and images per second of the epoch so far."""
        elapsed = time.perf_counter() - self.start
        return (f"loss {self.loss_sum / self.seen:.3f}  acc {self.correct / self.seen:.1%}  "
                f"{self.seen * world_size / elapsed:.1f} img/s")

    def reduce(self, context: DistContext, device: torch.device) -> None:
        """Replace the sums by their totals over all processes."""
        self.loss_sum, self.correct, self.seen = context.sum([self.loss_sum, self.correct, self.seen], device)


@dataclass
class SideSeconds:
    """Seconds this process spends besides training steps: validation and checkpoints in all
    (``total``), and the last checkpoint's (``last_checkpoint``, the budget's guess for the next)."""

    total: float = 0.0
    last_checkpoint: float = 0.0


def train(config: TrainConfig, resume: bool = False) -> RunResult:
    """Run (or resume) training as configured; write everything under ``config.out``.

    A SIGINT at any point (set-up included) lets the current step finish, then writes a
    checkpoint and returns with ``interrupted=True``. Under ``torchrun`` the job trains with
    DistributedDataParallel; only rank 0 writes.
    """
    if config.linear_probe:
        from hnf.train.probe import fit_linear_probe

        return fit_linear_probe(config, console.print)
    context = init_distributed()
    try:
        with stop_on_sigint() as flag:
            return _train(config, resume, flag, context)
    finally:
        shutdown_distributed(context)


def run_config(config: TrainConfig, run_dir: Path, resume: bool) -> TrainConfig:
    """The configuration to run: a resumed run's saved one (a budgeted run keeps the length it
    fixed; otherwise ``config.epochs`` may extend it), else ``config`` for a folder without a run."""
    if resume:
        if not (run_dir / "config.json").is_file() or not (run_dir / "checkpoint").is_dir():
            raise HnfError(f"{run_dir}: no run to resume (expected config.json and checkpoint/ there)")
        saved = json.loads((run_dir / "config.json").read_text())
        return TrainConfig(**{**saved, "epochs": saved["epochs"] if saved.get("time_budget_s") else config.epochs})
    if (run_dir / "checkpoint").exists():
        raise HnfError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    return config


def checked_options(config: TrainConfig, world_size: int) -> tuple[str, float, float]:
    """Refuse options that cannot run, before anything is written; return the run's
    (normalisation, mean, std) (:func:`resolve_normalisation`)."""
    if config.normalisation not in (*NORMALISATIONS, "auto"):
        raise HnfError(f"normalisation must be one of auto, {', '.join(NORMALISATIONS)}, got {config.normalisation!r}")
    if config.trunk_bn not in TRUNK_BN:
        raise HnfError(f"trunk_bn must be one of {', '.join(TRUNK_BN)}, got {config.trunk_bn!r}")
    resolved = resolve_normalisation(config)
    check_views(config.tta_views)  # before training, not after it
    if config.balance_weight < 0:
        raise HnfError(f"balance_weight must be >= 0, got {config.balance_weight}")
    if config.batch_size % world_size:
        raise HnfError(f"batch size {config.batch_size} is not divisible by the {world_size} processes")
    return resolved


def run_data(config: TrainConfig, run_dir: Path, resume: bool, context: DistContext, say: Callable[..., None]) -> RunData:
    """The run's images and split: rank 0 makes (or reuses) the split and saves it in the run
    folder, the other processes read it there; problems and class-count warnings are said."""
    split_file = run_dir / "split.json" if resume else (Path(config.split) if config.split else None)
    if context.is_main:
        run = prepare_run_data(Path(config.data), split_file, run_dir, config.seed, config.test_fraction, config.val_fraction,
                               config.train_per_class)
    context.barrier()
    if not context.is_main:
        run = prepare_run_data(Path(config.data), run_dir / "split.json", None, config.seed, config.test_fraction,
                               config.val_fraction, config.train_per_class)
    for problem in run.skipped:
        say(f"[yellow]skipped:[/yellow] {problem}")
    for warning in class_count_warnings(run):
        say(f"[yellow]warning:[/yellow] {warning}")
    if (enlarging := upsampling_warning(run.median_short_side, config.img_size, config.resize,
                                        trunk_crop_multiple(config.model, config.model_overrides))) is not None:
        say(f"[yellow]warning:[/yellow] {enlarging}")
    for warning in pixel_size_warnings(run.scales, config.pixel_size_nm, config.resize):
        say(f"[yellow]warning:[/yellow] {warning}")
    return run


def resume_state(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                 context: DistContext) -> TrainState:
    """Load the last checkpoint's weights into ``model``, its optimizer and RNG states, and
    return its counters; rank 0 drops the log records of epochs after it."""
    loaded, saved_meta = load_checkpoint(run_dir / "checkpoint", map_location=device)
    model.load_state_dict(loaded.state_dict())
    counters = load_train_state(run_dir / "checkpoint", saved_meta, optimizer)
    state = TrainState(counters["step"], counters["epoch"], counters["seconds"], counters["images_seen"])
    if context.is_main:
        keep_epochs_up_to(run_dir / "metrics.jsonl", state.epoch)
    return state


def set_lr(optimizer: torch.optim.Optimizer, lr: float, factor: float) -> None:
    """Every group's learning rate: ``lr * lr_scale * factor`` (the schedule's :func:`lr_factor`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0) * factor


def forward(model: torch.nn.Module, images: torch.Tensor, balance_weight: float) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Logits (B, classes) of ``images`` and the weighted gate-balance regulariser
    ``balance_weight * (E * sum_e mean(w_e)^2 - 1)`` (DESIGN.md 2.1.5; 0.0 when the weight is 0)."""
    if balance_weight > 0:
        logits, features = model(images, return_explain=True)
        return logits, balance_weight * features.balance_loss
    return model(images), 0.0


@contextmanager
def out_of_memory_advice(config: TrainConfig, device: torch.device, run_dir: Path) -> Iterator[None]:
    """Turn a batch that does not fit in memory into :func:`out_of_memory_error`; other errors pass."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        raise out_of_memory_error(config, device, run_dir, err) from None


def write_checkpoint(run_dir: Path, model: torch.nn.Module, meta: CheckpointMeta, optimizer: torch.optim.Optimizer,
                     state: TrainState, context: DistContext) -> float:
    """Rank 0 writes ``run_dir/checkpoint`` (weights, optimizer, RNG states, ``state``); every
    process waits for it. Returns the seconds it took."""
    began = time.perf_counter()
    meta.epoch, meta.step = state.epoch, state.step
    if context.is_main:
        save_checkpoint(run_dir / "checkpoint", model, meta, optimizer, asdict(state))
    context.barrier()
    return time.perf_counter() - began


def validate_and_log(model: torch.nn.Module, val_loader: Iterable, device: torch.device, amp_dtype: torch.dtype | None,
                     classes: list[str], state: TrainState, tally: EpochTally, lr: float, log: Path) -> dict[str, Any]:
    """Score the validation side after an epoch and append the epoch's record to ``log``
    (``metrics.jsonl``): training loss and top-1 of the (reduced) ``tally``, validation loss,
    top-1 and macro-F1, images per second since the epoch began, training seconds so far."""
    validation = predict_loader(model, val_loader, device, amp_dtype)
    val = score(validation.probs, validation.labels, classes)
    record = {
        "epoch": state.epoch, "step": state.step, "lr": lr,
        "train_loss": tally.loss_sum / max(tally.seen, 1), "train_top1": tally.correct / max(tally.seen, 1),
        "first_step_loss": tally.first_loss,
        "val_loss": validation.loss, "val_top1": val["top1"], "val_macro_f1": val["macro_f1"],
        "images_per_s": tally.seen / max(time.perf_counter() - tally.start, 1e-9), "seconds": state.seconds,
    }
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def replan(budget: EpochBudget, config: TrainConfig, state: TrainState, side: SideSeconds, validation_start: float,
           train_end: float, train_s: float, context: DistContext, device: torch.device, run_dir: Path,
           say: Callable[..., None]) -> TrainConfig:
    """The budget's plan after this epoch (:meth:`EpochBudget.plan`; rank 0's, on every process),
    as the config to go on with; a changed plan is saved in ``run_dir/config.json``.

    The epoch's time besides training is its validation (since clock ``validation_start``) plus
    a checkpoint as long as the last one; the time spent is training, earlier validation and
    checkpoints, and that.
    """
    other = time.perf_counter() - validation_start + side.last_checkpoint
    spent = state.seconds + side.total + other
    planned = budget.plan(state.epoch, state.step, config.epochs, spent, train_end, train_s, other)
    planned = round(context.sum([planned if context.is_main else 0], device)[0])  # rank 0's plan
    if planned == config.epochs:
        return config
    config = replace(config, epochs=planned)
    if context.is_main:
        atomic_write_json(run_dir / "config.json", asdict(config))
    say(f"time budget {config.time_budget_s:.0f} s, {spent:.0f} s spent, {budget.paces[-1]:.1f} s an epoch: "
        f"{planned} epochs")
    return config


def evaluate_test(model: torch.nn.Module, test_loader: Iterable, device: torch.device, amp_dtype: torch.dtype | None,
                  config: TrainConfig, classes: list[str], state: TrainState, run_dir: Path,
                  temperature: float = 1.0) -> dict[str, Any]:
    """Score the test side once (with ``config.tta_views`` views, probabilities at
    ``temperature``) and write ``metrics.json``, ``confusion.png``, ``confusion.json``,
    ``reliability.png`` and ``risk_coverage.png``; return the metrics."""
    test = predict_loader(model, test_loader, device, amp_dtype, config.tta_views, temperature)
    metrics = score_predictions(test, classes)
    metrics.update(
        split="test", test_loss=test.loss, model=config.model, epochs=state.epoch,
        train_seconds=state.seconds, train_images_per_s=state.images_seen / max(state.seconds, 1e-9),
        checkpoint="checkpoint", **peak_memory(device),
    )
    atomic_write_json(run_dir / "metrics.json", metrics)
    plot_confusion(metrics, run_dir / "confusion.png")
    plot_reliability(test.uncalibrated_probs, test.probs, test.labels, temperature, run_dir / "reliability.png")
    plot_risk_coverage(test.probs, test.labels, run_dir / "risk_coverage.png")
    atomic_write_text(run_dir / "confusion.json", json.dumps({"classes": metrics["classes"], "matrix": metrics["confusion_matrix"]}) + "\n")
    return metrics


def _quiet(*args: Any, **kwargs: Any) -> None:
    """``say`` on the processes other than rank 0."""


def _train(config: TrainConfig, resume: bool, flag: dict[str, bool], context: DistContext) -> RunResult:
    # -----------------------------------------------------------------------------
    # settings: a resumed run's own config; every option checked before the run folder is written
    run_dir = Path(config.out)
    say = console.print if context.is_main else _quiet
    config = run_config(config, run_dir, resume)
    normalisation, mean, std = checked_options(config, context.world_size)
    local_batch = config.batch_size // context.world_size
    device = pick_device(config.device)  # before the run folder: a device this machine lacks writes nothing
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", asdict(config))
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    if device.type == "cuda" and context.active:
        device = torch.device("cuda", context.local_rank)
    amp_dtype = autocast_dtype(config.precision, device)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext

    # -----------------------------------------------------------------------------
    # data
    run = run_data(config, run_dir, resume, context, say)
    train_loader, val_loader, test_loader, sampler = build_loaders(
        run, config.img_size, config.resize, local_batch, config.seed, config.crop_band,
        config.workers, pin_memory=device.type == "cuda", num_replicas=context.world_size, rank=context.rank,
        normalisation=normalisation, mean=mean, std=std, pixel_size_nm=config.pixel_size_nm,
    )
    say(
        f"{len(run.classes)} classes; {len(run.train)} train, {len(run.val)} validation, {len(run.test)} test images; "
        f"device {device}{f' x {context.world_size} processes' if context.active else ''}, {'bf16' if amp_dtype else 'fp32'}"
    )

    # -----------------------------------------------------------------------------
    # model, optimizer, schedule, loss
    model = build_classifier(
        config.model, len(run.classes), img_size=config.img_size, class_names=run.classes, **config.model_overrides
    ).to(device)
    if config.balance_weight > 0 and not isinstance(model, (HNF, HNFLLM)):
        raise HnfError(f"--balance-weight needs an HNF model (one with gates); {config.model} has none")
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay, config.trunk_lr_factor), lr=config.lr, betas=(0.9, 0.999),
                                  fused=device.type in FUSED_ADAMW_DEVICES)
    steps_per_epoch = len(train_loader)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = max(1, round(config.warmup_epochs * steps_per_epoch))
    weights = class_weights([run.classes.index(s.label) for s in run.train], len(run.classes)) if config.class_balanced else None
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None, label_smoothing=config.label_smoothing)
    meta = CheckpointMeta(
        model=config.model, classes=run.classes, model_overrides=config.model_overrides,
        preprocessing=Preprocessing(config.img_size, config.resize, mean, std, 1, config.crop_band, normalisation,
                                    config.pixel_size_nm),
    )
    state = TrainState()
    if resume:
        state = resume_state(run_dir, model, optimizer, device, context)
        say(f"resuming at epoch {state.epoch + 1}, step {state.step}")
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if context.active else model
    if config.compile:
        trained = torch.compile(trained)  # shares its parameters with ``model``, which evaluates and saves
        say("torch.compile: the first training steps compile the model (minutes on a CPU)")
    # a budgeted run plans once its warm-up is over; resumed after that, it keeps the plan in its config.json
    plans = bool(config.time_budget_s) and state.epoch < budget_epoch(config.warmup_epochs)
    budget = EpochBudget(config.time_budget_s, config.warmup_epochs, steps_per_epoch, config.epochs) if plans else None
    side = SideSeconds()

    # -----------------------------------------------------------------------------
    # training: epochs of steps, each epoch then validated, logged, re-planned and checkpointed
    interrupted = False
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"), console=console, transient=False, disable=not context.is_main,
    ) as progress:
        while state.epoch < config.epochs and not interrupted:
            trained.train()
            set_trunk_mode(model, frozen=state.epoch < config.trunk_frozen_epochs, bn_frozen=config.trunk_bn == "frozen")
            done_in_epoch = state.step - state.epoch * steps_per_epoch
            sampler.set_epoch(state.epoch, skip=done_in_epoch * local_batch)
            task = progress.add_task(f"epoch {state.epoch + 1}/{config.epochs}", total=steps_per_epoch, completed=done_in_epoch, status="")
            tally = EpochTally(time.perf_counter())
            for images, targets in train_loader:
                images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
                set_lr(optimizer, config.lr, lr_factor(state.step, warmup_steps, total_steps))
                with out_of_memory_advice(config, device, run_dir):
                    with autocast():
                        logits, balance = forward(trained, images, config.balance_weight)
                    loss = loss_fn(logits.float(), targets) + balance
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                state.step += 1

                if budget is not None:
                    budget.after_step(state.step)
                tally.add(loss, logits, targets, context, device)
                progress.update(task, advance=1, status=tally.status(context.world_size))
                if context.any(flag["stop"], device):  # the first SIGINT on any process: all stop here
                    interrupted = True
                    break
            train_end = time.perf_counter()
            state.seconds += train_end - tally.start
            tally.reduce(context, device)
            state.images_seen += int(tally.seen)
            if interrupted:
                write_checkpoint(run_dir, model, meta, optimizer, state, context)
                say(f"stopped at step {state.step}; checkpoint written; continue with --resume")
                break

            state.epoch += 1
            validation_start = time.perf_counter()
            if context.is_main:
                record = validate_and_log(model, val_loader, device, amp_dtype, run.classes, state, tally,
                                          optimizer.param_groups[0]["lr"], run_dir / "metrics.jsonl")
                progress.update(task, status=f"loss {record['train_loss']:.3f}  val top-1 {record['val_top1']:.1%}")
            if budget is not None:
                config = replan(budget, config, state, side, validation_start, train_end, train_end - tally.start,
                                context, device, run_dir, say)
                total_steps = config.epochs * steps_per_epoch
            side.last_checkpoint = write_checkpoint(run_dir, model, meta, optimizer, state, context)
            side.total += time.perf_counter() - validation_start

    # -----------------------------------------------------------------------------
    # curves, and the test side once, after the last epoch
    metrics: dict[str, Any] = {}
    if context.is_main and (run_dir / "metrics.jsonl").exists():
        plot_curves([json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()], run_dir / "curves.png")
    if context.is_main and not interrupted:
        trust = fit_run_trust(model, train_loader.dataset, val_loader, device, amp_dtype, run_dir / "checkpoint",
                              local_batch, say)
        metrics = evaluate_test(model, test_loader, device, amp_dtype, config, run.classes, state, run_dir,
                                trust.temperature)
    context.barrier()
    images_per_s = state.images_seen / max(state.seconds, 1e-9)
    note = budget.shortfall(state.epoch) if budget is not None and not interrupted else None
    return RunResult(run_dir, metrics, state.epoch, interrupted, state.seconds, images_per_s, note)
