"""The REST API through a real uvicorn server on 127.0.0.1: answers, limits, errors, bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import predict_support as support  # tests/predict, put on sys.path by conftest.py
from hypothesis import HealthCheck, given, settings
from PIL import Image

from hnf.data.reading import MAX_PIXELS
from hnf.predict import Predictor, flops_per_image
from hnf.serve import ServeSettings
from hnf.serve.app import predict_uploads
from hnf.serve.client import Client


def test_health_classes_model_and_docs(client: Client, predictor: Predictor) -> None:
    assert client.get("/healthz").body == {"status": "ok", "model": "hnf_small"}
    classes = client.get("/v1/classes").body["classes"]
    assert [c["name"] for c in classes] == predictor.classes
    assert all(c["description"] for c in classes)  # the shipped corpus covers the NFFA classes
    model = client.get("/v1/model").body
    assert model["name"] == "hnf_small" and model["classes"] == predictor.classes
    assert model["version"] and model["checkpoint"]["format"] == "hnf-checkpoint/1"
    assert model["flops"] == flops_per_image(predictor.model, 1, 224) > 0
    spec = client.get("/openapi.json").body
    assert {"/v1/predict", "/v1/classes", "/v1/model", "/healthz"} <= set(spec["paths"])
    assert client.get("/docs").status == 200
    page = client.get("/")
    assert page.status == 200 and "Drop micrographs here" in page.body


def test_predict_one_matches_the_library(client: Client, predictor: Predictor, synth_pngs, tmp_path) -> None:
    name, data = synth_pngs[3]
    reply = client.predict([(name, data)], top_k=5)
    assert reply.status == 200, reply.body
    result = reply.body["results"][0]
    (tmp_path / name).write_bytes(data)
    expected = next(predictor.predict_files([tmp_path / name], top_k=5))
    assert result["filename"] == name and result["error"] is None
    assert [e["class"] for e in result["top_k"]] == [e["class"] for e in expected.top_k]
    assert result["class"] == expected.top_k[0]["class"]
    np.testing.assert_allclose([result["probabilities"][c] for c in predictor.classes], expected.probs, atol=1e-6)
    assert result["band"] is None and (result["width"], result["height"], result["mode"]) == (256, 256, "L")


def test_predict_many_in_order_with_per_file_errors(client: Client, synth_pngs) -> None:
    files = [synth_pngs[0], ("notes.png", b"not an image at all"), synth_pngs[1], ("empty.tif", b"")]
    reply = client.predict(files, top_k=2, explain=True)
    assert reply.status == 200
    results = reply.body["results"]
    assert [r["filename"] for r in results] == [f[0] for f in files]
    assert results[1]["status"] == 415 and "not a supported image" in results[1]["error"]
    assert results[3]["status"] == 400 and "empty file" in results[3]["error"]
    for good in (results[0], results[2]):
        assert len(good["top_k"]) == 2
        ex = good["explanation"]
        assert ex["method"] == "hnf" and [s["patch"] for s in ex["scales"]] == [16, 28, 32]
        assert ex["overlay_png"].startswith("data:image/png;base64,")
        assert {s["dominant"] for s in ex["scales"]} <= {"sequence", "graph", "interaction"}


def test_content_is_sniffed_not_the_name(client: Client, synth_pngs) -> None:
    _, png = synth_pngs[2]
    as_jpg = client.predict([("really-a-png.jpg", png)])
    assert as_jpg.status == 200 and as_jpg.body["results"][0]["error"] is None
    text = client.predict([("micrograph.tif", b"II*\x00 but then garbage" * 10)])
    assert text.status == 422 and text.body["error"].startswith("micrograph.tif: ")
    script = client.predict([("x.png", b"<script>alert(1)</script>")])
    assert script.status == 415 and script.body["status"] == 415


def test_errors_are_json_with_a_message(client: Client) -> None:
    for reply, status in [(client.get("/nope"), 404), (client.request("POST", "/v1/predict"), 422),
                          (client.request("GET", "/v1/predict"), 405)]:
        assert reply.status == status
        assert reply.body["status"] == status and isinstance(reply.body["error"], str) and reply.body["error"]
    bad_k = client.request("POST", "/v1/predict?top_k=0")
    assert bad_k.status == 422 and "top_k" in bad_k.body["error"]


def test_limits(small_limits_client: Client, synth_pngs) -> None:
    big = np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8)  # 160,000 pixels
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "PNG")
    too_many_pixels = small_limits_client.predict([("big.png", buffer.getvalue())])
    assert too_many_pixels.status == 413 and "pixels exceeds the limit of 100,000" in too_many_pixels.body["error"]
    bomb = small_limits_client.predict([("bomb.png", support.png_huge_header(100_000, 100_000))])
    assert bomb.status == 413 and "10,000,000,000 pixels; the limit is 100,000" in bomb.body["error"]
    heavy = [("noise.bmp", b"BM" + bytes(400_000))]
    for chunked in (False, True):  # with Content-Length, and counted as it arrives
        reply = small_limits_client.predict(heavy, chunked=chunked)
        assert reply.status == 413 and "exceeds the limit of 0.3 MB" in reply.body["error"], reply.body
    many = small_limits_client.predict(synth_pngs[:4])
    assert many.status == 413 and "4 files exceed the limit of 3" in many.body["error"]
    assert small_limits_client.predict(synth_pngs[:1]).status == 200  # still serving


def test_the_readers_pixel_limit_is_a_413(predictor: Predictor) -> None:
    """Past the service's own header check (a limit above the reader's), the reader refuses the
    image with an :class:`~hnf.errors.ImageTooLargeError`, answered 413; other unreadable files 422."""
    uploads = [("huge.png", support.png_huge_header(12000, 12000)), ("noise.png", b"\x89PNG\r\n\x1a\n" + bytes(64))]
    huge, noise = predict_uploads(predictor, ServeSettings(max_pixels=10 * MAX_PIXELS), uploads, 1, False)
    assert huge["status"] == 413 and huge["error"] == f"huge.png: 12000x12000 pixels exceeds the limit of {MAX_PIXELS:,} pixels"
    assert noise["status"] == 422 and noise["error"].startswith("noise.png: ")


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(item=support.lab_files())
def test_fuzzed_uploads_get_an_answer_or_a_clear_4xx(client: Client, item) -> None:
    name, data, readable = item
    reply = client.predict([(name, data)])
    assert isinstance(reply.body, dict), reply.body
    if readable:
        assert reply.status == 200 and reply.body["results"][0]["error"] is None, reply.body
    else:
        assert 400 <= reply.status < 500 and reply.body["error"].startswith(f"{name}: "), reply.body
    assert client.get("/healthz").status == 200


def test_pixel_size_and_field_of_view_from_the_files_metadata(client: Client, shared_data: Path, synth_pngs) -> None:
    fei = shared_data / "microscope-tiff" / "fei" / "FEI-Helios-Ebeam-8bits.tif"
    reply = client.predict([(fei.name, fei.read_bytes()), synth_pngs[0]])
    assert reply.status == 200, reply.body
    stated, plain = reply.body["results"]
    assert stated["pixel_size_m"] == pytest.approx(3.3724e-6)
    assert stated["band"]["top"] == 442  # the databar's rows from the metadata
    assert stated["field_of_view_m"] == pytest.approx([stated["width"] * 3.3724e-6, 442 * 3.3724e-6])
    assert plain["pixel_size_m"] is None and plain["field_of_view_m"] is None


def test_min_confidence_marks_abstentions_and_results_carry_the_trust_fields(client: Client, synth_pngs) -> None:
    reply = client.predict(synth_pngs[:3], top_k=2, min_confidence=1.0)
    assert reply.status == 200, reply.body
    for result in reply.body["results"]:
        assert result["abstain"] is True and result["unknown"] is None and result["ood_score"] is None
    plain = client.predict(synth_pngs[:1]).body["results"][0]
    assert plain["abstain"] is False
    model = client.get("/v1/model").body
    assert model["temperature"] == 1.0 and model["unknown_inputs"] is None
    bad = client.predict(synth_pngs[:1], min_confidence=1.5)
    assert bad.status == 422
    assert bad.body["error"] == "query.min_confidence: Input should be less than or equal to 1"
