"""JPEG redaction in the DCT domain: untouched blocks bit-identical, boxes black."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit

from pixeldeid import dciodvfy
from pixeldeid.burnedin.boxes import TextBox
from pixeldeid.burnedin.dctredact import parse_header, supports
from pixeldeid.burnedin.frames import PixelFrames
from pixeldeid.burnedin.redact import redact_dataset
from pixeldeid.errors import InputError
from tests.pixeldeid.burnedin._pixeldata import base_dataset, pydicom_data, read, roundtrip

jpeglib = pytest.importorskip("jpeglib")

COMPS = ("Y", "Cb", "Cr")


def coefficients(data: bytes, tmp_path, name: str = "f.jpg"):
    """The DCT coefficient arrays and quantisation tables of one JPEG frame."""
    path = tmp_path / name
    path.write_bytes(data)
    j = jpeglib.read_dct(str(path))
    n = len(parse_header(data).components)
    return [np.array(getattr(j, c)) for c in COMPS[:n]], np.array(j.qt)


def mcu_mask(shape, box: TextBox, h: int, v: int, mcu_w: int, mcu_h: int) -> np.ndarray:
    """Blocks (rows, cols) of a component that the MCUs touched by ``box`` cover."""
    mask = np.zeros(shape[:2], bool)
    y0, y1 = box.y0 // mcu_h * v, math.ceil(box.y1 / mcu_h) * v
    x0, x1 = box.x0 // mcu_w * h, math.ceil(box.x1 / mcu_w) * h
    mask[y0:y1, x0:x1] = True
    return mask


def check_blocks(before, after, qt, boxes, factors, rgb=False):
    """Outside the touched MCUs bit-identical; inside black (DC) and flat (AC 0)."""
    hmax = max(h for h, _ in factors)
    vmax = max(v for _, v in factors)
    changed = 0
    for k, (b, a) in enumerate(zip(before, after, strict=True)):
        h, v = factors[k]
        mask = np.zeros(b.shape[:2], bool)
        for box in boxes:
            mask |= mcu_mask(b.shape, box, h, v, 8 * hmax, 8 * vmax)
        assert np.array_equal(a[~mask], b[~mask])
        inside = a[mask]
        q = int(qt[0 if k == 0 else min(1, len(qt) - 1)][0, 0])
        want_dc = -math.ceil(1024 / q) if (k == 0 or rgb) else 0
        assert (inside[:, 0, 0] == want_dc).all()
        flat = inside.reshape(len(inside), 64)[:, 1:]
        assert not flat.any()
        changed += int(np.any(a != b, axis=(2, 3)).sum())
    return changed


# --- color3d_jpeg_baseline.dcm: 120 frames YBR_FULL_422 -------------------------------------

BOXED = (0, 1, 50, 119)


@pytest.fixture(scope="module")
def color3d():
    ds = read("color3d_jpeg_baseline.dcm")
    n = int(ds.NumberOfFrames)
    original = list(generate_frames(ds.PixelData, number_of_frames=n))
    before = PixelFrames(ds).decode(list(BOXED) + [5], as_rgb=False).copy()
    boxes = [TextBox(10, 5, 70, 20, frame=f) for f in BOXED]
    boxes.append(TextBox(300, 301, 333, 317, frame=5))
    report = redact_dataset(ds, boxes)
    return ds, original, before, boxes, report


def test_color3d_untouched_frames_keep_their_bytes(color3d):
    ds, original, _, _, report = color3d
    assert report.method == "dct" and report.frames == 5 and report.boxes == 5
    assert report.transfer_syntax_in == report.transfer_syntax_out == str(JPEGBaseline8Bit)
    new = list(generate_frames(ds.PixelData, number_of_frames=len(original)))
    touched = set(BOXED) | {5}
    for i, (a, b) in enumerate(zip(original, new, strict=True)):
        assert (a == b) == (i not in touched)
    for i in touched:  # optimised Huffman tables: the black blocks cost fewer bits
        assert len(new[i]) <= len(original[i])


def test_color3d_blocks_outside_boxes_bit_identical(color3d, tmp_path):
    ds, original, _, boxes, report = color3d
    new = list(generate_frames(ds.PixelData, number_of_frames=len(original)))
    head = parse_header(original[0])
    assert [c[1:3] for c in head.components] == [(2, 1), (1, 1), (1, 1)]  # 4:2:2
    changed = 0
    for i in sorted(set(BOXED) | {5}):
        before, qt_before = coefficients(original[i], tmp_path, "a.jpg")
        after, qt_after = coefficients(new[i], tmp_path, "b.jpg")
        assert np.array_equal(qt_before, qt_after)
        mine = [b for b in boxes if b.frame == i]
        changed += check_blocks(before, after, qt_after, mine, [(2, 1), (1, 1), (1, 1)])
    assert changed == report.changed_blocks
    # the header segments the header core left are kept; only Huffman tables are new
    for i in (0, 5):
        old_h, new_h = parse_header(original[i]), parse_header(new[i])
        assert [s for m, s in old_h.segments if m != 0xC4] == \
            [s for m, s in new_h.segments if m != 0xC4]


def test_color3d_pixels_black_inside_and_luma_unchanged_outside(color3d):
    ds, _, before, boxes, _ = color3d
    back = roundtrip(ds)
    pf = PixelFrames(back)
    after = pf.decode(list(BOXED) + [5], as_rgb=False)
    shown = pf.display(list(BOXED) + [5])
    for k, f in enumerate(list(BOXED) + [5]):
        luma_region = np.zeros(after.shape[1:3], bool)
        for b in (b for b in boxes if b.frame == f):
            assert (after[k, b.y0:b.y1, b.x0:b.x1] == (0, 128, 128)).all()
            assert shown[k, b.y0:b.y1, b.x0:b.x1].max() == 0
            luma_region[b.y0 // 8 * 8:math.ceil(b.y1 / 8) * 8,
                        b.x0 // 16 * 16:math.ceil(b.x1 / 16) * 16] = True
        assert np.array_equal(after[k, ~luma_region, 0], before[k, ~luma_region, 0])
    # pydicom decodes every frame of the written file
    assert pf.decode().shape == (120, 480, 640, 3)


@pytest.mark.skipif(not dciodvfy.is_available(), reason="dciodvfy not installed")
def test_color3d_dciodvfy_no_new_errors(color3d, tmp_path):
    ds = color3d[0]
    out = tmp_path / "out.dcm"
    ds.save_as(out, enforce_file_format=True)
    assert dciodvfy.new_errors(pydicom_data("color3d_jpeg_baseline.dcm"), out) == []


# --- the 8-frame JPEG capture with identity in APPn/COM segments ----------------------------


def test_synthetic_capture_keeps_markers_and_other_frames():
    from pixeldeid._synth import make_planted_dataset

    ds, _ = make_planted_dataset(pixels="jpeg", frames=8, seed=5)
    original = list(generate_frames(ds.PixelData, number_of_frames=8))
    had_bot = ds.PixelData[4:8] != b"\0\0\0\0"
    boxes = [TextBox(5, 5, 60, 20, frame=2), TextBox(100, 200, 140, 230, frame=6)]
    report = redact_dataset(ds, boxes)
    assert report.method == "dct" and report.frames == 2
    assert (ds.PixelData[4:8] != b"\0\0\0\0") == had_bot  # Basic Offset Table kept
    new = list(generate_frames(ds.PixelData, number_of_frames=8))
    assert [a == b for a, b in zip(original, new, strict=True)] == \
        [True, True, False, True, True, True, False, True]
    old_h, new_h = parse_header(original[2]), parse_header(new[2])
    kept = [m for m, _ in old_h.segments if m != 0xC4]
    assert {0xE0, 0xE1, 0xFE, 0xED} <= set(kept)
    assert [s for m, s in old_h.segments if m != 0xC4] == \
        [s for m, s in new_h.segments if m != 0xC4]
    shown = PixelFrames(roundtrip(ds)).display([2, 6])
    assert shown[0, 5:20, 5:60].max() == 0 and shown[1, 200:230, 100:140].max() == 0


# --- chroma subsampling, RGB-coded JPEG, 12-bit, broken frames -------------------------------


def _jpeg_dataset(frames: list[bytes], rows: int, cols: int, photometric: str,
                  ts: str = JPEGBaseline8Bit, bits: int = 8):
    ds = base_dataset(ts)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1 if photometric.startswith("MONO") else 3
    ds.PhotometricInterpretation = photometric
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds["PixelData"].VR = "OB"
    return ds


def _colour_image(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = np.stack([128 + 100 * np.sin(xx / 7), 128 + 100 * np.cos(yy / 5), (xx + yy) % 256], -1)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("subsampling,factors,photometric", [
    (0, [(1, 1), (1, 1), (1, 1)], "YBR_FULL"),
    (1, [(2, 1), (1, 1), (1, 1)], "YBR_FULL_422"),
    (2, [(2, 2), (1, 1), (1, 1)], "YBR_FULL_422"),
])
def test_subsampling_mcus(subsampling, factors, photometric, tmp_path):
    from PIL import Image

    img = _colour_image(64, 80)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92, subsampling=subsampling)
    frame = buf.getvalue()
    ds = _jpeg_dataset([frame, frame], 64, 80, photometric)
    box = TextBox(13, 9, 30, 21, frame=1)
    report = redact_dataset(ds, [box])
    assert report.method == "dct"
    new = list(generate_frames(ds.PixelData, number_of_frames=2))
    assert new[0] == frame
    before, _ = coefficients(frame, tmp_path, "a.jpg")
    after, qt = coefficients(new[1], tmp_path, "b.jpg")
    assert check_blocks(before, after, qt, [box], factors) == report.changed_blocks
    out = PixelFrames(roundtrip(ds)).decode([1], as_rgb=False)[0]
    assert (out[box.y0:box.y1, box.x0:box.x1] == (0, 128, 128)).all()


def test_rgb_coded_jpeg_is_black_in_every_component(tmp_path):
    imagecodecs = pytest.importorskip("imagecodecs")
    img = _colour_image(48, 64, seed=1)
    frame = bytes(imagecodecs.jpeg8_encode(img, level=90, colorspace="RGB", outcolorspace="RGB"))
    head = parse_header(frame)
    assert [c[0] for c in head.components] == [0x52, 0x47, 0x42]
    ds = _jpeg_dataset([frame], 48, 64, "RGB")
    box = TextBox(20, 10, 41, 30)
    redact_dataset(ds, [box])
    new = next(generate_frames(ds.PixelData, number_of_frames=1))
    before, _ = coefficients(frame, tmp_path, "a.jpg")
    after, qt = coefficients(new, tmp_path, "b.jpg")
    check_blocks(before, after, qt, [box], [(1, 1)] * 3, rgb=True)
    shown = PixelFrames(roundtrip(ds)).display()[0]
    assert shown[box.y0:box.y1, box.x0:box.x1].max() == 0
    assert shown[:8].mean() > 40  # outside the box still the image


def test_12bit_jpeg_is_decompressed_not_recompressed():
    imagecodecs = pytest.importorskip("imagecodecs")
    rng = np.random.default_rng(2)
    img = (rng.integers(0, 4096, (40, 48))).astype(np.uint16)
    frame = bytes(imagecodecs.jpeg8_encode(img, level=90, bitspersample=12))
    ds = _jpeg_dataset([frame], 40, 48, "MONOCHROME2", JPEGExtended12Bit, bits=12)
    assert not supports(PixelFrames(ds))
    before = PixelFrames(ds).decode().copy()
    report = redact_dataset(ds, [TextBox(4, 4, 20, 12)])
    assert report.method == "decompressed"
    assert report.transfer_syntax_out == str(ExplicitVRLittleEndian)
    back = roundtrip(ds)
    assert str(back.file_meta.TransferSyntaxUID) == str(ExplicitVRLittleEndian)
    assert back.LossyImageCompression == "01"  # the source was lossy: still recorded
    after = PixelFrames(back).decode()
    before[0, 4:12, 4:20] = 0
    assert np.array_equal(after, before)


def test_truncated_frame_is_refused_and_dataset_unchanged():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_colour_image(32, 32)).save(buf, format="JPEG", quality=90)
    frame = buf.getvalue()
    ds = _jpeg_dataset([frame, frame[:-200]], 32, 32, "YBR_FULL_422")
    pixel_data = ds.PixelData
    with pytest.raises(InputError, match="frame 1"):
        redact_dataset(ds, [TextBox(0, 0, 8, 8)])
    assert ds.PixelData == pixel_data


def test_parse_header_rejects_non_jpeg():
    with pytest.raises(InputError, match="SOI"):
        parse_header(b"\x00\x00\x00\x0c jP  \r\n")
    with pytest.raises(InputError):
        parse_header(b"\xff\xd8\xff\xe0\x00\x10JFIF")


def _damaged(kind: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_colour_image(64, 64, seed=4)).save(buf, format="JPEG", quality=95)
    b = bytearray(buf.getvalue())
    if kind == "zero-height":  # decoders may hang on it: refused before any decoding
        i = b.find(b"\xff\xc0")
        b[i + 5:i + 7] = b"\0\0"
    elif kind == "cut-scan":  # libjpeg would fill the missing blocks and only warn
        sos = b.find(b"\xff\xda")
        b = b[:sos + (len(b) - sos) // 2] + b"\xff\xd9"
    elif kind == "bad-huffman":
        i = b.find(b"\xff\xc4")
        b[i + 4:i + 20] = b"\xff" * 16
    return bytes(b)


@pytest.mark.parametrize("kind", ["zero-height", "cut-scan", "bad-huffman"])
def test_damaged_frames_are_refused_not_repaired(kind):
    import glob
    import tempfile

    leftovers = set(glob.glob(f"{tempfile.gettempdir()}/tmp*.jpeg"))
    good = _damaged("none")
    ds = _jpeg_dataset([good, _damaged(kind)], 64, 64, "YBR_FULL_422")
    pixel_data = ds.PixelData
    with pytest.raises(InputError):
        redact_dataset(ds, [TextBox(0, 0, 16, 16)])
    assert ds.PixelData == pixel_data
    # no copy of the pixels left in the temporary folder
    assert set(glob.glob(f"{tempfile.gettempdir()}/tmp*.jpeg")) <= leftovers
    if kind == "zero-height":
        with pytest.raises(InputError, match="dataset says"):
            PixelFrames(ds).display([1])
    # a box only on the good frame leaves the damaged one alone (its bytes are kept)
    redact_dataset(ds, [TextBox(0, 0, 16, 16, frame=0)])
    before = list(generate_frames(pixel_data, number_of_frames=2))
    after = list(generate_frames(ds.PixelData, number_of_frames=2))
    assert after[0] != before[0] and after[1] == before[1]


def test_partial_edge_mcus_deid_data(tmp_path):
    """456x510 YBR_FULL_422 (deid-data): boxes reaching the right/bottom edge, partial MCUs."""
    deid_data = pytest.importorskip("deid_data")
    from pathlib import Path

    src = Path(deid_data.__file__).parent / "data" / "humans" / "ctbrain1.dcm"
    if not src.is_file():
        pytest.skip("deid-data has no humans/ctbrain1.dcm")
    from pydicom import dcmread

    ds = dcmread(src)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    rows, cols = int(ds.Rows), int(ds.Columns)
    boxes = [TextBox(cols - 23, rows - 11, cols, rows), TextBox(0, 0, 50, 10)]
    report = redact_dataset(ds, boxes)
    assert report.method == "dct"
    new = next(generate_frames(ds.PixelData, number_of_frames=1))
    before, _ = coefficients(frame, tmp_path, "a.jpg")
    after, qt = coefficients(new, tmp_path, "b.jpg")
    factors = [c[1:3] for c in parse_header(frame).components]
    assert check_blocks(before, after, qt, boxes, factors) == report.changed_blocks
    shown = PixelFrames(roundtrip(ds)).display()[0]
    for b in boxes:
        assert shown[b.y0:b.y1, b.x0:b.x1].max() == 0
    if dciodvfy.is_available():
        out = tmp_path / "out.dcm"
        ds.save_as(out, enforce_file_format=True)
        assert dciodvfy.new_errors(src, out) == []


def test_extended_8bit_sof1_in_dct_domain(tmp_path):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_colour_image(48, 48, seed=6)[..., 0]).save(buf, format="JPEG", quality=90)
    frame = bytearray(buf.getvalue())
    i = frame.find(b"\xff\xc0")
    frame[i + 1] = 0xC1  # extended sequential, 8-bit: same coding as baseline
    frame = bytes(frame)
    ds = _jpeg_dataset([frame], 48, 48, "MONOCHROME2", JPEGExtended12Bit)
    box = TextBox(9, 9, 20, 20)
    report = redact_dataset(ds, [box])
    assert report.method == "dct" and report.transfer_syntax_out == str(JPEGExtended12Bit)
    new = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert parse_header(new).sof_marker == 0xC1
    before, _ = coefficients(frame, tmp_path, "a.jpg")
    after, qt = coefficients(new, tmp_path, "b.jpg")
    assert check_blocks(before, after, qt, [box], [(1, 1)]) == report.changed_blocks
    shown = PixelFrames(roundtrip(ds)).display()[0]
    assert shown[8:24, 8:24].max() == 0


def test_restart_interval_frames(tmp_path):
    """A frame with a restart interval (DRI): the rewritten scan brings its own (none)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_colour_image(64, 64, seed=7)).save(buf, format="JPEG", quality=90,
                                                        restart_marker_blocks=4)
    frame = buf.getvalue()
    assert 0xDD in [m for m, _ in parse_header(frame).segments]
    ds = _jpeg_dataset([frame], 64, 64, "YBR_FULL_422")
    before = PixelFrames(ds).decode(as_rgb=False)[0].copy()
    box = TextBox(17, 33, 30, 40)
    report = redact_dataset(ds, [box])
    new = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert 0xDD not in [m for m, _ in parse_header(new).segments]
    a, _ = coefficients(frame, tmp_path, "a.jpg")
    b, qt = coefficients(new, tmp_path, "b.jpg")
    factors = [c[1:3] for c in parse_header(frame).components]
    assert check_blocks(a, b, qt, [box], factors) == report.changed_blocks
    after = PixelFrames(roundtrip(ds)).decode(as_rgb=False)[0]
    assert (after[33:40, 17:30] == (0, 128, 128)).all()
    assert np.array_equal(after[:32, :, 0], before[:32, :, 0])  # luma above the MCU row


def _no_jfif_frame() -> tuple[bytes, np.ndarray]:
    from PIL import Image

    img = _colour_image(48, 64, seed=8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95, subsampling=0)
    head = parse_header(buf.getvalue())
    return b"\xff\xd8" + b"".join(s for m, s in head.segments if m != 0xE0) + head.scan, img


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_no_marker_colour_model_follows_the_photometric(photometric):
    """No JFIF/Adobe marker: decoders follow the Photometric Interpretation; so does black."""
    frame, _ = _no_jfif_frame()
    ds = _jpeg_dataset([frame], 48, 64, photometric)
    box = TextBox(8, 8, 40, 40)
    redact_dataset(ds, [box])
    shown = PixelFrames(roundtrip(ds)).display()[0]
    assert shown[box.y0:box.y1, box.x0:box.x1].max() == 0


def test_wrong_colour_guess_is_corrected_by_decoding(monkeypatch):
    from pixeldeid.burnedin import dctredact

    frame, _ = _no_jfif_frame()
    ds = _jpeg_dataset([frame, frame, frame], 48, 64, "YBR_FULL")
    monkeypatch.setattr(dctredact, "_rgb_coded", lambda head, photometric: True)  # wrong
    box = TextBox(8, 8, 40, 40)
    redact_dataset(ds, [box])
    shown = PixelFrames(roundtrip(ds)).display()
    assert shown[:, box.y0:box.y1, box.x0:box.x1].max() == 0
