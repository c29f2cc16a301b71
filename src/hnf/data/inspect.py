"""Inspect a dataset: what is there, what is wrong with it, and what it looks like.

:func:`inspect_dataset` decodes every image once (in parallel), records size, mode, band,
SHA-256 and perceptual hash, groups duplicates and collects unreadable files;
:func:`write_contact_sheet` draws a few images per class with the band outlined.

Each image's instrument metadata (:mod:`hnf.data.metadata`) gives its pixel size, instrument and,
where stated, the databar (then also compared with the pixel detector's band: files where the
two disagree are listed). :func:`metadata_warnings` scores how well each metadata field alone
predicts the class (a shortcut a model can learn, such as classes imaged at different
magnifications).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hnf.atomic import atomic_write_bytes, atomic_write_json
from hnf.data.band import Band, detect_band
from hnf.data.dataset import DatasetIndex, Problem, Sample, index_dataset
from hnf.data.duplicates import duplicate_group_ids, exact_groups, file_sha256, near_groups, perceptual_hash
from hnf.data.metadata import Metadata, format_length, metadata_band
from hnf.data.reading import read_grey, read_grey_and_metadata
from hnf.errors import ImageReadError


@dataclass(frozen=True)
class ImageRecord:
    """What inspection learnt about one readable image."""

    path: str
    label: str
    width: int
    height: int
    mode: str
    band: Band | None
    sha256: str
    phash: str
    group: str | None = None
    pixel_size_m: float | None = None
    instrument: dict = field(default_factory=lambda: {"vendor": None})
    metadata_notes: dict = field(default_factory=dict)
    metadata_warnings: tuple[str, ...] = ()
    detected_band: Band | None = None  # the pixel detector's band, also when the metadata's is used

    @property
    def short_side(self) -> int:
        """The short side of what training sees: the image above the band, if there is one."""
        return min(self.width, self.band.top if self.band else self.height)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "label": self.label,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "band": self.band.as_dict() if self.band else None,
            "sha256": self.sha256,
            "group": self.group,
            "pixel_size_m": self.pixel_size_m,
            "instrument": self.instrument,
            "metadata_notes": self.metadata_notes,
            "metadata_warnings": list(self.metadata_warnings),
        }

    def band_disagreement(self) -> str | None:
        """Why the metadata's databar and the pixel detector's band differ (None when they agree,
        or when the band does not come from the metadata)."""
        if self.band is None or self.band.source != "metadata":
            return None
        found = self.detected_band
        if found is None:
            return (f"metadata databar rows {self.band.top}-{self.band.bottom}; the pixel detector finds no band")
        if max(abs(found.top - self.band.top), abs(found.bottom - self.band.bottom)) > BAND_AGREEMENT_ROWS:
            return (f"metadata databar rows {self.band.top}-{self.band.bottom}; the pixel detector finds rows "
                    f"{found.top}-{found.bottom}")
        return None


@dataclass
class InspectionReport:
    """Everything :func:`inspect_dataset` found; :meth:`to_json` is the ``--json`` format."""

    root: Path
    classes: list[str]
    images: list[ImageRecord]
    exact: list[list[str]]
    near: list[list[str]]
    unreadable: list[Problem]
    warnings: list[Problem] = field(default_factory=list)
    detect_bands: bool = True

    def class_counts(self) -> dict[str, int]:
        counts = Counter(record.label for record in self.images)
        return {name: counts.get(name, 0) for name in self.classes}

    def to_json(self) -> dict:
        return {
            "root": str(self.root),
            "band_detection": self.detect_bands,
            "images": [record.to_json() for record in self.images],
            "classes": self.class_counts(),
            "duplicates": {"exact": self.exact, "near": self.near},
            "unreadable": [{"path": p.path, "reason": p.reason} for p in self.unreadable],
            "warnings": [{"path": p.path, "reason": p.reason} for p in self.warnings],
            "band_disagreements": [{"path": r.path, "reason": why} for r in self.images
                                   if (why := r.band_disagreement()) is not None],
            "metadata_warnings": metadata_warnings(self.images),
        }

    def class_rows(self) -> list[dict]:
        """Per-class summary rows: count, sizes, modes, bands, duplicate groups, unreadable."""
        label_of = {record.path: record.label for record in self.images}
        rows = []
        for name in self.classes:
            records = [r for r in self.images if r.label == name]
            sizes = Counter(f"{r.width}x{r.height}" for r in records)
            modes = Counter(r.mode for r in records)
            rows.append(
                {
                    "class": name,
                    "images": len(records),
                    "sizes": ", ".join(f"{s} ({n})" for s, n in sizes.most_common(3))
                    + (f", +{len(sizes) - 3} more" if len(sizes) > 3 else ""),
                    "modes": ", ".join(f"{m} ({n})" for m, n in modes.most_common()),
                    "bands": sum(r.band is not None for r in records),
                    "exact_groups": sum(any(label_of[p] == name for p in g) for g in self.exact),
                    "near_groups": sum(any(label_of[p] == name for p in g) for g in self.near),
                    "unreadable": sum(p.path.split("/")[0] == name for p in self.unreadable),
                    "pixel_size": pixel_size_spread([r.pixel_size_m for r in records]),
                }
            )
        return rows


BAND_AGREEMENT_ROWS = 3
"""Rows by which the metadata's databar and the detector's band may differ and still agree."""
SHORTCUT_SCORE = 0.5
"""Score of :func:`field_score` above which a metadata field is reported as a possible shortcut."""
SCORED_FIELDS = ("pixel_size_m", "vendor", "high_voltage_v", "detector", "magnification", "working_distance_m",
                 "model")


def pixel_size_spread(sizes: list[float | None]) -> str:
    """``'5.83 nm-2.62 µm (2/3)'``, ``'3.37 µm (2/4)'``, or ``'-'`` when none is known: the range
    of the known pixel sizes of a class, and how many of its images state one."""
    known = sorted(s for s in sizes if s is not None)
    if not known:
        return "-"
    count = f"{len(known)}/{len(sizes)}"
    if format_length(known[0]) == format_length(known[-1]):
        return f"{format_length(known[0])} ({count})"
    return f"{format_length(known[0])}-{format_length(known[-1])} ({count})"


def _field_value(record: ImageRecord, name: str) -> object:
    value = record.pixel_size_m if name == "pixel_size_m" else record.instrument.get(name)
    return float(f"{value:.3g}") if isinstance(value, float) else value  # equal to 3 significant figures


def field_score(values: list[object], labels: list[str]) -> float | None:
    """How well one field alone predicts the class, 0 (no better than the largest class) to 1.

    Leave-one-out majority vote over the images where the field is known: each image is given the
    most common class among the *other* images with the same value (the most common class overall
    when there is none), and ``score = (accuracy - base) / (1 - base)`` with ``base`` the largest
    class's share, clipped to [0, 1]. A value every image has on its own predicts nothing. None
    when fewer than two classes or four images have the field.
    """
    pairs = [(v, label) for v, label in zip(values, labels) if v is not None]
    if len(pairs) < 4 or len({label for _, label in pairs}) < 2:
        return None
    overall = Counter(label for _, label in pairs)
    by_value: dict[object, Counter] = defaultdict(Counter)
    for value, label in pairs:
        by_value[value][label] += 1
    def vote(counts: Counter) -> str:  # the most common label; ties to the first name, not to the truth
        return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]

    correct = 0
    for value, label in pairs:
        others = by_value[value] - Counter({label: 1})
        correct += vote(others if others else overall - Counter({label: 1})) == label
    base = overall.most_common(1)[0][1] / len(pairs)
    return 1.0 if base >= 1.0 else max(0.0, min(1.0, (correct / len(pairs) - base) / (1.0 - base)))


def metadata_warnings(records: list[ImageRecord], threshold: float = SHORTCUT_SCORE) -> list[dict]:
    """``[{field, score, message}]`` for each metadata field whose :func:`field_score` exceeds
    ``threshold``: a model could tell the classes apart by it rather than by the material."""
    labels = [r.label for r in records]
    out = []
    for name in SCORED_FIELDS:
        values = [_field_value(r, name) for r in records]
        score = field_score(values, labels)
        if score is None or score <= threshold:
            continue
        known = sum(v is not None for v in values)
        what = "pixel size (magnification)" if name == "pixel_size_m" else name
        out.append({
            "field": name,
            "score": round(score, 3),
            "message": (f"{what} alone predicts the class (score {score:.2f} over {known} images with it): the "
                        f"classes were recorded differently, a shortcut a model can learn instead of the material"
                        + ("; consider hnf train --pixel-size" if name == "pixel_size_m" else "")),
        })
    return out


def _inspect_one(job: tuple[Sample, str, bool]) -> ImageRecord | Problem:
    sample, relative, detect = job
    try:
        grey, mode, meta = read_grey_and_metadata(sample.path)
    except ImageReadError as err:
        return Problem(relative, err.reason)
    height, width = grey.shape
    meta = meta or Metadata()
    notes = dict(meta.notes)
    detected = detect_band(grey) if detect else None
    stated, why = metadata_band(meta, height) if detect else (None, None)
    if why is not None:
        notes["band"] = why
    return ImageRecord(
        path=relative,
        label=sample.label,
        width=width,
        height=height,
        mode=mode,
        band=stated or detected,
        sha256=file_sha256(sample.path),
        phash=perceptual_hash(grey),
        group=sample.group,
        pixel_size_m=meta.pixel_size_m,
        instrument=meta.instrument_json(),
        metadata_notes=notes,
        metadata_warnings=meta.warnings,
        detected_band=detected,
    )


def _assign_groups(records: list[ImageRecord], groups: list[list[int]]) -> list[ImageRecord]:
    """Give images without a manifest group the id of their duplicate group (``dup-<n>``)."""
    ids = duplicate_group_ids(len(records), groups)
    sizes = Counter(ids)
    names: dict[int, str] = {}
    out = []
    for record, group_id in zip(records, ids):
        if record.group is None and sizes[group_id] > 1:
            names.setdefault(group_id, f"dup-{len(names)}")
            record = ImageRecord(**{**record.__dict__, "group": names[group_id]})
        out.append(record)
    return out


def inspect_dataset(
    source: str | Path,
    detect_bands: bool = True,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> InspectionReport:
    """Decode every image of a dataset once and report on it (see the module docstring).

    ``on_progress(done, total)`` is called as images finish. Unreadable files are reported, not
    raised; only an unusable dataset (missing path, no class folders) raises.
    """
    index: DatasetIndex = index_dataset(source)
    jobs = [(s, index.relative(s.path), detect_bands) for s in index.samples]
    workers = workers or min(os.cpu_count() or 1, 8)
    results: list[ImageRecord | Problem] = []
    if workers > 1 and len(jobs) > 32:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_inspect_one, jobs, chunksize=16):
                results.append(result)
                if on_progress:
                    on_progress(len(results), len(jobs))
    else:
        for job in jobs:
            results.append(_inspect_one(job))
            if on_progress:
                on_progress(len(results), len(jobs))
    records = [r for r in results if isinstance(r, ImageRecord)]
    unreadable = [p for p in index.problems if not p.path.endswith("/")]
    unreadable += [r for r in results if isinstance(r, Problem)]
    warnings = [p for p in index.problems if p.path.endswith("/")]

    exact = exact_groups([r.sha256 for r in records])
    exact_sets = [set(g) for g in exact]
    near = [g for g in near_groups([r.phash for r in records]) if set(g) not in exact_sets]
    records = _assign_groups(records, exact + near)
    exact_paths = [[records[i].path for i in g] for g in exact]
    near_paths = [[records[i].path for i in g] for g in near]
    classes = [c for c in index.classes if any(r.label == c for r in records)]
    for name in index.classes:
        if name not in classes:
            warnings.append(Problem(f"{name}/", "no readable images; class skipped"))
    return InspectionReport(index.root, classes, records, exact_paths, near_paths, unreadable, warnings, detect_bands)


def save_report(report: InspectionReport, path: str | Path) -> Path:
    """Write the JSON report atomically."""
    return atomic_write_json(path, report.to_json())


CELL = 160
LABEL_WIDTH = 180


def _thumbnail(path: Path, band: Band | None) -> Image.Image:
    grey, _ = read_grey(path)
    image = Image.fromarray(np.round(grey * 255).astype(np.uint8), mode="L").convert("RGB")
    scale = CELL / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    if band is not None:
        draw = ImageDraw.Draw(image)
        top, bottom = round(band.top * scale), round(band.bottom * scale)
        draw.rectangle([0, top, image.width - 1, bottom], outline=(255, 40, 40), width=2)
    return image


def write_contact_sheet(report: InspectionReport, path: str | Path, per_class: int = 6) -> Path:
    """A PNG grid, one row per class, ``per_class`` images each (evenly spread over the class,
    images with a band first), the band outlined in red."""
    by_class: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in report.images:
        by_class[record.label].append(record)
    rows = max(1, len(report.classes))
    columns = max([min(per_class, len(v)) for v in by_class.values()] + [1])
    sheet = Image.new("RGB", (LABEL_WIDTH + columns * (CELL + 4), rows * (CELL + 4)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(report.classes):
        records = sorted(by_class[name], key=lambda r: r.band is None)
        picks = [records[i] for i in np.linspace(0, len(records) - 1, min(per_class, len(records))).round().astype(int)]
        y = row * (CELL + 4)
        draw.text((6, y + CELL // 2 - 12), f"{name}\n{len(records)} images", fill=(0, 0, 0))
        for column, record in enumerate(picks):
            thumb = _thumbnail(report.root / record.path, record.band)
            sheet.paste(thumb, (LABEL_WIDTH + column * (CELL + 4), y))
    buffer = BytesIO()
    sheet.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getvalue())


def metadata_summary(report: InspectionReport, limit: int = 10) -> list[str]:
    """Lines for the terminal: how many images state a pixel size, the instruments, files whose
    metadata databar and detected band disagree, why pixel sizes are missing (first ``limit`` of
    each) and the shortcut warnings of :func:`metadata_warnings` (rich markup)."""
    images = report.images
    vendors = Counter(r.instrument.get("vendor") or "none" for r in images)
    known = sum(r.pixel_size_m is not None for r in images)
    lines = [f"pixel size stated for {known} of {len(images)} images; instrument metadata: "
             + ", ".join(f"{vendor} ({n})" for vendor, n in vendors.most_common())]
    from_metadata = [r for r in images if r.band is not None and r.band.source == "metadata"]
    if from_metadata:
        lines.append(f"databar from metadata in {len(from_metadata)} images")
    sections = (
        ("band: metadata and pixels disagree", [(r.path, r.band_disagreement()) for r in images]),
        ("no pixel size", [(r.path, r.metadata_notes.get("pixel_size_m")) for r in images
                           if r.instrument.get("vendor") is not None]),
        ("metadata", [(r.path, "; ".join(r.metadata_warnings) or None) for r in images]),
    )
    for title, items in sections:
        items = [(path, why) for path, why in items if why]
        for path, why in items[:limit]:
            lines.append(f"  {title}: {path}: {why}")
        if len(items) > limit:
            lines.append(f"  {title}: ... {len(items) - limit} more in the JSON report")
    for warning in metadata_warnings(images):
        lines.append(f"[yellow]warning:[/yellow] {warning['message']}")
    return lines
