"""Verification of a de-identified slide: raw byte scan and openslide comparison."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .tiffedit import scan_raw

if TYPE_CHECKING:  # pragma: no cover
    from .api import SlideOptions, VendorReport

logger = logging.getLogger(__name__)

__all__ = ["verify_slide", "check_segments", "compare_outside_regions", "check_macro_label_end",
           "MIN_SCAN_LEN"]

#: values shorter than this are not scanned for (too many chance hits in image data)
MIN_SCAN_LEN = 4
#: pixels around a redacted rectangle that may change (whole JPEG MCUs, chroma upsampling)
EDGE = 17
#: left part of a redacted macro that must read black (the smallest label fraction of the
#: vendor modules is 0.27, NDPI)
MACRO_CHECK_FRACTION = 0.25


def scan_values(report_values: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    """The distinct values worth scanning for (at least ``MIN_SCAN_LEN`` characters)."""
    out: list[str] = []
    for v in [*report_values, *extra]:
        v = v.strip() if isinstance(v, str) else v
        if v and len(v) >= MIN_SCAN_LEN and v not in out:
            out.append(v)
    return out


def verify_slide(src: str | os.PathLike, out: str | os.PathLike, vendor: str,
                 options: SlideOptions, report: VendorReport
                 ) -> tuple[list[str], list[tuple[str, int]]]:
    """Check an edited slide; return ``(problems, raw scan hits)`` (empty lists = clean)."""
    problems: list[str] = []
    values = scan_values(report.removed_values, options.extra_values)
    hits = scan_raw(out, values)
    for v, off in hits[:10]:
        problems.append(f"removed value {v!r} still in the file at byte {off}")
    if vendor != "dicom":  # DICOM WSI: pixel data checked by wsi.dicomwsi
        problems += check_segments(out)
    if not options.verify:
        return problems, hits
    try:
        import openslide
    except ImportError:  # pragma: no cover
        problems.append("openslide not installed: cannot verify (pip install 'pixeldeid[slides]')")
        return problems, hits
    try:
        a = openslide.OpenSlide(str(src))
    except Exception as exc:
        problems.append(f"input does not open in openslide: {exc}")
        return problems, hits
    try:
        try:
            b = openslide.OpenSlide(str(out))
        except Exception as exc:
            problems.append(f"output does not open in openslide: {exc}")
            return problems, hits
        try:
            regions = [tuple(r) for r in (report.redaction or {}).get("regions",
                                                                       options.redact_regions)]
            problems += _compare(a, b, vendor, options, regions)
        except Exception as exc:  # openslide errors on damaged tiles
            problems.append(f"openslide read failed: {exc}")
        finally:
            b.close()
    finally:
        a.close()
    return problems, hits


def check_segments(path: str | os.PathLike) -> list[str]:
    """Problems with the strips/tiles of every IFD and SubIFD of a TIFF-based slide.

    Each one with bytes must lie inside the file (past the header), and an IFD must list
    at least as many as its size and tile size need. openslide opens a slide whose tile
    points past the end of the file and fails only when that tile is read, and the
    comparison reads a few level-0 patches only: a corrupt slide would pass as clean.
    A byte count of 0 is a tile the scanner did not write (openslide draws it empty).
    """
    from pixeldeid.errors import DeidError

    from .tiffedit import TiffEditor

    problems: list[str] = []
    try:
        with TiffEditor(path) as ed:
            size = ed.size
            for d in [*ed.ifds, *ed.subifds]:
                offs, cnts = ed.segment_arrays(d.index)
                need = _segment_count(d)
                what = "tiles" if d.is_tiled else "strips"
                if len(offs) < need:
                    problems.append(f"IFD {d.index} lists {len(offs)} {what}, its size needs {need}")
                bad = (cnts > 0) & ((offs < 8) | (offs + cnts > size))
                if bad.any():
                    k = int(np.argmax(bad))
                    problems.append(f"IFD {d.index}: {int(bad.sum())} {what} outside the file "
                                    f"(#{k}: {int(cnts[k])} bytes at offset {int(offs[k])}, "
                                    f"file {size} bytes)")
    except DeidError as exc:
        problems.append(f"TIFF structure unreadable: {getattr(exc, 'reason', None) or exc}")
    return problems


def _segment_count(d) -> int:
    """The strips/tiles an IFD's image size, tile size / rows per strip and planar
    configuration need (0 when the IFD has no image size)."""
    h, w = d.shape
    if h <= 0 or w <= 0:
        return 0
    planes = int(d.first(277, 1) or 1) if int(d.first(284, 1) or 1) == 2 else 1
    if d.is_tiled:
        tw, th = int(d.first(322, 0) or 0), int(d.first(323, 0) or 0)
        if tw <= 0 or th <= 0:
            return 0
        return -(-w // tw) * -(-h // th) * planes
    rps = int(d.first(278, h) or h)
    return -(-h // min(max(rps, 1), h)) * planes


def _compare(a, b, vendor: str, options: SlideOptions, regions) -> list[str]:
    problems = []
    vb = b.properties.get("openslide.vendor")
    if vb != vendor:
        problems.append(f"output opens as vendor {vb!r}, not {vendor!r}")
    if a.level_dimensions != b.level_dimensions:
        problems.append(f"level dimensions changed {a.level_dimensions} -> {b.level_dimensions}")
        return problems
    assoc = set(b.associated_images)
    if options.label == "remove" and "label" in assoc:
        problems.append("label image still present")
    if options.macro == "remove" and "macro" in assoc:
        problems.append("macro image still present")
    if options.macro == "redact" and "macro" in assoc:
        problems += check_macro_label_end(b)
    problems += compare_outside_regions(a, b, regions)
    problems += check_regions_black(b, regions)
    return problems


def check_macro_label_end(b, *, fraction: float = MACRO_CHECK_FRACTION, limit: int = 12
                          ) -> list[str]:
    """A redacted macro must read (near) black over its label end: the left ``fraction`` of
    its width (every vendor blacks out at least that much), less a few pixels of codec
    blocks blending with the rest."""
    m = np.asarray(b.associated_images["macro"].convert("RGB"))
    end = int(m.shape[1] * fraction) - 8
    if end > 0 and m[:, :end].max() > limit:
        return ["macro label end not blacked out"]
    return []


def check_regions_black(b, regions, *, limit: int = 12) -> list[str]:
    """Each region must read (near) black on every level where it spans a few pixels."""
    problems = []
    for x, y, w, h in regions:
        for lvl, ds in enumerate(b.level_downsamples):
            # inner part only: block edges may blend with the neighbouring colour
            x0, y0 = int(np.ceil(x / ds)) + 1, int(np.ceil(y / ds)) + 1
            x1, y1 = int((x + w) / ds) - 1, int((y + h) / ds) - 1
            if x1 - x0 < 2 or y1 - y0 < 2 or (x1 - x0) * (y1 - y0) > 4096 * 4096:
                continue
            px = np.asarray(b.read_region((int(x0 * ds), int(y0 * ds)), lvl, (x1 - x0, y1 - y0)))
            if px[..., :3].max() > limit:
                problems.append(f"region {x},{y},{w},{h} not blacked out at level {lvl}")
    return problems


def compare_outside_regions(a, b, regions, *, patches: int = 4, size: int = 256) -> list[str]:
    """Compare read_region of two slides: the whole smallest level and a few level-0
    patches, ignoring the redacted rectangles (level-0 coordinates)."""
    problems = []
    lvl = a.level_count - 1
    w, h = a.level_dimensions[lvl]
    if w * h <= 4096 * 4096:
        ra = np.asarray(a.read_region((0, 0), lvl, (w, h)))
        rb = np.asarray(b.read_region((0, 0), lvl, (w, h)))
        ds = a.level_downsamples[lvl]
        mask = region_mask((h, w), regions, ds, margin=EDGE)
        if not np.array_equal(ra[~mask], rb[~mask]):
            problems.append(f"pixels differ outside redacted regions at level {lvl}")
    W, H = a.level_dimensions[0]
    rng = np.random.default_rng(0)
    for _ in range(patches):
        x = int(rng.integers(0, max(1, W - size)))
        y = int(rng.integers(0, max(1, H - size)))
        sw, sh = min(size, W), min(size, H)
        ra = np.asarray(a.read_region((x, y), 0, (sw, sh)))
        rb = np.asarray(b.read_region((x, y), 0, (sw, sh)))
        shifted = [(rx - x, ry - y, rw, rh) for rx, ry, rw, rh in regions]
        mask = region_mask((sh, sw), shifted, 1.0, margin=EDGE)
        if not np.array_equal(ra[~mask], rb[~mask]):
            problems.append(f"pixels differ outside redacted regions at level 0 ({x},{y})")
    return problems


def region_mask(shape: tuple[int, int], regions, downsample: float, margin: int = 0) -> np.ndarray:
    """Boolean mask of level-0 ``regions`` mapped to a level of ``downsample``.

    ``margin`` pixels are added on every side (codec blocks touching the edge of a
    redaction may change)."""
    m = np.zeros(shape, dtype=bool)
    for x, y, w, h in regions:
        x0 = int(np.floor(x / downsample)) - margin
        y0 = int(np.floor(y / downsample)) - margin
        x1 = int(np.ceil((x + w) / downsample)) + margin
        y1 = int(np.ceil((y + h) / downsample)) + margin
        m[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return m


def file_is_unchanged(path: str | os.PathLike, digest: str) -> bool:
    """Whether ``path`` still has the sha256 ``digest``."""
    import hashlib

    h = hashlib.sha256()
    with open(Path(path), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest() == digest
