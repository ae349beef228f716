"""'Keep only the ultrasound regions': boxes covering everything outside the regions."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from pixeldeid.burnedin.usregions import complement_boxes, us_region_boxes, us_regions


def _ds(rows: int, cols: int, *regions: tuple[int, int, int, int]) -> Dataset:
    ds = Dataset()
    ds.Rows, ds.Columns = rows, cols
    items = []
    for x0, y0, x1, y1 in regions:
        item = Dataset()
        item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
        item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
        items.append(item)
    ds.SequenceOfUltrasoundRegions = items
    return ds


def _coverage(ds: Dataset, boxes: list) -> np.ndarray:
    """How many boxes cover each pixel."""
    m = np.zeros((int(ds.Rows), int(ds.Columns)), int)
    for b in boxes:
        m[b.y0:b.y1, b.x0:b.x1] += 1
    return m


def _inside(ds: Dataset) -> np.ndarray:
    """Pixels inside any region (the max coordinates are inclusive)."""
    m = np.zeros((int(ds.Rows), int(ds.Columns)), bool)
    for it in ds.SequenceOfUltrasoundRegions:
        m[it.RegionLocationMinY0:it.RegionLocationMaxY1 + 1,
          it.RegionLocationMinX0:it.RegionLocationMaxX1 + 1] = True
    return m


def _assert_exact_complement(ds: Dataset) -> list:
    boxes = us_region_boxes(ds)
    assert boxes is not None
    cover = _coverage(ds, boxes)
    assert cover.max() <= 1                                  # no pixel twice
    assert np.array_equal(cover == 1, ~_inside(ds))          # exactly the outside
    assert all(b.source == "us-regions" and b.label == "identity" and b.frame is None
               for b in boxes)
    return boxes


@pytest.mark.parametrize("regions", [
    [(10, 20, 89, 69)],                                   # one region: 4 boxes around it
    [(0, 0, 99, 79)],                                     # the whole image: nothing to cover
    [(0, 10, 49, 69), (50, 10, 99, 69)],                  # two side by side (ALOKA-like)
    [(5, 5, 60, 40), (40, 30, 95, 75), (10, 50, 20, 60)],  # overlapping and disjoint
    [(30, 30, 30, 30)],                                   # a single pixel
])
def test_synthetic_regions(regions: list) -> None:
    ds = _ds(80, 100, *regions)
    boxes = _assert_exact_complement(ds)
    assert len(boxes) <= 4 * len(regions) + 1


def test_one_region_gives_four_boxes() -> None:
    boxes = us_region_boxes(_ds(80, 100, (10, 20, 89, 69)))
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes] == [
        (0, 0, 100, 20), (0, 20, 10, 70), (90, 20, 100, 70), (0, 70, 100, 80)]
    assert us_region_boxes(_ds(80, 100, (0, 0, 99, 79))) == []


@pytest.mark.parametrize("ds", [
    Dataset(),                                           # no sequence
    _ds(80, 100),                                        # empty sequence
    _ds(80, 100, (50, 10, 40, 20)),                      # min > max
    _ds(80, 100, (10, 10, 20, 20), (120, 0, 130, 10)),   # wholly outside the image
])
def test_absent_or_invalid_gives_none(ds: Dataset) -> None:
    assert us_region_boxes(ds) is None


def test_item_without_location_gives_none() -> None:
    ds = _ds(80, 100, (10, 10, 20, 20))
    del ds.SequenceOfUltrasoundRegions[0].RegionLocationMaxY1
    assert us_region_boxes(ds) is None
    ds = _ds(80, 100, (10, 10, 20, 20))
    del ds.Rows
    assert us_region_boxes(ds) is None


def test_region_past_the_edge_is_clipped() -> None:
    ds = _ds(80, 100, (10, 10, 150, 200))
    assert us_regions(ds) == [(10, 10, 100, 80)]
    assert [(b.x0, b.y0, b.x1, b.y1) for b in us_region_boxes(ds)] == [
        (0, 0, 100, 10), (0, 10, 10, 80)]


def test_complement_of_nothing_is_the_frame() -> None:
    assert complement_boxes([], 10, 20) == [(0, 0, 20, 10)]


# -- real captures: the identity band on top lies outside the regions -----------------------
def _header(name: str) -> Dataset:
    if name.startswith(("gdcm-", "color3d")):
        from pydicom.data import get_testdata_file

        path = get_testdata_file(name, download=False)
        if path is None:
            pytest.skip("pydicom-data not installed")
        return pydicom.dcmread(path, stop_before_pixels=True)
    deid_data = pytest.importorskip("deid_data", reason="deid-data not installed")
    path = Path(deid_data.__file__).parent / "data" / "ultrasounds" / name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf, zf.open(zf.namelist()[0]) as fh:
            return pydicom.dcmread(fh, stop_before_pixels=True)
    return pydicom.dcmread(path, stop_before_pixels=True)


# capture -> (number of regions, the identity band measured on the image: x0, y0, x1, y1)
REAL = {
    "GREYSCALE_IMAGE.dcm": (1, (0, 0, 1024, 24)),       # Philips EPIQ 5G
    "RGB_IMAGE.dcm": (1, (0, 0, 1024, 60)),             # Siemens S2000
    "GREYSCALE_CINE.zip": (1, (0, 0, 800, 19)),         # Philips EPIQ 5G cine
    "RGB_CINE.zip": (1, (0, 0, 1016, 54)),              # Terason cine
    "gdcm-US-ALOKA-16.dcm": (3, (0, 0, 640, 24)),       # Aloka, two images side by side
    "color3d_jpeg_baseline.dcm": (1, (0, 0, 640, 31)),  # SonoSite (no identity shown)
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_captures(name: str) -> None:
    ds = _header(name)
    n, (x0, y0, x1, y1) = REAL[name]
    assert len(ds.SequenceOfUltrasoundRegions) == n
    boxes = _assert_exact_complement(ds)
    assert 2 <= len(boxes) <= 4 * n
    assert (_coverage(ds, boxes)[y0:y1, x0:x1] == 1).all()   # the band is blacked out
