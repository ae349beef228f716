"""Tile-level redaction: JPEG tables, DCT-domain blackout, region mapping, strip images."""

from __future__ import annotations

import imagecodecs
import numpy as np
import pytest

from wsi.redact import (
    jpeg_is_ycbcr,
    jpeg_quality_of,
    map_regions,
    redact_jpeg_dct,
    split_jpeg_tables,
)
from wsi.synth import jpeg_tiles, tissue


def test_split_and_rejoin_tables():
    img = tissue(64, 64)
    full = imagecodecs.jpeg8_encode(img, level=75)
    tables, abbrev = split_jpeg_tables(full)
    assert b"\xff\xdb" not in abbrev[: abbrev.index(b"\xff\xda")]
    a = imagecodecs.jpeg8_decode(full)
    b = imagecodecs.jpeg8_decode(abbrev, tables=tables)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("q", [30, 75, 92])
def test_quality_estimated_from_tables(q):
    full = imagecodecs.jpeg8_encode(tissue(32, 32), level=q, subsampling=(2, 2))
    tables, _ = split_jpeg_tables(full)
    assert jpeg_quality_of(tables, (2, 2)) == q


def test_map_regions_rounds_outward():
    assert map_regions([(10, 10, 5, 5)], (100, 100), (10, 10)) == [(1, 1, 2, 2)]
    assert map_regions([(0, 0, 100, 50)], (100, 200), (50, 100)) == [(0, 0, 50, 25)]
    assert map_regions([(500, 500, 10, 10)], (100, 100), (10, 10)) == []


@pytest.mark.parametrize("sub", [(1, 1), (2, 2)])
def test_dct_redaction_touches_only_intersecting_blocks(sub):
    img = tissue(128, 128, seed=3)
    tables, tiles = jpeg_tiles(img, 128, quality=85, subsampling=sub)
    tile = tiles[0]
    new, abbreviated = redact_jpeg_dct(tile, tables, [(20, 36, 50, 60)], photometric=6)
    before = imagecodecs.jpeg8_decode(tile, tables=tables).astype(int)
    after = imagecodecs.jpeg8_decode(new, tables=tables if abbreviated else None).astype(int)
    mcu = 8 * sub[0]
    y0, y1 = (36 // mcu) * mcu, -(-60 // mcu) * mcu
    x0, x1 = (20 // mcu) * mcu, -(-50 // mcu) * mcu
    # black, up to rounding; the outermost pixel row/column may pick up a little colour
    # from the neighbouring chroma block (4:2:0 upsampling), never image detail
    assert after[y0 + 1:y1 - 1, x0 + 1:x1 - 1].max() <= 6
    assert after[y0:y1, x0:x1].max() <= 40
    outside = np.ones(before.shape[:2], bool)
    outside[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2] = False  # chroma upsampling edge
    assert np.array_equal(before[outside], after[outside])


def test_rgb_photometric_blackout():
    # a tile without JFIF/Adobe markers in a Photometric=RGB IFD holds RGB samples
    img = tissue(64, 64)
    full = imagecodecs.jpeg8_encode(img, level=80)
    _, abbrev = split_jpeg_tables(full)
    assert jpeg_is_ycbcr(full, 2)  # JFIF marker wins
    segs_no_app = b"\xff\xd8" + abbrev[abbrev.index(b"\xff\xc0"):]
    assert not jpeg_is_ycbcr(segs_no_app, 2)
    assert jpeg_is_ycbcr(segs_no_app, 6)
