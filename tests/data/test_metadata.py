"""Instrument metadata: the real microscope-tiff files against metadata-truth.json, sidecars, the
databar from metadata, and a fuzz test of the parsers."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hnf.data.band import Band
from hnf.data.metadata import (
    Metadata,
    metadata_band,
    parse_fei,
    parse_imagej,
    parse_jeol,
    parse_length,
    parse_magnification,
    parse_sidecar,
    parse_voltage,
    parse_zeiss,
    read_tags,
)
from hnf.data.reading import read_grey_and_metadata, read_micrograph


@pytest.fixture
def tiffs(shared_data: Path) -> Path:
    return shared_data / "microscope-tiff"


def _truth(tiffs: Path) -> dict:
    return json.loads((tiffs / "metadata-truth.json").read_text())


def test_every_file_reads_as_its_truth_states(tiffs: Path) -> None:
    for name, truth in _truth(tiffs).items():
        path = tiffs / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == truth["sha256"], name
        grey, mode, meta = read_grey_and_metadata(path)
        assert (grey.shape, mode) == ((truth["height"], truth["width"]), truth["mode"]), name
        if name.startswith("fei/"):
            assert meta.vendor == "FEI"
            assert meta.pixel_size_m == truth["scan_pixel_width_m"], name
            assert meta.pixel_height_m == truth["scan_pixel_height_m"], name
            assert (meta.specimen_rows, meta.databar_rows) == (truth["image_resolution_y"], truth["databar_height"])
            assert meta.high_voltage_v == truth["beam_hv_v"], name
            assert meta.detector == truth["detector"], name
        elif name.startswith("zeiss/"):
            assert meta.vendor == "Zeiss"
            assert meta.pixel_size_m == parse_length(truth["pixel_size"], "truth"), name
            assert meta.detector == truth["signal_a"], name
        elif name.startswith("jeol/"):
            assert (meta.vendor, meta.model) == ("JEOL", truth["instrument"])
        else:
            assert meta.vendor == "ImageJ"
            assert meta.pixel_size_m == pytest.approx(1e-6 / truth["x_resolution"], rel=1e-6)


def test_the_stated_values_and_the_reasons_for_missing_ones(tiffs: Path) -> None:
    def meta(name: str) -> Metadata:
        return read_grey_and_metadata(tiffs / name)[2]

    ebeam = meta("fei/FEI-Helios-Ebeam-8bits.tif")
    assert ebeam.instrument_json() == {"vendor": "FEI", "high_voltage_v": 5000.0, "detector": "ETD",
                                       "working_distance_m": 0.00403466, "horizontal_field_width_m": 0.00172667,
                                       "model": 'Helios NanoLab" 660'}
    assert ebeam.notes == {} and ebeam.warnings == ()
    navcam = meta("fei/FEI-Helios-navcam.tif")
    assert navcam.pixel_size_m is None
    assert navcam.notes["pixel_size_m"] == "FEI tag 34682: no [Scan] PixelWidth (a navigation-camera frame states none)"
    bad = meta("fei/FEI-Helios-navcam-with-no-IRBeam-bad-floats.tif")
    assert bad.notes["high_voltage_v"] == "FEI tag 34682: [Beam] HV = 'notafloat' is not a number"
    assert bad.notes["working_distance_m"] == "FEI tag 34682: [Stage] WorkingDistance = 'notafloat' is not a number"
    # The file's own 'EHT' and 'Mag' lines (AP_ACTUALKV, AP_MAG); metadata-truth.json's "0.000 kV" and
    # "Out Dev." are the lines 'FIB EHT = 0.000 kV' and 'Reference Mag = Out Dev.'.
    zeiss = meta("zeiss/test_tiff_Zeiss_SEM_1k.tif")
    assert (zeiss.high_voltage_v, zeiss.magnification, zeiss.working_distance_m) == (25000.0, 105.0, 0.014808)
    small = meta("zeiss/test_tiff_Zeiss_SEM_512pix.tif")
    assert (small.pixel_size_m, small.high_voltage_v, small.magnification) == (5.825e-09, 5000.0, 50000.0)
    assert small.warnings == ("stated pixel size 5.825e-09 m but stated field width 5.965e-06 m over 512 px is "
                              "1.165e-08 m per pixel (x2.00); the stated pixel size is used",)
    jeol = meta("jeol/JEOL-SightX-TEM-mag-dummy.tif")
    assert jeol.instrument_json() == {"vendor": "JEOL", "high_voltage_v": 200000.0, "detector": "screenCamera",
                                      "magnification": 150000.0, "model": "JEM-ARM200F"}
    assert jeol.notes["pixel_size_m"] == ("JEOL tag 270: the XML states no specimen pixel size "
                                          "(its PixelsPerMeter is the camera's)")


def test_the_databar_rows_come_from_the_metadata(tiffs: Path) -> None:
    for name in ("fei/FEI-Helios-Ebeam-8bits.tif", "fei/FEI-Helios-Ebeam-16bits.tif"):
        micrograph = read_micrograph(tiffs / name)
        assert micrograph.band == Band(442, 470, "metadata") and micrograph.grey.shape == (442, 512)
    for name in ("fei/FEI-Helios-navcam.tif", "fei/FEI-Helios-navcam-with-no-IRBeam-bad-floats.tif"):
        assert read_micrograph(tiffs / name).band == Band(512, 550, "metadata")  # all black: no detector sees it
    assert read_micrograph(tiffs / "zeiss/test_tiff_Zeiss_SEM_512pix.tif").band.source == "detector"
    assert read_micrograph(tiffs / "fei/FEI-Helios-navcam.tif", metadata=False).band is None


def test_a_databar_that_does_not_fit_the_height_is_left_to_the_detector() -> None:
    meta = Metadata(specimen_rows=442, databar_rows=29)
    assert metadata_band(meta, 471) == (Band(442, 470, "metadata"), None)
    assert metadata_band(meta, 400) == (None, "stated 442 specimen rows + 29 databar rows = 471, but the image has "
                                              "400 rows; the band is looked for in the pixels")
    assert metadata_band(Metadata(), 471) == (None, None)


def test_plain_files_state_nothing_and_say_so(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "a.tif", dpi=(72, 72))
    meta = read_grey_and_metadata(tmp_path / "a.tif")[2]
    assert meta.pixel_size_m is None and meta.vendor is None
    assert meta.notes["pixel_size_m"].startswith("no instrument metadata in the file (TIFF resolution tags")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "b.png")
    assert read_grey_and_metadata(tmp_path / "b.png")[2].notes == {"pixel_size_m": "no instrument metadata in the file"}


def test_a_sidecar_text_file_gives_pixel_size_and_settings(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "hitachi.tif")
    (tmp_path / "hitachi.txt").write_text("[SemImageFile]\nInstructName=S-4800\nPixelSize=39.6875\n"
                                          "AcceleratingVoltage=3000 Volt\nMagnification=20000\n"
                                          "WorkingDistance=8000 um\nSignalName=SE(U)\n")
    meta = read_grey_and_metadata(tmp_path / "hitachi.tif")[2]
    assert meta.pixel_size_m == 3.96875e-08 and meta.sources == ("hitachi.txt",)
    assert meta.instrument_json() == {"vendor": "sidecar", "high_voltage_v": 3000.0, "detector": "SE(U)",
                                      "magnification": 20000.0, "working_distance_m": 0.008, "model": "S-4800"}
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "tabletop.png")
    (tmp_path / "tabletop.txt").write_text("Pixel size : 0.25 um\nMag : x500\nHV : 15 kV\n")
    meta = read_grey_and_metadata(tmp_path / "tabletop.png")[2]
    assert (meta.pixel_size_m, meta.magnification, meta.high_voltage_v) == (2.5e-07, 500.0, 15000.0)
    (tmp_path / "tabletop.txt").write_text("Pixel size : 0.25 furlongs\n")
    meta = read_grey_and_metadata(tmp_path / "tabletop.png")[2]
    assert meta.pixel_size_m is None
    assert meta.notes["pixel_size_m"] == ("sidecar tabletop.txt: pixelsize = '0.25 furlongs': unknown length unit "
                                          "'furlongs' (expected pm, nm, µm, mm or m)")


def test_value_parsers_and_their_messages() -> None:
    assert parse_length("2.615 µm", "w") == 2.615e-06 and parse_length("1 pm", "w") == 1e-12
    assert parse_voltage("5.00 kV", "EHT") == 5000.0 and parse_voltage("200000", "HV") == 200000.0
    assert parse_magnification("50.00 K X", "Mag") == 50000.0 and parse_magnification("x500", "Mag") == 500.0
    with pytest.raises(ValueError, match=r"^w = '3' has no unit \(expected pm, nm, µm, mm or m\)$"):
        parse_length("3", "w")
    with pytest.raises(ValueError, match=r"^w = '-1 nm' is not a positive length$"):
        parse_length("-1 nm", "w")
    with pytest.raises(ValueError, match=r"^Mag = 'Out Dev.' is not a magnification \(expected e.g. '50.00 K X' or '500'\)$"):
        parse_magnification("Out Dev.", "Mag")
    assert parse_imagej("ImageJ=1.51a\nunit=pixel\n", 1.0).notes == {"pixel_size_m": "ImageJ tag 270: no length unit (unit='pixel')"}
    assert parse_imagej("ImageJ=1.51a\nunit=nm\n", (4, 1)).pixel_size_m == pytest.approx(2.5e-10)
    assert parse_imagej("ImageJ=1.51a\nunit=nm\n", (4, 0)).notes["pixel_size_m"] == ("ImageJ tag 270: XResolution = (4, 0) "
                                                                                      "has a zero denominator")


def _check(meta: Metadata) -> None:
    assert isinstance(meta, Metadata)
    for name in ("pixel_size_m", "pixel_height_m", "working_distance_m", "horizontal_field_width_m", "magnification"):
        value = getattr(meta, name)
        assert value is None or (math.isfinite(value) and value > 0), (name, value)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.notes.items())
    json.dumps(meta.instrument_json())


_LINE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_VALUES = st.one_of(st.from_regex(r"[-+]?\d{0,4}\.?\d{0,4}(e[-+]?\d{1,3})?", fullmatch=True), _LINE,
                    st.sampled_from(["", "nan", "inf", "-0", "1e-400", "1e999", "notafloat", "3.3724e-006"]))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(max_size=400), value=_VALUES, resolution=st.one_of(st.none(), st.floats(allow_nan=True),
                                                                       st.tuples(st.integers(-5, 5), st.integers(-5, 5))))
def test_no_text_stops_a_parser(text: str, value: str, resolution) -> None:
    fei = f"[Scan]\r\nPixelWidth={value}\r\n[Image]\r\nResolutionY={value}\r\n[PrivateFei]\r\nDatabarHeight=29\r\n{text}"
    meta = parse_fei(fei)
    _check(meta)
    try:
        expected = float(value.strip())
    except ValueError:
        expected = None
    if expected is not None and math.isfinite(expected) and expected > 0:
        assert meta.pixel_size_m == expected
    else:
        assert meta.pixel_size_m is None and "PixelWidth" in meta.notes["pixel_size_m"]
    zeiss = parse_zeiss(f"0\r\nAP_PIXEL_SIZE\r\nPixel Size = {value} nm\r\nAP_MAG\r\nMag = {value}\r\n{text}")
    _check(zeiss)
    assert zeiss.pixel_size_m is not None or "Pixel Size" in zeiss.notes["pixel_size_m"]
    for meta in (parse_fei(text), parse_zeiss(text), parse_jeol(text), parse_sidecar(text),
                 parse_jeol(f"<TemReporter><AccelerationVoltage>{value}</AccelerationVoltage>{text}"),
                 parse_imagej(f"ImageJ=1\nunit={value}\n{text}", resolution, resolution),
                 read_tags({270: text, 282: resolution}), read_tags({34682: text}), read_tags({34118: text.encode()})):
        _check(meta)


def test_inspect_reports_pixel_sizes_instruments_and_band_sources(tiffs: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hnf.cli import app

    result = CliRunner().invoke(app, ["data", "inspect", str(tiffs), "--out", str(tmp_path), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    images = {image["path"]: image for image in report["images"]}
    assert len(images) == 8 and report["unreadable"] == []
    assert {p: i["pixel_size_m"] for p, i in images.items()} == {
        "fei/FEI-Helios-Ebeam-16bits.tif": 3.3724e-06, "fei/FEI-Helios-Ebeam-8bits.tif": 3.3724e-06,
        "fei/FEI-Helios-navcam-with-no-IRBeam-bad-floats.tif": None, "fei/FEI-Helios-navcam.tif": None,
        "imagej/test_loading_image_saved_with_imageJ.tif": images["imagej/test_loading_image_saved_with_imageJ.tif"]["pixel_size_m"],
        "jeol/JEOL-SightX-TEM-mag-dummy.tif": None,
        "zeiss/test_tiff_Zeiss_SEM_1k.tif": 2.615e-06, "zeiss/test_tiff_Zeiss_SEM_512pix.tif": 5.825e-09,
    }
    assert images["imagej/test_loading_image_saved_with_imageJ.tif"]["pixel_size_m"] == pytest.approx(1e-6 / 5.928571)
    assert images["fei/FEI-Helios-Ebeam-8bits.tif"]["band"] == {"top": 442, "bottom": 470, "source": "metadata"}
    assert images["fei/FEI-Helios-navcam.tif"]["band"] == {"top": 512, "bottom": 550, "source": "metadata"}
    assert images["zeiss/test_tiff_Zeiss_SEM_1k.tif"]["band"]["source"] == "detector"
    assert images["jeol/JEOL-SightX-TEM-mag-dummy.tif"]["instrument"]["vendor"] == "JEOL"
    assert images["fei/FEI-Helios-navcam.tif"]["metadata_notes"]["pixel_size_m"].startswith("FEI tag 34682: no [Scan]")
    assert report["band_disagreements"] == [
        {"path": f"fei/{name}", "reason": "metadata databar rows 512-550; the pixel detector finds no band"}
        for name in ("FEI-Helios-navcam-with-no-IRBeam-bad-floats.tif", "FEI-Helios-navcam.tif")]
    assert report["metadata_warnings"] == []
    assert "pixel size stated for 5 of 8 images; instrument metadata: FEI (4), Zeiss (2), ImageJ (1), JEOL (1)" in \
        " ".join(result.output.split())


def _record(label: str, pixel_size_m: float | None, index: int):
    from hnf.data.inspect import ImageRecord

    return ImageRecord(f"{label}/{index}.tif", label, 64, 64, "L", None, f"{index}", "0", None, pixel_size_m,
                       {"vendor": "FEI", "detector": "ETD"})


def test_a_field_that_gives_the_class_away_is_warned_of() -> None:
    from hnf.data.inspect import field_score, metadata_warnings, pixel_size_spread

    records = [_record("a", 1e-9, i) for i in range(4)] + [_record("b", 5e-9, i + 4) for i in range(4)]
    assert metadata_warnings(records) == [{
        "field": "pixel_size_m", "score": 1.0,
        "message": "pixel size (magnification) alone predicts the class (score 1.00 over 8 images with it): the classes "
                   "were recorded differently, a shortcut a model can learn instead of the material; consider hnf "
                   "train --pixel-size"}]
    mixed = [_record(label, size, i) for i, (label, size) in enumerate([("a", 1e-9), ("a", 5e-9), ("b", 1e-9), ("b", 5e-9)] * 2)]
    assert metadata_warnings(mixed) == []
    assert field_score([1, 2, 3, 4], ["a", "a", "b", "b"]) == 0.0  # values of one image each predict nothing
    assert field_score([None, None, 1], ["a", "b", "a"]) is None
    assert pixel_size_spread([1e-9, 5.83e-9, None]) == "1 nm-5.83 nm (2/3)"
    assert pixel_size_spread([3.3724e-06, 3.3724e-06]) == "3.37 µm (2/2)" and pixel_size_spread([None]) == "-"
