"""PixelFrames: geometry without decoding, display images for OCR, chosen frames only."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.pixels import apply_color_lut

from pixeldeid.burnedin.frames import PixelFrames
from pixeldeid.errors import InputError
from tests.pixeldeid.burnedin._pixeldata import native_dataset, read


def test_geometry_without_decoding():
    ds = read("color3d_jpeg_baseline.dcm")
    pf = PixelFrames(ds)
    assert (pf.n_frames, pf.rows, pf.columns, pf.samples) == (120, 480, 640, 3)
    assert pf.photometric == "YBR_FULL_422" and pf.transfer_syntax == "1.2.840.10008.1.2.4.50"
    assert not pf.native


def test_display_decodes_only_the_asked_frames(monkeypatch):
    from pydicom.pixels.decoders.base import Decoder

    ds = read("color3d_jpeg_baseline.dcm")
    calls = []
    original = Decoder.as_array

    def spy(self, src, **kwargs):
        calls.append(kwargs.get("index"))
        return original(self, src, **kwargs)

    monkeypatch.setattr(Decoder, "as_array", spy)
    shown = PixelFrames(ds).display([3, 119])
    assert calls == [3, 119]
    assert shown.shape == (2, 480, 640, 3) and shown.dtype == np.uint8
    monkeypatch.setattr(Decoder, "as_array", original)
    from pydicom.pixels import pixel_array

    assert np.array_equal(shown[1], pixel_array(ds, index=119))  # YBR -> RGB as pydicom does


def test_display_same_image_whatever_the_encoding():
    rgb = PixelFrames(read("US1_UNCR.dcm")).display()
    j2k = PixelFrames(read("US1_J2KR.dcm")).display()  # YBR_RCT lossless
    assert rgb.shape == j2k.shape == (1, 480, 640, 3)
    assert np.array_equal(rgb, j2k)
    plain = PixelFrames(read("SC_rgb.dcm")).display()
    ybr = PixelFrames(read("SC_ybr_full_uncompressed.dcm")).display()
    assert np.abs(plain.astype(int) - ybr.astype(int)).max() <= 8  # YBR rounding in the file


def test_display_palette_applied():
    ds = read("gdcm-US-ALOKA-16.dcm")
    pf = PixelFrames(ds)
    shown = pf.display()
    lut = apply_color_lut(pf.decode(as_rgb=False), ds).astype(float)
    assert shown.shape == (1, 480, 640, 3)
    assert np.abs(shown.astype(float) - lut / 257.0).max() <= 1.0
    assert len(np.unique(shown.reshape(-1, 3), axis=0)) > 16  # colour, not grey indices


def test_display_monochrome1_inverted_and_8bit_kept():
    ds, arr = native_dataset("MONOCHROME1", bits=8, frames=2)
    shown = PixelFrames(ds).display()
    assert np.array_equal(shown[..., 0], 255 - arr)
    assert np.array_equal(shown[..., 0], shown[..., 2])
    ds, arr = native_dataset("MONOCHROME2", bits=8)
    assert np.array_equal(PixelFrames(ds).display()[..., 1], arr)


def test_display_windowing_for_more_than_8_bits():
    ds, arr = native_dataset("MONOCHROME2", bits=12, rows=4, cols=6)
    arr[0, 0, :3] = (700, 1000, 1300)
    arr[0, 1:] = 1000
    from tests.pixeldeid.burnedin._pixeldata import stored_bytes

    ds.PixelData = stored_bytes(arr, "MONOCHROME2")
    ds.WindowCenter, ds.WindowWidth = 1000, 400
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    shown = PixelFrames(ds).display()[0, ..., 0]
    assert shown[0, 0] == 0 and shown[0, 2] == 255 and 120 <= shown[0, 1] <= 135
    del ds.WindowCenter, ds.WindowWidth  # no window: min..max of the frame
    shown = PixelFrames(ds).display()[0, ..., 0]
    assert shown.min() == 0 and shown.max() == 255
    assert shown[np.unravel_index(arr[0].argmax(), arr[0].shape)] == 255
    ds, arr = native_dataset("MONOCHROME1", bits=16, signed=True)  # inverted after windowing
    shown = PixelFrames(ds).display()[0, ..., 0]
    assert shown[np.unravel_index(arr[0].argmax(), arr[0].shape)] == 0


def test_refusals():
    ds, _ = native_dataset("MONOCHROME2", frames=2)
    with pytest.raises(InputError, match="out of range"):
        PixelFrames(ds).display([2])
    bad = native_dataset("RGB")[0]
    bad.SamplesPerPixel = 1
    with pytest.raises(InputError, match="SamplesPerPixel"):
        PixelFrames(bad)
    bad = native_dataset("MONOCHROME2")[0]
    del bad.PixelData
    with pytest.raises(InputError, match="Pixel Data"):
        PixelFrames(bad)
    bad = native_dataset("MONOCHROME2")[0]
    bad.Rows = 0
    with pytest.raises(InputError, match="empty"):
        PixelFrames(bad)
