"""End-to-end: identity planted in encapsulated Pixel Data never reaches a released file.

Each case runs ``pixeldeid dicom ... --pixels off`` and checks every byte of every
output file for the planted strings, or that the input was quarantined with a reason
that names none of them; JPEG outputs must decode to the input's pixels.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended, itemize_frame
from pydicom.pixels import iter_pixels
from pydicom.uid import JPEGBaseline8Bit, RLELossless, SecondaryCaptureImageStorage, generate_uid

from pixeldeid.cli import main

NAME, MRN = b"ZQXLEAKNAME1", b"MRN88231"
PLANTED = (NAME, MRN)


def _jpeg(seed: int, n: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n]
    img = ((x * 4 + y * 2 + rng.integers(0, 16, (n, n))) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _seg(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def _after_app0(jpeg: bytes, *segments: bytes) -> bytes:
    end = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:end] + b"".join(segments) + jpeg[end:]


def _dataset(ts: str, pixel_data: bytes, frames: int = 1, n: int = 32) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ts
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "ZQXLEAKNAME1^ZQXGIVEN"
    ds.PatientID = "MRN88231"
    ds.PatientBirthDate = "19470311"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.Modality, ds.ConversionType = "20200101", "OT", "WSD"
    ds.Rows = ds.Columns = n
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 7, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BurnedInAnnotation = "NO"
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def _run(tmp_path: Path, key_file: Path, ds: Dataset) -> tuple[list[Path], list[str]]:
    """De-identify ``ds``; return (released files, quarantine reasons)."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    ds.save_as(src / "a.dcm", enforce_file_format=True)
    main(["-q", "dicom", str(src), "-o", str(out), "--key-file", str(key_file), "--pixels",
          "off"])
    files = [p for p in out.rglob("*") if p.is_file()]
    released = [p for p in files if "quarantine" not in p.parts and ".pixeldeid" not in p.parts]
    reasons = [p.read_text() for p in files if p.name.endswith(".reason.txt")]
    return released, reasons


def _no_leak(released: list[Path], reasons: list[str] = ()) -> None:
    for p in released:
        data = p.read_bytes()
        for s in PLANTED:
            assert s not in data, f"{s!r} released in {p.name}"
    for r in reasons:
        assert "ZQX" not in r and "88231" not in r


def _decoded_frames(path: Path) -> list[np.ndarray]:
    return [np.array(f) for f in iter_pixels(path)]


def _expected(frames: list[bytes]) -> list[np.ndarray]:
    """The frames decoded by pydicom from a clean encapsulation of ``frames``."""
    ref = _dataset(JPEGBaseline8Bit, encapsulate(frames), frames=len(frames))
    arr = ref.pixel_array
    return list(arr) if len(frames) > 1 else [arr]


def test_icc_profile_app2_with_identity_is_removed(tmp_path, key_file):
    jpeg = _jpeg(0)
    frame = _after_app0(jpeg, _seg(0xFFE2, b"ICC_PROFILE\0\1\1desc " + NAME + b" " + MRN))
    released, reasons = _run(tmp_path, key_file, _dataset(JPEGBaseline8Bit, encapsulate([frame])))
    assert len(released) == 1 and not reasons
    _no_leak(released)
    np.testing.assert_array_equal(_decoded_frames(released[0])[0], _expected([jpeg])[0])


def test_reserved_jpg_marker_segment_quarantines(tmp_path, key_file):
    frame = _after_app0(_jpeg(0), _seg(0xFFC8, NAME + b" " + MRN))
    released, reasons = _run(tmp_path, key_file, _dataset(JPEGBaseline8Bit, encapsulate([frame])))
    assert released == [] and len(reasons) == 1 and "FFC8" in reasons[0]
    _no_leak(released, reasons)


def test_basic_offset_table_with_text_is_rebuilt(tmp_path, key_file):
    jpeg = _jpeg(0)
    jpeg += b"\0" * (len(jpeg) % 2)
    pd = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(v)) + v for v in (NAME, jpeg))
    released, reasons = _run(tmp_path, key_file, _dataset(JPEGBaseline8Bit, pd))
    assert len(released) == 1 and not reasons
    _no_leak(released)
    out = pydicom.dcmread(released[0])
    assert out.PixelData[:12] == struct.pack("<HHII", 0xFFFE, 0xE000, 4, 0)
    np.testing.assert_array_equal(_decoded_frames(released[0])[0], _expected([jpeg])[0])


def test_extra_fragment_after_the_last_frame_is_dropped(tmp_path, key_file):
    frames = [_jpeg(s) for s in range(2)]
    pd = encapsulate(frames, has_bot=False) + struct.pack("<HHI", 0xFFFE, 0xE000, 14) \
        + NAME + b"\0\0"
    released, reasons = _run(tmp_path, key_file, _dataset(JPEGBaseline8Bit, pd, frames=2))
    assert len(released) == 1 and not reasons
    _no_leak(released)
    got = _decoded_frames(released[0])
    assert len(got) == 2
    for g, e in zip(got, _expected(frames), strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("kind", ["extended", "extended-bot-stale"])
def test_extended_offset_table_recomputed_after_stripping(tmp_path, key_file, kind):
    clean = [_jpeg(s) for s in range(3)]
    frames = [_after_app0(f, _seg(0xFFFE, b"tech comment " + b"x" * (10 * i)))
              for i, f in enumerate(clean)]
    pd, offsets, lengths = encapsulate_extended(frames)
    ds = _dataset(JPEGBaseline8Bit, pd, frames=3)
    if kind == "extended-bot-stale":  # an EOT that does not match: never copied
        offsets = NAME + b"\0" * (24 - len(NAME))
    ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = offsets, lengths
    released, reasons = _run(tmp_path, key_file, ds)
    assert len(released) == 1 and not reasons
    _no_leak(released)
    out = pydicom.dcmread(released[0])
    for f in range(3):  # every frame starts where the table says
        off = struct.unpack_from("<Q", out.ExtendedOffsetTable, 8 * f)[0]
        start = 8 + struct.unpack_from("<I", out.PixelData, 4)[0] + off + 8
        assert out.PixelData[start:start + 2] == b"\xff\xd8"
    got = _decoded_frames(released[0])
    np.testing.assert_array_equal(out.pixel_array, np.stack(got))
    for g, e in zip(got, _expected(clean), strict=True):
        np.testing.assert_array_equal(g, e)


def test_extended_offset_table_removed_when_frames_span_fragments(tmp_path, key_file):
    frames = [_jpeg(s) for s in range(2)]  # clean: they stay in two fragments each
    frames = [f + b"\0" * (len(f) % 2) for f in frames]
    pd = b"".join([struct.pack("<HHI", 0xFFFE, 0xE000, 0)]
                  + [b"".join(itemize_frame(f, nr_fragments=2)) for f in frames])
    ds = _dataset(JPEGBaseline8Bit, pd, frames=2)
    ds.ExtendedOffsetTable = struct.pack("<2Q", 0, 99)
    ds.ExtendedOffsetTableLengths = struct.pack("<2Q", 99, 99)
    released, reasons = _run(tmp_path, key_file, ds)
    assert len(released) == 1 and not reasons
    out = pydicom.dcmread(released[0])
    assert "ExtendedOffsetTable" not in out and "ExtendedOffsetTableLengths" not in out
    assert len(_decoded_frames(released[0])) == 2


def _video(ts: str, stream: bytes) -> Dataset:
    ds = _dataset(ts, encapsulate([stream], has_bot=False), frames=2, n=16)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
    ds.Modality = "XC"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = \
        3, "YBR_PARTIAL_420", 0
    return ds


def _box(t: bytes, p: bytes) -> bytes:
    return struct.pack(">I", 8 + len(p)) + t + p


def _nal(kind: str, t: int, payload: bytes) -> bytes:
    head = bytes([t]) if kind == "h264" else struct.pack(">H", t << 9 | 1)
    return b"\0\0\0\1" + head + payload


def test_mp4_container_video_is_quarantined(tmp_path, key_file):
    mp4 = (_box(b"ftyp", b"isom\0\0\2\0isomavc1")
           + _box(b"moov", _box(b"udta", _box(b"\xa9nam", NAME + b" " + MRN)))
           + _box(b"mdat", b"\0" * 64))
    released, reasons = _run(tmp_path, key_file, _video("1.2.840.10008.1.2.4.102", mp4))
    assert released == [] and len(reasons) == 1 and "ISO BMFF" in reasons[0]
    _no_leak(released, reasons)


@pytest.mark.parametrize("ts,kind,sei", [
    ("1.2.840.10008.1.2.4.102", "h264", 6),
    ("1.2.840.10008.1.2.4.106.1", "h264", 6),
    ("1.2.840.10008.1.2.4.107", "hevc", 39),
    ("1.2.840.10008.1.2.4.108", "hevc", 40),
])
def test_video_sei_with_identity_is_removed(tmp_path, key_file, ts, kind, sei):
    text = b"\x11" * 16 + NAME + b" " + MRN
    units = [_nal(kind, 7 if kind == "h264" else 33, b"\x64\x00\x1f"),
             _nal(kind, sei, bytes([5, len(text)]) + text + b"\x80"),
             _nal(kind, 5 if kind == "h264" else 19, b"\x88\x84\x21\x07")]
    released, reasons = _run(tmp_path, key_file, _video(ts, b"".join(units)))
    assert len(released) == 1 and not reasons
    _no_leak(released)
    out = pydicom.dcmread(released[0])
    stream = b"".join(pydicom.encaps.generate_fragments(out.PixelData[8:]))
    assert stream.rstrip(b"\0") == units[0] + units[2]


def test_mpeg2_user_data_with_identity_is_removed(tmp_path, key_file):
    seq = b"\0\0\1\xb3\x01\x00\x10\x13\xff\xff\xe0\x18"
    body = b"\0\0\1\xb8\x00\x08\x00\x00\0\0\1\x00\x00\x0f\xff\xf8\0\0\1\x01\x12\x34\x56"
    stream = seq + b"\0\0\1\xb2" + NAME + b" " + MRN + body
    released, reasons = _run(tmp_path, key_file, _video("1.2.840.10008.1.2.4.100", stream))
    assert len(released) == 1 and not reasons
    _no_leak(released)


def test_identity_in_other_compressed_pixel_data_quarantines(tmp_path, key_file):
    """RLE (nothing to strip): a frame whose bytes spell the patient's name is refused by
    the residual check of the encapsulated pixel data, the name not echoed."""
    from pydicom.pixels import compress

    ds = _dataset(JPEGBaseline8Bit, b"")
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    img = np.zeros((32, 32), np.uint8)
    img[5, 2:2 + len(NAME)] = np.frombuffer(NAME, np.uint8)
    ds.PixelData = img.tobytes()
    ds["PixelData"].is_undefined_length = False
    compress(ds, RLELossless, encoding_plugin="pydicom")
    assert NAME in ds.PixelData
    released, reasons = _run(tmp_path, key_file, ds)
    assert released == [] and len(reasons) == 1 and "pixel data" in reasons[0]
    _no_leak(released, reasons)


def test_a_short_name_part_in_compressed_bytes_is_not_a_hit(tmp_path, key_file):
    """Compressed bytes hold any given 3-letter word as a whole word about 0.3 times per MB:
    a patient called Kim would have lost a share of every study to the quarantine. The
    pixel data search takes tokens of PIXEL_TOKEN_MIN+ characters only."""
    from pydicom.pixels import compress

    ds = _dataset(JPEGBaseline8Bit, b"")
    ds.PatientName = "KIM^ANN"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    img = np.zeros((32, 32), np.uint8)
    img[5, 2:7] = np.frombuffer(b" KIM ", np.uint8)
    ds.PixelData = img.tobytes()
    ds["PixelData"].is_undefined_length = False
    compress(ds, RLELossless, encoding_plugin="pydicom")
    assert b" KIM " in ds.PixelData
    released, reasons = _run(tmp_path, key_file, ds)
    assert len(released) == 1 and not reasons
