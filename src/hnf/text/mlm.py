"""Domain-adaptive masked-language modelling of a small encoder on the class descriptions.

``pretrain_mlm`` (the engine of ``hnf text pretrain``):

1. splits the descriptions into a training part and a held-out part (by default the last description
   of every class that has at least two is held out, so no held-out text is trained on);
2. loads the encoder with a masked-LM head. The packaged all-MiniLM-L6-v2 is a sentence-transformers
   model and ships no MLM head: the missing head is initialised (transform = identity, LayerNorm = 1/0,
   vocabulary bias = 0, decoder tied to the input embeddings as in BERT) and then *calibrated*, i.e.
   trained alone on the training descriptions with the encoder frozen (:func:`calibrate_head`). The "before" numbers are
   measured after this calibration, so the before/after gap measures what adapting the encoder
   itself brings, not merely fitting a fresh head; the loss of the raw, uncalibrated head is reported too;
3. trains the whole model with 15 % masking (``DataCollatorForLanguageModeling``: 80 % [MASK],
   10 % random token, 10 % unchanged);
4. measures held-out masked-LM loss (mean cross-entropy per masked token) and perplexity = exp(loss)
   with the same fixed masks (seeded collator, several mask draws) before and after;
5. saves model, tokenizer and a ``hnf_pretrain.json`` report atomically (written to a temporary
   sibling folder, then renamed into place).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hnf.errors import HnfError
from hnf.text.descriptions import DescriptionSet
from hnf.text.encoders import load_error, quiet_transformers, resolve_encoder

log = logging.getLogger(__name__)

REPORT_NAME = "hnf_pretrain.json"


@dataclass
class PretrainConfig:
    epochs: int = 8
    lr: float = 5e-5
    head_rounds: int = 2
    head_steps: int = 150
    head_tokens: int = 256
    head_lr: float = 2e-3
    batch_size: int = 8
    max_length: int = 128
    mlm_probability: float = 0.15
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    holdout_per_class: int = 1
    eval_rounds: int = 2
    seed: int = 0
    eval_seed: int = 1234
    device: str | None = None
    threads: int | None = None


@dataclass
class PretrainReport:
    encoder: str
    out: str | None
    head_initialised: bool
    new_head_parameters: list[str]
    n_train_texts: int
    n_heldout_texts: int
    n_train_chunks: int
    n_heldout_chunks: int
    heldout_masked_tokens: int
    loss_raw_head: float | None
    loss_before: float
    loss_after: float
    perplexity_before: float
    perplexity_after: float
    train_seconds: float
    descriptions_sha256: str
    heldout: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def split_heldout(ds: DescriptionSet, per_class: int = 1) -> tuple[list[str], list[str], list[dict]]:
    """``(train_texts, heldout_texts, heldout_info)``: the last ``per_class`` descriptions of each class
    with more than ``per_class`` descriptions are held out; duplicate texts never cross the split."""
    train, held, info = [], [], []
    for cls in ds.classes:
        descs = ds.for_class(cls)
        k = per_class if len(descs) > per_class else 0
        for d in descs[: len(descs) - k]:
            train.append(d.text)
        for d in descs[len(descs) - k :]:
            held.append(d.text)
            info.append({"class": d.class_name, "prompt_id": d.prompt_id, "provider": d.provider, "sample": d.sample})
    held_set = set(held)
    train = [t for t in train if t not in held_set]
    if not train:
        raise HnfError("no description left to train on: every class needs more than --holdout-per-class descriptions")
    if not held:
        raise HnfError("no held-out description: at least one class needs two or more descriptions")
    return train, held, info


def chunk_texts(tokenizer: Any, texts: list[str], max_length: int) -> list[dict[str, list[int]]]:
    """Token windows of at most ``max_length`` (special tokens included), one text never spanning two."""
    if max_length - tokenizer.num_special_tokens_to_add(pair=False) < 8:
        raise HnfError(f"--max-length {max_length} is too short")
    out = []
    for text in texts:
        enc = tokenizer(text, truncation=True, max_length=max_length, return_overflowing_tokens=True)
        for i, ids in enumerate(enc["input_ids"]):
            if i > 0 and len(ids) < 8 + tokenizer.num_special_tokens_to_add(pair=False):
                continue  # a scrap at the end of a long text
            out.append({"input_ids": list(ids)})
    return out


def _device(cfg: PretrainConfig) -> str:
    import torch

    if cfg.device:
        return cfg.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _head_param_names(model: Any) -> list[str]:
    base = getattr(model, "base_model_prefix", "")
    return [n for n, _ in model.named_parameters() if not (base and n.startswith(base + "."))]


def init_missing_head(model: Any, missing: set[str]) -> list[str]:
    """Initialise a missing MLM head: square Linear -> identity, LayerNorm -> (1, 0), biases -> 0.

    Parameters tied to the input embeddings (the decoder weight) are not touched.
    """
    import torch

    done = []
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in sorted(missing):
            mod_name, _, pname = name.rpartition(".")
            mod = modules.get(mod_name)
            if mod is None:
                continue
            p = getattr(mod, pname)
            if isinstance(mod, torch.nn.Linear) and pname == "weight" and p.shape[0] == p.shape[1]:
                p.copy_(torch.eye(p.shape[0]))
            elif isinstance(mod, torch.nn.LayerNorm) and pname == "weight":
                p.fill_(1.0)
            elif pname == "bias" or name.endswith(".bias"):
                p.zero_()
            else:
                continue
            done.append(name)
    return done


def load_mlm(encoder: str | os.PathLike | None) -> tuple[Any, Any, str, list[str]]:
    """``(model, tokenizer, resolved_name, newly_initialised_head_params)``."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    name = resolve_encoder(encoder)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(name)
            model, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
    except (OSError, ValueError) as err:
        raise load_error(name, err) from None
    if tokenizer.mask_token is None:
        raise HnfError(f"{name}: the tokenizer has no mask token; masked-LM needs an encoder tokenizer")
    missing = set(info.get("missing_keys", ()))
    head = set(_head_param_names(model))
    missing_head = sorted(m for m in missing if m in head or not m.startswith(model.base_model_prefix + "."))
    missing_body = sorted(set(missing) - set(missing_head))
    if missing_body:
        raise HnfError(f"{name}: encoder weights missing from the checkpoint: {', '.join(missing_body[:5])}")
    done = init_missing_head(model, set(missing_head)) if missing_head else []
    return model, tokenizer, name, done


def _make_batches(collator: Any, chunks: list[dict], batch_size: int) -> list[dict]:
    return [collator(chunks[i : i + batch_size]) for i in range(0, len(chunks), batch_size)]


def _mlm_head(model: Any) -> Any:
    """The MLM head module when it is the one child beside the base model (BERT, RoBERTa...), else None."""
    base = model.base_model
    heads = [m for _, m in model.named_children() if m is not base]
    return heads[0] if len(heads) == 1 else None


def mlm_loss(model: Any, batch: dict, device: str, fast: bool = True) -> tuple[Any, int]:
    """Mean cross-entropy over the masked tokens of ``batch`` and their count.

    The fast path runs the vocabulary projection only at masked positions (about 15 % of tokens),
    which is most of the cost of a small encoder; it equals the model's own loss (tested).
    """
    import torch.nn.functional as F

    labels = batch["labels"].to(device)
    sel = labels != -100
    n = int(sel.sum())
    ids = batch["input_ids"].to(device)
    att = batch["attention_mask"].to(device)
    head = _mlm_head(model) if fast else None
    if head is None:
        return model(input_ids=ids, attention_mask=att, labels=labels).loss, n
    hidden = model.base_model(input_ids=ids, attention_mask=att).last_hidden_state
    logits = head(hidden[sel].unsqueeze(0)).squeeze(0)
    return F.cross_entropy(logits.float(), labels[sel]), n


def evaluate_mlm(model: Any, batches: list[dict], device: str) -> tuple[float, int]:
    """Mean cross-entropy per masked token over fixed, pre-masked ``batches``; and the token count."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            if int((batch["labels"] != -100).sum()) == 0:
                continue
            loss, n = mlm_loss(model, batch, device)
            total += float(loss) * n
            count += n
    if count == 0:
        raise HnfError("held-out set has no masked token; give longer or more descriptions")
    return total / count, count


def _train(model: Any, params: list, chunks: list[dict], collator: Any, cfg: PretrainConfig, lr: float,
           epochs: int, device: str, seed: int) -> None:
    import torch

    if epochs <= 0 or not params:
        return
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(chunks) / cfg.batch_size)
    total = steps_per_epoch * epochs
    warmup = max(1, int(cfg.warmup_ratio * total))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    model.train()
    step = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(chunks), generator=gen).tolist()
        running = 0.0
        for i in range(0, len(order), cfg.batch_size):
            batch = collator([chunks[j] for j in order[i : i + cfg.batch_size]])
            if int((batch["labels"] != -100).sum()) == 0:
                continue
            loss, _ = mlm_loss(model, batch, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            running += float(loss.detach())
        log.info("epoch %d/%d: train loss %.3f (%.0f s)", epoch + 1, epochs, running / steps_per_epoch,
                 time.perf_counter() - t0)


def calibrate_head(model: Any, tokenizer: Any, chunks: list[dict], cfg: PretrainConfig, device: str) -> None:
    """Fit a newly initialised MLM head with the encoder frozen.

    The encoder's outputs at masked positions are computed once for ``cfg.head_rounds`` mask draws
    (no gradient), then only the head's own parameters (not the decoder weight, which is tied to the
    input embeddings) are trained for ``cfg.head_steps`` steps on minibatches of those cached states.
    """
    import torch
    import torch.nn.functional as F
    from transformers import DataCollatorForLanguageModeling

    head = _mlm_head(model)
    if head is None or cfg.head_steps <= 0:
        return
    feats, targets = [], []
    model.eval()
    with torch.no_grad():
        for r in range(max(1, cfg.head_rounds)):
            coll = DataCollatorForLanguageModeling(
                tokenizer, mlm=True, mlm_probability=cfg.mlm_probability, seed=cfg.seed + 100 + r
            )
            for batch in _make_batches(coll, chunks, cfg.batch_size):
                labels = batch["labels"].to(device)
                sel = labels != -100
                hidden = model.base_model(
                    input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
                ).last_hidden_state
                feats.append(hidden[sel])
                targets.append(labels[sel])
    x, y = torch.cat(feats), torch.cat(targets)
    tied = {id(model.get_output_embeddings().weight)} if model.get_output_embeddings() is not None else set()
    params = [p for p in head.parameters() if id(p) not in tied]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.head_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    head.train()
    for step in range(cfg.head_steps):
        idx = torch.randint(0, x.shape[0], (min(cfg.head_tokens, x.shape[0]),), generator=gen).to(x.device)
        logits = head(x[idx].unsqueeze(0)).squeeze(0)
        loss = F.cross_entropy(logits.float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            log.info("head calibration step %d/%d: loss %.3f", step + 1, cfg.head_steps, float(loss.detach()))
    for p in model.parameters():
        p.requires_grad_(True)


def save_atomic_dir(out: str | os.PathLike, write: Any) -> Path:
    """Call ``write(tmp_dir)`` then move ``tmp_dir`` to ``out`` (replacing it), so ``out`` is never half-written."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def pretrain_mlm(
    descriptions: DescriptionSet,
    encoder: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    cfg: PretrainConfig | None = None,
) -> PretrainReport:
    """Adapt ``encoder`` to ``descriptions`` by masked-LM; return before/after held-out numbers."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    cfg = cfg or PretrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _device(cfg)
    train_texts, held_texts, held_info = split_heldout(descriptions, cfg.holdout_per_class)
    torch.manual_seed(cfg.seed)
    model, tokenizer, name, new_head = load_mlm(encoder)
    model.to(device)
    train_chunks = chunk_texts(tokenizer, train_texts, cfg.max_length)
    held_chunks = chunk_texts(tokenizer, held_texts, cfg.max_length)

    def collator(seed: int | None) -> Any:
        return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=cfg.mlm_probability, seed=seed)

    eval_collator = collator(cfg.eval_seed)
    eval_batches = []
    for _ in range(cfg.eval_rounds):  # several fixed mask draws: a steadier estimate
        eval_batches += _make_batches(eval_collator, held_chunks, cfg.batch_size)

    t0 = time.perf_counter()
    loss_raw = None
    if new_head:
        loss_raw, _ = evaluate_mlm(model, eval_batches, device)
        calibrate_head(model, tokenizer, train_chunks, cfg, device)
    loss_before, n_tokens = evaluate_mlm(model, eval_batches, device)
    params = [p for p in model.parameters() if p.requires_grad]
    _train(model, params, train_chunks, collator(cfg.seed), cfg, cfg.lr, cfg.epochs, device, cfg.seed)
    loss_after, _ = evaluate_mlm(model, eval_batches, device)
    seconds = time.perf_counter() - t0

    digest = hashlib.sha256(json.dumps(descriptions.to_json(), sort_keys=True).encode()).hexdigest()
    report = PretrainReport(
        encoder=str(encoder) if encoder is not None else f"all-MiniLM-L6-v2 ({name})",
        out=str(out) if out is not None else None,
        head_initialised=bool(new_head),
        new_head_parameters=new_head,
        n_train_texts=len(train_texts),
        n_heldout_texts=len(held_texts),
        n_train_chunks=len(train_chunks),
        n_heldout_chunks=len(held_chunks),
        heldout_masked_tokens=n_tokens,
        loss_raw_head=loss_raw,
        loss_before=loss_before,
        loss_after=loss_after,
        perplexity_before=math.exp(loss_before),
        perplexity_after=math.exp(loss_after),
        train_seconds=seconds,
        descriptions_sha256=digest,
        heldout=held_info,
        config=asdict(cfg),
    )
    if out is not None:
        model.eval()

        def write(tmp: Path) -> None:
            with quiet_transformers():  # no "Writing model shards" progress bar
                model.to("cpu").save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
            (tmp / REPORT_NAME).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")

        save_atomic_dir(out, write)
    return report
