"""Identity in binary payloads, end to end through ``pixeldeid dicom`` (session 13 audit):
the header's ICC profile, frames of the retired JPEG processes and of JPEG 2000 Part 2
(once passed through unstripped), UTF-16 text the strippers cannot see in compressed pixel
data, and a transfer syntax pydicom does not know."""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pydicom
from pydicom.encaps import encapsulate

from tests.pixeldeid.test_iccprofile import _build, _mluc, _srgb
from tests.pixeldeid.test_jpegmarkers import _insert_after_soi, _j2k_with_comments, _segment
from tests.pixeldeid.test_unlisted_places import _ct, _deid

SURNAME = "Zorbaxton"
NAME = f"{SURNAME}^Quilleran"


def _rgb(**values):
    ds = _ct(PatientName=NAME, **values)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 32, 48, 3
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    rng = np.random.default_rng(3)
    ds.PixelData = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8).tobytes()
    return ds


def _texts(data: bytes) -> list[bytes]:
    low = data.lower()
    return [f for f in (SURNAME.lower().encode(), SURNAME.lower().encode("utf-16-be"),
                        SURNAME.lower().encode("utf-16-le")) if f in low]


def test_the_headers_icc_profile_loses_its_text_and_keeps_its_size(tmp_path, run):
    base = _srgb()
    profile = _build(base, {b"desc": _mluc((b"enUS", f"{NAME} ZQX88231"))})
    ds = _rgb()
    ds.ICCProfile = profile
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None and not _texts(data)
    out = pydicom.dcmread(io.BytesIO(data))
    assert len(out.ICCProfile) == len(profile) and out.ICCProfile[:128] == profile[:128]


def test_a_damaged_icc_profile_is_quarantined(tmp_path, run):
    ds = _rgb()
    ds.ICCProfile = b"\0\0\0\x20" + b"x" * 28  # a size field that is no profile's
    status, out, data = _deid(tmp_path, run, ds)
    assert status == 1 and data is None
    [reason] = out.rglob("*.reason.txt")
    assert "ICC Profile" in reason.read_text()


def _jpeg_frame() -> bytes:
    img = np.random.default_rng(1).integers(0, 255, (32, 48), dtype=np.uint8)
    return imagecodecs.jpeg8_encode(img, level=90)


def _gray_encapsulated(frame: bytes, ts: str, **values):
    ds = _ct(PatientName=NAME, **values)
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 48, 8, 8, 7
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = ts
    return ds


def test_frames_of_the_retired_jpeg_processes_are_stripped(tmp_path, run):
    """1.2.840.10008.1.2.4.55 (full progression, retired) has the T.81 marker syntax:
    its EXIF and COM were released untouched."""
    frame = _insert_after_soi(_jpeg_frame(), _segment(0xFFE1, b"Exif\0\0" + b"MM" + b"\0" * 6
                                                      + NAME.encode()),
                              _segment(0xFFFE, f"MRN 4821 {NAME}".encode()))
    ds = _gray_encapsulated(frame, "1.2.840.10008.1.2.4.55")
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None and not _texts(data) and b"MRN 4821" not in data


def test_jpeg_2000_part_2_frames_are_stripped(tmp_path, run):
    img = np.random.default_rng(2).integers(0, 4095, (32, 48), dtype=np.uint16)
    cs = _j2k_with_comments(img, tile_comment=True)
    ds = _gray_encapsulated(cs, "1.2.840.10008.1.2.4.92")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None
    assert b"Quixmore" not in data and b"Huxtable" not in data


def test_utf16_text_the_stripper_cannot_see_is_found_in_compressed_pixel_data(tmp_path, run):
    """UTF-16 text without an FF byte just before EOI looks like entropy-coded data."""
    frame = _jpeg_frame()
    frame = frame[:-2] + f" {NAME} ".encode("utf-16-le") + frame[-2:]
    ds = _gray_encapsulated(frame, "1.2.840.10008.1.2.4.50")
    status, out, data = _deid(tmp_path, run, ds)
    assert status == 1 and data is None
    [reason] = out.rglob("*.reason.txt")
    assert "compressed pixel data" in reason.read_text()


def test_a_transfer_syntax_pydicom_does_not_know_is_quarantined_with_a_clear_reason(
        tmp_path, run):
    # JPEG XL (2024): written as MPEG2 (a UID of the same length), then renamed in the bytes
    ds = _gray_encapsulated(b"\xff\x0a" + b"\0" * 30, "1.2.840.10008.1.2.4.100")
    src = tmp_path / "in" / "jxl.dcm"
    src.parent.mkdir()
    ds.save_as(src, enforce_file_format=True)
    raw = src.read_bytes()
    assert raw.count(b"1.2.840.10008.1.2.4.100\0") == 1
    src.write_bytes(raw.replace(b"1.2.840.10008.1.2.4.100\0", b"1.2.840.10008.1.2.4.112\0"))
    status, out = run(src, "--pixels", "off")
    assert status == 1 and not list(out.glob("*.dcm"))
    [reason] = out.rglob("*.reason.txt")
    assert "unsupported transfer syntax 1.2.840.10008.1.2.4.112" in reason.read_text()
