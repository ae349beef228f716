"""Multi-frame (cine) analysis: the static overlay, the frames worth reading, crop mosaics.

Burned-in text of a cine is an overlay that does not move while the image under it does.
:func:`analyse_cine` compares consecutive frames once (numpy on the CPU, torch on CUDA:
integer arithmetic, the same result on both) and finds

* the *overlay*: pixels that change in at most a small fraction of the frame transitions,
  in neighbourhoods that are themselves almost all such pixels (text, labels, a running
  clock; not the speckle of the image);
* the *change frames*: frames where overlay pixels change (a clock ticking, a label
  appearing, dim text too), where thin strokes of any colour, brighter or darker, appear
  over the moving image and hold for the next transitions (a name burned in mid-cine), or
  where thin strokes stand out from the frames around for a few frames only (a name shown
  briefly), with the boxes of the changed areas. Only solid colour-flow (Doppler) areas are
  left out.

Every strong thin change of the last transition counts as a step (no later frame can show
that it holds), so text appearing only in the last frame is a change too. The stage reads
the first frame whole and, in the change frames, only the changed areas not already
covered; :func:`read_regions` packs such crops from any frames into a few mosaic images so one OCR call reads many of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .boxes import TextBox

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]   # x0, y0, x1, y1 (exclusive)

#: a pixel "changes" between two frames when its brightest channel differs by more than this
CHANGE_TOLERANCE = 8
#: a change over the moving image (a step or a transient) worth reading differs by more
#: than this (text is high contrast; speckle rarely steps by this much)
STRONG_CHANGE = 64
#: an overlay change worth reading differs by more than this: the overlay is nearly still,
#: so dim text (grey on grey, dim grey on the black border) shows as a change there
OVERLAY_CHANGE = 24
#: a transient (text shown over the moving image for a few frames) is a frame brighter
#: (darker) by more than ``STRONG_CHANGE`` than the third brightest (darkest) of its
#: neighbours up to this many frames before and after (text lasting up to 3 frames shows in
#: at most 2 of them)
TRANSIENT_REACH = 3
#: ... in connected strokes of at least this many pixels
MIN_STROKE_PIXELS = 8
#: overlay pixels change in at most this fraction of the transitions
MAX_CHANGE_FRACTION = 0.15
#: ... and lie in a neighbourhood (``NEIGHBOURHOOD`` px square) with this fraction of them
NEIGHBOURHOOD = 7
DENSITY = 0.9
#: a change of fewer overlay pixels than this in a frame is noise
MIN_CHANGED_PIXELS = 6
#: a step (text appearing over the moving image) holds for this many transitions ...
STEADY = 3
#: ... over at least this many pixels
MIN_STEP_PIXELS = 24
#: steps count only where thinner than this (glyph strokes, not image areas)
STROKE = 7
#: frames decoded per chunk during the analysis
CHUNK = 32


@dataclass
class CineAnalysis:
    """Result of :func:`analyse_cine` (masks are ``(rows, cols)`` bool arrays)."""

    n_frames: int
    analysed: list[int]
    static: np.ndarray                 # never changed across the analysed frames
    overlay: np.ndarray                # changed in few transitions, in a dense neighbourhood
    change_counts: np.ndarray          # transitions in which each pixel changed (int32)
    change_frames: list[int] = field(default_factory=list)
    change_regions: dict[int, list[Box]] = field(default_factory=dict)

    def frames_to_read(self) -> list[int]:
        """First frame, last frame and every change frame."""
        if not self.analysed:
            return []
        return sorted({self.analysed[0], self.analysed[-1], *self.change_frames})


def resolve_device(device: str = "auto") -> str:
    """``'cuda'`` when asked (or ``auto``) and torch sees a GPU, else ``'cpu'``."""
    if device == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:
        if device == "cuda":
            logger.warning("device cuda asked but torch is not installed; using the CPU")
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        logger.warning("device cuda asked but torch sees no GPU; using the CPU")
    return "cpu"


def sample_indices(n_frames: int, max_frames: int | None = None) -> list[int]:
    """Every frame, or ``max_frames`` evenly spaced ones including the first and last."""
    if max_frames is None or n_frames <= max_frames:
        return list(range(n_frames))
    picks = np.linspace(0, n_frames - 1, max(2, max_frames)).round().astype(int)
    return sorted(set(int(i) for i in picks))


def _grey_numpy(chunk: np.ndarray) -> np.ndarray:
    """Per-pixel maximum over the channels (bright text of any colour stays bright)."""
    if chunk.ndim == 3:
        return chunk
    out = chunk[..., 0].copy()
    for c in range(1, chunk.shape[-1]):
        np.maximum(out, chunk[..., c], out=out)
    return out


@dataclass
class _Transitions:
    """Per transition (frame k -> k+1 of the analysed frames) packed bit masks, and per
    analysed frame the packed transient mask (None where empty)."""

    counts: np.ndarray
    strong: list[np.ndarray] = field(default_factory=list)
    mid: list[np.ndarray] = field(default_factory=list)
    low: list[np.ndarray] = field(default_factory=list)
    transient: list[np.ndarray | None] = field(default_factory=list)


class _TransientWindow:
    """Grey frames in a sliding window: each frame's transient mask once its later
    neighbours are in (see ``TRANSIENT_REACH``)."""

    def __init__(self, strong: int, reach: int = TRANSIENT_REACH) -> None:
        self.strong, self.reach = strong, reach
        self.frames: list[np.ndarray] = []
        self.first = 0          # analysed index of self.frames[0]
        self.done = 0           # analysed frames whose mask is out
        self.out: list[np.ndarray | None] = []

    def _mask(self, k: int, total: int) -> None:
        lo_k, hi_k = max(0, k - self.reach), min(total, k + self.reach + 1)
        nb = [self.frames[j - self.first] for j in range(lo_k, hi_k) if j != k]
        if len(nb) < 3:
            self.out.append(None)
            return
        stack = np.stack(nb)
        g = self.frames[k - self.first].astype(np.int16)
        # (candidates first: beyond the darkest/brightest neighbour at all; only those sorted)
        cand = ((g - stack.min(axis=0) > self.strong)
                | (stack.max(axis=0).astype(np.int16) - g > self.strong))
        if not cand.any():
            self.out.append(None)
            return
        ranked = np.sort(stack[:, cand], axis=0).astype(np.int16)
        gc = g[cand]
        mask = np.zeros(g.shape, bool)
        mask[cand] = (gc - ranked[-3] > self.strong) | (ranked[2] - gc > self.strong)
        self.out.append(np.packbits(mask, axis=None) if mask.any() else None)

    def push(self, grey: np.ndarray) -> None:
        """Add the next analysed frames (``(n, rows, cols)`` uint8)."""
        self.frames.extend(grey)
        total = self.first + len(self.frames)
        while self.done + self.reach < total:
            self._mask(self.done, 10 ** 12)
            self.done += 1
        drop = max(0, self.done - self.reach - self.first)
        del self.frames[:drop]
        self.first += drop

    def finish(self) -> list[np.ndarray | None]:
        """Masks of every analysed frame (the last ones with fewer later neighbours)."""
        total = self.first + len(self.frames)
        while self.done < total:
            self._mask(self.done, total)
            self.done += 1
        return self.out


def _transitions_numpy(load: Callable[[list[int]], np.ndarray], indices: list[int], tol: int,
                       strong: int, mid: int) -> _Transitions:
    counts = None
    out = _Transitions(np.zeros((0, 0), np.int32))
    window = _TransientWindow(strong)
    prev = None
    for start in range(0, len(indices), CHUNK):
        grey = _grey_numpy(np.asarray(load(indices[start:start + CHUNK])))
        window.push(grey)
        seq = np.concatenate([prev[None], grey]) if prev is not None else grey
        if len(seq) > 1:
            hi = np.maximum(seq[1:], seq[:-1])
            lo = np.minimum(seq[1:], seq[:-1])
            diff = hi - lo   # |a - b| without overflow (uint8)
            if counts is None:
                counts = np.zeros(diff.shape[1:], np.int32)
            low = diff > tol
            counts += low.sum(axis=0, dtype=np.int32)
            out.strong.extend(np.packbits(d > strong, axis=None) for d in diff)
            out.mid.extend(np.packbits(d > mid, axis=None) for d in diff)
            out.low.extend(np.packbits(d, axis=None) for d in low)
        prev = seq[-1]
    if counts is None:  # one frame
        shape = prev.shape[:2] if prev is not None else (0, 0)
        counts = np.zeros(shape, np.int32)
    out.counts = counts
    out.transient = window.finish()
    return out


def _transitions_torch(load: Callable[[list[int]], np.ndarray], indices: list[int], tol: int,
                       strong: int, mid: int, device: str) -> _Transitions:
    import torch

    counts = None
    out = _Transitions(np.zeros((0, 0), np.int32))
    window = _TransientWindow(strong)
    prev = None
    for start in range(0, len(indices), CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(load(indices[start:start + CHUNK])))
        chunk = chunk.to(device)
        grey = chunk.amax(dim=-1) if chunk.ndim == 4 else chunk
        window.push(grey.cpu().numpy())
        seq = torch.cat([prev[None], grey]) if prev is not None else grey
        if len(seq) > 1:
            diff = torch.maximum(seq[1:], seq[:-1]) - torch.minimum(seq[1:], seq[:-1])
            low = diff > tol
            c = low.sum(dim=0, dtype=torch.int32)
            counts = c if counts is None else counts + c
            out.strong.extend(np.packbits(d, axis=None) for d in (diff > strong).cpu().numpy())
            out.mid.extend(np.packbits(d, axis=None) for d in (diff > mid).cpu().numpy())
            out.low.extend(np.packbits(d, axis=None) for d in low.cpu().numpy())
        prev = seq[-1]
    out.transient = window.finish()
    if counts is None:
        shape = tuple(prev.shape[:2]) if prev is not None else (0, 0)
        out.counts = np.zeros(shape, np.int32)
    else:
        out.counts = counts.cpu().numpy().astype(np.int32)
    return out


def _dense(mask: np.ndarray, size: int, density: float) -> np.ndarray:
    """Pixels of ``mask`` whose ``size`` x ``size`` neighbourhood is at least ``density`` mask."""
    import cv2

    # integer box sums (exact): pixels of the mask in each size x size window
    sums = cv2.boxFilter(mask.astype(np.uint8), cv2.CV_32S, (size, size), normalize=False,
                         borderType=cv2.BORDER_REPLICATE)
    return mask & (sums >= int(np.ceil(density * size * size)))


def _flow_colours(image: np.ndarray) -> np.ndarray:
    """Pixels in the saturated reds and blues of colour flow (Doppler) maps (text may be
    in these colours too: see :func:`_flow_areas`)."""
    if image.ndim != 3 or image.shape[-1] != 3:
        return np.zeros(image.shape[:2], bool)
    r, g, b = (image[..., c].astype(np.int16) for c in range(3))
    red = (r > 60) & (g * 5 < r * 3) & (b * 5 < r * 3)
    blue = (b > 60) & (r * 5 < b * 3) & (g * 5 < b * 3)
    return red | blue


def _flow_areas(image: np.ndarray, width: int = STROKE) -> np.ndarray:
    """Colour-flow areas: connected pixels of flow colours with a solid core ``width`` px
    square (a Doppler map). Text strokes in red or blue have no such core and stay out."""
    import cv2

    flow = _flow_colours(image)
    if not flow.any():
        return flow
    m = flow.astype(np.uint8)
    core = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((width, width), np.uint8))
    if not core.any():
        return np.zeros_like(flow)
    _, lab = cv2.connectedComponents(m, connectivity=8)
    keep = np.unique(lab[core > 0])
    return np.isin(lab, keep[keep > 0])


def _thin(mask: np.ndarray, width: int = STROKE) -> np.ndarray:
    """The parts of ``mask`` thinner than ``width`` px (glyph strokes), not solid areas (a
    colour Doppler blob growing)."""
    import cv2

    m = mask.astype(np.uint8)
    solid = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((width, width), np.uint8))
    return mask & (solid == 0)


def _strokes(mask: np.ndarray, min_size: int = MIN_STROKE_PIXELS) -> np.ndarray:
    """The connected parts (8-neighbours) of ``mask`` of at least ``min_size`` pixels (glyph
    strokes, not scattered speckle that happens to differ)."""
    import cv2

    if not mask.any():
        return mask
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_size
    return keep[lab]


def changed_boxes(mask: np.ndarray, *, grow: tuple[int, int] = (4, 12),
                  min_pixels: int = 1) -> list[Box]:
    """Bounding boxes of the changed pixels, grouped when within ``grow`` = (rows, cols) px;
    groups of fewer than ``min_pixels`` changed pixels are left out."""
    from scipy.ndimage import find_objects, label, maximum_filter

    ys, xs = np.nonzero(mask)
    if not len(ys):
        return []
    gy, gx = grow
    rows, cols = mask.shape
    # work in the bounding area of the changes only
    oy, ox = max(0, int(ys.min()) - gy - 1), max(0, int(xs.min()) - gx - 1)
    ey, ex = min(rows, int(ys.max()) + gy + 2), min(cols, int(xs.max()) + gx + 2)
    sub = maximum_filter(mask[oy:ey, ox:ex].astype(np.uint8), size=(2 * gy + 1, 2 * gx + 1))
    lab, _ = label(sub)
    lab[~mask[oy:ey, ox:ex]] = 0   # tight boxes around the changed pixels of each group
    sizes = np.bincount(lab.ravel())
    out = []
    for i, sl in enumerate(find_objects(lab), start=1):
        if sl is None or sizes[i] < min_pixels:
            continue
        out.append((ox + sl[1].start, oy + sl[0].start, ox + sl[1].stop, oy + sl[0].stop))
    return out


def analyse_cine(load: Callable[[list[int]], np.ndarray], n_frames: int, *,
                 max_frames: int | None = None, device: str = "cpu",
                 tol: int = CHANGE_TOLERANCE, strong: int = STRONG_CHANGE,
                 overlay_change: int = OVERLAY_CHANGE, max_fraction: float = MAX_CHANGE_FRACTION,
                 min_pixels: int = MIN_CHANGED_PIXELS) -> CineAnalysis:
    """Find the static overlay and the frames where it changes.

    Parameters
    ----------
    load : callable
        ``load(indices) -> (n, rows, cols[, 3]) uint8`` display frames (e.g.
        :meth:`.frames.PixelFrames.display`).
    n_frames : int
        Frames in the image.
    max_frames : int, optional
        Analyse at most this many evenly spaced frames (default: every frame).
    device : str
        ``'cpu'`` (numpy) or ``'cuda'`` (torch); ``'torch-cpu'`` runs the torch code on the
        CPU (tests). The results are identical.
    """
    indices = sample_indices(n_frames, max_frames)
    if device == "cpu":
        tr = _transitions_numpy(load, indices, tol, strong, overlay_change)
    else:
        tr = _transitions_torch(load, indices, tol, strong, overlay_change,
                                "cpu" if device == "torch-cpu" else device)
    counts, packed, packed_low = tr.counts, tr.strong, tr.low
    rows, cols = counts.shape
    static = counts == 0
    n_trans = max(0, len(indices) - 1)
    limit = max(1, int(np.floor(max_fraction * n_trans)))
    overlay = _dense(counts <= limit, NEIGHBOURHOOD, DENSITY) if n_trans else static.copy()
    result = CineAnalysis(n_frames, indices, static, overlay, counts)
    if n_trans < 2:
        # too few frames to tell overlay from image: every frame is a change frame
        result.change_frames = indices[1:]
        result.change_regions = {i: [(0, 0, cols, rows)] for i in indices[1:]}
        return result
    moving = overlay & ~static

    def unpack(bits: np.ndarray) -> np.ndarray:
        return np.unpackbits(bits, count=rows * cols).reshape(rows, cols).astype(bool)

    for k, bits in enumerate(packed):
        diff = unpack(bits)
        regions: list[Box] = []
        # dim changes of the overlay (it is nearly still: no speckle there)
        hit = unpack(tr.mid[k]) & moving
        if hit.any():
            regions += changed_boxes(hit, min_pixels=min_pixels)
        # transients: thin strokes that stand out from the frames around (text shown over
        # the moving image for fewer frames than a step must hold)
        brief = tr.transient[k + 1]
        if brief is not None:
            brief = _strokes(_thin(unpack(brief)))
            if brief.any():
                # (colour flow pulsing in any of the frames compared is no text)
                near = indices[max(0, k + 1 - TRANSIENT_REACH):k + 2 + TRANSIENT_REACH]
                for image in np.asarray(load(list(near))):
                    brief &= ~_flow_areas(image)
                regions += changed_boxes(brief, min_pixels=MIN_STEP_PIXELS)
        if not diff.any() and not regions:
            continue
        # steps anywhere: a strong change that then holds for the next transitions (text
        # appearing over the moving image)
        # (in the last transitions, what holds to the end; in the very last one, every
        # strong change: no later frame can show it holds, so it counts, fail closed)
        later = range(k + 1, min(n_trans, k + 1 + STEADY))
        unsteady = np.zeros_like(diff)
        for j in later:
            unsteady |= unpack(packed_low[j])
        step = diff & ~unsteady & ~moving
        if step.any():
            step = _thin(step)
            if step.any():
                # any colour, brighter or darker (red or blue name text, dark text over
                # bright tissue), except inside solid colour-flow areas of either frame
                pair = np.asarray(load([indices[k], indices[k + 1]]))
                step &= ~_flow_areas(pair[0]) & ~_flow_areas(pair[1])
                regions += changed_boxes(step, min_pixels=MIN_STEP_PIXELS)
        if not regions:
            continue
        f = indices[k + 1]
        result.change_frames.append(f)
        result.change_regions[f] = sorted(set(regions))
    return result


# -- reading crops -----------------------------------------------------------------------
def context_box(box: Box, rows: int, cols: int, *, x_margin: float = 4.0,
                y_margin: float = 0.6, min_margin: int = 8, max_x_margin: int = 240) -> Box:
    """``box`` grown to give OCR the rest of its text line (a clock's unchanged digits);
    an area taller than a line gets ``min_margin`` only."""
    x0, y0, x1, y1 = box
    h = max(1, y1 - y0)
    if h > 48:   # not one text line: a small margin will do
        x_margin = y_margin = 0.0
    mx = min(max_x_margin, max(min_margin, int(x_margin * h)))
    my = max(min_margin // 2, int(y_margin * h))
    return (max(0, x0 - mx), max(0, y0 - my), min(cols, x1 + mx), min(rows, y1 + my))


def _pack(sizes: Sequence[tuple[int, int]], width: int, gap: int) -> list[tuple[int, int]]:
    """Shelf packing: the top-left corner of each (w, h) in a canvas ``width`` wide."""
    out = []
    x = y = shelf = 0
    for w, h in sizes:
        if x and x + w > width:
            y += shelf + gap
            x = shelf = 0
        out.append((x, y))
        x += w + gap
        shelf = max(shelf, h)
    return out


def read_regions(read: Callable[[np.ndarray], list[TextBox]],
                 crops: Sequence[tuple[int, Box, np.ndarray]], *, canvas_width: int = 960,
                 max_height: int = 1400, gap: int = 24) -> list[TextBox]:
    """OCR many crops with few calls: crops packed into mosaics, boxes mapped back.

    Parameters
    ----------
    read : callable
        ``read(image) -> list[TextBox]`` (an engine's :meth:`read`).
    crops : sequence of (frame, box, image)
        ``image`` is the ``box`` area of ``frame`` (``(h, w, 3)`` uint8).
    canvas_width : int
        The widest a mosaic gets (it is made near-square below that).

    Returns
    -------
    list of TextBox
        In frame coordinates, ``frame`` set, clipped to the crop they were read in.
    """
    if not crops:
        return []
    # a near-square canvas: engines scale the shorter side up to their detector size, so a
    # long flat strip would cost several times its area
    area = sum(int(c[2].shape[0] + gap) * int(c[2].shape[1] + gap) for c in crops)
    width = max(min(canvas_width, int(np.ceil(np.sqrt(area * 1.2)))),
                max(int(c[2].shape[1]) for c in crops))
    order = sorted(range(len(crops)), key=lambda i: -crops[i][2].shape[0])
    out: list[TextBox] = []
    batch: list[int] = []
    used = 0

    def flush(items: list[int]) -> None:
        if not items:
            return
        sizes = [(int(crops[i][2].shape[1]), int(crops[i][2].shape[0])) for i in items]
        corners = _pack(sizes, width, gap)
        height = max(y + h for (x, y), (w, h) in zip(corners, sizes, strict=True))
        canvas = np.zeros((height, width, 3), np.uint8)
        for i, (x, y), (w, h) in zip(items, corners, sizes, strict=True):
            canvas[y:y + h, x:x + w] = crops[i][2]
        for b in read(canvas):
            best, best_area = None, 0
            for i, (x, y), (w, h) in zip(items, corners, sizes, strict=True):
                ix = min(b.x1, x + w) - max(b.x0, x)
                iy = min(b.y1, y + h) - max(b.y0, y)
                if ix > 0 and iy > 0 and ix * iy > best_area:
                    best, best_area = (i, x, y, w, h), ix * iy
            if best is None:
                continue
            i, x, y, w, h = best
            frame, (cx0, cy0, _, _), _img = crops[i]
            x0, y0 = max(b.x0, x) - x + cx0, max(b.y0, y) - y + cy0
            x1, y1 = min(b.x1, x + w) - x + cx0, min(b.y1, y + h) - y + cy0
            out.append(b.with_(x0=x0, y0=y0, x1=x1, y1=y1, frame=frame))

    for i in order:
        h = int(crops[i][2].shape[0])
        if batch and used + h > max_height:
            flush(batch)
            batch, used = [], 0
        batch.append(i)
        used += h + gap   # an upper bound: shelves hold several crops side by side
    flush(batch)
    return out


def covered(box: Box, cover: Sequence[TextBox], pad: int = 2) -> bool:
    """True when ``box`` lies inside the union of ``cover`` (rectangles, frame ignored)."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return True
    inside = [c for c in cover if c.x0 - pad < x1 and x0 < c.x1 + pad
              and c.y0 - pad < y1 and y0 < c.y1 + pad]
    if not inside:
        return False
    m = np.zeros((y1 - y0, x1 - x0), bool)
    for c in inside:
        m[max(0, c.y0 - pad - y0):max(0, c.y1 + pad - y0),
          max(0, c.x0 - pad - x0):max(0, c.x1 + pad - x0)] = True
    return bool(m.all())
