"""Tests of the synthetic CT corpus and the planted-identity dataset generator."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from tests.pixeldeid.corpus import (
    SAFE_PRIVATE_CT,
    leaked,
    make_ct_series,
    make_patient,
    make_planted_dataset,
    write_planted,
)

REPO = Path(__file__).resolve().parents[2]


def test_ct_series_reads_back_as_one_consistent_series(tmp_path):
    paths = make_ct_series(tmp_path / "ct", 4, seed=5, filename="{family}_{index:03d}.dcm")
    assert [p.name for p in paths] == [f"{make_patient(5).family}_{i:03d}.dcm" for i in (1, 2, 3, 4)]
    dss = [pydicom.dcmread(p) for p in paths]
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    assert len({d.StudyInstanceUID for d in dss}) == 1
    assert len({d.SOPInstanceUID for d in dss}) == 4
    assert all(d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID for d in dss)
    zs = [float(d.ImagePositionPatient[2]) for d in dss]
    assert zs == sorted(zs) and len(set(zs)) == 4
    arr = dss[0].pixel_array
    assert arr.shape == (512, 512) and arr.dtype == np.int16
    hu = arr.astype(np.float32) * float(dss[0].RescaleSlope) + float(dss[0].RescaleIntercept)
    # air outside, soft tissue inside the body, bone in the spine
    assert hu[5, 5] < -900 and -100 < np.median(hu[240:270, 240:270]) < 150 and hu.max() > 500
    assert dss[0].SOPClassUID == pydicom.uid.CTImageStorage
    assert dss[0].PatientName == make_patient(5).name


def test_ct_series_is_deterministic(tmp_path):
    a = make_ct_series(tmp_path / "a", 2, seed=9)
    b = make_ct_series(tmp_path / "b", 2, seed=9)
    c = make_ct_series(tmp_path / "c", 1, seed=10)
    assert a[1].read_bytes() == b[1].read_bytes()
    assert pydicom.dcmread(c[0]).StudyInstanceUID != pydicom.dcmread(a[0]).StudyInstanceUID


def test_ct_private_blocks_use_safe_creators_of_table_e3_10_1(tmp_path):
    table = REPO / "configs" / "ps315" / "table_e3_10_1.json"
    if not table.exists():
        pytest.skip("configs/ps315/table_e3_10_1.json not generated yet")
    rows = json.loads(table.read_text())["rows"]
    safe = {(r["private_creator"], r["group"], r["element_low"]) for r in rows}
    ds = pydicom.dcmread(make_ct_series(tmp_path, 1)[0])
    for group, elem, creator, vr, _ in SAFE_PRIVATE_CT:
        assert (creator, group, elem) in safe
        block = ds.private_block(group, creator)
        assert block[elem].VR == vr
    # one unknown creator carries identity
    unknown = ds.private_block(0x0033, "ACME RIS BRIDGE 2.1")
    assert unknown[0x01].value == str(ds.PatientName)


@pytest.mark.parametrize("pixels,frames", [("jpeg", 1), ("jpeg", 3), ("native", 1)])
def test_every_planted_string_is_in_the_written_file(tmp_path, pixels, frames):
    path, planted = write_planted(tmp_path / "p.dcm", seed=2, pixels=pixels, frames=frames)
    data = path.read_bytes()
    assert len(planted) > 60
    assert len(leaked(data, planted)) == len(planted)
    assert set(planted.where) == set(planted)


def test_planted_places_are_where_the_docs_say(tmp_path):
    path, planted = write_planted(tmp_path / "p.dcm", seed=4, frames=2)
    data = path.read_bytes()
    assert data[:128].startswith(b"PREAMBLE ") and data[128:132] == b"DICM"
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "Größmann^Jürgen"
    assert "Größmann".encode() in data
    assert ds.file_meta.SourceApplicationEntityTitle in planted
    assert b"Thistlewood" in ds.file_meta.PrivateInformation
    assert ds[0xFFFCFFFC].value.decode() in planted
    # three sequence levels deep
    ctx = ds.RequestAttributesSequence[0].ScheduledProtocolCodeSequence[0].ProtocolContextSequence
    assert str(ctx[0].PersonName) in planted
    # relocated blocks
    assert ds[0x00290042].value == "QXM PRIVATE PATIENT" and ds[0x00294210].value in planted
    assert ds[0x00190042].value == "GEMS_ACQU_01" and ds[0x00190011].value == "QXM LOCAL NOTES"
    assert ds[0x00711001].VR == "UN"
    assert ds[0x60000022].value in planted and ds[0x50000022].value in planted
    # JPEG frames: real baseline JPEGs with identity in APP1/COM/APP13
    from PIL import Image

    frames = list(generate_frames(ds.PixelData, number_of_frames=2))
    assert len(frames) == 2
    for frame in frames:
        img = Image.open(io.BytesIO(frame))
        assert img.size == (256, 256) and img.mode == "L"
        assert img.getexif()[0x013B] in planted
        assert b"\xff\xfe" in frame and b"Photoshop 3.0" in frame
    assert ds.pixel_array.shape == (2, 256, 256)


def test_planted_implicit_vr_privates_read_back_as_un(tmp_path):
    path, planted = write_planted(tmp_path / "p.dcm", seed=6, pixels="native", implicit=True)
    assert len(leaked(path.read_bytes(), planted)) == len(planted)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert ds[0x00294210].VR == "UN" and ds[0x00331001].VR == "UN"
    assert ds[0x00294210].value.decode().strip() in planted
    assert str(ds.PatientName) == "Größmann^Jürgen"


def test_planted_dataset_rejects_unknown_pixels():
    with pytest.raises(ValueError, match="pixels"):
        make_planted_dataset(pixels="j2k")
    with pytest.raises(ValueError, match="native"):
        make_planted_dataset(pixels="jpeg", implicit=True)
