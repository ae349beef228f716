"""PNG thumbnails for the QC report: frames with redaction boxes, cine strips, slide images."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import write_bytes_atomic

#: Outline colours of boxes by their label (identity/unknown were redacted; safe kept).
BOX_COLOURS = {"identity": (255, 40, 40), "unknown": (255, 160, 0), "safe": (40, 200, 40)}


def to_rgb(img: np.ndarray) -> np.ndarray:
    """Any 2-D or HxWx{1,3,4} array as uint8 RGB (min-max scaled when not uint8)."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype != np.uint8:
        f = a.astype(np.float32)
        lo, hi = float(np.nanmin(f)), float(np.nanmax(f))
        a = ((f - lo) / (hi - lo or 1.0) * 255).clip(0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return a


def thumbnail(img: np.ndarray | Image.Image, boxes: Iterable[dict] = (), *,
              max_side: int = 320) -> Image.Image:
    """A scaled-down RGB image with ``boxes`` (dicts with x0, y0, x1, y1, label) outlined."""
    im = img.convert("RGB") if isinstance(img, Image.Image) else Image.fromarray(to_rgb(img))
    scale = min(1.0, max_side / max(im.width, im.height, 1))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       Image.Resampling.BILINEAR)
    d = ImageDraw.Draw(im)
    for b in boxes:
        try:
            x0, y0, x1, y1 = (float(b[k]) * scale for k in ("x0", "y0", "x1", "y1"))
        except (KeyError, TypeError, ValueError):
            continue
        colour = BOX_COLOURS.get(str(b.get("label", "identity")), (255, 40, 40))
        d.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour, width=2)
    return im


def strip(images: Sequence[np.ndarray | Image.Image], *, height: int = 120) -> Image.Image:
    """A row of frames scaled to ``height`` pixels (a cine strip)."""
    ims = [i.convert("RGB") if isinstance(i, Image.Image) else Image.fromarray(to_rgb(i))
           for i in images]
    ims = [i.resize((max(1, round(i.width * height / max(i.height, 1))), height),
                    Image.Resampling.BILINEAR) for i in ims]
    out = Image.new("RGB", (sum(i.width for i in ims) + 2 * max(0, len(ims) - 1), height),
                    (30, 30, 30))
    x = 0
    for i in ims:
        out.paste(i, (x, 0))
        x += i.width + 2
    return out


def strip_frames(n_frames: int, most: int = 8) -> list[int]:
    """Evenly spaced frame indices for a strip (all when there are few)."""
    if n_frames <= most:
        return list(range(n_frames))
    return sorted({round(i * (n_frames - 1) / (most - 1)) for i in range(most)})


def save_png(img: Image.Image, path: str | os.PathLike) -> None:
    """Write ``img`` as PNG atomically."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    write_bytes_atomic(path, buf.getvalue())


def dicom_frames(path: str | os.PathLike, frames: Sequence[int]) -> tuple[np.ndarray, int]:
    """Frames of a DICOM file as (n, rows, cols, 3) uint8 RGB, and its number of frames."""
    import pydicom

    from ..verify.ocr import frames_rgb

    ds = pydicom.dcmread(path, force=True)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    frames = [f for f in frames if 0 <= f < n] or [0]
    return frames_rgb(ds, frames), n
