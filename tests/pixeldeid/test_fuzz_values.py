"""Damaged values found by fuzzing (audit s14/fuzz): pixel data that does not match its
transfer syntax or its image attributes, identity attributes stored with a binary VR, and
UID attributes with a damaged VR. The same inputs are refused (or written alike) by the
ordinary path and the header fast path."""

from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from pixeldeid import batch
from pixeldeid.api import DeidConfig
from pixeldeid.batch import run_batch

NAME, PID = "QUIXBURY^AHARROW", "PXID73319"
RLE, ENCAPSULATED_UNCOMPRESSED = "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.98"
DEFLATED = "1.2.840.10008.1.2.1.99"


def _dataset(ts: str = ExplicitVRLittleEndian, rows: int = 32, cols: int = 32,
             frames: int | None = None) -> FileDataset:
    """An 8-bit CT (a multi-frame US when ``frames``) with planted identity, no pixels yet."""
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ("1.2.840.10008.5.1.4.1.1.3.1" if frames else
                                  "1.2.840.10008.5.1.4.1.1.2")
    fm.MediaStorageSOPInstanceUID = generate_uid()
    fm.TransferSyntaxUID = ts
    ds = FileDataset(None, {}, file_meta=fm, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PID, "19430817"
    ds.Modality = "US" if frames else "CT"
    ds.StudyDate = "20210304"
    ds.StudyDescription = "CHEST QUIXBURY"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.ImageComments = "seen with Aharrow Quixbury today; TR/TE 2000/10, 5 mm slices"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    if frames:
        ds.NumberOfFrames = frames
    return ds


def _native(path: Path, **kw) -> Path:
    ds = _dataset(**kw)
    n = ds.Rows * ds.Columns * int(ds.get("NumberOfFrames", 1))
    ds.PixelData = np.random.default_rng(3).integers(0, 255, n).astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _jpeg(path: Path) -> Path:
    """A JPEG Baseline CT whose COM segment holds the patient's name and ID."""
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32)).astype(np.uint8)) \
        .save(b, "JPEG", quality=95)
    com = b"QUIXBURY PXID73319"
    jpg = b.getvalue()
    jpg = jpg[:2] + b"\xff\xfe" + (len(com) + 2).to_bytes(2, "big") + com + jpg[2:]
    ds = _dataset(JPEGBaseline8Bit)
    ds.PixelData = encapsulate([jpg])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _relabel(path: Path, ts: str) -> Path:
    """Rewrite only the file meta of ``path`` so that its Transfer Syntax UID says ``ts``
    (the data set deflated under the Deflated label)."""
    raw = path.read_bytes()
    meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    meta.TransferSyntaxUID = ts
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_file_meta_info(fp, meta, enforce_standard=True)
    end = 132 + 12 + int.from_bytes(raw[140:144], "little")
    body = raw[end:]
    if ts == DEFLATED:
        z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = z.compress(body) + z.flush()
    path.write_bytes(raw[:128] + b"DICM" + fp.getvalue() + body)
    return path


def _with_vr(path: Path, tag: int, vr: str, value: bytes, **more) -> Path:
    """A native CT whose element ``tag`` is stored with VR ``vr`` and the bytes ``value``
    (a damaged VR: the bytes stay those of the original value), and likewise the elements
    of ``more`` (keyword: (VR, bytes))."""
    ds = _dataset()
    ds.PixelData = bytes(ds.Rows * ds.Columns)
    damaged = {tag: (vr, value)} | {pydicom.datadict.tag_for_keyword(k): v
                                    for k, v in more.items()}
    for t, (v, b) in damaged.items():
        ds._dict[BaseTag(t)] = RawDataElement(BaseTag(t), v, len(b), b, 0, False, True)
    if 0x00080018 in damaged:  # (the file meta as a damaged VR leaves it: the UID)
        ds.file_meta.MediaStorageSOPInstanceUID = damaged[0x00080018][1].rstrip(b"\0").decode()
    ds.save_as(path, enforce_file_format=False)
    return path


def _run(src: Path, out: Path, fast: bool, monkeypatch, profile: str = "tcia-like"):
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(batch, "_fast_path_allowed", lambda *a: False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run_batch([src], out, DeidConfig(key=b"k" * 32, profile=profile),
                             progress=False)


def _outcomes(src: Path, tmp_path: Path, monkeypatch, profile: str = "tcia-like") -> dict:
    """{input name: (status, reason)}, the same on the fast and the ordinary path."""
    got = []
    for fast in (True, False):
        summary = _run(src, tmp_path / f"out-{fast}", fast, monkeypatch, profile)
        got.append({Path(o.source).name: (o.status, o.reason.splitlines()[0] if o.reason else "")
                    for o in summary.outcomes + summary.input_errors})
    assert got[0] == got[1]
    return got[0]


def _written(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in out.glob("*.dcm")]


# -- 1, 8: pixel data that does not match its transfer syntax --------------------------

@pytest.mark.parametrize("label", [ExplicitVRLittleEndian, DEFLATED])
def test_encapsulated_pixels_under_native_label_quarantined(tmp_path, monkeypatch, label):
    src = tmp_path / "in"
    src.mkdir()
    _relabel(_jpeg(src / "jpeg.dcm"), label)
    status, reason = _outcomes(src, tmp_path, monkeypatch)["jpeg.dcm"]
    assert status == "quarantined"
    assert "encapsulated pixel data under a native transfer syntax" in reason
    assert not any(b"QUIXBURY" in d for d in _written(tmp_path / "out-True"))


@pytest.mark.parametrize("label", [RLE, ENCAPSULATED_UNCOMPRESSED])
def test_native_pixels_under_encapsulated_label_quarantined(tmp_path, monkeypatch, label):
    src = tmp_path / "in"
    src.mkdir()
    _relabel(_native(src / "ct.dcm"), label)
    status, reason = _outcomes(src, tmp_path, monkeypatch, "basic")["ct.dcm"]
    assert status == "quarantined"
    assert "native pixel data under an encapsulated transfer syntax" in reason


def test_matching_pixel_data_still_written(tmp_path, monkeypatch):
    """Correctly labelled JPEG and native files (and an odd-sized 8-bit image with its pad
    byte) are written, the JPEG without its COM segment."""
    src = tmp_path / "in"
    src.mkdir()
    _jpeg(src / "jpeg.dcm")
    _native(src / "ct.dcm")
    _native(src / "odd.dcm", rows=3, cols=5)  # 15 bytes, padded to 16
    outcomes = _outcomes(src, tmp_path, monkeypatch)
    assert {s for s, _ in outcomes.values()} == {"written"}, outcomes
    assert not any(b"QUIXBURY" in d for d in _written(tmp_path / "out-True"))


# -- 2: pixel data longer than its frames -------------------------------------------------

def test_pixel_data_longer_than_frames_quarantined(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    ds = _dataset(rows=24, cols=48, frames=3)
    text = bytes(24 * 48 // 2) + b"QUIXBURY PXID73319".ljust(24 * 48 // 2, b"\xff")
    ds.PixelData = bytes(24 * 48 * 3) + text  # a 4th frame no stage examines
    ds.save_as(src / "us.dcm", enforce_file_format=True)
    status, reason = _outcomes(src, tmp_path, monkeypatch)["us.dcm"]
    assert status == "quarantined"
    assert reason.endswith("pixel data holds 1152 bytes more than its 3 frame(s)")


def test_nul_padding_after_the_frames_written(tmp_path, monkeypatch):
    """NUL bytes after the declared frames (as in pydicom's MR_small_padded.dcm) hold no
    picture: written."""
    src = tmp_path / "in"
    src.mkdir()
    ds = _dataset(rows=24, cols=48, frames=3)
    ds.PixelData = bytes(range(256)) * (24 * 48 * 3 // 256) + bytes(128)
    ds.save_as(src / "us.dcm", enforce_file_format=True)
    assert _outcomes(src, tmp_path, monkeypatch)["us.dcm"][0] == "written"


def test_one_bit_pixel_data_packed_across_frames_written(tmp_path, monkeypatch):
    """Bits Allocated 1: frames are packed bit by bit, the value padded to even length
    (ceil(5 x 5 x 3 / 8) = 10 bytes): neither short nor long."""
    src = tmp_path / "in"
    src.mkdir()
    ds = _dataset(rows=5, cols=5, frames=3)
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.1"
    ds.PixelData = bytes(10)
    ds.save_as(src / "bits.dcm", enforce_file_format=True)
    assert _outcomes(src, tmp_path, monkeypatch, "basic")["bits.dcm"][0] == "written"


# -- 3: identity attributes stored with a binary VR ---------------------------------------

@pytest.mark.parametrize("tag,vr,value", [
    (0x00100010, "OB", b"QUIXBURY^AHARROW"),
    (0x00100010, "US", b"QUIXBURY^AHARROW"),
    (0x00100010, "FD", b"QUIXBURY^AHARROW"),
    (0x00100020, "OW", b"PXID73319 "),
    (0x00100030, "AT", b"19430817"),
    (0x00081050, "OB", b"VANDERMOLEN^YSOLDE"),  # Performing Physician's Name
])
def test_identity_attribute_with_binary_vr_quarantined(tmp_path, monkeypatch, tag, vr, value):
    src = tmp_path / "in"
    src.mkdir()
    _with_vr(src / "ct.dcm", tag, vr, value)
    status, reason = _outcomes(src, tmp_path, monkeypatch)["ct.dcm"]
    assert status == "quarantined"
    assert f"is stored with VR {vr}, not as text" in reason
    assert value.decode().strip() not in reason  # (a reason never repeats the value)


def test_identity_attribute_as_text_written_and_cleaned(tmp_path, monkeypatch):
    """The control: Patient's Name as PN is taken out of free text, and the measurement
    and sequence parameters there are kept."""
    src = tmp_path / "in"
    src.mkdir()
    _with_vr(src / "ct.dcm", 0x00100010, "PN", b"QUIXBURY^AHARROW")
    assert _outcomes(src, tmp_path, monkeypatch)["ct.dcm"][0] == "written"
    (data,) = _written(tmp_path / "out-True")
    assert b"QUIXBURY" not in data.upper() and b"AHARROW" not in data.upper()
    assert b"TR/TE 2000/10, 5 mm slices" in data


# -- 6: UID attributes with a damaged VR -------------------------------------------------

@pytest.mark.parametrize("vr", ["PN", "DA", "DS", "AE", "LO", "OB"])
def test_uid_with_damaged_vr_gets_a_new_uid(tmp_path, monkeypatch, vr):
    """SOP and Series Instance UIDs read as another VR are mapped as UIDs (retyped UI): two
    different images get two different outputs, named by their new UIDs."""
    src = tmp_path / "in"
    src.mkdir()
    originals = []
    for i in range(2):
        sop, series = (generate_uid().encode() for _ in range(2))
        originals += [sop, series]
        _with_vr(src / f"ct{i}.dcm", 0x00080018, vr, sop + b"\0" * (len(sop) % 2),
                 SeriesInstanceUID=(vr, series + b"\0" * (len(series) % 2)))
    outcomes = _outcomes(src, tmp_path, monkeypatch)
    assert {s for s, _ in outcomes.values()} == {"written"}, outcomes
    names = sorted(p.name for p in (tmp_path / "out-True").glob("*.dcm"))
    assert len(names) == 2
    for p in (tmp_path / "out-True").glob("*.dcm"):
        out = pydicom.dcmread(p)
        for kw in ("SOPInstanceUID", "SeriesInstanceUID"):
            assert out[kw].VR == "UI"
            assert pydicom.uid.UID(out[kw].value).is_valid
        assert p.name == f"{out.SOPInstanceUID}.dcm"
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        assert not any(o in p.read_bytes() for o in originals)


@pytest.mark.parametrize("vr,value", [("PN", b"ANONYMOUS "), ("AT", b"\x08\x00\x18\x00"),
                                      ("FD", b"\0" * 8), ("DA", b"19000101")])
def test_uid_attribute_that_is_no_uid_quarantined(tmp_path, monkeypatch, vr, value):
    src = tmp_path / "in"
    src.mkdir()
    _with_vr(src / "ct.dcm", 0x0020000E, vr, value)
    status, reason = _outcomes(src, tmp_path, monkeypatch)["ct.dcm"]
    assert status == "quarantined"
    assert reason.endswith(f"SeriesInstanceUID is not a UID (stored with VR {vr}; "
                           f"damaged header?)")


def test_extra_pixel_data_in_a_derived_series_member_is_quarantined(tmp_path):
    """A series member whose header matches the one before it is derived from that one's
    output (pixeldeid.derive): its Pixel Data, 4096 bytes longer with text in them, took
    that shortcut past the length check and was released."""
    src = tmp_path / "in"
    src.mkdir()
    base = _dataset(rows=64, cols=64)
    for i in range(12):
        ds = _dataset(rows=64, cols=64)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = base.StudyInstanceUID, base.SeriesInstanceUID
        ds.InstanceNumber = i + 1
        px = bytes([i]) * (64 * 64)
        if i == 9:
            px += b"QUIXBURY PXID73319" * 100 + b"\x01" * 2296
        ds.PixelData = px
        ds.save_as(src / f"f{i:02d}.dcm", enforce_file_format=True)
    summary = run_batch([src], tmp_path / "out", DeidConfig(key=b"k" * 32, profile="basic"),
                        progress=False)
    bad = [(Path(o.source).name, o.reason) for o in summary.outcomes if o.status != "written"]
    assert bad == [("f09.dcm", "pixel data holds 4096 bytes more than its 1 frame(s)")]
