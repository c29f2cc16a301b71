"""Find the labelled images of a dataset: a folder per class (the NFFA layout) or a CSV manifest.

Indexing never decodes images; it lists what is there and records every problem found (empty
class folder, non-image file, manifest row pointing nowhere) instead of stopping at the first.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hnf.data.reading import IMAGE_EXTENSIONS, is_image_path
from hnf.errors import DatasetError

MANIFEST_COLUMNS = ("path", "label")
"""Required manifest columns; ``group`` is optional (images of one group stay on one side of a
split)."""


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``path`` is absolute; ``group`` is None unless the manifest gives one."""

    path: Path
    label: str
    group: str | None = None


@dataclass(frozen=True)
class Problem:
    """Something that was skipped, with the file (or folder, or manifest row) and the reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class DatasetIndex:
    """The samples of a dataset, its class names (sorted), its root and what was skipped."""

    root: Path
    samples: list[Sample]
    classes: list[str]
    problems: list[Problem] = field(default_factory=list)

    def relative(self, path: Path) -> str:
        """``path`` relative to the dataset root, with forward slashes."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def class_counts(self) -> dict[str, int]:
        counts = Counter(sample.label for sample in self.samples)
        return {name: counts.get(name, 0) for name in self.classes}

    def require_classes(self, minimum: int = 2) -> None:
        """Raise :class:`DatasetError` unless at least ``minimum`` classes have images."""
        present = [name for name, count in self.class_counts().items() if count > 0]
        if len(present) < minimum:
            found = ", ".join(present) or "none"
            raise DatasetError(
                f"{self.root}: need images of at least {minimum} classes to train or evaluate, "
                f"found {len(present)} ({found})"
            )


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def index_folder(root: Path) -> DatasetIndex:
    """Index a folder with one subfolder per class (images found recursively inside each)."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if not class_dirs:
        raise DatasetError(
            f"{root}: no class folders found (expected one subfolder per class, "
            "each holding images, or a CSV manifest with columns path,label[,group])"
        )
    samples: list[Sample] = []
    classes: list[str] = []
    problems: list[Problem] = []
    absolute_root = root.resolve()
    for class_dir in class_dirs:
        found = 0
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file() and _visible(p)):
            if is_image_path(path):
                # under the root as found, links not resolved: a class folder that is a link to
                # another place (a subset assembled from links) keeps paths relative to the root
                samples.append(Sample(absolute_root / path.relative_to(root), class_dir.name))
                found += 1
            else:
                problems.append(
                    Problem(
                        path.relative_to(root).as_posix(),
                        f"not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})",
                    )
                )
        if found:
            classes.append(class_dir.name)
        else:
            problems.append(Problem(f"{class_dir.name}/", "class folder has no images; class skipped"))
    return DatasetIndex(absolute_root, samples, classes, problems)


def index_manifest(manifest: Path) -> DatasetIndex:
    """Index a CSV manifest (columns ``path,label[,group]``; paths relative to the CSV's folder)."""
    base = manifest.parent.resolve()
    samples: list[Sample] = []
    problems: list[Problem] = []
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [name for name in MANIFEST_COLUMNS if name not in columns]
            if missing:
                raise DatasetError(
                    f"{manifest}: missing column(s) {', '.join(missing)} "
                    f"(expected a header with path,label and optionally group; found {', '.join(columns) or 'no header'})"
                )
            for row_number, row in enumerate(reader, start=2):
                where = f"{manifest.name} line {row_number}"
                raw_path = (row.get("path") or "").strip()
                label = (row.get("label") or "").strip()
                if not raw_path or not label:
                    problems.append(Problem(where, "empty path or label; row skipped"))
                    continue
                path = Path(raw_path)
                path = (path if path.is_absolute() else base / path).resolve()
                if not path.is_file():
                    problems.append(Problem(where, f"file {raw_path!r} not found; row skipped"))
                    continue
                group = (row.get("group") or "").strip() or None
                samples.append(Sample(path, label, group))
    except UnicodeDecodeError as err:
        raise DatasetError(f"{manifest}: not a UTF-8 CSV file ({err.reason})") from None
    classes = sorted({sample.label for sample in samples})
    return DatasetIndex(base, samples, classes, problems)


def index_dataset(source: str | Path) -> DatasetIndex:
    """Index a class-per-folder directory or a ``.csv`` manifest; errors name the path."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or folder")
    if source.is_dir():
        return index_folder(source)
    if source.suffix.lower() == ".csv":
        return index_manifest(source)
    raise DatasetError(
        f"{source}: expected a folder with one subfolder per class or a .csv manifest"
    )
