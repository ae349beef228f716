"""Cine analysis: static overlay, change frames (a running clock), crop mosaics, devices."""

from __future__ import annotations

import numpy as np
import pytest

from pixeldeid.burnedin.boxes import TextBox
from pixeldeid.burnedin.cine import (
    analyse_cine,
    changed_boxes,
    context_box,
    covered,
    read_regions,
    sample_indices,
)
from pixeldeid.burnedin.synth import make_us_cine


@pytest.fixture(scope="module")
def cine():
    us = make_us_cine(n_frames=30, rows=360, columns=480, clock_every=7, seed=21)
    return us, us.dataset.pixel_array


def _load(frames):
    return lambda idx: frames[list(idx)]


def test_overlay_holds_the_text_not_the_speckle(cine):
    us, frames = cine
    a = analyse_cine(_load(frames), len(frames))
    assert a.analysed == list(range(30))
    for t in us.texts:   # every text (the clock too: it changes in few frames) is overlay
        b = t.box
        assert a.overlay[b.y0:b.y1, b.x0:b.x1].mean() > 0.9, t.kind
    x0, y0, x1, y1 = us.sector
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    core = a.overlay[cy - 20:cy + 20, cx - 40:cx + 40]   # the moving image is not overlay
    assert core.mean() < 0.2


def test_change_frames_are_the_clock_ticks_with_the_clock_region(cine):
    us, frames = cine
    a = analyse_cine(_load(frames), len(frames))
    clock = next(t.box for t in us.texts if t.kind == "clock")
    for f in us.clock_frames:
        assert f in a.change_frames
        assert any(TextBox(*r).intersects(clock) for r in a.change_regions[f])
    # the regions of the clock ticks lie inside the clock's box (nothing else is read)
    for f in us.clock_frames:
        for r in a.change_regions[f]:
            if TextBox(*r).intersects(clock):
                assert covered(r, [clock], pad=1)
    assert a.frames_to_read()[0] == 0


@pytest.mark.gpu
def test_torch_path_gives_the_numpy_result(cine):
    torch = pytest.importorskip("torch")
    _, frames = cine
    ref = analyse_cine(_load(frames), len(frames), device="cpu")
    dev = "cuda" if torch.cuda.is_available() else "torch-cpu"
    got = analyse_cine(_load(frames), len(frames), device=dev)
    assert np.array_equal(ref.change_counts, got.change_counts)
    assert np.array_equal(ref.overlay, got.overlay)
    assert ref.change_frames == got.change_frames and ref.change_regions == got.change_regions


def test_sampling_and_tiny_cines():
    assert sample_indices(5) == [0, 1, 2, 3, 4]
    s = sample_indices(1000, 50)
    assert s[0] == 0 and s[-1] == 999 and len(s) == 50
    frames = np.zeros((2, 40, 60, 3), np.uint8)
    frames[1, 10:20, 10:30] = 255
    a = analyse_cine(_load(frames), 2)
    assert a.change_frames == [1] and a.change_regions[1] == [(0, 0, 60, 40)]


def test_changed_boxes_group_near_pixels_and_stay_tight():
    m = np.zeros((50, 100), bool)
    m[10:15, 10:20] = True
    m[10:15, 25:30] = True      # 5 px away: same group
    m[40:45, 80:90] = True      # far: its own box
    boxes = sorted(changed_boxes(m, grow=(3, 8)))
    assert boxes == [(10, 10, 30, 15), (80, 40, 90, 45)]


def test_read_regions_maps_mosaic_boxes_back_to_frames():
    """A fake reader that finds bright rectangles: every crop's box comes back in place."""
    from scipy.ndimage import find_objects, label

    def reader(img):
        lab, _ = label(img.max(axis=-1) > 0)
        return [TextBox(s[1].start, s[0].start, s[1].stop, s[0].stop, "x", 0.9)
                for s in find_objects(lab)]

    rng = np.random.default_rng(0)
    frames = np.zeros((6, 200, 300, 3), np.uint8)
    truth = []
    crops = []
    for f in range(6):
        x, y = int(rng.integers(20, 240)), int(rng.integers(20, 170))
        frames[f, y:y + 8, x:x + 30] = 200
        truth.append(TextBox(x, y, x + 30, y + 8, frame=f))
        c = context_box((x, y, x + 30, y + 8), 200, 300)
        crops.append((f, c, frames[f, c[1]:c[3], c[0]:c[2]]))
    got = read_regions(reader, crops, canvas_width=120, max_height=60)
    key = sorted((b.frame, b.x0, b.y0, b.x1, b.y1) for b in got)
    assert key == sorted((t.frame, t.x0, t.y0, t.x1, t.y1) for t in truth)


def test_covered_needs_the_whole_box():
    cover = [TextBox(0, 0, 50, 10), TextBox(50, 0, 100, 10)]
    assert covered((5, 2, 95, 8), cover, pad=0)
    assert not covered((5, 2, 105, 8), cover, pad=0)
    assert not covered((5, 2, 95, 8), [TextBox(0, 0, 50, 10)], pad=0)


def test_text_appearing_over_the_moving_image_is_a_change(cine):
    """Glyphs drawn over the speckle from frame 20 on are not overlay (their neighbours
    move) but a step that holds: frame 20 is a change frame with their region."""
    from PIL import Image, ImageDraw

    from pixeldeid.burnedin.synth import _font

    us, frames = cine
    frames = frames.copy()
    x0, y0, x1, y1 = us.sector
    at = ((x0 + x1) // 2 - 60, (y0 + y1) // 2)
    for f in range(20, 30):
        im = Image.fromarray(frames[f])
        ImageDraw.Draw(im).text(at, "JANE ROE", font=_font(0, 16), fill=(255, 255, 255))
        frames[f] = np.asarray(im)
    a = analyse_cine(_load(frames), len(frames))
    text = TextBox(at[0], at[1], at[0] + 80, at[1] + 18)
    assert 20 in a.change_frames
    assert any(TextBox(*r).intersects(text) for r in a.change_regions[20])
