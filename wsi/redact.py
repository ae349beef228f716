"""Pyramid-propagated region redaction and image replacement inside a TIFF, tile by tile.

Regions are given in level-0 pixel coordinates and mapped to every image IFD by the
ratio of its size to level 0 (pyramid levels and the thumbnail show the same field of
view). Only tiles/strips that intersect a region are decoded, blacked out and
re-encoded with the IFD's own compression (JPEG with the shared JPEGTables: quality
matched to the tables' quantisation, tables omitted from the tile when they match; LZW,
deflate, with or without horizontal predictor; uncompressed); the new bytes are appended,
the offsets patched and the old bytes zeroed. Every other tile stays byte-identical.

Examples
--------
>>> from wsi.tiffedit import TiffEditor
>>> with TiffEditor("slide.svs", "r+") as ed:                   # doctest: +SKIP
...     stats = redact_regions(ed, [(1000, 2000, 500, 300)], ifds=[0, 1, 2])
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache

import imagecodecs
import numpy as np

from pixeldeid.errors import DeidError

from .tiffedit import (
    COMPRESSION,
    JPEG_TABLES,
    ROWS_PER_STRIP,
    TILE_LENGTH,
    TILE_WIDTH,
    TiffEditor,
)

logger = logging.getLogger(__name__)

__all__ = [
    "RedactStats",
    "redact_ndpi_level",
    "redact_jpeg_dct",
    "redact_regions",
    "redact_ifd",
    "map_regions",
    "split_jpeg_tables",
    "jpeg_quality_of",
    "encode_jpeg_tile",
    "encode_segment",
    "decode_segment",
    "replace_image",
    "synthesize_label",
    "macro_redaction_rects",
    "redact_macro_ifd",
    "redact_macro_image",
    "redact_macro_jpeg",
    "macro_status",
]

JPEG, LZW, DEFLATE, ADOBE_DEFLATE, NONE = 7, 5, 32946, 8, 1
#: JPEG 2000: Aperio's YCbCr and RGB codes (openslide converts 33003's YCbCr itself) and
#: the generic code
APERIO_J2K_YCBCR, APERIO_J2K_RGB, JPEG2000 = 33003, 33005, 34712
J2K = {APERIO_J2K_YCBCR, APERIO_J2K_RGB, JPEG2000}
SUPPORTED = {JPEG, LZW, DEFLATE, ADOBE_DEFLATE, NONE} | J2K
PREDICTOR = 317
PHOTOMETRIC = 262
SAMPLES_PER_PIXEL = 277
BITS_PER_SAMPLE = 258
YCBCR_SUBSAMPLING = 530


@dataclass
class RedactStats:
    """What a redaction did: tiles and bytes re-encoded, per IFD."""

    tiles: dict[int, int] = field(default_factory=dict)
    bytes_old: dict[int, int] = field(default_factory=dict)  # bytes of the affected tiles
    bytes_new: dict[int, int] = field(default_factory=dict)  # bytes written for them

    @property
    def total_tiles(self) -> int:
        return sum(self.tiles.values())

    @property
    def total_old(self) -> int:
        return sum(self.bytes_old.values())

    @property
    def total_new(self) -> int:
        return sum(self.bytes_new.values())

    def as_dict(self) -> dict:
        return {"tiles": dict(self.tiles), "bytes_affected": self.total_old,
                "bytes_written": self.total_new}


# ------------------------------------------------------------------ JPEG helpers
def _jpeg_markers(data: bytes) -> list[tuple[int, int, int]]:
    """``(marker, start, end)`` of each segment up to and including SOS."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG stream")
    out = [(0xD8, 0, 2)]
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ValueError(f"bad JPEG marker at {i}")
        m = data[i + 1]
        if m == 0xFF:
            i += 1
            continue
        if m == 0xD9:
            out.append((m, i, i + 2))
            break
        ln = struct.unpack(">H", data[i + 2:i + 4])[0]
        out.append((m, i, i + 2 + ln))
        if m == 0xDA:
            break
        i += 2 + ln
    return out


def split_jpeg_tables(jpeg: bytes) -> tuple[bytes, bytes]:
    """Split a full JPEG into (tables-only stream, abbreviated image stream)."""
    segs = _jpeg_markers(jpeg)
    tables = [jpeg[s:e] for m, s, e in segs if m in (0xDB, 0xC4)]
    sos = [s for m, s, e in segs if m == 0xDA][0]
    keep = [jpeg[s:e] for m, s, e in segs if m not in (0xD8, 0xDB, 0xC4, 0xDA)]
    abbrev = b"\xff\xd8" + b"".join(keep) + jpeg[sos:]
    return b"\xff\xd8" + b"".join(tables) + b"\xff\xd9", abbrev


def _dqt_payloads(jpeg: bytes) -> list[bytes]:
    return [jpeg[s + 4:e] for m, s, e in _jpeg_markers(jpeg) if m == 0xDB]


def _dht_payloads(jpeg: bytes) -> list[bytes]:
    return [jpeg[s + 4:e] for m, s, e in _jpeg_markers(jpeg) if m == 0xC4]


def _split_tables(payloads: list[bytes], kind: str) -> set[bytes]:
    """Individual tables of DQT/DHT payloads (a segment may hold several)."""
    out = set()
    for p in payloads:
        i = 0
        while i < len(p):
            if kind == "dqt":
                pq = p[i] >> 4
                n = 1 + (128 if pq else 64)
            else:
                n = 1 + 16 + sum(p[i + 1:i + 17])
            out.add(p[i:i + n])
            i += n
    return out


@cache
def _quality_tables(subsampling: tuple[int, int]) -> dict[int, frozenset[bytes]]:
    img = np.zeros((16, 16, 3), np.uint8)
    out = {}
    for q in range(1, 101):
        j = imagecodecs.jpeg8_encode(img, level=q, subsampling=subsampling)
        out[q] = frozenset(_split_tables(_dqt_payloads(j), "dqt"))
    return out


def jpeg_quality_of(tables: bytes, subsampling: tuple[int, int] = (2, 2)) -> int | None:
    """The IJG quality whose quantisation tables equal those in ``tables``, or ``None``."""
    want = _split_tables(_dqt_payloads(tables), "dqt")
    for q, t in _quality_tables(subsampling).items():
        if t and t <= want and len(t) == len(want):
            return q
    return None


def encode_jpeg_tile(rgb: np.ndarray, tables: bytes | None, *, subsampling=(2, 2),
                     quality: int | None = None) -> bytes:
    """Encode a tile for a JPEG IFD: abbreviated when the shared tables match."""
    q = quality
    if q is None and tables:
        q = jpeg_quality_of(tables, subsampling)
    if q is None:
        q = 90
    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[..., 0]
    if rgb.ndim == 2:
        full = imagecodecs.jpeg8_encode(rgb, level=q)
    else:
        full = imagecodecs.jpeg8_encode(rgb, level=q, subsampling=subsampling)
    if tables:
        t_new, abbrev = split_jpeg_tables(full)
        have_q = _split_tables(_dqt_payloads(tables), "dqt")
        have_h = _split_tables(_dht_payloads(tables), "dht")
        if (_split_tables(_dqt_payloads(t_new), "dqt") <= have_q
                and _split_tables(_dht_payloads(t_new), "dht") <= have_h):
            return abbrev
    return full


def jpeg_is_ycbcr(data: bytes, photometric: int | None) -> bool:
    """Whether a 3-component JPEG stream holds YCbCr, as libjpeg readers in TIFF see it:
    a JFIF marker means YCbCr, an Adobe marker says so itself, else the TIFF
    Photometric (2 = RGB stored as is, 6 = YCbCr) decides."""
    for m, s, e in _jpeg_markers(data):
        if m == 0xE0 and data[s + 4:s + 9] == b"JFIF\x00":
            return True
        if m == 0xEE and data[s + 4:s + 9] == b"Adobe" and e - s >= 16:
            return data[s + 15] != 0
    return photometric != 2


def redact_jpeg_dct(data: bytes, tables: bytes | None,
                    rects: Sequence[tuple[int, int, int, int]],
                    photometric: int | None = 6) -> tuple[bytes, bool]:
    """Black out ``rects`` (tile pixels) of a JPEG in the DCT domain.

    Every 8x8 block of every component that intersects a rectangle (grown to whole MCUs)
    gets the DC value of black and zero AC; all other blocks keep their quantised
    coefficients exactly, so pixels outside the grown rectangles decode identically
    (up to chroma-upsampling smoothing across the rectangle's border). Returns the new
    stream (abbreviated when the shared tables still apply) and whether it is
    abbreviated. Needs the ``jpeglib`` package.
    """
    import jpeglib

    from pixeldeid.jpegfiles import jpeglib_files

    full = data
    if tables:
        full = tables[:-2] + data[2:] if tables.endswith(b"\xff\xd9") else tables + data[2:]
    with jpeglib_files(full) as (src, dst):
        im = jpeglib.read_dct(src)
        comps = [c for c in (im.Y, im.Cb, im.Cr) if c is not None]
        by, bx = comps[0].shape[:2]
        mcu = max(8 * by // max(1, c.shape[0]) for c in comps)
        mcu_x = max(8 * bx // max(1, c.shape[1]) for c in comps)
        ycc = jpeg_is_ycbcr(data, photometric)
        qt = np.asarray(im.qt)
        tbl = list(np.asarray(im.quant_tbl_no).ravel()) if im.quant_tbl_no is not None else [0, 1, 1]
        new = []
        for k, c in enumerate(comps):
            c = np.array(c, copy=True)
            sy = 8 * by / c.shape[0]
            sx = 8 * bx / c.shape[1]
            q00 = float(qt[min(int(tbl[k]) if k < len(tbl) else 0, len(qt) - 1)][0, 0])
            dc = 0 if (ycc and k > 0) else int(round(-1024 / q00))
            for x0, y0, x1, y1 in rects:
                gx0, gy0 = (x0 // mcu_x) * mcu_x, (y0 // mcu) * mcu
                gx1, gy1 = -(-x1 // mcu_x) * mcu_x, -(-y1 // mcu) * mcu
                r0, r1 = int(gy0 // sy), int(-(-gy1 // sy))
                c0, c1 = int(gx0 // sx), int(-(-gx1 // sx))
                c[r0:r1, c0:c1] = 0
                c[r0:r1, c0:c1, 0, 0] = dc
            new.append(c)
        im.Y = new[0]
        if len(new) > 1:
            im.Cb, im.Cr = new[1], new[2]
        im.write_dct(dst)
        with open(dst, "rb") as fh:
            out = fh.read()
    if tables:
        t_new, abbrev = split_jpeg_tables(out)
        if (_split_tables(_dqt_payloads(t_new), "dqt") <= _split_tables(_dqt_payloads(tables), "dqt")
                and _split_tables(_dht_payloads(t_new), "dht")
                <= _split_tables(_dht_payloads(tables), "dht")):
            return abbrev, True
    return out, False


def _have_jpeglib() -> bool:
    try:
        import jpeglib  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------ segment codec
def _segment_shape(ed: TiffEditor, ifd: int, index: int) -> tuple[int, int, int]:
    d = ed.ifd(ifd)
    h, w = d.shape
    spp = int(d.first(SAMPLES_PER_PIXEL, 1))
    if d.is_tiled:
        return int(d.first(TILE_LENGTH)), int(d.first(TILE_WIDTH)), spp
    rps = min(int(d.first(ROWS_PER_STRIP, h)), h)
    rows = min(rps, h - index * rps)
    return rows, w, spp


def _segment_origin(ed: TiffEditor, ifd: int, index: int) -> tuple[int, int]:
    d = ed.ifd(ifd)
    h, w = d.shape
    if d.is_tiled:
        th, tw = int(d.first(TILE_LENGTH)), int(d.first(TILE_WIDTH))
        across = -(-w // tw)
        r, c = divmod(index, across)
        return r * th, c * tw
    rps = min(int(d.first(ROWS_PER_STRIP, h)), h)
    return index * rps, 0


def decode_segment(ed: TiffEditor, ifd: int, index: int, data: bytes | None = None) -> np.ndarray:
    """Decode one tile/strip of an 8-bit IFD to ``(rows, cols, samples)``."""
    d = ed.ifd(ifd)
    comp = int(d.first(COMPRESSION, 1))
    if comp not in SUPPORTED:
        raise DeidError(f"IFD {ifd}: compression {comp} not supported for redaction", str(ed.path))
    bps = d.get(BITS_PER_SAMPLE, (8,))
    if any(b != 8 for b in (bps if isinstance(bps, tuple) else (bps,))):
        raise DeidError(f"IFD {ifd}: only 8-bit samples can be redacted", str(ed.path))
    if data is None:
        data = ed.read_segment(ifd, index)
    rows, cols, spp = _segment_shape(ed, ifd, index)
    if comp == JPEG:
        tables = d.get(JPEG_TABLES)
        arr = imagecodecs.jpeg8_decode(data, tables=tables if tables else None)
    elif comp in J2K:
        arr = imagecodecs.jpeg2k_decode(data)
    else:
        if comp == LZW:
            raw = imagecodecs.lzw_decode(data)
        elif comp in (DEFLATE, ADOBE_DEFLATE):
            raw = imagecodecs.zlib_decode(data)
        else:
            raw = data
        arr = np.frombuffer(raw, np.uint8)[: rows * cols * spp].reshape(rows, cols, spp)
        if int(d.first(PREDICTOR, 1)) == 2:
            arr = imagecodecs.delta_decode(arr, axis=1)
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.array(arr, copy=True)


def encode_j2k_lossless(arr: np.ndarray, like: bytes) -> bytes:
    """``arr`` as a lossless (reversible 5/3 wavelet) JPEG 2000 stream in the container of
    ``like`` (a JP2 file, else a raw codestream), checked to decode back to ``arr`` exactly.

    Lossless, so the pixels of a redacted tile outside the redacted area stay exactly as
    the scanner's (lossy) stream decoded them; the tile grows (reported in the stats).
    """
    fmt = "JP2" if like[4:8] == b"jP  " else "J2K"  # a JP2 file starts with its signature box
    arr = np.ascontiguousarray(arr)
    data = imagecodecs.jpeg2k_encode(arr if arr.shape[-1] > 1 else arr[..., 0], level=0,
                                     codecformat=fmt, reversible=True)
    back = np.asarray(imagecodecs.jpeg2k_decode(data))
    if back.reshape(arr.shape).tobytes() != arr.tobytes():
        raise DeidError("JPEG 2000 tile does not decode to the redacted pixels")
    return data


def encode_segment(ed: TiffEditor, ifd: int, arr: np.ndarray, like: bytes = b"") -> bytes:
    """Encode pixels for a tile/strip of ``ifd`` with the IFD's compression (``like``: the
    segment's old bytes, whose JPEG 2000 container is kept)."""
    d = ed.ifd(ifd)
    comp = int(d.first(COMPRESSION, 1))
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if comp in J2K:
        return encode_j2k_lossless(arr, like)
    if comp == JPEG:
        sub = d.get(YCBCR_SUBSAMPLING, (2, 2))
        sub = tuple(sub) if isinstance(sub, tuple) and len(sub) == 2 else (2, 2)
        return encode_jpeg_tile(arr, d.get(JPEG_TABLES) or None, subsampling=sub)
    if int(d.first(PREDICTOR, 1)) == 2:
        arr = imagecodecs.delta_encode(arr, axis=1)
    raw = arr.tobytes()
    if comp == LZW:
        return imagecodecs.lzw_encode(raw)
    if comp in (DEFLATE, ADOBE_DEFLATE):
        return imagecodecs.zlib_encode(raw, level=6)
    return raw


# ------------------------------------------------------------------ redaction
def map_regions(regions: Iterable[Sequence[int]], level0: tuple[int, int],
                shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Map level-0 ``(x, y, w, h)`` to ``(x0, y0, x1, y1)`` on an image of ``shape`` (h, w).

    Rounded outwards, so a region never shrinks."""
    H0, W0 = level0
    h, w = shape
    sx, sy = w / W0, h / H0
    out = []
    for x, y, rw, rh in regions:
        x0 = max(0, int(np.floor(x * sx)))
        y0 = max(0, int(np.floor(y * sy)))
        x1 = min(w, int(np.ceil((x + rw) * sx)))
        y1 = min(h, int(np.ceil((y + rh) * sy)))
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1, y1))
    return out


def redact_ifd(ed: TiffEditor, ifd: int, rects: Sequence[tuple[int, int, int, int]],
               stats: RedactStats | None = None, fill: int = 0) -> RedactStats:
    """Black out ``rects`` (``x0, y0, x1, y1`` in this IFD's pixels), tile by tile."""
    stats = stats or RedactStats()
    if not rects:
        return stats
    d = ed.ifd(ifd)
    _, counts = ed.segment_arrays(ifd)
    h, w = d.shape
    if d.is_tiled:
        th, tw = int(d.first(TILE_LENGTH)), int(d.first(TILE_WIDTH))
    else:
        th, tw = min(int(d.first(ROWS_PER_STRIP, h)), h), w
    across = -(-w // tw)
    candidates: set[int] = set()
    for x0, y0, x1, y1 in rects:  # only the tiles under a rectangle are looked at
        for r in range(y0 // th, (y1 - 1) // th + 1):
            for c in range(x0 // tw, (x1 - 1) // tw + 1):
                candidates.add(r * across + c)
    new: dict[int, bytes] = {}
    old_bytes = 0
    for i in sorted(k for k in candidates if k < len(counts)):
        n = int(counts[i])
        rows, cols, _ = _segment_shape(ed, ifd, i)
        oy, ox = _segment_origin(ed, ifd, i)
        hit = [(max(x0, ox), max(y0, oy), min(x1, ox + cols), min(y1, oy + rows))
               for x0, y0, x1, y1 in rects]
        hit = [r for r in hit if r[2] > r[0] and r[3] > r[1]]
        if not hit:
            continue
        if int(d.first(COMPRESSION, 1)) == JPEG and _have_jpeglib():
            local = [(x0 - ox, y0 - oy, x1 - ox, y1 - oy) for x0, y0, x1, y1 in hit]
            new[i], _ = redact_jpeg_dct(ed.read_segment(ifd, i), d.get(JPEG_TABLES) or None,
                                        local, int(d.first(PHOTOMETRIC, 6)))
            old_bytes += n
            continue
        data = ed.read_segment(ifd, i)
        arr = decode_segment(ed, ifd, i, data)
        # black in the stored colour space: Aperio's YCbCr JPEG 2000 holds Y, Cb, Cr
        black = (fill, 128, 128) if (int(d.first(COMPRESSION, 1)) == APERIO_J2K_YCBCR
                                     and arr.shape[-1] == 3) else fill
        for x0, y0, x1, y1 in hit:
            arr[y0 - oy:y1 - oy, x0 - ox:x1 - ox] = black
        new[i] = encode_segment(ed, ifd, arr, data)
        old_bytes += n
    if d.index != ifd:  # pragma: no cover - defensive
        raise RuntimeError("IFD index changed during redaction")
    ed.replace_tiles(ifd, new)
    stats.tiles[ifd] = stats.tiles.get(ifd, 0) + len(new)
    stats.bytes_old[ifd] = stats.bytes_old.get(ifd, 0) + old_bytes
    stats.bytes_new[ifd] = stats.bytes_new.get(ifd, 0) + sum(len(b) for b in new.values())
    return stats


def redact_regions(ed: TiffEditor, regions: Sequence[Sequence[int]], ifds: Iterable[int],
                   level0_ifd: int = 0, stats: RedactStats | None = None) -> RedactStats:
    """Redact level-0 ``regions`` on each IFD in ``ifds`` (same field of view as level 0)."""
    stats = stats or RedactStats()
    level0 = ed.ifd(level0_ifd).shape
    for i in ifds:
        rects = map_regions(regions, level0, ed.ifd(i).shape)
        redact_ifd(ed, i, rects, stats)
    return stats


# ------------------------------------------------------------------ whole-image replacement
def replace_image(ed: TiffEditor, ifd: int, img: np.ndarray) -> None:
    """Replace a stripped IFD's pixels by ``img`` (same shape), as one strip.

    The IFD keeps its compression when it is LZW/deflate/none/JPEG; the old strips are
    zeroed."""
    d = ed.ifd(ifd)
    if d.is_tiled:
        raise DeidError(f"IFD {ifd}: replace_image needs a stripped image", str(ed.path))
    h, w = d.shape
    spp = int(d.first(SAMPLES_PER_PIXEL, 1))
    img = np.ascontiguousarray(img, dtype=np.uint8).reshape(h, w, spp)
    comp = int(d.first(COMPRESSION, 1))
    if comp not in SUPPORTED:
        raise DeidError(f"IFD {ifd}: compression {comp} not supported", str(ed.path))
    old = list(ed.segments(ifd))
    # pack as one strip: RowsPerStrip = height
    if ROWS_PER_STRIP in d.tags:
        ed.set_values(ifd, ROWS_PER_STRIP, [h])
    data = encode_segment(ed, ifd, img)
    off = ed.append(data)
    ed.set_values(ifd, 273, [off], type_=4)
    ed.set_values(ifd, 279, [len(data)], type_=4)
    live_before = ed.referenced_ranges()
    for o, n in old:
        ed.zero_unreferenced(o, n, live_before)


def synthesize_label(shape: tuple[int, int], text: str, samples: int = 3) -> np.ndarray:
    """A plain label image of ``shape`` (h, w) carrying ``text`` in black on white."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = shape
    im = Image.new("RGB" if samples == 3 else "L", (w, h), "white")
    draw = ImageDraw.Draw(im)
    size = max(10, min(h, w) // 8)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - old Pillow
        font = ImageFont.load_default()
    draw.text((max(2, w // 20), h // 2 - size // 2), text, fill="black", font=font)
    arr = np.asarray(im, dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[..., None]


# ------------------------------------------------------------------ NDPI restart intervals
#: largest NDPI level without restart markers that is re-encoded as one interval
MAX_WHOLE_LEVEL_PIXELS = 64 * 1024 * 1024

def _ndpi_header(head: bytes) -> dict:
    """Parse the marker segments of an NDPI level JPEG up to SOS."""
    info: dict = {"tables": [], "sof": None, "sos": None, "dri": 0, "sos_end": 0}
    for m, s, e in _jpeg_markers(head):
        if m in (0xDB, 0xC4):
            info["tables"].append(head[s:e])
        elif m == 0xC0 or m == 0xC1:
            info["sof"] = head[s:e]
        elif m == 0xDD:
            info["dri"] = struct.unpack(">H", head[s + 4:s + 6])[0]
        elif m == 0xDA:
            info["sos"] = head[s:e]
            info["sos_end"] = e
    if info["sof"] is None or info["sos"] is None:
        raise ValueError("NDPI level JPEG header incomplete")
    sof = info["sof"]
    h, w, nc = struct.unpack(">HHB", sof[5:10])
    comps = [(sof[10 + 3 * i], sof[11 + 3 * i] >> 4, sof[11 + 3 * i] & 15) for i in range(nc)]
    info.update(height=h, width=w, comps=comps,
                mcu_w=8 * max(c[1] for c in comps), mcu_h=8 * max(c[2] for c in comps))
    return info


def _sos_selectors(sos: bytes) -> list[int]:
    n = sos[4]
    return [sos[6 + 2 * i] for i in range(n)]


def redact_ndpi_level(ed: TiffEditor, ifd: int, rects: Sequence[tuple[int, int, int, int]],
                      stats: RedactStats | None = None) -> RedactStats:
    """Black out ``rects`` in an NDPI level by re-encoding only its affected restart intervals.

    Each restart interval is decoded on its own (DC prediction restarts), its blocks that
    intersect a rectangle are blacked out in the DCT domain, and the entropy-coded data is
    re-encoded with the level's own (standard) Huffman tables and written back in place,
    padded with 0xFF fill bytes up to the next restart marker: offsets, MCU starts and
    every other interval stay byte-identical. Fails (``DeidError``) when the level has
    no usable restart intervals, non-standard Huffman tables, or an interval would grow.
    """
    stats = stats or RedactStats()
    if not rects:
        return stats
    d = ed.ifd(ifd)
    (soff, slen), = [(o, n) for o, n in zip(*map(list, ed.segment_arrays(ifd)), strict=True)]
    head = ed.read(soff, min(slen, 1 << 16))
    info = _ndpi_header(head)
    W, H = info["width"], info["height"]
    R = info["dri"]
    mcu_w, mcu_h = info["mcu_w"], info["mcu_h"]
    per_row = -(-W // mcu_w)
    if not R:  # no restart markers: the whole level is one interval (small levels only)
        if W * H > MAX_WHOLE_LEVEL_PIXELS:
            raise DeidError(f"NDPI IFD {ifd}: no restart intervals in a {W}x{H} level",
                            str(ed.path))
        across, tile_w, tile_h, down = 1, W, H, 1
    elif per_row % R:
        raise DeidError(f"NDPI IFD {ifd}: restart interval {R} does not tile rows of {per_row} MCUs",
                        str(ed.path))
    else:
        across = per_row // R
        tile_w, tile_h = R * mcu_w, mcu_h
        down = -(-H // mcu_h)
    n_int = across * down
    starts_tag = d.get(65426)
    if n_int == 1:
        starts = [soff + info["sos_end"]]
    elif isinstance(starts_tag, tuple) and len(starts_tag) == n_int:
        starts = [soff + int(s) for s in starts_tag]
    else:  # find the restart markers ourselves
        data = ed.read(soff, slen)
        starts = [info["sos_end"] + soff]
        i = info["sos_end"]
        while len(starts) < n_int:
            j = data.find(b"\xff", i)
            if j < 0 or j + 1 >= len(data):
                raise DeidError(f"NDPI IFD {ifd}: restart markers missing", str(ed.path))
            if 0xD0 <= data[j + 1] <= 0xD7:
                starts.append(soff + j + 2)
            i = j + 2 if data[j + 1] != 0xFF else j + 1
    ends = [s - 2 for s in starts[1:]] + [soff + slen - 2]
    tables = b"".join(info["tables"])
    sof = bytearray(info["sof"])
    struct.pack_into(">HH", sof, 5, tile_h, tile_w)
    std_dht = _split_tables([t[4:] for t in info["tables"] if t[1] == 0xC4], "dht")
    sel = _sos_selectors(info["sos"])
    photometric = int(d.first(PHOTOMETRIC, 6))
    touched = old_total = new_total = 0
    for k in range(n_int):
        r, c = divmod(k, across)
        ox, oy = c * tile_w, r * tile_h
        hit = [(max(x0, ox) - ox, max(y0, oy) - oy, min(x1, ox + tile_w) - ox, min(y1, oy + tile_h) - oy)
               for x0, y0, x1, y1 in rects]
        hit = [h for h in hit if h[2] > h[0] and h[3] > h[1]]
        if not hit:
            continue
        old = ed.read(starts[k], ends[k] - starts[k])
        if k + 1 < n_int and not (0xD0 <= ed.read(ends[k], 2)[1] <= 0xD7):
            raise DeidError(f"NDPI IFD {ifd}: MCU start {k + 1} is not after a restart marker",
                            str(ed.path))
        standalone = b"\xff\xd8" + tables + bytes(sof) + info["sos"] + old.rstrip(b"\xff") + b"\xff\xd9"
        new_full, _ = redact_jpeg_dct(standalone, None, hit, photometric)
        segs = _jpeg_markers(new_full)
        new_dht = _split_tables(_dht_payloads(new_full), "dht")
        sos = [(s, e) for m, s, e in segs if m == 0xDA][0]
        if not new_dht <= std_dht or _sos_selectors(new_full[sos[0]:sos[1]]) != sel:
            raise DeidError(f"NDPI IFD {ifd}: cannot re-encode with the level's Huffman tables",
                            str(ed.path))
        body = new_full[sos[1]:]
        body = body[:-2] if body.endswith(b"\xff\xd9") else body
        if len(body) > len(old):
            raise DeidError(f"NDPI IFD {ifd}: re-encoded restart interval {k} is larger than "
                            "the original", str(ed.path))
        ed.write_at(starts[k], body + b"\xff" * (len(old) - len(body)))
        touched += 1
        old_total += len(old)
        new_total += len(body)
    stats.tiles[ifd] = stats.tiles.get(ifd, 0) + touched
    stats.bytes_old[ifd] = stats.bytes_old.get(ifd, 0) + old_total
    stats.bytes_new[ifd] = stats.bytes_new.get(ifd, 0) + new_total
    return stats


# ------------------------------------------------------------------ OCR text regions
#: OCR engines for text on macro/thumbnail/low levels: name -> importable module
OCR_ENGINES: dict[str, str] = {"rapidocr": "rapidocr_onnxruntime"}
_ocr_cache: dict[str, object] = {}


def ocr_is_available(engine: str) -> bool:
    """Whether the OCR ``engine`` can be imported (weights ship inside its wheel)."""
    import importlib.util

    mod = OCR_ENGINES.get(engine)
    return mod is not None and importlib.util.find_spec(mod) is not None


def find_text_boxes(img: np.ndarray, engine: str = "rapidocr", *, margin: int = 4,
                    min_score: float = 0.3) -> list[tuple[int, int, int, int]]:
    """Boxes ``(x0, y0, x1, y1)`` around text found by OCR in an RGB image."""
    from pixeldeid.errors import MissingDependencyError

    if engine not in OCR_ENGINES:
        raise DeidError(f"unknown OCR engine {engine!r} (known: {', '.join(OCR_ENGINES)})")
    if not ocr_is_available(engine):
        raise MissingDependencyError(f"OCR engine {engine}", "ocr", OCR_ENGINES[engine])
    if engine not in _ocr_cache:
        from rapidocr_onnxruntime import RapidOCR

        _ocr_cache[engine] = RapidOCR()
    ocr = _ocr_cache[engine]
    img = np.ascontiguousarray(img[..., :3] if img.ndim == 3 else np.stack([img] * 3, -1))
    result, _ = ocr(img)  # type: ignore[operator]
    h, w = img.shape[:2]
    boxes = []
    for quad, _text, score in result or []:
        if float(score) < min_score:
            continue
        xs = [p[0] for p in quad]
        ys = [p[1] for p in quad]
        boxes.append((max(0, int(min(xs)) - margin), max(0, int(min(ys)) - margin),
                      min(w, int(np.ceil(max(xs))) + margin), min(h, int(np.ceil(max(ys))) + margin)))
    return boxes


def read_ifd_image(path, ifd: int) -> np.ndarray:
    """Decode a whole (small) IFD with tifffile."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return tf.pages[ifd].asarray()


def ocr_level0_regions(path, ifd: int, level0: tuple[int, int], engine: str
                       ) -> list[tuple[int, int, int, int]]:
    """Text found in IFD ``ifd`` (thumbnail or a low level), as level-0 ``(x, y, w, h)``."""
    img = read_ifd_image(path, ifd)
    h, w = img.shape[:2]
    sy, sx = level0[0] / h, level0[1] / w
    out = []
    for x0, y0, x1, y1 in find_text_boxes(img, engine):
        X0, Y0 = int(np.floor(x0 * sx)), int(np.floor(y0 * sy))
        out.append((X0, Y0, int(np.ceil(x1 * sx)) - X0, int(np.ceil(y1 * sy)) - Y0))
    return out


# ------------------------------------------------------------------ kept macro images
def macro_redaction_rects(shape: tuple[int, int], label_fraction: float, options,
                          image: np.ndarray | Callable[[], np.ndarray] | None = None, *,
                          ocr: bool = True) -> list[tuple[int, int, int, int]]:
    """Rectangles ``(x0, y0, x1, y1)`` to black out on a kept macro (overview) image.

    ``options.macro == "redact"``: the label end, the left ``label_fraction`` of the
    width (each vendor module states its own fraction); ``options.ocr`` (and ``ocr``):
    the boxes of text the engine finds anywhere on the macro (``image``: the decoded
    macro, or a function returning it, called only when OCR runs). Every vendor uses this,
    so a kept macro is redacted the same way whatever its container.
    """
    h, w = shape
    rects = [(0, 0, int(round(w * label_fraction)), h)] if options.macro == "redact" else []
    if options.ocr and ocr:
        img = image() if callable(image) else image
        if img is None:
            raise DeidError("OCR of the macro asked but no image to read")
        rects += find_text_boxes(np.asarray(img), options.ocr)
    return rects


def macro_status(options) -> str:
    """The report's macro state for a macro kept under ``options``."""
    return "redacted" if options.macro == "redact" or options.ocr else "kept"


def redact_macro_ifd(ed: TiffEditor, ifd: int, label_fraction: float, options, *,
                     ocr: bool = True, stats: RedactStats | None = None) -> RedactStats:
    """Black out the label end and OCR text of a macro stored in IFD ``ifd``, tile by tile
    (:func:`macro_redaction_rects`, :func:`redact_ifd`: the other tiles/strips stay
    byte-identical)."""
    def image() -> np.ndarray:
        ed.flush()
        return read_ifd_image(ed.path, ifd)

    rects = macro_redaction_rects(ed.ifd(ifd).shape, label_fraction, options, image, ocr=ocr)
    return redact_ifd(ed, ifd, rects, stats)


def redact_macro_image(img: np.ndarray, label_fraction: float, options
                       ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A decoded macro with its label end and OCR text blacked out, and the rectangles."""
    out = np.array(img, copy=True)
    rects = macro_redaction_rects(out.shape[:2], label_fraction, options, out)
    for x0, y0, x1, y1 in rects:
        out[y0:y1, x0:x1] = 0
    return out, rects


def redact_macro_jpeg(data: bytes, label_fraction: float, options) -> bytes:
    """A standalone JPEG macro (Philips base64 MACROIMAGE) with its label end and OCR text
    blacked out: in the DCT domain when ``jpeglib`` is there (every other 8x8 block keeps
    its coefficients), else decoded and re-encoded at the quality of its own tables."""
    img = np.asarray(imagecodecs.jpeg8_decode(data))
    rects = macro_redaction_rects(img.shape[:2], label_fraction, options, img)
    if not rects:
        return data
    if _have_jpeglib():
        new, _ = redact_jpeg_dct(data, None, rects, None)
        return new
    out = np.array(img, copy=True)
    for x0, y0, x1, y1 in rects:
        out[y0:y1, x0:x1] = 0
    q = jpeg_quality_of(data) or 90
    return bytes(imagecodecs.jpeg8_encode(out, level=q))
