"""Round trip of every transfer syntax of the pydicom corpus through ``pixeldeid dicom``.

The output re-reads with pydicom in the same transfer syntax; native, deflated and RLE
Pixel Data is byte-identical; JPEG frames differ from the input at most by removed
APPn/COM segments and decode to the same pixels; the File Meta Information is regenerated
and the de-identification is recorded.
"""

from __future__ import annotations

import struct

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import UID

from tests.pixeldeid.conftest import CORPUS, outputs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

JPEG_FAMILY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
               "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
J2K_FAMILY = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
PIXELDEID_IMPLEMENTATION_CLASS_UID = "2.25.201913775849326370402316823442906584619"
NAMES = sorted(CORPUS)


def _output(corpus_runs, name, profile="basic"):
    status, src, out = corpus_runs(name, profile)
    files = outputs(out)
    if status != 0 or len(files) != 1:
        pytest.fail(f"{name} was not de-identified (see test_corpus_file_is_cleaned)")
    return src, files[0]


def _frames(ds) -> list[bytes]:
    n = int(ds.get("NumberOfFrames", 1) or 1)
    return list(generate_frames(ds.PixelData, number_of_frames=n))


def _jpeg_segments(frame: bytes) -> tuple[list[bytes], bytes]:
    """(marker segments before the first SOS, everything from the first SOS on)."""
    assert frame[:2] == b"\xff\xd8", "frame does not start with SOI"
    pos, segs = 2, []
    while pos < len(frame):
        while frame[pos:pos + 2] == b"\xff\xff":  # fill bytes
            pos += 1
        marker = frame[pos + 1]
        if marker == 0xDA:
            return segs, frame[pos:]
        (length,) = struct.unpack(">H", frame[pos + 2:pos + 4])
        segs.append(frame[pos:pos + 2 + length])
        pos += 2 + length
    raise AssertionError("no SOS in JPEG frame")


def _is_metadata_segment(seg: bytes) -> bool:
    return 0xE0 <= seg[1] <= 0xEF or seg[1] == 0xFE


def _decoded(ds):
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:  # no decoder for this syntax
        pytest.skip(f"no pixel decoder: {exc}")


def _walk(ds, depth=0):
    for elem in ds:
        yield elem, depth
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item, depth + 1)


@pytest.mark.parametrize("profile", ["basic", "tcia-like", "limited-dataset"])
@pytest.mark.parametrize("name", NAMES)
def test_output_rereads_in_same_transfer_syntax(corpus_runs, name, profile):
    src, dst = _output(corpus_runs, name, profile)
    before = pydicom.dcmread(src)
    after = pydicom.dcmread(dst)  # force=False: a valid Part 10 file
    assert str(after.file_meta.TransferSyntaxUID) == str(before.file_meta.TransferSyntaxUID)
    assert str(after.file_meta.TransferSyntaxUID) == CORPUS[name]
    for _elem, _depth in _walk(after):  # every element decodes
        pass
    assert after.SOPClassUID == before.SOPClassUID
    assert after.SOPInstanceUID != before.SOPInstanceUID


@pytest.mark.parametrize("profile", ["basic", "tcia-like", "limited-dataset"])
@pytest.mark.parametrize("name", NAMES)
def test_file_meta_regenerated(corpus_runs, name, profile):
    _src, dst = _output(corpus_runs, name, profile)
    raw = dst.read_bytes()
    assert raw[:128] == b"\0" * 128
    assert raw[128:132] == b"DICM"
    ds = pydicom.dcmread(dst)
    meta = ds.file_meta
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert meta.ImplementationClassUID == PIXELDEID_IMPLEMENTATION_CLASS_UID
    assert meta.FileMetaInformationGroupLength == len(raw[144:]) - len(
        raw[144 + meta.FileMetaInformationGroupLength:])
    assert "SourceApplicationEntityTitle" not in meta
    assert all(int(e.tag) != 0xFFFCFFFC for e, _ in _walk(ds)), "DataSetTrailingPadding left"


@pytest.mark.parametrize("profile", ["basic", "tcia-like", "limited-dataset"])
@pytest.mark.parametrize("name", NAMES)
def test_deidentification_recorded(corpus_runs, name, profile):
    _src, dst = _output(corpus_runs, name, profile)
    ds = pydicom.dcmread(dst)
    assert ds.PatientIdentityRemoved == "YES"
    codes = {(str(i.CodeValue), str(i.CodingSchemeDesignator))
             for i in ds.DeidentificationMethodCodeSequence}
    assert ("113100", "DCM") in codes
    assert ds.DeidentificationMethod


#: Attributes no profile changes: their values must come back exactly (binary VRs of
#: big endian and implicit VR files included).
KEPT = ("SOPClassUID", "Modality", "ImageType", "Rows", "Columns", "BitsAllocated", "BitsStored",
        "HighBit", "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation",
        "PlanarConfiguration", "NumberOfFrames", "PixelSpacing", "SliceThickness",
        "ImageOrientationPatient", "ImagePositionPatient", "RescaleSlope", "RescaleIntercept",
        "WindowCenter", "WindowWidth", "FrameIncrementPointer", "GridFrameOffsetVector",
        "DoseGridScaling", "SmallestImagePixelValue", "LargestImagePixelValue",
        "RedPaletteColorLookupTableDescriptor")


@pytest.mark.parametrize("profile", ["basic", "tcia-like", "limited-dataset"])
@pytest.mark.parametrize("name", NAMES)
def test_kept_values_identical(corpus_runs, name, profile):
    src, dst = _output(corpus_runs, name, profile)
    before = pydicom.dcmread(src)
    after = pydicom.dcmread(dst)
    compared = 0
    for kw in KEPT:
        if kw not in before:
            continue
        assert kw in after, kw
        assert after.data_element(kw).value == before.data_element(kw).value, kw
        compared += 1
    assert compared >= 1


@pytest.mark.parametrize("profile", ["basic", "tcia-like", "limited-dataset"])
@pytest.mark.parametrize("name", NAMES)
def test_pixel_data_preserved(corpus_runs, name, profile):
    src, dst = _output(corpus_runs, name, profile)
    before = pydicom.dcmread(src)
    after = pydicom.dcmread(dst)
    ts = UID(CORPUS[name])
    if "PixelData" not in before:  # SR, RT Plan, waveform: the bulk data they carry stays
        assert "PixelData" not in after
        old_w = [w.WaveformData for w in before.get("WaveformSequence", [])]
        assert [w.WaveformData for w in after.get("WaveformSequence", [])] == old_w
        return
    if not ts.is_encapsulated:
        assert after.PixelData == before.PixelData
        return
    old, new = _frames(before), _frames(after)
    assert len(new) == len(old)
    if str(ts) in JPEG_FAMILY:
        for a, b in zip(old, new, strict=True):
            if a == b:
                continue
            segs_a, scan_a = _jpeg_segments(a)
            segs_b, scan_b = _jpeg_segments(b)
            assert scan_b == scan_a, "entropy-coded data changed"
            assert [s for s in segs_a if not _is_metadata_segment(s)] == \
                [s for s in segs_b if not _is_metadata_segment(s)]
            assert all(s in segs_a for s in segs_b), "a segment was added or changed"
    elif str(ts) in J2K_FAMILY:
        for a, b in zip(old, new, strict=True):  # only COM segments / text boxes removed
            assert a == b or len(b) < len(a)
            assert b[-2:] == a[-2:] or b.rstrip(b"\0")[-2:] == b"\xff\xd9"
    else:  # RLE: nothing to strip
        assert new == old
    if ts.is_compressed:
        expected = _decoded(before)  # skips when no installed decoder reads the input
        assert np.array_equal(_decoded(after), expected)


def test_jpeg_metadata_segments_are_removed(tmp_path, run):
    """A JPEG frame with a COM and an EXIF APP1 segment: both go, the image stays."""
    from tests.pixeldeid.conftest import corpus_file

    ds = pydicom.dcmread(corpus_file("SC_rgb_jpeg_dcmtk.dcm"))
    frame = _frames(ds)[0]
    com = b"\xff\xfe" + struct.pack(">H", 2 + 19) + b"Patient Jane Doe 42"
    exif = b"Exif\0\0" + b"Artist=Jane Doe"
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(exif)) + exif
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([frame[:2] + com + app1 + frame[2:]])
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "jpeg_meta.dcm")
    status, out = run(src)
    assert status == 0
    (dst,) = outputs(out)
    raw = dst.read_bytes()
    assert b"Jane Doe" not in raw
    after = pydicom.dcmread(dst)
    (new,) = _frames(after)
    assert new.startswith(frame[:2]) and new.endswith(frame[-8:])
    assert np.array_equal(_decoded(after), _decoded(pydicom.dcmread(corpus_file("SC_rgb_jpeg_dcmtk.dcm"))))
