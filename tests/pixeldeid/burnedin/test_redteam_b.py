"""Red team B leaks of the burned-in text stage, each a synthetic image with the patient's
name drawn where the stage did not look (rapidocr on the CPU).

Each case checks the file is either quarantined (:class:`DeidError`) or released with the
drawn name black.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pixeldeid.burnedin.synth import _font, _ink_box, make_us_cine, make_us_frame
from pixeldeid.errors import DeidError

pytest.importorskip("rapidocr_onnxruntime")

from pixeldeid.burnedin.boxes import TextBox  # noqa: E402
from pixeldeid.burnedin.classify import IdentityValues  # noqa: E402
from pixeldeid.burnedin.frames import PixelFrames  # noqa: E402
from pixeldeid.burnedin.stage import BurnedInStage, PixelSettings  # noqa: E402


def _stage(policy: str = "phi-only", **kw) -> BurnedInStage:
    kw.setdefault("ocr", "rapidocr")
    return BurnedInStage(PixelSettings(policy=policy, device="cpu", **kw))


def _name(identity: dict[str, str]) -> str:
    family, given = identity["name"].split("^")
    return f"{given} {family}".upper()


def _draw(frame: np.ndarray, text: str, xy: tuple[int, int], colour, size: int = 18
          ) -> TextBox:
    """Draw ``text`` at ``xy`` into ``frame`` (in place); the ink box (ground truth)."""
    from PIL import Image, ImageDraw

    font = _font(0, size)
    im = Image.fromarray(frame)
    ImageDraw.Draw(im).text(xy, text, font=font, fill=colour)
    frame[...] = np.asarray(im)
    rows, cols = frame.shape[:2]
    return TextBox(*_ink_box(text, xy, font, rows, cols), text=text, label="identity")


def _released_black_or_refused(stage: BurnedInStage, ds, boxes: list[tuple[int, TextBox]]
                               ) -> str:
    """Run ``stage`` on ``ds``; 'quarantined', or 'redacted' when every (frame, box) is black.
    """
    try:
        stage.process(ds, IdentityValues.from_dataset(ds), "x.dcm")
    except DeidError:
        return "quarantined"
    after = PixelFrames(ds).display()
    for f, b in boxes:
        assert int(after[f, b.y0:b.y1, b.x0:b.x1].max()) <= 8, (f, b)
    return "redacted"


# -- D7 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("keyword", ["FloatPixelData", "DoubleFloatPixelData"])
def test_float_pixel_data_is_never_released_unchecked(keyword):
    """A US image whose pixels are Float (or Double Float) Pixel Data was released as
    'no pixels' with the name readable; it is quarantined now."""
    us = make_us_frame(rows=240, columns=320, photometric="MONOCHROME2", seed=3)
    ds = copy.deepcopy(us.dataset)
    img = ds.pixel_array.astype(np.float32 if keyword == "FloatPixelData" else np.float64)
    del ds.PixelData
    for k in ("BitsStored", "HighBit", "PixelRepresentation"):
        if k in ds:
            delattr(ds, k)
    ds.BitsAllocated = 32 if keyword == "FloatPixelData" else 64
    setattr(ds, keyword, img.tobytes())
    for policy, ocr in (("auto", "rapidocr"), ("phi-only", "none"), ("template", "none")):
        with pytest.raises(DeidError, match=keyword):
            _stage(policy, ocr=ocr).process(copy.deepcopy(ds),
                                            IdentityValues.from_dataset(ds), "x.dcm")


# -- D4 --------------------------------------------------------------------------------------
def _us_image(img: np.ndarray):
    """A single-frame MONOCHROME2 ultrasound dataset holding ``img`` and its identity."""
    us = make_us_frame(rows=img.shape[0], columns=img.shape[1], photometric="MONOCHROME2",
                       seed=9)
    ds = copy.deepcopy(us.dataset)
    assert ds.pixel_array.shape == img.shape
    ds.PixelData = np.ascontiguousarray(img).tobytes()
    return ds, us.identity


def _draw_rotated(frame: np.ndarray, text: str, xy: tuple[int, int], size: int, angle: float
                  ) -> TextBox:
    """Draw ``text`` rotated by ``angle`` degrees with its corner at ``xy``; the ink box."""
    from PIL import Image, ImageDraw

    font = _font(0, size)
    tmp = Image.new("L", (int(size * len(text) * 0.8) + 20, size + 20), 0)
    ImageDraw.Draw(tmp).text((5, 5), text, fill=255, font=font)
    mask = np.asarray(tmp.rotate(angle, expand=True, resample=Image.BICUBIC)) > 128
    x, y = xy
    h, w = mask.shape
    frame[y:y + h, x:x + w][mask] = 230
    ys, xs = np.nonzero(mask)
    return TextBox(x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1,
                   y + int(ys.max()) + 1, text=text, label="identity")


@pytest.mark.parametrize("case", ["rotated", "large"])
def test_tall_identity_box_is_redacted(case):
    """OCR reads the name (rotated 20 degrees, or in a 110 px font) but its box is taller
    than overlay text: it was dropped as implausible after being labelled identity and the
    name was released; identity boxes are never dropped now."""
    rng = np.random.default_rng(1)
    img = np.zeros((480, 640), np.uint8)
    img[120:460, 120:520] = rng.integers(20, 140, (340, 400))
    ds, identity = _us_image(img)
    family, given = identity["name"].split("^")
    if case == "rotated":
        truth = _draw_rotated(img, f"{family} {given}".upper(), (150, 150), 18, 20)
    else:
        truth = _draw(img, family.upper(), (20, 150), 230, size=110)
    assert truth.height > 64
    ds.PixelData = img.tobytes()
    assert _released_black_or_refused(_stage(), ds, [(0, truth)]) in ("redacted",
                                                                       "quarantined")


# -- multi-frame builders ----------------------------------------------------------------------
def _moving_sector(n: int, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """``(n, rows, cols)`` uint8: smooth speckle in an ellipse on black that slides a few
    pixels up and down from frame to frame, with fresh fine noise (an ultrasound sector)."""
    import cv2

    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (rows + 40, cols)).astype(np.float32),
                           (0, 0), 1.5)
    tex = np.clip((tex - tex.mean()) * 3 + 80, 10, 150)
    yy, xx = np.mgrid[0:rows, 0:cols]
    inside = ((yy - rows * 0.55) ** 2 / (rows * 0.35) ** 2
              + (xx - cols / 2) ** 2 / (cols * 0.33) ** 2) < 1
    out = np.zeros((n, rows, cols), np.uint8)
    for f in range(n):
        dy = 20 + int(round(6 * np.sin(f / 2)))
        img = tex[dy:dy + rows] + rng.normal(0, 4, (rows, cols))
        out[f][inside] = np.clip(img, 0, 255)[inside].astype(np.uint8)
    return out


def _cine_dataset(frames: np.ndarray, seed: int = 5):
    """A US multi-frame MONOCHROME2 dataset (synthetic header and identity) holding
    ``frames``."""
    n, rows, cols = frames.shape
    us = make_us_cine(n_frames=n, rows=rows, columns=cols, photometric="MONOCHROME2",
                      clock_every=10 ** 6, seed=seed)
    ds = copy.deepcopy(us.dataset)
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return ds, us.identity


# -- D1 --------------------------------------------------------------------------------------
def test_name_in_one_slice_of_a_multiframe_mr_is_found():
    """A 12-frame 16-bit MR (not at risk) with the name over the anatomy and the MRN in the
    black corner of slice 7 only: only slices 0 and 11 were read, so both were released;
    every slice is examined now."""
    n, rows, cols = 12, 256, 320
    frames = _moving_sector(n, rows, cols, seed=2)
    rng = np.random.default_rng(4)
    for f in range(n):   # each slice its own anatomy
        frames[f] = np.where(frames[f] > 0, np.roll(frames[f], 7 * f, axis=1)
                             // 2 + rng.integers(0, 40, (rows, cols), dtype=np.uint8), 0)
    ds, identity = _cine_dataset(frames)
    ink = np.zeros((rows, cols), np.uint8)
    mrn = _draw(ink, identity["mrn"], (8, 6), 255, size=16)
    name = _draw(ink, _name(identity), (70, 140), 255, size=18)
    vol = frames.astype(np.uint16) * 8
    vol[7][ink > 100] = 3000
    ds.Modality = "MR"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    for k in ("BurnedInAnnotation", "SequenceOfUltrasoundRegions", "ImageType"):
        if k in ds:
            delattr(ds, k)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = vol.tobytes()
    from pixeldeid.burnedin.stage import at_risk

    assert at_risk(ds) is None
    assert _released_black_or_refused(_stage("auto"), ds, [(7, mrn), (7, name)]) in (
        "redacted", "quarantined")


# -- D2 and D9 ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shown", [(3, 4), (3, 4, 5)])
def test_name_over_the_moving_image_for_a_few_frames_is_redacted(shown):
    """A name shown over the moving sector in 2 or 3 frames of 12 only: too brief to be a
    step (it must hold 3 transitions) and not on the overlay, it was never read; it is a
    transient now."""
    frames = _moving_sector(12, 360, 480, seed=1)
    ds, identity = _cine_dataset(frames)
    for f in shown:
        truth = _draw(frames[f], _name(identity), (140, 190), 230)
    ds.PixelData = frames.tobytes()
    assert _released_black_or_refused(_stage(), ds, [(f, truth) for f in shown]) in (
        "redacted", "quarantined")


@pytest.mark.parametrize("base, contrast", [(25, 40), (0, 60)])
def test_dim_name_appearing_mid_cine_is_redacted(base, contrast):
    """Dim text (grey on a grey band, dim grey on the black border) appearing at frame 8 of
    12 changes the overlay by less than the old strong-change gate (64): never read, it
    was released; overlay changes count from 24 levels now."""
    frames = _moving_sector(12, 360, 480, seed=3)
    frames[:, :40, :] = base
    ds, identity = _cine_dataset(frames)
    for f in range(8, 12):
        truth = _draw(frames[f], _name(identity), (20, 10), base + contrast, size=16)
    ds.PixelData = frames.tobytes()
    assert _released_black_or_refused(_stage(), ds, [(f, truth) for f in range(8, 12)]) in (
        "redacted", "quarantined")


# -- D3 --------------------------------------------------------------------------------------
def test_template_policy_quarantines_a_name_outside_the_template_after_frame_0():
    """``--pixels template`` on a GE LOGIQ 700 cine (the shipped template matches) with the
    name outside the template's regions in frames 3-8: verification read frame 0 whole
    only, so it was released; the written cine is searched like a first pass now."""
    frames = _moving_sector(12, 480, 640, seed=4)
    ds, identity = _cine_dataset(frames)
    for f in range(3, 9):
        truth = _draw(frames[f], _name(identity), (20, 440), 230, size=16)
    ds.PixelData = frames.tobytes()
    ds.Manufacturer, ds.ManufacturerModelName = "GE Medical Systems", "LOGIQ 700"
    if "SequenceOfUltrasoundRegions" in ds:
        del ds.SequenceOfUltrasoundRegions
    result = _released_black_or_refused(_stage("template"), ds,
                                        [(f, truth) for f in range(3, 9)])
    assert result in ("redacted", "quarantined")


# -- D5 --------------------------------------------------------------------------------------
def test_name_in_a_frame_between_samples_of_a_long_cine_is_redacted():
    """A 661-frame cine was analysed on 600 evenly spaced frames; a name in the border of
    a frame left out (and gone the next frame) was never examined and was released; every
    frame is analysed now."""
    from pixeldeid.burnedin.cine import sample_indices

    n = 661
    target = next(f for f in range(300, n) if f not in set(sample_indices(n, 600)))
    frames = _moving_sector(n, 200, 280, seed=6)
    ds, identity = _cine_dataset(frames)
    truth = _draw(frames[target], _name(identity), (6, 4), 230, size=14)
    ds.PixelData = frames.tobytes()
    assert _released_black_or_refused(_stage(), ds, [(target, truth)]) in (
        "redacted", "quarantined")


def test_a_cine_too_long_to_examine_is_quarantined(monkeypatch):
    """Beyond the frame-pixel budget a cine is quarantined, not sampled."""
    import pixeldeid.burnedin.stage as stage_mod

    frames = _moving_sector(8, 200, 280, seed=6)
    ds, _ = _cine_dataset(frames)
    monkeypatch.setattr(stage_mod, "MAX_ANALYSED_PIXELS", 7 * 200 * 280)
    with pytest.raises(DeidError, match="too many to examine"):
        _stage().process(ds, IdentityValues.from_dataset(ds), "x.dcm")
