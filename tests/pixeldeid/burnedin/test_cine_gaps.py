"""Cine leak gaps: identity over the moving image that appears late, in flow colours, or dark,
and a place that changes more often than it is first read.

Each case draws the patient's name into a synthetic cine from some frame on (the ground
truth box is the drawn ink), checks OCR can read it there, runs the stage (phi-only,
rapidocr) and checks the name is black and unreadable by OCR in every frame where it
appears.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pixeldeid.burnedin.cine import analyse_cine
from pixeldeid.burnedin.synth import _font, _ink_box, make_us_cine

pytest.importorskip("rapidocr_onnxruntime")

from pixeldeid.burnedin.boxes import TextBox  # noqa: E402
from pixeldeid.burnedin.classify import IdentityValues, Vocabulary, classify_boxes  # noqa: E402
from pixeldeid.burnedin.frames import PixelFrames  # noqa: E402
from pixeldeid.burnedin.ocr import get_engine  # noqa: E402
from pixeldeid.burnedin.stage import BurnedInStage, PixelSettings  # noqa: E402

N = 12


@pytest.fixture(scope="module")
def base():
    us = make_us_cine(n_frames=N, rows=360, columns=480, clock_every=50, seed=5)
    return us, us.dataset.pixel_array.copy()


@pytest.fixture(scope="module")
def stage():
    return BurnedInStage(PixelSettings(policy="phi-only", ocr="rapidocr", device="cpu"))


def _name(us) -> str:
    family, given = us.identity["name"].split("^")
    return f"{given} {family}"


def _draw(frames: np.ndarray, text: str, xy: tuple[int, int], colour, start: int,
          size: int = 18) -> TextBox:
    """Draw ``text`` at ``xy`` in frames ``start`` ... last; the ink box (ground truth)."""
    from PIL import Image, ImageDraw

    font = _font(0, size)
    for f in range(start, len(frames)):
        im = Image.fromarray(frames[f])
        ImageDraw.Draw(im).text(xy, text, font=font, fill=colour)
        frames[f] = np.asarray(im)
    rows, cols = frames.shape[1:3]
    return TextBox(*_ink_box(text, xy, font, rows, cols), text=text, label="identity")


def _spot(us, dy: int = 0) -> tuple[int, int]:
    x0, y0, x1, y1 = us.sector
    return (x0 + x1) // 2 - 80, (y0 + y1) // 2 + dy


def _tissue(frames: np.ndarray, xy: tuple[int, int], lo: int, hi: int) -> None:
    """Busy tissue around ``xy`` (fresh speckle in ``lo``..``hi`` every frame): the place
    where the name will appear is moving image, not overlay."""
    x, y = xy
    rng = np.random.default_rng(0)
    shape = (len(frames), 70, 300)
    grey = rng.integers(lo, hi + 1, shape).astype(np.uint8)
    frames[:, y - 20:y + 50, x - 30:x + 270] = grey[..., None]


def _run(us, frames, stage):
    ds = copy.deepcopy(us.dataset)
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    identity = IdentityValues.from_dataset(ds)
    result = stage.process(ds, identity, "gap.dcm")
    return PixelFrames(ds).display(), identity, result


def _assert_gone(after, truth: TextBox, start: int, identity) -> None:
    """Black in every frame from ``start`` on, and OCR reads no identity around it there."""
    engine = get_engine("rapidocr", "cpu")
    vocab = Vocabulary.load("US")
    rows, cols = after.shape[1:3]
    y0, y1 = max(0, truth.y0 - 30), min(rows, truth.y1 + 30)
    x0, x1 = max(0, truth.x0 - 60), min(cols, truth.x1 + 60)
    for f in range(start, len(after)):
        assert int(after[f, truth.y0:truth.y1, truth.x0:truth.x1].max()) <= 8, f
        crop = np.ascontiguousarray(after[f, y0:y1, x0:x1])
        leaks = [b for b in classify_boxes(engine.read(crop), identity, vocab)
                 if b.label == "identity"]
        assert not leaks, (f, [b.text for b in leaks])


def _readable(frames, truth: TextBox, identity) -> bool:
    """The drawn name is readable by OCR before redaction (the case is a real one)."""
    engine = get_engine("rapidocr", "cpu")
    img = np.ascontiguousarray(frames[-1, max(0, truth.y0 - 30):truth.y1 + 30,
                                      max(0, truth.x0 - 60):truth.x1 + 60])
    boxes = classify_boxes(engine.read(img), identity, Vocabulary.load("US"))
    return any(b.label == "identity" for b in boxes)


def test_name_only_in_the_last_frame_is_removed(base, stage):
    us, frames = base
    frames = frames.copy()
    _tissue(frames, _spot(us), 40, 130)
    truth = _draw(frames, _name(us), _spot(us), (255, 255, 255), start=N - 1)
    a = analyse_cine(lambda idx: frames[list(idx)], N)
    assert N - 1 in a.change_frames     # a step in the last transition counts as held
    assert any(TextBox(*r).intersects(truth) for r in a.change_regions[N - 1])
    after, identity, result = _run(us, frames, stage)
    assert _readable(frames, truth, identity)
    assert N - 1 in result.frames_read and result.verified
    _assert_gone(after, truth, N - 1, identity)


@pytest.mark.parametrize("colour", [(210, 25, 20), (25, 50, 220)], ids=["red", "blue"])
def test_flow_coloured_name_mid_cine_is_a_change_and_removed(base, stage, colour):
    us, frames = base
    frames = frames.copy()
    _tissue(frames, _spot(us, -30), 40, 130)
    truth = _draw(frames, _name(us), _spot(us, -30), colour, start=6)
    a = analyse_cine(lambda idx: frames[list(idx)], N)
    assert 6 in a.change_frames
    assert any(TextBox(*r).intersects(truth) for r in a.change_regions[6])
    after, identity, result = _run(us, frames, stage)
    assert _readable(frames, truth, identity)
    _assert_gone(after, truth, 6, identity)


def test_dark_name_over_bright_tissue_mid_cine_is_removed(base, stage):
    us, frames = base
    frames = frames.copy()
    x, y = _spot(us, 10)
    _tissue(frames, (x, y), 150, 255)     # bright tissue there; dark text from frame 5 on
    truth = _draw(frames, _name(us), (x, y), (0, 0, 0), start=5)
    a = analyse_cine(lambda idx: frames[list(idx)], N)
    assert 5 in a.change_frames
    assert any(TextBox(*r).intersects(truth) for r in a.change_regions[5])
    after, identity, result = _run(us, frames, stage)
    assert _readable(frames, truth, identity)
    _assert_gone(after, truth, 5, identity)


def test_doppler_flow_alone_makes_no_change_regions():
    """The pulsing colour-flow blob is no text: no change region falls inside it."""
    us = make_us_cine(n_frames=24, rows=360, columns=480, clock_every=50, seed=11)
    frames = us.dataset.pixel_array
    a = analyse_cine(lambda idx: frames[list(idx)], len(frames))
    x0, y0, x1, y1 = us.sector
    inside = [r for rs in a.change_regions.values() for r in rs
              if r[1] >= y0 + 20 and r[3] <= y1]
    assert inside == []


def test_a_place_read_in_a_sample_of_its_frames_leaks_nothing(stage):
    """A label place changing 8 times is read in 6 sampled frames first; the name shown
    there in one frame between the samples (15-19) is read too and removed."""
    n = 41
    us = make_us_cine(n_frames=n, rows=360, columns=480, clock_every=100, seed=5)
    frames = us.dataset.pixel_array.copy()
    blocks = ["LIVER", "GB LONG", "LIVER", _name(us), "LIVER", "GB LONG", "LIVER",
              "GB LONG", "LIVER"]
    xy = (10, 360 - 26)
    assert int(frames[:, xy[1] - 4:, :200].max()) == 0   # black background there
    truth = None
    for b, text in enumerate(blocks):
        drawn = frames[5 * b:5 * b + 5].copy()
        box = _draw(drawn, text, xy, (230, 230, 230), start=0, size=14)
        frames[5 * b:5 * b + 5] = drawn
        if b == 3:
            truth = box
    after, identity, result = _run(us, frames, stage)
    assert _readable(frames[:20], truth, identity)
    assert 15 in result.frames_read
    for f in range(15, 20):
        assert int(after[f, truth.y0:truth.y1, truth.x0:truth.x1].max()) <= 8, f
    _assert_gone(after[:20], truth, 15, identity)
