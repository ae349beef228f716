"""Generators of synthetic whole-slide images with planted identity, for tests and demos.

Each vendor module writes a file that openslide (openslide-bin) opens as that vendor and
returns the list of identifying strings it planted (``Synth.planted``), so a test can
assert that none survives de-identification anywhere in the output bytes.

Examples
--------
>>> from wsi.synth.aperio import make_aperio
>>> s = make_aperio("/tmp/a.svs")                # doctest: +SKIP
>>> s.planted[:2]                                # doctest: +SKIP
['Jane Q Doe', 'S24-001234']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import imagecodecs
import numpy as np

__all__ = ["Synth", "PATIENT", "ACCESSION", "OPERATOR", "SERIAL", "tissue", "text_image",
           "jpeg_tiles"]

PATIENT = "Jane Q Doe"
ACCESSION = "S24-001234"
OPERATOR = "jsmith_operator"
SERIAL = "SN-7788990"
BARCODE = "BC-445566778"


@dataclass
class Synth:
    """A generated slide: its path, what was planted, level-0 size and extra facts."""

    path: Path
    planted: list[str]
    size: tuple[int, int]  # (width, height) of level 0
    info: dict = field(default_factory=dict)


def tissue(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth pink/purple 'tissue' RGB image with some structure (compresses like one)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    blobs = np.zeros((h, w), np.float32)
    for _ in range(6):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.1, 0.3) * min(h, w)
        blobs += np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r)))
    blobs = np.clip(blobs, 0, 1)
    tex = (np.sin(x / 7.0) * np.cos(y / 5.0) + 1) * 10
    r_ = 240 - blobs * 60 - tex
    g_ = 235 - blobs * 120 - tex
    b_ = 240 - blobs * 40 - tex
    img = np.stack([r_, g_, b_], -1)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def text_image(h: int, w: int, lines: list[str], *, bg: str = "white", samples: int = 3) -> np.ndarray:
    """An image with ``lines`` of black text (a label, or the label part of a macro)."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(im)
    size = max(10, h // (len(lines) + 2))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover
        font = ImageFont.load_default()
    for i, line in enumerate(lines):
        draw.text((4, 4 + i * (size + 2)), line, fill="black", font=font)
    arr = np.asarray(im, dtype=np.uint8)
    return arr if samples == 3 else arr[..., :1]


def iter_tiles(img: np.ndarray, tile: int):
    """The ``tile``-square tiles of ``img`` in TIFF order (row by row), edges zero-padded."""
    h, w = img.shape[:2]
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            t = np.zeros((tile, tile, img.shape[2]), np.uint8)
            part = img[ty:ty + tile, tx:tx + tile]
            t[:part.shape[0], :part.shape[1]] = part
            yield t


def jpeg_tiles(img: np.ndarray, tile: int, quality: int = 80, subsampling=(2, 2)
               ) -> tuple[bytes, list[bytes]]:
    """Encode an image as abbreviated JPEG tiles sharing one JPEGTables stream."""
    from wsi.redact import split_jpeg_tables

    tables = None
    tiles = []
    for t in iter_tiles(img, tile):
        full = imagecodecs.jpeg8_encode(t, level=quality, subsampling=subsampling)
        tab, abbrev = split_jpeg_tables(full)
        tables = tables or tab
        tiles.append(abbrev)
    return tables or b"", tiles


def j2k_tiles(img: np.ndarray, tile: int) -> list[bytes]:
    """Lossy JPEG 2000 codestreams (PSNR 40 dB, about 1:10 on tissue, as scanners write) of
    the ``tile``-square tiles of ``img``."""
    return [imagecodecs.jpeg2k_encode(t, level=40, codecformat="J2K")
            for t in iter_tiles(img, tile)]
