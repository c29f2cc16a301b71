"""Class descriptions with provenance, and the JSON file (cache) that holds them.

File format (``"format": "hnf-descriptions"``), documented for users in ``docs/descriptions.md``::

    {
      "format": "hnf-descriptions",
      "version": 1,
      "classes": ["Nanowires", "Particles"],
      "descriptions": [
        {"class": "Nanowires", "text": "...", "provider": "openai", "model": "gpt-4o-mini",
         "prompt_id": "cot_overview", "temperature": 0.7, "sample": 0,
         "date": "2026-11-26T12:00:00+00:00"},
        ...
      ]
    }

A user-written file may also be the short form ``{"Nanowires": ["text", ...], ...}``; its entries
get ``provider = "user"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hnf.atomic import atomic_write_json, read_json
from hnf.errors import HnfError

FORMAT = "hnf-descriptions"
VERSION = 1


def normalize_class(name: str) -> str:
    """Forgiving class key: case, ``-``, ``_``, spaces and other punctuation are ignored."""
    return re.sub(r"[^0-9a-z]+", "", name.lower())


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Description:
    """One description of one class, with where it came from."""

    class_name: str
    text: str
    provider: str
    model: str
    prompt_id: str
    temperature: float | None = None
    sample: int = 0
    date: str = field(default_factory=utc_now)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        """Cache key: an entry with the same key is never requested again (unless refreshed)."""
        return (normalize_class(self.class_name), self.provider, self.model, self.prompt_id, self.sample)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        out: dict[str, Any] = {"class": d.pop("class_name"), "text": d.pop("text")}
        extra = d.pop("extra")
        out.update(d)
        out.update(extra)
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str = "") -> Description:
        try:
            known = {
                "class_name": raw["class"],
                "text": raw["text"],
                "provider": raw.get("provider", "user"),
                "model": raw.get("model", "unknown"),
                "prompt_id": raw.get("prompt_id", "user"),
                "temperature": raw.get("temperature"),
                "sample": int(raw.get("sample", 0)),
                "date": raw.get("date", ""),
            }
        except KeyError as err:
            raise HnfError(f"{where}: a description entry lacks the field {err.args[0]!r}") from None
        if not isinstance(known["text"], str) or not known["text"].strip():
            raise HnfError(f"{where}: description of class {known['class_name']!r} has no text")
        extra = {k: v for k, v in raw.items() if k not in {"class", "text", *known}}
        return cls(**known, extra=extra)


class DescriptionSet:
    """An ordered class list and the descriptions of those classes."""

    def __init__(self, classes: Iterable[str] = (), descriptions: Iterable[Description] = ()) -> None:
        self.classes: list[str] = list(classes)
        self.descriptions: list[Description] = []
        for d in descriptions:
            self.add(d)

    # -- content ---------------------------------------------------------------------------
    def add(self, desc: Description, replace: bool = True) -> None:
        """Add ``desc``; an entry with the same key is replaced (or kept when ``replace=False``)."""
        for i, old in enumerate(self.descriptions):
            if old.key == desc.key:
                if replace:
                    self.descriptions[i] = desc
                return
        self.descriptions.append(desc)
        if normalize_class(desc.class_name) not in {normalize_class(c) for c in self.classes}:
            self.classes.append(desc.class_name)

    def has(self, key: tuple[str, str, str, str, int]) -> bool:
        return any(d.key == key for d in self.descriptions)

    def for_class(self, name: str) -> list[Description]:
        k = normalize_class(name)
        return [d for d in self.descriptions if normalize_class(d.class_name) == k]

    def texts_by_class(self, classes: list[str] | None = None) -> dict[str, list[str]]:
        """``{class: [text, ...]}`` in the order of ``classes`` (default: this set's classes).

        Raises a :class:`HnfError` naming every class that has no description.
        """
        classes = list(self.classes if classes is None else classes)
        out = {c: [d.text for d in self.for_class(c)] for c in classes}
        missing = [c for c, texts in out.items() if not texts]
        if missing:
            raise HnfError(
                f"no description for class(es) {', '.join(missing)}. " + HOW_TO_GET_DESCRIPTIONS
            )
        return out

    def __len__(self) -> int:
        return len(self.descriptions)

    # -- files -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "classes": list(self.classes),
            "descriptions": [d.to_json() for d in self.descriptions],
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash never leaves a half-written cache."""
        return atomic_write_json(path, self.to_json())

    @classmethod
    def from_json(cls, raw: Any, where: str = "<json>") -> DescriptionSet:
        if isinstance(raw, dict) and raw.get("format") == FORMAT:
            if int(raw.get("version", 1)) > VERSION:
                raise HnfError(f"{where}: description file version {raw['version']} is newer than this hnf")
            descs = [Description.from_json(r, where) for r in raw.get("descriptions", [])]
            return cls(raw.get("classes", []), descs)
        if isinstance(raw, dict) and raw and all(isinstance(v, list) for v in raw.values()):
            # short, user-written form: {"Class": ["text", ...]}
            out = cls(list(raw))
            for name, texts in raw.items():
                for i, text in enumerate(texts):
                    if not isinstance(text, str) or not text.strip():
                        raise HnfError(f"{where}: description {i} of class {name!r} is not a non-empty string")
                    out.add(Description(name, text.strip(), "user", "user-written", "user", None, i, ""))
            return out
        raise HnfError(
            f"{where}: not a description file. Expected {{\"format\": \"{FORMAT}\", ...}} "
            "or {\"ClassName\": [\"description\", ...], ...} (see docs/descriptions.md)"
        )

    @classmethod
    def load(cls, path: str | Path) -> DescriptionSet:
        return cls.from_json(read_json(path, "description file"), str(path))


HOW_TO_GET_DESCRIPTIONS = (
    "Get descriptions with a language model: `hnf describe --classes A,B --provider openai "
    "--model MODEL [--base-url URL] --out descriptions.json` (key in HNF_LLM_API_KEY or "
    "OPENAI_API_KEY; any OpenAI-compatible server such as vLLM, Ollama or llama.cpp works), or "
    "`--provider local --model PATH/TO/HF_CAUSAL_LM`; or write them yourself as JSON "
    '({"ClassName": ["description", ...], ...}, format in docs/descriptions.md) and pass that file.'
)
