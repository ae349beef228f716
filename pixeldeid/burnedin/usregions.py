"""'Keep only the ultrasound regions': black out everything outside SequenceOfUltrasoundRegions.

Each region item gives RegionLocationMinX0, RegionLocationMinY0, RegionLocationMaxX1 and
RegionLocationMaxY1 (PS3.3 C.8.5.5; the max coordinates are inclusive). The boxes returned
cover exactly the pixels outside the union of the regions, as a few rectangles.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset

from .boxes import TextBox

logger = logging.getLogger(__name__)

_KEYS = ("RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1",
         "RegionLocationMaxY1")


def us_regions(ds: Dataset) -> list[tuple[int, int, int, int]] | None:
    """The regions as ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive, clipped to the image.

    None when the sequence is absent or empty, the image size is unknown, or any item is
    invalid (a coordinate missing or not a number, min > max, or lying wholly outside the
    image): an invalid sequence cannot be trusted to say where the image is.
    """
    seq = ds.get("SequenceOfUltrasoundRegions")
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if not seq or not rows or not cols:
        return None
    rows, cols = int(rows), int(cols)
    out = []
    for i, item in enumerate(seq):
        try:
            x0, y0, x1, y1 = (int(item[k].value) for k in _KEYS)
        except (KeyError, TypeError, ValueError):
            logger.warning("SequenceOfUltrasoundRegions item %d lacks a valid location", i)
            return None
        if x0 > x1 or y0 > y1 or x0 >= cols or y0 >= rows or x1 < 0 or y1 < 0:
            logger.warning("SequenceOfUltrasoundRegions item %d is invalid: (%d, %d)-(%d, %d) "
                           "in a %d x %d image", i, x0, y0, x1, y1, cols, rows)
            return None
        out.append((max(0, x0), max(0, y0), min(cols, x1 + 1), min(rows, y1 + 1)))
    return out


def complement_boxes(regions: list[tuple[int, int, int, int]], rows: int,
                     cols: int) -> list[tuple[int, int, int, int]]:
    """Rectangles covering ``[0, cols) x [0, rows)`` outside the union of ``regions``.

    Horizontal bands between the regions' y edges, with the uncovered x runs of each band;
    runs identical in consecutive bands are merged, so the result stays small.
    """
    ys = sorted({0, rows, *(r[1] for r in regions), *(r[3] for r in regions)})
    out: list[tuple[int, int, int, int]] = []
    open_runs: dict[tuple[int, int], int] = {}  # (x0, x1) -> y0 of the band it started in
    for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
        if y1 <= y0:
            continue
        spans = sorted((r[0], r[2]) for r in regions if r[1] <= y0 and r[3] >= y1)
        runs, x = [], 0
        for a, b in spans:
            if a > x:
                runs.append((x, a))
            x = max(x, b)
        if x < cols:
            runs.append((x, cols))
        for run in list(open_runs):
            if run not in runs:
                out.append((run[0], open_runs.pop(run), run[1], y0))
        for run in runs:
            open_runs.setdefault(run, y0)
    out.extend((run[0], y0, run[1], rows) for run, y0 in open_runs.items())
    return sorted(out, key=lambda b: (b[1], b[0]))


def us_region_boxes(ds: Dataset) -> list[TextBox] | None:
    """Boxes covering everything outside the ultrasound regions (every frame).

    ``source='us-regions'``, ``label='identity'``, ``frame=None``. None when the sequence is
    absent or invalid (see :func:`us_regions`); an empty list when the regions cover the
    whole image.
    """
    regions = us_regions(ds)
    if regions is None:
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    return [TextBox(x0, y0, x1, y1, frame=None, label="identity", source="us-regions")
            for x0, y0, x1, y1 in complement_boxes(regions, rows, cols)]
