"""The description corpus shipped with the package (``hnf/text/corpus/*.json``).

Written by hand for this project, not by a language model; each entry says so in its provenance
(``provider = "hnf-corpus"``, ``model = "hand-written"``). It covers the ten NFFA-EUROPE SEM
categories and the classes of the real test sets (uhcs-3class, neu-surface), so the whole model
works offline on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from hnf.errors import HnfError
from hnf.text.descriptions import HOW_TO_GET_DESCRIPTIONS, Description, DescriptionSet, normalize_class

CORPUS_PROVIDER = "hnf-corpus"
CORPUS_MODEL = "hand-written"


@dataclass(frozen=True)
class CorpusClass:
    name: str
    dataset: str
    aliases: tuple[str, ...]
    entries: tuple[dict, ...]


@lru_cache(maxsize=1)
def _corpus() -> tuple[dict, ...]:
    folder = resources.files("hnf.text").joinpath("corpus")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name)
    return tuple(json.loads(f.read_text(encoding="utf-8")) for f in files)


@lru_cache(maxsize=1)
def corpus_classes() -> tuple[CorpusClass, ...]:
    """Every class of the shipped corpus, in file order."""
    out = []
    for data in _corpus():
        for cls in data["classes"]:
            entries = tuple(d for d in data["descriptions"] if d["class"] == cls["name"])
            out.append(CorpusClass(cls["name"], data["dataset"], tuple(cls.get("aliases", ())), entries))
    return tuple(out)


def corpus_datasets() -> dict[str, list[str]]:
    """``{dataset: [class, ...]}`` of the shipped corpus."""
    out: dict[str, list[str]] = {}
    for c in corpus_classes():
        out.setdefault(c.dataset, []).append(c.name)
    return out


def match_class(name: str) -> CorpusClass | None:
    """The corpus class ``name`` refers to (case, ``-``, ``_`` and spaces ignored), or None."""
    key = normalize_class(name)
    for c in corpus_classes():
        if key == normalize_class(c.name) or key in {normalize_class(a) for a in c.aliases}:
            return c
    return None


def corpus_meta(dataset: str) -> dict:
    for data in _corpus():
        if data["dataset"] == dataset:
            return data
    raise KeyError(dataset)


def offline_descriptions(
    classes: list[str], per_class: int | None = None, prompt_ids: list[str] | None = None
) -> DescriptionSet:
    """Descriptions of ``classes`` from the shipped corpus, under the names the caller used.

    Raises :class:`HnfError` naming the classes the corpus lacks and how to get descriptions.
    """
    missing = [c for c in classes if match_class(c) is None]
    if missing:
        known = "; ".join(f"{ds}: {', '.join(cs)}" for ds, cs in corpus_datasets().items())
        raise HnfError(
            f"the shipped corpus has no description of {', '.join(missing)} (it covers {known}). "
            + HOW_TO_GET_DESCRIPTIONS
        )
    out = DescriptionSet(classes)
    for name in classes:
        cc = match_class(name)
        assert cc is not None
        meta = corpus_meta(cc.dataset)
        entries = [(i, e) for i, e in enumerate(cc.entries) if not prompt_ids or e["prompt_id"] in prompt_ids]
        if per_class is not None:
            entries = entries[:per_class]
        for i, e in entries:
            out.add(
                Description(
                    class_name=name,
                    text=e["text"],
                    provider=CORPUS_PROVIDER,
                    model=CORPUS_MODEL,
                    prompt_id=e["prompt_id"],
                    temperature=None,
                    sample=i,
                    date=meta["date"],
                    extra={"corpus_class": cc.name, "corpus_dataset": cc.dataset, "note": meta["note"]},
                )
            )
    return out
