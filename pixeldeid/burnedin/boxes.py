"""Text boxes: axis-aligned pixel rectangles with the text read in them and a label."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

LABELS = ("identity", "safe", "unknown")
SOURCES = ("ocr", "template", "us-regions")


@dataclass(frozen=True)
class TextBox:
    """A rectangle of a frame that holds (or may hold) burned-in text.

    Parameters
    ----------
    x0, y0, x1, y1 : int
        Pixel coordinates in the frame; ``x1`` and ``y1`` are exclusive.
    text : str
        The text read in the box ("" for template regions).
    confidence : float
        Reading confidence in [0, 1].
    frame : int or None
        Frame index the box was found in; None applies to every frame.
    label : str
        ``'identity'``, ``'safe'`` or ``'unknown'`` (set by :mod:`.classify`).
    source : str
        ``'ocr'``, ``'template'`` or ``'us-regions'``.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    text: str = ""
    confidence: float = 1.0
    frame: int | None = None
    label: str = "unknown"
    source: str = "ocr"

    def __repr__(self) -> str:  # never print the text: it may be identity
        return (f"TextBox({self.x0}, {self.y0}, {self.x1}, {self.y1}, frame={self.frame}, "
                f"label={self.label!r}, source={self.source!r}, chars={len(self.text)})")

    @property
    def width(self) -> int:
        return max(0, self.x1 - self.x0)

    @property
    def height(self) -> int:
        return max(0, self.y1 - self.y0)

    @property
    def area(self) -> int:
        return self.width * self.height

    def same_frames(self, other: TextBox) -> bool:
        """True when both boxes apply to at least one common frame."""
        return self.frame is None or other.frame is None or self.frame == other.frame

    def intersects(self, other: TextBox, gap: int = 0) -> bool:
        """True when the rectangles overlap on a common frame.

        With ``gap > 0`` also when at most ``gap`` empty pixels separate them.
        """
        g = gap + 1 if gap > 0 else 0
        return (self.same_frames(other)
                and self.x0 < other.x1 + g and other.x0 < self.x1 + g
                and self.y0 < other.y1 + g and other.y0 < self.y1 + g)

    def padded(self, px: int, rows: int | None = None, cols: int | None = None) -> TextBox:
        """The box grown by ``px`` pixels on each side, clipped to ``rows`` x ``cols``."""
        x0, y0, x1, y1 = self.x0 - px, self.y0 - px, self.x1 + px, self.y1 + px
        return self.with_(**clip_coords(x0, y0, x1, y1, rows, cols))

    def clipped(self, rows: int, cols: int) -> TextBox:
        """The box clipped to a ``rows`` x ``cols`` frame."""
        return self.with_(**clip_coords(self.x0, self.y0, self.x1, self.y1, rows, cols))

    def with_(self, **changes: object) -> TextBox:
        """A copy with some fields changed (:func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)


def clip_coords(x0: int, y0: int, x1: int, y1: int, rows: int | None,
                cols: int | None) -> dict[str, int]:
    """Coordinates clipped to ``[0, cols] x [0, rows]`` (None: no upper bound)."""
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = int(x1), int(y1)
    if cols is not None:
        x0, x1 = min(x0, cols), min(x1, cols)
    if rows is not None:
        y0, y1 = min(y0, rows), min(y1, rows)
    return {"x0": x0, "y0": y0, "x1": max(x0, x1), "y1": max(y0, y1)}


_RANK = {"identity": 2, "unknown": 1, "safe": 0}


def _union(a: TextBox, b: TextBox) -> TextBox:
    label = a.label if _RANK.get(a.label, 1) >= _RANK.get(b.label, 1) else b.label
    first, second = (a, b) if (a.y0, a.x0) <= (b.y0, b.x0) else (b, a)
    text = " ".join(t for t in (first.text, second.text) if t)
    source = a.source if a.source == b.source else "ocr" if "ocr" in (a.source, b.source) \
        else a.source
    return TextBox(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1),
                   text, min(a.confidence, b.confidence), a.frame, label, source)


def merge_boxes(boxes: Iterable[TextBox], gap: int = 2) -> list[TextBox]:
    """Union overlapping or near (within ``gap`` px) boxes of the same frame.

    Boxes with ``frame=None`` merge only with each other (they apply to every frame; a
    per-frame box inside one stays separate). The merged box keeps the most severe label
    (identity > unknown > safe) and the texts joined in reading order.
    """
    groups: dict[int | None, list[TextBox]] = {}
    for b in boxes:
        if b.area > 0:
            groups.setdefault(b.frame, []).append(b)
    out: list[TextBox] = []
    for frame in sorted(groups, key=lambda f: -1 if f is None else f):
        pending = sorted(groups[frame], key=lambda b: (b.y0, b.x0))
        changed = True
        while changed:
            changed = False
            merged: list[TextBox] = []
            for b in pending:
                for i, m in enumerate(merged):
                    if m.intersects(b, gap):
                        merged[i] = _union(m, b)
                        changed = True
                        break
                else:
                    merged.append(b)
            pending = merged
        out.extend(pending)
    return out


def boxes_to_json(boxes: Iterable[TextBox], *, with_text: bool = True) -> list[dict]:
    """JSON-able rows; ``with_text=False`` leaves out the text of identity/unknown boxes."""
    rows = []
    for b in boxes:
        row = dataclasses.asdict(b)
        if not with_text and b.label != "safe":
            row["text"] = ""
        rows.append(row)
    return rows


def boxes_from_json(rows: Iterable[dict]) -> list[TextBox]:
    """Boxes from :func:`boxes_to_json` rows (unknown keys are an error)."""
    out = []
    for r in rows:
        r = dict(r)
        for k in ("x0", "y0", "x1", "y1"):
            r[k] = int(r[k])
        if r.get("frame") is not None:
            r["frame"] = int(r["frame"])
        if "confidence" in r:
            r["confidence"] = float(r["confidence"])
        out.append(TextBox(**r))
    return out
