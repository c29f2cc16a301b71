"""Write (or fetch from the cache) the descriptions of a class set: the engine of ``hnf describe``."""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hnf.errors import HnfError
from hnf.text.corpus import CORPUS_PROVIDER, offline_descriptions
from hnf.text.descriptions import Description, DescriptionSet, normalize_class
from hnf.text.prompts import DEFAULT_IMAGING, PromptTemplate, select_prompts
from hnf.text.providers import Provider

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


def parse_classes(spec: str) -> list[str]:
    """``"A, B,C"`` -> ``["A", "B", "C"]``; duplicates (after normalisation) are an error."""
    classes = [c.strip() for c in spec.split(",") if c.strip()]
    keys = [normalize_class(c) for c in classes]
    if not classes:
        raise HnfError("--classes is empty")
    if len(set(keys)) != len(keys):
        raise HnfError(f"--classes names a class twice: {spec}")
    return classes


def classes_from_data(path: str | Path) -> list[str]:
    """Class names of a dataset: its sub-folders holding images (sorted), or a CSV manifest's labels."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "label" not in reader.fieldnames:
                raise HnfError(f"{path}: a manifest needs a `label` column")
            return sorted({row["label"] for row in reader if row.get("label")})
    if not path.is_dir():
        raise HnfError(f"{path}: not a dataset folder or CSV manifest")
    classes = sorted(
        d.name
        for d in path.iterdir()
        if d.is_dir()
        and not d.name.startswith(".")
        and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.rglob("*") if f.is_file())
    )
    if not classes:
        raise HnfError(f"{path}: no class folders with images (expected <dataset>/<Class>/<image>)")
    return classes


@dataclass
class DescribeReport:
    requested: int = 0
    cached: int = 0
    written: int = 0


def describe(
    classes: list[str],
    provider: Provider | None,
    *,
    cache: DescriptionSet | None = None,
    prompts: list[PromptTemplate] | None = None,
    per_class: int | None = None,
    refresh: bool = False,
    imaging: str = DEFAULT_IMAGING,
    save: Callable[[DescriptionSet], object] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[DescriptionSet, DescribeReport]:
    """Descriptions of ``classes``: for each class, prompt and sample index ``0..per_class-1`` (default 1).

    An entry already in ``cache`` (same class, provider, model, prompt, sample) is not requested
    again unless ``refresh``. ``provider=None`` takes them from the shipped corpus (``per_class``
    then caps how many per class, default all; ``None`` prompts means all). ``save`` is called after every new
    description, so an interrupted run keeps what it got.
    """
    cache = cache if cache is not None else DescriptionSet()
    keep = [c for c in cache.classes if normalize_class(c) not in {normalize_class(x) for x in classes}]
    cache.classes = list(classes) + keep
    report = DescribeReport()
    if provider is None:
        prompt_ids = None if prompts is None else [p.id for p in prompts]
        fresh = offline_descriptions(classes, per_class=per_class, prompt_ids=prompt_ids)
        for d in fresh.descriptions:
            report.requested += 1
            if cache.has(d.key) and not refresh:
                report.cached += 1
                continue
            cache.add(d)
            report.written += 1
        if save is not None:
            save(cache)
        return cache, report

    prompts = prompts if prompts is not None else select_prompts("all")
    per_class = 1 if per_class is None else per_class
    if per_class < 1:
        raise HnfError("--per-class must be at least 1")
    for name in classes:
        for prompt in prompts:
            for sample in range(per_class):
                report.requested += 1
                key = (normalize_class(name), provider.name, provider.model, prompt.id, sample)
                if cache.has(key) and not refresh:
                    report.cached += 1
                    continue
                system, user = prompt.render(name, classes, imaging)
                if on_progress:
                    on_progress(f"{name} / {prompt.id} / sample {sample}")
                log.info("describing %s with %s (%s, sample %d)", name, provider.model, prompt.id, sample)
                text = provider.generate(system, user, seed=sample)
                extra = {k: v for k, v in provider.provenance().items() if v is not None}
                if imaging != DEFAULT_IMAGING:
                    extra["imaging"] = imaging
                cache.add(
                    Description(
                        class_name=name,
                        text=text,
                        provider=provider.name,
                        model=provider.model,
                        prompt_id=prompt.id,
                        temperature=provider.temperature,
                        sample=sample,
                        extra=extra,
                    )
                )
                report.written += 1
                if save is not None:
                    save(cache)
    if save is not None and report.written == 0:
        save(cache)
    return cache, report


def load_or_offline(path: str | Path | None, classes: list[str]) -> DescriptionSet:
    """Descriptions of ``classes`` from ``path`` when given, else from the shipped corpus.

    The error for a class set neither covers says how to get descriptions.
    """
    if path is not None:
        ds = DescriptionSet.load(path)
        ds.texts_by_class(classes)  # raises, naming the missing classes
        return ds
    return offline_descriptions(classes)


__all__ = [
    "CORPUS_PROVIDER",
    "DescribeReport",
    "classes_from_data",
    "describe",
    "load_or_offline",
    "parse_classes",
]
