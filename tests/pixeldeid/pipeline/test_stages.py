"""The defacing and slide stages inside ``pixeldeid run``: a DICOM MR head series defaced as
one item, a DICOM whole-slide image handled as one slide, patients as the plan numbered."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pydicom
import pytest

from pixeldeid.cli import main

from .conftest import KEY, inputs_digest, tree


def _items(out: Path) -> list[dict]:
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM items ORDER BY id")]
    finally:
        con.close()


@pytest.mark.shared
def test_dicom_head_series_is_defaced_as_one_item(tmp_path: Path) -> None:
    from tests.conftest import shared_path

    src = shared_path("data", "heads", "dicom-mr-series")
    before = inputs_digest(src)
    job = tmp_path / "job.yaml"
    job.write_text("pixels: {policy: 'off'}\n"
                   "deface: {enabled: true, series: all, device: cpu, qc: true}\n")
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    argv = ["run", str(src), "-o", str(out), "--key-file", str(key), "--config", str(job),
            "--no-progress"]
    assert main(argv) == 0
    (item,) = _items(out)
    assert item["kind"] == "dicom-series" and item["status"] == "done"
    assert json.loads(item["stages"]) == ["deface", "header"]
    assert len(json.loads(item["members"])) == 120
    files = sorted((out / item["output"]).glob("*.dcm"))
    assert len(files) == 120
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert ds.PatientID == item["patient"] == "SUBJ_001"
    assert "DERIVED" in ds.ImageType
    details = json.loads(item["details"])["deface"]
    assert details["metrics"]["face_fraction_removed"] > 0.5
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    arts = [r[0] for r in con.execute("SELECT path FROM artifacts WHERE stage='deface'")]
    con.close()
    assert arts and all((out / a).is_file() and a.startswith(".pixeldeid/qc/") for a in arts)
    first = tree(out)
    assert main(argv) == 0  # a second run does no work
    assert tree(out) == first
    assert inputs_digest(src) == before


def test_dicom_whole_slide_image_is_one_slide_item(tmp_path: Path) -> None:
    pytest.importorskip("openslide")
    from wsi.synth.dicomwsi import make_dicom_wsi

    planted = make_dicom_wsi(tmp_path / "in" / "slide1")
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    status = main(["run", str(tmp_path / "in"), "-o", str(out), "--key-file", str(key),
                   "--no-progress", "--pixels", "off"])
    (item,) = _items(out)
    assert item["kind"] == "slide" and item["modality"] == "SM", item["reason"]
    assert status == 0 and item["status"] == "done"
    files = sorted((out / item["output"]).glob("*.dcm"))
    assert files and item["output"].startswith(f"slides/{item['patient']}-")
    kinds = {str(pydicom.dcmread(f, stop_before_pixels=True).ImageType[2]) for f in files}
    assert "LABEL" not in kinds and "OVERVIEW" not in kinds
    blob = b"".join(f.read_bytes() for f in files)
    for value in planted.values():
        if len(str(value)) >= 4:
            assert str(value).encode() not in blob
    assert pydicom.dcmread(files[0], stop_before_pixels=True).PatientID == item["patient"]


@pytest.mark.parametrize("profile", ["basic", "tcia-like"])
def test_slide_dates_follow_the_profile_and_the_patients_keyed_offset(
        tmp_path: Path, profile: str) -> None:
    """Basic profile: the slide's dates are removed. A profile keeping modified dates: they
    move by the same keyed offset the header core gives that patient."""
    import datetime as dt

    tifffile = pytest.importorskip("tifffile")
    from pixeldeid.dates import offset_for
    from wsi.synth.aperio import make_aperio

    src = tmp_path / "in" / "case.svs"
    make_aperio(src, width=960, height=720, levels=2)
    job = tmp_path / "job.yaml"
    job.write_text(f"profile: {profile}\npixels: {{policy: 'off'}}\n"
                   "wsi: {verify: false}\n")
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    assert main(["run", str(src), "-o", str(out), "--key-file", str(key), "--config", str(job),
                 "--no-progress"]) == 0
    (item,) = _items(out)
    assert item["status"] == "done", item["reason"]
    with tifffile.TiffFile(out / item["output"]) as tf:
        desc = tf.pages[0].description
    assert "11/23/26" not in desc  # the planted scan date
    dates = [f.split("=", 1)[1].strip() for f in desc.split("|") if f.strip().startswith("Date")]
    if profile == "basic":
        assert dates == []
        return
    days = offset_for(KEY.strip(), f"FILE:{src.resolve()}").days  # the key file, stripped
    want = (dt.date(2026, 11, 23) + dt.timedelta(days=days)).strftime("%m/%d/%y")
    assert dates == [want]


@pytest.mark.shared
def test_a_head_series_loses_its_burned_in_text_before_it_is_defaced(tmp_path: Path) -> None:
    """Head series went to defacing without the pixel stage: a name and MRN burned into
    every slice were released (``pixeldeid dicom`` removed them from the same files)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from tests.conftest import shared_path

    pytest.importorskip("rapidocr_onnxruntime")
    files = sorted(shared_path("data", "heads", "dicom-mr-series").iterdir())
    dss = sorted((pydicom.dcmread(f) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))
    src = tmp_path / "in"
    src.mkdir()
    try:
        font = ImageFont.truetype("DejaVuSans-Bold.ttf", 22)
    except OSError:
        font = ImageFont.load_default(size=22)
    mask = None
    for i, ds in enumerate(dss[::4]):  # 30 slices: enough for the defacing to find the head
        a = ds.pixel_array.copy()
        img = Image.new("L", (a.shape[1], a.shape[0]), 0)
        draw = ImageDraw.Draw(img)
        draw.text((10, a.shape[0] - 70), "QUIXBURY^ALOYSIUS", fill=255, font=font)
        draw.text((10, a.shape[0] - 40), "MRN 7733991155", fill=255, font=font)
        mask = np.array(img) > 128
        a[mask] = a.max()
        ds.PixelData = a.tobytes()
        ds.PatientName, ds.PatientID, ds.BodyPartExamined = "QUIXBURY^ALOYSIUS", "7733991155", "HEAD"
        ds.save_as(src / f"s{i:03d}.dcm")
    key = tmp_path / "k"
    key.write_bytes(KEY)
    job = tmp_path / "job.yaml"
    job.write_text("deface: {enabled: true, series: all, device: cpu, qc: false}\n")
    out = tmp_path / "out"
    assert main(["run", str(src), "-o", str(out), "--key-file", str(key), "--config", str(job),
                 "--no-progress"]) == 0
    (item,) = _items(out)
    assert json.loads(item["stages"]) == ["pixels", "deface", "header"]
    assert json.loads(item["details"])["pixels"]["redacted"] > 0
    left = [f for f in (out / item["output"]).glob("*.dcm")
            if (pydicom.dcmread(f).pixel_array[mask] >= 0.9 * pydicom.dcmread(f).pixel_array.max()
                ).mean() > 0.5]
    assert not left
    assert not (out / ".pixeldeid" / "work").exists() or not any(
        (out / ".pixeldeid" / "work").rglob("redacted"))
