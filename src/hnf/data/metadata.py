"""Instrument metadata of a micrograph file: pixel size, instrument settings and the databar's rows.

Read from the file's own TIFF tags (PIL's ``tag_v2`` of the image the reader has open, so the
file is opened once) and from an optional sidecar text file ``<image>.txt`` beside it:

* FEI / Thermo Fisher: private tag 34682, INI text. ``[Scan] PixelWidth`` / ``PixelHeight``
  (metres), ``[Image] ResolutionY`` (specimen rows), ``[PrivateFei] DatabarHeight`` (databar rows
  below them), ``[Beam] HV`` (volts), ``[Detectors] Name``, ``[Stage] WorkingDistance`` or
  ``[EBeam] WD`` (metres), ``[Scan] HorFieldsize`` or ``[EBeam] HFW`` (metres), ``[System]
  SystemType``.
* Zeiss SmartSEM: private tag 34118 (CZ_SEM), ``name = value`` lines: ``Image Pixel Size``, else
  ``Pixel Size`` (pm, nm, µm or mm), ``EHT``, ``Mag``, ``Signal A``, ``WD``, ``Width``.
* JEOL SightX: ``TemReporter`` XML in ImageDescription (tag 270): ``Instruments``,
  ``AccelerationVoltage``, ``SelectorValue`` (magnification when ``SelectorUnitString`` is X),
  ``ImageSourceDetector``. It states no specimen pixel size (its ``PixelsPerMeter`` is the
  camera's), so none is read.
* ImageJ: ``unit=`` in ImageDescription with pixels per unit in XResolution (tag 282) and
  YResolution (tag 283). TIFF resolution tags alone (72 dpi and the like) are a print resolution,
  never a pixel size.
* Sidecar ``<image>.txt`` (Hitachi, JEOL, tabletop SEMs): ``key : value`` or ``key=value``
  lines; pixel size (a bare number is nanometres, as Hitachi writes it), magnification, voltage,
  working distance, detector, instrument. Tag values win; the sidecar fills what they lack.

Nothing here raises on malformed or partial metadata (bad floats, missing sections, truncated
XML): the field is None and :attr:`Metadata.notes` says why. A stated pixel size that disagrees
with the stated field width over the file's width is kept and reported in
:attr:`Metadata.warnings`.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hnf.data.band import Band

FEI_TAG = 34682
ZEISS_TAG = 34118
IMAGE_DESCRIPTION_TAG = 270
X_RESOLUTION_TAG, Y_RESOLUTION_TAG = 282, 283
SIDECAR_SUFFIX = ".txt"
SIDECAR_MAX_BYTES = 1 << 20
"""Largest sidecar text file read (a larger ``.txt`` beside an image is not instrument metadata)."""
FIELD_WIDTH_TOLERANCE = 0.05
"""Relative disagreement between pixel size x width and the stated field width that is reported."""

INSTRUMENT_FIELDS = ("high_voltage_v", "detector", "magnification", "working_distance_m",
                     "horizontal_field_width_m", "model")
"""Fields of :meth:`Metadata.instrument_json` besides ``vendor`` (each present only when known)."""

_LENGTH_EXPONENTS = {
    "m": 0, "cm": -2, "mm": -3, "um": -6, "µm": -6, "μm": -6, "micron": -6, "microns": -6, "micrometer": -6,
    "micrometre": -6, "\\u00b5m": -6, "nm": -9, "nanometer": -9, "nanometre": -9, "pm": -12, "a": -10, "å": -10,
    "angstrom": -10,
}
"""Length units as powers of ten of a metre (scaled in decimal, so '5.825 nm' is 5.825e-09 m exactly as written)."""
_LENGTH_UNITS = {unit: 10.0**exponent for unit, exponent in _LENGTH_EXPONENTS.items()}
_VOLTAGE_UNITS = {"v": 1.0, "volt": 1.0, "volts": 1.0, "kv": 1e3, "mv": 1e6}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([^\d\s].*?)?\s*$")


@dataclass(frozen=True)
class Metadata:
    """What a file's metadata states; every field is None when not stated or unreadable.

    ``pixel_size_m`` and ``pixel_height_m``: the specimen width and height of one pixel (metres;
    ``pixel_height_m`` None means square pixels). ``specimen_rows`` and ``databar_rows``: the
    file's first rows of specimen and the databar rows right below them (FEI). ``vendor`` names
    the convention read (``FEI``, ``Zeiss``, ``JEOL``, ``ImageJ``, ``sidecar``), ``sources`` where
    it was read (``tag 34682``, ``a.txt``). ``notes``: field name to why it is None (or why a stated
    value was not used); ``warnings``: stated values that disagree with each other.
    """

    vendor: str | None = None
    pixel_size_m: float | None = None
    pixel_height_m: float | None = None
    high_voltage_v: float | None = None
    detector: str | None = None
    magnification: float | None = None
    working_distance_m: float | None = None
    horizontal_field_width_m: float | None = None
    model: str | None = None
    specimen_rows: int | None = None
    databar_rows: int | None = None
    sources: tuple[str, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def instrument_json(self) -> dict[str, Any]:
        """``{"vendor": ..., <field>: value}`` with the fields of :data:`INSTRUMENT_FIELDS` that
        are known (absent otherwise); ``vendor`` is None for a file without instrument metadata."""
        out: dict[str, Any] = {"vendor": self.vendor}
        out.update({name: getattr(self, name) for name in INSTRUMENT_FIELDS if getattr(self, name) is not None})
        return out

    def field_of_view_m(self, width: int, height: int) -> tuple[float, float] | None:
        """Specimen width and height (metres) of a ``width x height`` pixel image, when the pixel
        size is known."""
        if self.pixel_size_m is None:
            return None
        return width * self.pixel_size_m, height * (self.pixel_height_m or self.pixel_size_m)


NO_METADATA = Metadata(notes={"pixel_size_m": "no instrument metadata in the file"})


# -- value parsers: each returns a number or raises ValueError naming the text and what was expected


def parse_float(text: str, what: str) -> float:
    """A finite float (``3.3724e-006``); ValueError naming ``what`` and the text otherwise."""
    try:
        value = float(text.strip())
    except (ValueError, AttributeError):
        raise ValueError(f"{what} = {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} = {text!r} is not a finite number")
    return value


def parse_positive(text: str, what: str) -> float:
    """A finite float above 0."""
    value = parse_float(text, what)
    if value <= 0:
        raise ValueError(f"{what} = {text!r} is not a positive number")
    return value


def parse_count(text: str, what: str) -> int:
    """A non-negative integer (``442``)."""
    stripped = text.strip()
    if not stripped.isdigit():
        raise ValueError(f"{what} = {text!r} is not a whole number of rows")
    return int(stripped)


def _quantity(text: str, what: str) -> tuple[float, str, str]:
    """(value, unit, the number as written) of ``'2.615 µm'``."""
    match = _QUANTITY.match(text.replace(",", "."))
    if match is None:
        raise ValueError(f"{what} = {text!r} is not a number with a unit")
    value = parse_float(match.group(1), what)
    return value, (match.group(2) or "").strip(), match.group(1)


def parse_length(text: str, what: str, bare_unit: str | None = None) -> float:
    """Metres from ``'2.615 µm'``, ``'5.825 nm'``, ``'3.9 mm'``, ``'1 pm'``; a bare number is in
    ``bare_unit`` (ValueError when None). Must be positive."""
    value, unit, number = _quantity(text, what)
    unit = unit.lower() or (bare_unit or "")
    if not unit:
        raise ValueError(f"{what} = {text!r} has no unit (expected pm, nm, µm, mm or m)")
    if unit not in _LENGTH_UNITS:
        raise ValueError(f"{what} = {text!r}: unknown length unit {unit!r} (expected pm, nm, µm, mm or m)")
    if value <= 0:
        raise ValueError(f"{what} = {text!r} is not a positive length")
    metres = float(Decimal(number).scaleb(_LENGTH_EXPONENTS[unit]))
    if not 0 < metres < math.inf:
        raise ValueError(f"{what} = {text!r} is out of range")
    return metres


def parse_voltage(text: str, what: str) -> float:
    """Volts from ``'5.00 kV'``, ``'3000 Volt'``, ``'200000'`` (a bare number is volts)."""
    value, unit, _ = _quantity(text, what)
    unit = unit.lower() or "v"
    if unit not in _VOLTAGE_UNITS:
        raise ValueError(f"{what} = {text!r}: unknown voltage unit {unit!r} (expected V or kV)")
    return value * _VOLTAGE_UNITS[unit]


def parse_magnification(text: str, what: str) -> float:
    """Times from ``'50.00 K X'``, ``'105 X'``, ``'x500'``, ``'20000'``; must be positive."""
    cleaned = text.strip().lower().replace(" ", "").removeprefix("x").removesuffix("x")
    factor = 1.0
    if cleaned.endswith("k"):
        cleaned, factor = cleaned[:-1], 1e3
    try:
        value = parse_positive(cleaned, what) * factor
    except ValueError:
        raise ValueError(f"{what} = {text!r} is not a magnification (expected e.g. '50.00 K X' or '500')") from None
    return value


def format_length(metres: float) -> str:
    """``3.37 µm``, ``5.83 nm``, ``1.2 mm``: three significant figures in the largest unit below it."""
    for unit, scale in (("m", 1.0), ("mm", 1e-3), ("µm", 1e-6), ("nm", 1e-9)):
        if metres >= scale:
            return f"{metres / scale:.3g} {unit}"
    return f"{metres / 1e-12:.3g} pm"


# -- building a Metadata from key/value readings


class _Reading:
    """Collects fields and notes while one convention is read."""

    def __init__(self, vendor: str, source: str) -> None:
        self.values: dict[str, Any] = {"vendor": vendor, "sources": (source,)}
        self.notes: dict[str, str] = {}
        self.prefix = f"{vendor} {source}"

    def set(self, name: str, raw: str | None, parse, what: str, missing: str | None = None) -> None:
        """Parse ``raw`` into field ``name``; a None ``raw`` notes ``missing`` (when given)."""
        if raw is None or raw.strip() == "":
            if missing is not None:
                self.notes[name] = f"{self.prefix}: {missing}"
            return
        try:
            self.values[name] = parse(raw, what)
        except ValueError as err:
            self.notes[name] = f"{self.prefix}: {err}"

    def done(self) -> Metadata:
        return Metadata(**self.values, notes=self.notes)


def _text(raw: str, what: str) -> str:
    return raw.strip()


def parse_ini(text: str) -> dict[str, dict[str, str]]:
    """``[Section]`` / ``key=value`` text to ``{section: {key: value}}`` (first occurrence of a
    key kept; lines that are neither are skipped)."""
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("", {})
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif "=" in line:
            key, value = line.split("=", 1)
            current.setdefault(key.strip(), value.strip())
    return sections


def parse_fei(text: str) -> Metadata:
    """FEI / Thermo Fisher tag 34682 INI text (see the module docstring)."""
    ini = parse_ini(text)
    get = lambda section, key: ini.get(section, {}).get(key)  # noqa: E731
    reading = _Reading("FEI", f"tag {FEI_TAG}")
    no_pixel = "no [Scan] PixelWidth (a navigation-camera frame states none)" if "Scan" not in ini else "no [Scan] PixelWidth"
    reading.set("pixel_size_m", get("Scan", "PixelWidth"), parse_positive, "[Scan] PixelWidth", no_pixel)
    reading.set("pixel_height_m", get("Scan", "PixelHeight"), parse_positive, "[Scan] PixelHeight")
    reading.set("high_voltage_v", get("Beam", "HV"), parse_positive, "[Beam] HV", "no [Beam] HV")
    reading.set("detector", get("Detectors", "Name"), _text, "[Detectors] Name", "no [Detectors] Name")
    wd = get("Stage", "WorkingDistance") or get("EBeam", "WD")
    reading.set("working_distance_m", wd, parse_positive, "[Stage] WorkingDistance", "no [Stage] WorkingDistance")
    hfw = get("Scan", "HorFieldsize") or get("EBeam", "HFW")
    reading.set("horizontal_field_width_m", hfw, parse_positive, "[Scan] HorFieldsize")
    reading.set("model", get("System", "SystemType"), _text, "[System] SystemType")
    reading.set("specimen_rows", get("Image", "ResolutionY"), parse_count, "[Image] ResolutionY", "no [Image] ResolutionY")
    reading.set("databar_rows", get("PrivateFei", "DatabarHeight"), parse_count, "[PrivateFei] DatabarHeight",
                "no [PrivateFei] DatabarHeight")
    return reading.done()


def parse_key_values(text: str) -> dict[str, str]:
    """``name = value`` or ``name : value`` lines to a dict (``=`` taken first; first occurrence
    of a name kept; surrounding spaces and NULs stripped)."""
    pairs: dict[str, str] = {}
    for line in text.replace("\x00", "").splitlines():
        separator = "=" if "=" in line else ":" if ":" in line else None
        if separator is None:
            continue
        key, value = line.split(separator, 1)
        if key.strip():
            pairs.setdefault(key.strip(), value.strip())
    return pairs


_ZEISS_NAMES = ("Image Pixel Size", "Pixel Size", "EHT", "Mag", "Signal A", "WD", "Width")


def _line_value(text: str, name: str) -> str | None:
    """The value of the first ``name = value`` line of ``text`` (None when there is none; a
    string search, not a parse of every line)."""
    for key in (f"\n{name} =", f"\n{name}="):
        start = text.find(key)
        if start >= 0:
            start += len(key)
            end = min((i for i in (text.find("\r", start), text.find("\n", start), text.find("\x00", start)) if i >= 0),
                      default=len(text))
            return text[start:end].strip()
    return None


def parse_zeiss(text: str) -> Metadata:
    """Zeiss SmartSEM tag 34118 (CZ_SEM) text (see the module docstring). Only the lines read are
    looked up (the text holds some 1,500 lines)."""
    pairs = {name: value for name in _ZEISS_NAMES if (value := _line_value(text, name)) is not None}
    reading = _Reading("Zeiss", f"tag {ZEISS_TAG}")
    key = "Image Pixel Size" if pairs.get("Image Pixel Size") else "Pixel Size"
    reading.set("pixel_size_m", pairs.get(key), parse_length, key, "no 'Image Pixel Size' or 'Pixel Size' line")
    reading.set("high_voltage_v", pairs.get("EHT"), parse_voltage, "EHT", "no 'EHT' line")
    reading.set("magnification", pairs.get("Mag"), parse_magnification, "Mag", "no 'Mag' line")
    reading.set("detector", pairs.get("Signal A"), _text, "Signal A", "no 'Signal A' line")
    reading.set("working_distance_m", pairs.get("WD"), parse_length, "WD", "no 'WD' line")
    reading.set("horizontal_field_width_m", pairs.get("Width"), parse_length, "Width")
    return reading.done()


def _xml_value(xml: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}>([^<]*)</{tag}>", xml)
    return match.group(1) if match else None


def parse_jeol(xml: str) -> Metadata:
    """JEOL SightX ``TemReporter`` XML (read by tag, so a truncated document still gives what it
    holds). No pixel size: the XML states none for the specimen."""
    reading = _Reading("JEOL", f"tag {IMAGE_DESCRIPTION_TAG}")
    reading.set("model", _xml_value(xml, "Instruments"), _text, "Instruments")
    reading.set("high_voltage_v", _xml_value(xml, "AccelerationVoltage"), parse_voltage, "AccelerationVoltage",
                "no AccelerationVoltage")
    if (_xml_value(xml, "SelectorUnitString") or "").strip().upper() == "X":
        reading.set("magnification", _xml_value(xml, "SelectorValue"), parse_magnification, "SelectorValue")
    reading.set("detector", _xml_value(xml, "ImageSourceDetector"), _text, "ImageSourceDetector")
    reading.notes["pixel_size_m"] = (f"{reading.prefix}: the XML states no specimen pixel size "
                                     "(its PixelsPerMeter is the camera's)")
    return reading.done()


def _resolution(value: Any, what: str) -> str:
    """A TIFF resolution (IFDRational, float, or a (numerator, denominator) pair) as text."""
    if isinstance(value, tuple) and len(value) == 2:
        numerator, denominator = value
        if not denominator:
            raise ValueError(f"{what} = {value!r} has a zero denominator")
        return repr(float(numerator) / float(denominator))
    try:
        return repr(float(value))
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"{what} = {value!r} is not a number") from None


def parse_imagej(description: str, x_resolution: Any, y_resolution: Any = None) -> Metadata:
    """ImageJ ImageDescription (``ImageJ=``, ``unit=``) with pixels per unit in XResolution and
    YResolution: the pixel size is ``1 / XResolution`` units."""
    pairs = parse_key_values(description)
    reading = _Reading("ImageJ", f"tag {IMAGE_DESCRIPTION_TAG}")
    unit = pairs.get("unit", "").strip().lower()
    if not unit or unit in ("pixel", "pixels", "inch"):
        reading.notes["pixel_size_m"] = f"{reading.prefix}: no length unit (unit={pairs.get('unit')!r})"
        return reading.done()
    if unit not in _LENGTH_UNITS:
        reading.notes["pixel_size_m"] = f"{reading.prefix}: unknown length unit {unit!r}"
        return reading.done()

    def per_unit(raw: str, what: str) -> float:
        return _LENGTH_UNITS[unit] / parse_positive(raw, what)

    for name, value, what in (("pixel_size_m", x_resolution, "XResolution"), ("pixel_height_m", y_resolution, "YResolution")):
        if value is None:
            if name == "pixel_size_m":
                reading.notes[name] = f"{reading.prefix}: unit={unit} but no XResolution"
            continue
        try:
            reading.set(name, _resolution(value, what), per_unit, f"{what} (pixels per {unit})")
        except ValueError as err:
            reading.notes[name] = f"{reading.prefix}: {err}"
    return reading.done()


_SIDECAR_KEYS = {
    "pixel_size_m": ("pixelsize", "imagepixelsize", "pixelwidth", "pixelspacing"),
    "magnification": ("magnification", "mag", "cmmag"),
    "high_voltage_v": ("acceleratingvoltage", "accelerationvoltage", "acceleratingvoltagev", "hv", "eht", "voltage",
                       "cmaccelvolt"),
    "working_distance_m": ("workingdistance", "wd", "cmwd"),
    "detector": ("signalname", "signal", "detector", "cmsignal"),
    "model": ("instructname", "instrument", "instrumentname", "model", "cminstrument"),
}


def parse_sidecar(text: str, name: str = SIDECAR_SUFFIX) -> Metadata:
    """A sidecar text file's ``key : value`` / ``key=value`` lines (keys compared without case,
    spaces, ``$``, ``_`` or ``-``). A pixel size without a unit is nanometres (Hitachi)."""
    pairs = {re.sub(r"[\s$_\-\[\]()]", "", k).lower(): v for k, v in parse_key_values(text).items()}
    reading = _Reading("sidecar", name)
    parsers = {
        "pixel_size_m": lambda raw, what: parse_length(raw, what, bare_unit="nm"),
        "magnification": parse_magnification,
        "high_voltage_v": parse_voltage,
        "working_distance_m": parse_length,
        "detector": _text,
        "model": _text,
    }
    for field_name, keys in _SIDECAR_KEYS.items():
        key = next((k for k in keys if pairs.get(k)), None)
        missing = "no pixel size line" if field_name == "pixel_size_m" else None
        reading.set(field_name, pairs.get(key) if key else None, parsers[field_name], key or field_name, missing)
    return reading.done()


# -- combining


def merge(first: Metadata, second: Metadata) -> Metadata:
    """``first`` with the fields it lacks taken from ``second`` (notes of filled fields dropped)."""
    values: dict[str, Any] = {}
    for name in ("pixel_size_m", "pixel_height_m", *INSTRUMENT_FIELDS, "specimen_rows", "databar_rows"):
        if getattr(first, name) is None and getattr(second, name) is not None:
            values[name] = getattr(second, name)
    if first.pixel_size_m is not None:  # a pixel height only goes with its own pixel width
        values.pop("pixel_height_m", None)
    notes = {k: v for k, v in {**second.notes, **first.notes}.items() if k not in values}
    vendor = first.vendor if first.vendor is not None else second.vendor
    return replace(first, **values, vendor=vendor, sources=first.sources + second.sources, notes=notes,
                   warnings=first.warnings + second.warnings)


def _check_field_width(meta: Metadata, width: int) -> Metadata:
    """Warn when the stated pixel size times the file's width is not the stated field width."""
    if meta.pixel_size_m is None or meta.horizontal_field_width_m is None or width < 1:
        return meta
    implied = meta.horizontal_field_width_m / width
    if abs(implied - meta.pixel_size_m) <= FIELD_WIDTH_TOLERANCE * meta.pixel_size_m:
        return meta
    message = (f"stated pixel size {meta.pixel_size_m:.4g} m but stated field width {meta.horizontal_field_width_m:.4g} m "
               f"over {width} px is {implied:.4g} m per pixel (x{implied / meta.pixel_size_m:.2f}); the stated "
               f"pixel size is used")
    return replace(meta, warnings=meta.warnings + (message,))


def _tag(tags: Mapping[int, Any], number: int) -> Any:
    try:
        return tags.get(number)
    except Exception:  # noqa: BLE001  (a corrupt tag must not stop reading: PIL raises many types)
        return None


def _as_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
        return "".join(value)
    return value if isinstance(value, str) else None


def read_tags(tags: Mapping[int, Any] | None) -> Metadata:
    """Metadata from TIFF tags (``image.tag_v2``; None or empty for other formats)."""
    if not tags:
        return NO_METADATA
    if (fei := _as_text(_tag(tags, FEI_TAG))) is not None:
        return parse_fei(fei)
    if (zeiss := _as_text(_tag(tags, ZEISS_TAG))) is not None:
        return parse_zeiss(zeiss)
    description = _as_text(_tag(tags, IMAGE_DESCRIPTION_TAG)) or ""
    if "<TemReporter" in description[:4096]:
        return parse_jeol(description)
    if description.startswith("ImageJ=") or "\nunit=" in description:
        return parse_imagej(description, _tag(tags, X_RESOLUTION_TAG), _tag(tags, Y_RESOLUTION_TAG))
    return Metadata(notes={"pixel_size_m": "no instrument metadata in the file (TIFF resolution tags are a "
                                           "print resolution, not a pixel size)"})


def sidecar_path(path: Path) -> Path:
    """``<image>.txt`` beside the image (same stem)."""
    return path.with_suffix(SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> Metadata | None:
    """The sidecar of ``path`` when one exists, else None; unreadable sidecars give a note."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        if sidecar.stat().st_size > SIDECAR_MAX_BYTES:
            return Metadata(notes={"pixel_size_m": f"{sidecar.name}: over {SIDECAR_MAX_BYTES} bytes, not read"})
        text = sidecar.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        return Metadata(notes={"pixel_size_m": f"{sidecar.name}: unreadable ({err.strerror or err})"})
    return parse_sidecar(text, sidecar.name)


def read_metadata(tags: Mapping[int, Any] | None, path: str | Path | None = None, width: int = 0) -> Metadata:
    """Metadata of an open image: its TIFF tags, then the sidecar of ``path`` for what they lack;
    ``width`` (pixels) checks a stated field width against the pixel size."""
    meta = read_tags(tags)
    if path is not None and (sidecar := read_sidecar(Path(path))) is not None:
        meta = merge(meta, sidecar) if meta.vendor is not None else merge(sidecar, meta)
    return _check_field_width(meta, width)


def metadata_band(meta: Metadata | None, height: int) -> tuple[Band | None, str | None]:
    """The databar the metadata states (rows ``specimen_rows`` to ``specimen_rows + databar_rows
    - 1``) when they add up to the file's ``height``; else None and why (None when the metadata
    states no databar)."""
    if meta is None or meta.databar_rows is None or meta.specimen_rows is None:
        return None, None
    rows, bar = meta.specimen_rows, meta.databar_rows
    if bar == 0:
        return None, None
    if rows < 1 or rows + bar != height:
        return None, (f"stated {rows} specimen rows + {bar} databar rows = {rows + bar}, but the image has "
                      f"{height} rows; the band is looked for in the pixels")
    return Band(rows, rows + bar - 1, source="metadata"), None
