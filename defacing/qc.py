"""Quality-control renders: skin-surface views and outlined mid-slices (PNG, Pillow)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from pixeldeid.atomic import write_bytes_atomic


def _to_uint8(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    finite = a[np.isfinite(a)]
    if lo is None or hi is None:
        lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0))
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def surface_render(vol: np.ndarray, threshold: float, axis: int, spacing: float = 1.0) -> np.ndarray:
    """Shaded depth render of the skin surface seen along ``axis`` of an RAS array.

    ``vol`` is indexed ``[x (R), y (A), z (S)]`` with isotropic voxels. The ray enters
    from the positive end of ``axis`` (front = +A, side = +R). Returns a uint8 image
    with superior up.
    """
    inside = vol > threshold
    v = np.flip(inside, axis=axis)
    hit = v.any(axis=axis)
    depth = np.argmax(v, axis=axis).astype(np.float32) * spacing
    depth[~hit] = np.nan
    far = float(inside.shape[axis]) * spacing  # fixed scale: before/after renders compare
    gy, gx = np.gradient(np.nan_to_num(depth, nan=far))
    shade = 1.0 / np.sqrt(1.0 + gx ** 2 + gy ** 2)
    img = 0.35 * shade + 0.65 * (1.0 - np.nan_to_num(depth, nan=far) / far)
    img[~hit] = 0.0
    # remaining two axes: rows = S (up), cols = the other in-plane axis
    img = np.rot90(img)  # (a, z) -> z rows with superior at top after rot90
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _outline(mask2d: np.ndarray) -> np.ndarray:
    return mask2d & ~ndimage.binary_erosion(mask2d)


def mid_slices(vol: np.ndarray, removed: np.ndarray, brain: np.ndarray | None = None) -> Image.Image:
    """Sagittal, coronal and axial mid-slices (RAS array) with removed region outlined in red
    and the protected brain mask in green."""
    g = _to_uint8(vol)
    c = [s // 2 for s in vol.shape]
    views = []
    for ax in range(3):
        sl = [slice(None)] * 3
        sl[ax] = c[ax]
        if ax == 0 and removed.any():  # sagittal through the removed region's centre
            sl[ax] = int(np.round(np.argwhere(removed)[:, 0].mean()))
        gs = np.rot90(g[tuple(sl)])
        rgb = np.stack([gs] * 3, axis=-1)
        r = np.rot90(removed[tuple(sl)])
        rgb[_outline(r)] = (255, 40, 40)
        if brain is not None:
            b = np.rot90(brain[tuple(sl)])
            rgb[_outline(b)] = (40, 220, 40)
        views.append(Image.fromarray(rgb))
    w = sum(v.width for v in views)
    h = max(v.height for v in views)
    out = Image.new("RGB", (w, h))
    x = 0
    for v in views:
        out.paste(v, (x, 0))
        x += v.width
    return out


def side_by_side(*images: Image.Image, labels: tuple[str, ...] = ()) -> Image.Image:
    """Concatenate images horizontally with optional labels."""
    w = sum(i.width for i in images)
    h = max(i.height for i in images) + 14
    out = Image.new("RGB", (w, h))
    x = 0
    d = ImageDraw.Draw(out)
    for n, i in enumerate(images):
        out.paste(i.convert("RGB"), (x, 14))
        if n < len(labels):
            d.text((x + 2, 1), labels[n], fill=(255, 255, 0))
        x += i.width
    return out


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_qc(prefix: str | os.PathLike, before: np.ndarray, after: np.ndarray,
             removed: np.ndarray, brain: np.ndarray, threshold: float,
             metrics: dict) -> list[str]:
    """Write ``PREFIX_front.png``, ``PREFIX_side.png``, ``PREFIX_slices.png`` and
    ``PREFIX_metrics.json``; arrays are RAS-ordered on an isotropic grid. Returns paths."""
    prefix = str(prefix)
    paths = []
    for name, axis in (("front", 1), ("side", 0)):
        a = Image.fromarray(surface_render(before, threshold, axis))
        b = Image.fromarray(surface_render(after, threshold, axis))
        p = f"{prefix}_{name}.png"
        write_bytes_atomic(p, png_bytes(side_by_side(a, b, labels=("before", "after"))))
        paths.append(p)
    p = f"{prefix}_slices.png"
    write_bytes_atomic(p, png_bytes(mid_slices(before, removed, brain)))
    paths.append(p)
    p = f"{prefix}_metrics.json"
    write_bytes_atomic(p, json.dumps(metrics, indent=2, sort_keys=True).encode())
    paths.append(p)
    return paths
