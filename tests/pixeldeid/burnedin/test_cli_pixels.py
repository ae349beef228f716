"""``pixeldeid dicom`` with the burned-in text flags, end to end."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from pixeldeid.burnedin.synth import make_us_cine, make_us_frame, write
from pixeldeid.cli import main

pytest.importorskip("rapidocr_onnxruntime")

CLEAN_PIXEL_DATA = "113101"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    cine = make_us_cine(n_frames=8, rows=480, columns=640, clock_every=3, seed=31)
    still = make_us_frame(rows=480, columns=640, photometric="YBR_FULL_422", seed=32)
    write(cine, d / "cine.dcm")
    write(still, d / "still.dcm")
    key = tmp_path_factory.mktemp("key") / "project.key"
    key.write_bytes(b"cli-pixels-test-key-0123456789abcdef\n")
    return d, {"cine": cine, "still": still}, key


def dicom(src, out, key, *extra) -> int:
    return main(["dicom", str(src), "-o", str(out), "--key-file", str(key), "--no-progress",
                 *extra])


def outputs(out):
    return {str(d.Rows): d for d in (pydicom.dcmread(p) for p in sorted(out.glob("*.dcm")))}


def test_default_auto_redacts_and_records_the_clean_pixel_option(inputs, tmp_path):
    src, truth, key = inputs
    assert dicom(src, tmp_path / "out", key, "--ocr", "rapidocr", "--device", "cpu") == 0
    outs = sorted((tmp_path / "out").glob("*.dcm"))
    assert len(outs) == 2
    for p in outs:
        ds = pydicom.dcmread(p)
        us = truth["cine"] if "NumberOfFrames" in ds else truth["still"]
        frames = ds.pixel_array if "NumberOfFrames" in ds else ds.pixel_array[None]
        if ds.PhotometricInterpretation == "YBR_FULL_422":
            assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        for t in us.texts:
            b = t.box
            part = frames[:, b.y0:b.y1, b.x0:b.x1]
            if t.box.label == "identity":
                assert int(part.max()) <= 8, t.kind
        assert ds.BurnedInAnnotation == "NO"
        codes = [str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence]
        assert CLEAN_PIXEL_DATA in codes
        assert str(ds.PatientName) != str(us.dataset.PatientName)   # header core ran too


def test_no_ocr_quarantines_the_ultrasound_as_a_pixel_failure(inputs, tmp_path, capsys):
    src, _, key = inputs
    out = tmp_path / "out"
    assert dicom(src, out, key, "--ocr", "none") == 1
    reasons = sorted((out / "quarantine").glob("*.reason.txt"))
    assert len(reasons) == 2 and not list(out.glob("*.dcm"))
    for r in reasons:
        text = r.read_text()
        assert "stage: pixels" in text and "no matching template" in text
    assert "quarantined" in capsys.readouterr().err


def test_template_folder_redacts_without_ocr_reading_first(inputs, tmp_path):
    src, truth, key = inputs
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "synth.yaml").write_text(
        "- name: synth-sonics-640x480\n"
        "  match: {Manufacturer: Synthetic Sonics, Rows: 480, Columns: 640}\n"
        "  regions:\n    - [0, 0, 640, 70]\n")
    out = tmp_path / "out"
    assert dicom(src, out, key, "--pixels", "template", "--templates", str(tdir),
                 "--ocr", "rapidocr") == 0
    for p in out.glob("*.dcm"):
        ds = pydicom.dcmread(p)
        frames = ds.pixel_array if "NumberOfFrames" in ds else ds.pixel_array[None]
        assert int(frames[:, :70].max()) <= 8            # the band is black
        assert int(frames[:, 70:].max()) > 100           # the rest is kept
        us = truth["cine"] if "NumberOfFrames" in ds else truth["still"]
        x = next(t.box for t in us.texts if t.kind == "label")   # below the band: kept
        assert int(frames[:, x.y0:x.y1, x.x0:x.x1].max()) > 100


def test_pixels_off_leaves_the_pixels(inputs, tmp_path):
    src, truth, key = inputs
    out = tmp_path / "out"
    assert dicom(src, out, key, "--pixels", "off") == 0
    for p in out.glob("*.dcm"):
        ds = pydicom.dcmread(p)
        orig = truth["cine"].dataset if "NumberOfFrames" in ds else truth["still"].dataset
        assert np.array_equal(ds.pixel_array, orig.pixel_array)
        codes = [str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence]
        assert CLEAN_PIXEL_DATA not in codes


@pytest.mark.parametrize("flags, message", [
    (["--pixels", "phi_only"], "did you mean 'phi-only'"),
    (["--ocr", "tesseractt"], "did you mean 'tesseract'"),
    (["--device", "gpu"], "unknown device"),
    (["--templates", "/nonexistent/templates"], "templates folder not found"),
])
def test_bad_pixel_flags_are_usage_errors_before_any_output(inputs, tmp_path, capsys, flags,
                                                            message):
    src, _, key = inputs
    out = tmp_path / "out"
    assert dicom(src, out, key, *flags) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_run_batch_reports_pixel_details_without_identity(inputs, tmp_path):
    """The API: DeidConfig.pixels runs the stage; FileOutcome.details holds its result."""
    import json

    from pixeldeid.api import DeidConfig
    from pixeldeid.batch import run_batch
    from pixeldeid.burnedin.stage import PixelSettings

    src, truth, key = inputs
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "synth.yaml").write_text(
        "- name: synth-band\n"
        "  match: {Manufacturer: Synthetic Sonics}\n"
        "  regions:\n    - [0, 0, Columns, 70]\n")
    config = DeidConfig(key=key.read_bytes().strip(), pixels=PixelSettings(
        policy="template", ocr="none", templates_dir=str(tdir)))
    summary = run_batch([src], tmp_path / "out", config, progress=False)
    assert summary.exit_status == 0 and len(summary.outcomes) == 2
    for o in summary.outcomes:
        pix = o.details["pixels"]
        assert pix["templates"] == ["synth-band"] and pix["redacted"]
        assert not pix["verified"]                 # no OCR: redacted, not verified
        text = json.dumps(o.details)
        for us in truth.values():
            assert str(us.dataset.PatientID) not in text
        ds = pydicom.dcmread(tmp_path / "out" / o.output)
        assert ds.BurnedInAnnotation == "YES"      # NO only when verified
        codes = [str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence]
        # (redacted by the template, not read again: no Clean Pixel Data claim)
        assert CLEAN_PIXEL_DATA not in codes


def test_clean_pixel_option_with_pixels_off_is_refused(inputs, tmp_path, capsys):
    src, _, key = inputs
    out = tmp_path / "out"
    assert dicom(src, out, key, "--pixels", "off", "--option", "clean-pixel-data") == 2
    assert "clean-pixel-data" in capsys.readouterr().err and not out.exists()
