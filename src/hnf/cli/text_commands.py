"""``hnf describe`` and ``hnf text pretrain``: class descriptions and the small language model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console

from hnf.cli.errors import reports_errors
from hnf.errors import HnfError

text_app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)


@reports_errors
def describe(
    out: Path = typer.Option(..., "--out", "-o", help="Description file (JSON). Also the cache: existing entries are kept and not requested again."),
    classes: str | None = typer.Option(None, "--classes", help="Comma-separated class names, e.g. Nanowires,Particles,Tips."),
    data: Path | None = typer.Option(None, "--data", help="Dataset folder (one sub-folder per class) or CSV manifest with a `label` column."),
    provider: str = typer.Option("offline", "--provider", help="openai | local | offline (the corpus shipped with hnf)."),
    model: str | None = typer.Option(None, "--model", help="openai: model name the endpoint serves; local: folder of a Hugging Face causal LM."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama)."),
    per_class: int | None = typer.Option(None, "--per-class", help="Samples per class and prompt (openai/local, default 1); offline: at most this many per class (default all)."),
    prompts: str = typer.Option("all", "--prompts", help="Prompt ids from prompts.toml, comma separated, or `all`."),
    temperature: float = typer.Option(0.7, "--temperature", help="Sampling temperature (openai/local)."),
    max_tokens: int = typer.Option(900, "--max-tokens", help="Longest answer, in tokens."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds before one request is abandoned (openai)."),
    retries: int = typer.Option(4, "--retries", help="Retries on 429, 5xx, timeouts (openai), with exponential backoff."),
    api_key_env: str = typer.Option("HNF_LLM_API_KEY", "--api-key-env", help="Environment variable holding the key (falls back to OPENAI_API_KEY). The key is never printed or stored."),
    imaging: str = typer.Option("electron micrograph", "--imaging", help="Imaging mode named in the prompts."),
    refresh: bool = typer.Option(False, "--refresh", help="Request entries again even if the cache has them."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each request."),
) -> None:
    """Write technical descriptions of each class (zero-shot chain-of-thought prompts) with provenance."""
    from hnf.text.describe import classes_from_data, describe as run_describe, parse_classes
    from hnf.text.descriptions import DescriptionSet
    from hnf.text.prompts import select_prompts
    from hnf.text.providers import make_provider

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if (classes is None) == (data is None):
        raise HnfError("give exactly one of --classes A,B,... or --data DIR")
    names = parse_classes(classes) if classes is not None else classes_from_data(data)  # type: ignore[arg-type]
    cache = DescriptionSet.load(out) if out.exists() else DescriptionSet()
    chosen = select_prompts(prompts)
    prov = make_provider(
        provider, model, base_url=base_url, api_key_env=api_key_env, temperature=temperature,
        max_tokens=max_tokens, timeout=timeout, max_retries=retries,
    )
    if prov is None:  # the shipped corpus: every entry (of the prompts named), at most --per-class
        chosen_or_all = None if prompts.strip().lower() == "all" else chosen
        n = per_class
    else:
        chosen_or_all, n = chosen, per_class or 1
    ds, report = run_describe(
        names, prov, cache=cache, prompts=chosen_or_all, per_class=n, refresh=refresh, imaging=imaging,
        save=lambda d: d.save(out),
        on_progress=lambda msg: console.print(f"requesting {msg}", highlight=False),
    )
    counts = {c: len(ds.for_class(c)) for c in names}
    console.print(
        f"{out}: {report.written} new, {report.cached} from cache; descriptions per class: "
        + ", ".join(f"{c}={k}" for c, k in counts.items()),
        highlight=False,
    )


@text_app.command("pretrain")
@reports_errors
def pretrain(
    descriptions: Path = typer.Option(..., "--descriptions", "-d", help="Description file from `hnf describe` (or a user-written one)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the adapted encoder (written atomically)."),
    encoder: str = typer.Option("all-MiniLM-L6-v2", "--encoder", help="Folder or Hugging Face name; default: the packaged all-MiniLM-L6-v2 (offline)."),
    epochs: int = typer.Option(4, "--epochs"),
    lr: float = typer.Option(5e-5, "--lr"),
    batch_size: int = typer.Option(8, "--batch-size"),
    max_length: int = typer.Option(128, "--max-length", help="Tokens per window; longer descriptions are split."),
    mlm_probability: float = typer.Option(0.15, "--mlm-probability"),
    holdout_per_class: int = typer.Option(1, "--holdout-per-class", help="Descriptions per class held out (never trained on) to measure loss."),
    head_steps: int = typer.Option(150, "--head-steps", help="Steps calibrating a freshly initialised MLM head before the 'before' measurement."),
    eval_rounds: int = typer.Option(2, "--eval-rounds", help="Fixed mask draws over the held-out texts (same masks before and after)."),
    seed: int = typer.Option(0, "--seed"),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, ... (default: cuda when present)."),
) -> None:
    """Domain-adaptive masked-language modelling of a small encoder on the descriptions."""
    from hnf.text.descriptions import DescriptionSet
    from hnf.text.mlm import PretrainConfig, pretrain_mlm

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = PretrainConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length, mlm_probability=mlm_probability,
        holdout_per_class=holdout_per_class, head_steps=head_steps, eval_rounds=eval_rounds, seed=seed, threads=threads, device=device,
    )
    ds = DescriptionSet.load(descriptions)
    report = pretrain_mlm(ds, encoder, out, cfg)
    summary = {
        "encoder": report.encoder,
        "out": report.out,
        "heldout_texts": report.n_heldout_texts,
        "train_texts": report.n_train_texts,
        "heldout_masked_tokens": report.heldout_masked_tokens,
        "loss_raw_head": report.loss_raw_head,
        "loss_before": round(report.loss_before, 4),
        "loss_after": round(report.loss_after, 4),
        "perplexity_before": round(report.perplexity_before, 2),
        "perplexity_after": round(report.perplexity_after, 2),
        "seconds": round(report.train_seconds, 1),
    }
    typer.echo(json.dumps(summary, indent=2))
