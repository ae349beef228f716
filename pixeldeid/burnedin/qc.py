"""Quality-control thumbnails: the first frame before and after redaction, boxes drawn.

The *before* thumbnail shows the original burned-in text: the QC folder is for the data
holder's review, never for release.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_output
from .boxes import TextBox

#: thumbnails are at most this many pixels on their longer side
THUMB_SIDE = 512
_COLOURS = {"identity": (255, 40, 40), "unknown": (255, 160, 0), "safe": (40, 220, 40)}


def thumbnail(image: np.ndarray, boxes: Sequence[TextBox], side: int = THUMB_SIDE) -> bytes:
    """PNG bytes of ``image`` (RGB uint8) scaled to ``side`` with ``boxes`` outlined by label."""
    import io

    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(image[..., :3]), "RGB")
    f = min(1.0, side / max(im.size))
    if f < 1.0:
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))),
                       Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(im)
    for b in boxes:
        if b.frame not in (None, 0):
            continue
        draw.rectangle([b.x0 * f, b.y0 * f, max(b.x0, b.x1 - 1) * f, max(b.y0, b.y1 - 1) * f],
                       outline=_COLOURS.get(b.label, (255, 160, 0)))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def write_thumbnails(before: np.ndarray, after: np.ndarray, boxes: Sequence[TextBox],
                     qc_dir: str | Path, stem: str) -> list[str]:
    """Write ``STEM_before.png`` and ``STEM_after.png`` in ``qc_dir``; return their paths."""
    d = Path(qc_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name, img in (("before", before), ("after", after)):
        p = d / f"{stem}_{name}.png"
        with atomic_output(p) as fh:
            fh.write(thumbnail(img, boxes))
        out.append(str(p))
    return out
