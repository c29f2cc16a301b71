"""Zero-shot chain-of-thought prompt templates, kept in one readable file: ``prompts.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from hnf.errors import HnfError

DEFAULT_IMAGING = "electron micrograph"


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt variant: ``id`` is stored with every description it produced."""

    id: str
    system: str
    user: str

    def render(
        self, class_name: str, classes: list[str], imaging: str = DEFAULT_IMAGING
    ) -> tuple[str, str]:
        """Return ``(system, user)`` messages for ``class_name`` within the class set ``classes``."""
        others = [c for c in classes if c != class_name]
        user = self.user.format(
            class_name=class_name,
            other_classes=", ".join(others) if others else "(no other categories)",
            n_classes=len(others) + 1,
            imaging=imaging,
        ).strip()
        return self.system.strip(), user


@lru_cache(maxsize=4)
def _load(path: str | None) -> tuple[str, tuple[PromptTemplate, ...]]:
    if path is None:
        text = resources.files("hnf.text").joinpath("prompts.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    cue = data.get("cue", "Let's think step by step.")
    prompts = []
    for raw in data.get("prompt", []):
        prompts.append(PromptTemplate(id=raw["id"], system=raw.get("system", ""), user=raw["user"]))
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        raise HnfError(f"prompt ids must be unique, got {ids}")
    return cue, tuple(prompts)


def step_by_step_cue(path: str | Path | None = None) -> str:
    """The chain-of-thought cue every template ends with."""
    return _load(None if path is None else str(path))[0]


def load_prompts(path: str | Path | None = None) -> list[PromptTemplate]:
    """All prompt templates, from the packaged ``prompts.toml`` or from ``path``."""
    return list(_load(None if path is None else str(path))[1])


def select_prompts(spec: str | None = "all", path: str | Path | None = None) -> list[PromptTemplate]:
    """Templates chosen by ``spec``: ``"all"`` (or empty) or comma-separated ids."""
    prompts = load_prompts(path)
    if not spec or spec.strip().lower() == "all":
        return prompts
    by_id = {p.id: p for p in prompts}
    chosen = []
    for pid in (s.strip() for s in spec.split(",") if s.strip()):
        if pid not in by_id:
            raise HnfError(f"unknown prompt id {pid!r}; known ids: {', '.join(by_id)}")
        chosen.append(by_id[pid])
    return chosen
