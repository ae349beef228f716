"""The burned-in text stage: find text in pixel data, redact it, verify, or refuse the file.

Examples
--------
>>> from pixeldeid.burnedin.stage import BurnedInStage, PixelSettings      # doctest: +SKIP
>>> stage = BurnedInStage(PixelSettings(policy="auto"))                        # doctest: +SKIP
>>> result = stage.process(ds, IdentityValues.from_dataset(ds), "in.dcm")      # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from ..errors import DeidError, InputError, MissingDependencyError, ProfileError
from .boxes import TextBox, boxes_to_json, merge_boxes
from .cine import analyse_cine, context_box, covered, read_regions, resolve_device
from .classify import IdentityValues
from .frames import PixelFrames, black_shown
from .redact import redact_dataset

logger = logging.getLogger(__name__)

POLICIES = ("off", "auto", "template", "phi-only", "all-text")
DEVICES = ("auto", "cpu", "cuda")
#: every frame of a cine is analysed; a cine of more frame pixels than this (about 6500
#: frames of 480 x 640) is quarantined rather than released with frames nobody looked at
MAX_ANALYSED_PIXELS = 2_000_000_000


@dataclass(frozen=True)
class PixelSettings:
    """Settings of the burned-in text stage.

    Parameters
    ----------
    policy : str
        ``off``, ``auto`` (templates where a signature matches, OCR for the rest, phi-only
        classification), ``template`` (templates and ultrasound regions only), ``phi-only``
        (OCR; keep safe annotations) or ``all-text`` (OCR; remove every text).
    ocr : str
        OCR engine name, ``auto`` or ``none``.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    templates_dir : str, optional
        A folder (or file) of user templates (YAML) besides the shipped ones.
    verify : bool
        OCR the redacted frames again and refuse the file when identity is still readable.
    verify_ocr : str, optional
        A second engine for the verification (default: the same engine).
    qc_dir : str, optional
        Write before/after PNG thumbnails with the boxes drawn here.
    """

    policy: str = "auto"
    ocr: str = "auto"
    device: str = "auto"
    templates_dir: str | None = None
    verify: bool = True
    verify_ocr: str | None = None
    qc_dir: str | None = None


@dataclass
class PixelResult:
    """What the stage did to one image (``to_json`` holds no identity text)."""

    boxes: list[TextBox] = field(default_factory=list)
    redacted: bool = False
    method: str = ""
    verified: bool = False
    frames_read: list[int] = field(default_factory=list)
    engine: str | None = None
    templates: list[str] = field(default_factory=list)
    qc: list[str] = field(default_factory=list)
    #: text boxes the verification read outside the redacted regions and could not
    #: classify, left in the pixels (``--pixels template`` redacts templates only)
    text_left: int = 0

    @property
    def clean(self) -> bool:
        """Whether OCR checked the written pixels and left no text it could not classify
        (what the Clean Pixel Data Option, code 113101, records)."""
        return self.verified and not self.text_left

    def to_json(self) -> dict:
        """JSON-able summary; the text of identity and unknown boxes is left out."""
        return {"boxes": boxes_to_json(self.boxes, with_text=False), "redacted": self.redacted,
                "method": self.method, "verified": self.verified,
                "text_left": self.text_left, "frames_read": list(self.frames_read),
                "engine": self.engine, "templates": list(self.templates), "qc": list(self.qc)}


# -- risk -----------------------------------------------------------------------------------
#: modalities whose images often carry burned-in text
RISKY_MODALITIES = frozenset({"US", "IVUS", "SC", "OT", "XA", "XC", "NM", "ES", "GM", "SM",
                              "DOC", "RF", "ECG"})
_RISKY_IMAGE_TYPES = frozenset({"SECONDARY", "SCREEN SAVE", "SCREENSHOT", "CAPTURE"})
#: classification policy applied to OCR boxes under each stage policy
_CLASSIFY_POLICY = {"auto": "phi-only", "phi-only": "phi-only", "all-text": "all-text",
                    "template": "phi-only"}
#: non-risky images (CT, MR slices ...) are read on frames downscaled to this long side
CHEAP_LONG_SIDE = 768
#: crops of changed overlay areas reach this many text heights left and right (the rest
#: of a line whose other part lies over the moving image)
CROP_X_MARGIN = 10.0
#: a cine location that changes is read first in at most this many of its frames; each
#: other change there is then read too unless it lies inside what is blacked out in every
#: frame or shows the very pixels of a frame read there (no change goes unread)
MAX_READS_PER_PLACE = 6
#: a redacted box counts as black when at most this fraction of it is brighter than 48
_BLACK_LEAK = 0.005


def at_risk(ds: Dataset) -> str | None:
    """Why ``ds`` is likely to carry burned-in text (modality, image type, flag), or None."""
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if modality in RISKY_MODALITIES:
        return f"modality {modality}"
    itype = ds.get("ImageType")
    values = [] if itype is None else ([itype] if isinstance(itype, str) else list(itype))
    hit = sorted({str(v).strip().upper() for v in values} & _RISKY_IMAGE_TYPES)
    if hit:
        return f"image type {hit[0]}"
    if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        return "Burned In Annotation YES"
    sop = str(ds.get("SOPClassUID", ""))
    if sop.startswith("1.2.840.10008.5.1.4.1.1.7"):   # the Secondary Capture family
        return "secondary capture"
    return None


def plausible_text(box: TextBox, rows: int, cols: int) -> bool:
    """False for OCR boxes that are not burned-in text: a lone glyph read into anatomy
    (a lung read as "O"), a short or safe reading taller than any overlay text.

    A box read as identity is always text (rotated, vertical or large text gets a tall
    axis-aligned box), and so is an unknown reading of at least 3 letters or digits.
    """
    if box.source != "ocr" or box.label == "identity":
        return True
    alnum = sum(c.isalnum() for c in box.text)
    if box.height > max(64, rows // 6) and (box.label == "safe" or alnum < 3):
        return False
    return alnum >= 2


def _pad(box: TextBox, rows: int, cols: int) -> TextBox:
    """An OCR box grown a little: detectors hug the glyphs."""
    px = max(2, box.height // 5)
    return box.padded(px, rows, cols)


def _to_box(b: TextBox, scale: float, rows: int, cols: int) -> TextBox:
    return b.with_(x0=int(b.x0 * scale), y0=int(b.y0 * scale),
                   x1=int(np.ceil(b.x1 * scale)), y1=int(np.ceil(b.y1 * scale))).clipped(rows, cols)


def read_frame(engine, image: np.ndarray, long_side: int | None = None) -> list[TextBox]:
    """OCR one frame, downscaled to ``long_side`` first when larger; boxes in frame pixels."""
    rows, cols = image.shape[:2]
    if long_side and max(rows, cols) > long_side:
        import cv2

        f = long_side / max(rows, cols)
        small = cv2.resize(image, (max(1, round(cols * f)), max(1, round(rows * f))),
                           interpolation=cv2.INTER_AREA)
        return [_to_box(b, 1 / f, rows, cols) for b in engine.read(small)]
    return engine.read(image)


def _iou(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _union(a: tuple, b: tuple) -> tuple:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _extend_at_edges(box: TextBox, crops: Sequence[tuple[int, tuple]], cols: int) -> TextBox:
    """A box read at the left/right edge of its crop may go on beyond it (text over the
    moving image is not part of the overlay): grow it that way (fail closed)."""
    grow = 3 * max(box.height, 8)
    x0, x1 = box.x0, box.x1
    for f, (cx0, cy0, cx1, cy1) in crops:
        if f != box.frame or not (cx0 <= box.x0 and box.x1 <= cx1 and cy0 <= box.y0
                                  and box.y1 <= cy1):
            continue
        if box.x0 - cx0 <= 2 and cx0 > 0:
            x0 = max(0, box.x0 - grow)
        if cx1 - box.x1 <= 2 and cx1 < cols:
            x1 = min(cols, box.x1 + grow)
        break
    return box.with_(x0=x0, x1=x1)


def _unseen(pf: PixelFrames, where: tuple, todo: list[tuple[int, tuple]],
            seen: list[tuple[int, tuple]]) -> list[tuple[int, tuple]]:
    """The crops of ``todo`` whose frame shows other pixels in ``where`` (the whole place)
    than every frame read there (a label blinking on and off need not be read again)."""
    if not todo:
        return []
    x0, y0, x1, y1 = where
    frames = sorted({f for f, _ in todo} | {f for f, _ in seen})
    area = {f: img[y0:y1, x0:x1] for f, img in zip(frames, pf.display(frames), strict=True)}
    known = [area[f] for f, _ in seen]
    out = []
    for f, c in todo:
        if not any(np.array_equal(area[f], k) for k in known):
            out.append((f, c))
            known.append(area[f])
    return out


def _hidden(cover: Sequence[TextBox], found: Sequence[TextBox], policy: str, rows: int,
            cols: int) -> list[TextBox]:
    """What will be blacked out in every frame: ``cover`` and the padded boxes of ``found``
    to redact that :func:`plausible_text` keeps (a box the stage drops hides nothing)."""
    from .classify import boxes_to_redact

    return list(cover) + [_pad(b, rows, cols) for b in boxes_to_redact(found, policy)
                          if plausible_text(b, rows, cols)]


def _blackout(image: np.ndarray, boxes: Sequence[TextBox]) -> np.ndarray:
    """A copy of ``image`` with ``boxes`` black (what OCR need not read again)."""
    if not boxes:
        return image
    out = image.copy()
    for b in boxes:
        out[b.y0:b.y1, b.x0:b.x1] = 0
    return out


def validate_settings(settings: PixelSettings) -> None:
    """Check ``settings`` without loading any engine.

    Raises
    ------
    ProfileError
        Unknown policy, engine or device (with "did you mean"), a missing or invalid
        templates folder or file.
    MissingDependencyError
        A named OCR engine (not ``auto``/``none``) that is not installed.
    """
    from .classify import check_policy
    from .ocr import ENGINES, resolve_engine_name

    check_policy(settings.policy)
    if settings.device not in DEVICES:
        close = difflib.get_close_matches(settings.device, DEVICES, n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ProfileError(f"unknown device {settings.device!r}{hint} "
                           f"(known: {', '.join(DEVICES)})")
    if settings.policy == "off":
        return
    for name in (settings.ocr, settings.verify_ocr):
        if name and name not in ("none", "auto"):
            real = resolve_engine_name(name, settings.device)
            cls = ENGINES[real]
            if not cls.is_available():
                raise MissingDependencyError(f"OCR engine {real!r}", cls.extra, cls.module)
    if settings.templates_dir is not None:
        if not Path(settings.templates_dir).exists():   # a folder or a file, as load_templates
            raise ProfileError("templates folder not found", settings.templates_dir)
        from .templates import load_templates

        load_templates([settings.templates_dir])   # invalid files: ProfileError


class BurnedInStage:
    """Find, redact and verify burned-in text of one image at a time (reusable, not thread-safe).

    Parameters
    ----------
    settings : PixelSettings

    Raises
    ------
    ProfileError
        Unknown policy, engine or device (with "did you mean").
    MissingDependencyError
        A named OCR engine (not ``auto``) that is not installed.
    """

    def __init__(self, settings: PixelSettings) -> None:
        validate_settings(settings)
        self.settings = settings
        self.device = resolve_device(settings.device)
        self._engines: dict[str, object | None] = {}
        self._templates: list | None = None

    # -- resources ------------------------------------------------------------------------
    def _engine(self, name: str | None):
        """The OCR engine ``name`` (None for ``none``, or ``auto`` with nothing installed)."""
        if not name or name == "none":
            return None
        if name not in self._engines:
            from .ocr import get_engine

            try:
                self._engines[name] = get_engine(name, self.settings.device)
            except MissingDependencyError:
                if name != "auto":
                    raise
                logger.warning("no OCR engine installed (pip install 'pixeldeid[ocr]'): images "
                               "at risk of burned-in text without a matching template will be "
                               "quarantined")
                self._engines[name] = None
        return self._engines[name]

    @property
    def engine(self):
        """The OCR engine of the first pass (None when OCR is off or unavailable)."""
        return self._engine(self.settings.ocr)

    def _flags(self, ds: Dataset) -> list[str]:
        """Names of the ``flag`` templates (text in unknown places) that match ``ds``."""
        return [t.name for t in self.templates() if t.action == "flag" and t.matches(ds)]

    def templates(self) -> list:
        """Shipped templates plus those of ``templates_dir`` (loaded once)."""
        if self._templates is None:
            from .templates import load_templates

            dirs = [self.settings.templates_dir] if self.settings.templates_dir else None
            self._templates = load_templates(dirs)
        return self._templates

    # -- the stage --------------------------------------------------------------------------
    def process(self, ds: Dataset, identity: IdentityValues, source: str | None = None
                ) -> PixelResult:
        """Redact the burned-in identity of ``ds`` in place and say what was done.

        Raises
        ------
        DeidError
            Identity still readable after redaction; an image at risk with neither OCR nor
            a matching template; pixel data that cannot be read or written back.
        """
        try:
            return self._process(ds, identity, source)
        except DeidError as exc:
            if source and not exc.path:
                raise type(exc)(exc.reason, source) from None
            raise

    def _process(self, ds: Dataset, identity: IdentityValues, source: str | None) -> PixelResult:
        from .classify import Vocabulary, boxes_to_redact

        s = self.settings
        if s.policy == "off":
            return PixelResult(method="off")
        floats = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if floats:
            # (pixels the stage cannot decode are never released unchecked)
            raise DeidError(f"pixel data: {floats[0]} cannot be checked for burned-in text",
                            source)
        if "PixelData" not in ds:
            return PixelResult(method="no-pixels")
        try:
            pf = PixelFrames(ds)
        except InputError as exc:
            raise DeidError(f"pixel data: {exc.reason}", source) from None
        risk = at_risk(ds)
        engine = None if s.policy == "template" else self.engine
        flags = self._flags(ds)
        if flags:
            # text in unknown places: OCR must read the image; no template covers it
            if engine is None:
                why = "--pixels template reads no text" if s.policy == "template" else \
                    "no OCR engine reads it (pip install 'pixeldeid[ocr]')"
                raise DeidError(f"pixels at risk of burned-in text: template {flags[0]!r} "
                                f"flags text in unknown places, which no template covers and "
                                f"{why}", source)
            risk = risk or f"template {flags[0]}"
        use_templates = s.policy in ("auto", "template") or engine is None
        tboxes: list[TextBox] = []
        names: list[str] = []
        if use_templates:
            from .templates import matching_templates, template_boxes

            matched = matching_templates(ds, self.templates())
            names = [t.name for t in matched]
            tboxes = template_boxes(ds, matched)
        if s.policy == "template" and not tboxes:
            from .usregions import us_region_boxes

            tboxes = us_region_boxes(ds) or []
            if tboxes:
                names = ["ultrasound-regions"]
        tboxes = [b.clipped(pf.rows, pf.columns) for b in tboxes]
        tboxes = [b for b in tboxes if b.area > 0]
        result = PixelResult(templates=names, engine=getattr(engine, "name", None))
        if engine is None and not tboxes:   # (a matched template without regions counts not)
            if risk:
                what = "no matching template" if s.policy == "template" else \
                    "no OCR engine (pip install 'pixeldeid[ocr]') and no matching template"
                raise DeidError(f"pixels at risk of burned-in text ({risk}): {what}", source)
            result.method = "unchecked"
            return result

        vocab = Vocabulary.load(str(ds.get("Modality", "") or "").strip().upper())
        cls_policy = _CLASSIFY_POLICY[s.policy]
        found: list[TextBox] = []
        if engine is not None:
            found = self._find_text(pf, engine, tboxes, identity, vocab, cls_policy, risk,
                                    result)
            kept = [b for b in found if plausible_text(b, pf.rows, pf.columns)]
            if len(kept) < len(found):
                logger.debug("%d OCR box(es) not taken for text (a lone glyph or too tall)",
                             len(found) - len(kept))
            found = kept
        to_redact = list(tboxes) + [_pad(b, pf.rows, pf.columns).with_(frame=None)
                                    for b in boxes_to_redact(found, cls_policy)]
        result.boxes = list(tboxes) + found
        before = pf.display([0])[0] if s.qc_dir else None
        if to_redact:
            try:
                report = redact_dataset(ds, to_redact, device=self.device)
            except InputError as exc:
                raise DeidError(f"pixel data cannot be redacted: {exc.reason}", source) from None
            result.redacted = report.boxes > 0
            result.method = report.method
        else:
            result.method = "none"
        verifier = self._engine(s.verify_ocr or s.ocr) if s.verify else None
        if verifier is not None:
            full = bool(s.verify_ocr) or engine is None
            # the frames read, and the last one (a redaction must hold to the end)
            check = sorted({*(result.frames_read or [0]), pf.n_frames - 1})
            left = self._verify(ds, to_redact, check, identity, vocab, verifier, full, source,
                                risk)
            result.verified = True
            result.text_left = len(left)
            if left:
                # read, not classified, and left by the policy: the header must not say NO
                logger.warning("%s: %d text box(es) that could not be classified left outside "
                               "the redacted regions (--pixels %s); Burned In Annotation "
                               "stays YES", source or "image", len(left), s.policy)
                ds.BurnedInAnnotation = "YES"
            elif risk or result.redacted or "BurnedInAnnotation" in ds:
                ds.BurnedInAnnotation = "NO"
        if s.qc_dir and before is not None:
            from .qc import write_thumbnails

            after = PixelFrames(ds).display([0])[0]
            result.qc = write_thumbnails(before, after, result.boxes, s.qc_dir,
                                         _qc_stem(ds, source))
        return result

    def _find_text(self, pf: PixelFrames, engine, cover: list[TextBox],
                   identity: IdentityValues, vocab, policy: str, risk: str | None,
                   result: PixelResult) -> list[TextBox]:
        """OCR outside ``cover``: the first frame whole, then only what changes (cines)."""
        from .classify import classify_boxes

        n = pf.n_frames
        # plain CT/MR frames are read downscaled; every frame of a multi-frame image is
        # examined all the same (a name in one slice of 60 was released)
        long_side = None if risk else CHEAP_LONG_SIDE

        def other_windows(frames: list[int], out: list[TextBox]) -> list[TextBox]:
            # the file's other windows too (a lung window shows text the first one hides):
            # what they find besides ``out`` in ``frames``
            more: list[TextBox] = []
            for w in pf.other_windows():
                for f, img in zip(frames, pf.display(frames, window=w), strict=True):
                    boxes = read_frame(engine, _blackout(img, cover), long_side)
                    more += classify_boxes(
                        [b.with_(frame=f) for b in boxes
                         if not any(b.intersects(o) for o in out + more if o.frame == f)],
                        identity, vocab)
            return more

        if n <= 3:
            result.frames_read = list(range(n))
            out: list[TextBox] = []
            for f, img in enumerate(pf.display()):
                boxes = read_frame(engine, _blackout(img, cover), long_side)
                out += classify_boxes([b.with_(frame=f) for b in boxes], identity, vocab)
            return out + other_windows(list(range(n)), out)

        if n * pf.rows * pf.columns > MAX_ANALYSED_PIXELS:
            raise DeidError(f"{n} frames of {pf.rows} x {pf.columns}: too many to examine "
                            "every frame for burned-in text")
        analysis = analyse_cine(pf.display, n, device=self.device)
        first = analysis.analysed[0]
        img0 = pf.display([first])[0]
        out = classify_boxes([b.with_(frame=first) for b in
                              read_frame(engine, _blackout(img0, cover), long_side)],
                             identity, vocab)
        # (text the first window hides is read in the first frame under the others: the
        # change analysis below sees the first window only)
        out += other_windows([first], out)
        # (the last frame needs no whole read: changes of the overlay are change regions
        # there as anywhere, and so is every strong thin change over the moving image in
        # the last transition, where no later frame can show that it holds)
        read = [first]
        # the change regions not already blacked out, grouped by place
        hidden = _hidden(cover, out, policy, pf.rows, pf.columns)
        places: list[tuple[tuple[int, int, int, int], list[tuple[int, tuple]]]] = []
        for f in analysis.change_frames:
            for r in analysis.change_regions.get(f, []):
                if covered(r, hidden):
                    continue
                ctx = context_box(r, pf.rows, pf.columns, x_margin=CROP_X_MARGIN)
                for k, (where, items) in enumerate(places):   # the same place changing again
                    if _iou(where, ctx) >= 0.3:
                        items.append((f, ctx))
                        places[k] = (_union(where, ctx), items)
                        break
                else:
                    places.append((ctx, [(f, ctx)]))
        first_pass: list[tuple[int, tuple]] = []
        rest: list[tuple[tuple, list[tuple[int, tuple]], list[tuple[int, tuple]]]] = []
        for where, items in places:
            if len(items) > MAX_READS_PER_PLACE:
                pick = set(np.linspace(0, len(items) - 1, MAX_READS_PER_PLACE).round()
                           .astype(int).tolist())
                rest.append((where, [items[i] for i in sorted(pick)],
                             [it for i, it in enumerate(items) if i not in pick]))
                items = [items[i] for i in sorted(pick)]
            first_pass.extend(items)
        wanted = self._read_changes(pf, engine, cover, first_pass, analysis, identity, vocab,
                                    out)
        if rest:
            # a place read in a sample of its frames only: every other change there must
            # lie inside what is blacked out in every frame, or show the very pixels of a
            # crop read there; the others are read too (no change goes unread)
            hidden = _hidden(cover, out, policy, pf.rows, pf.columns)
            todo = []
            for where, sampled, others in rest:
                left = [(f, c) for f, c in others
                        if not all(covered(r, hidden) for r in analysis.change_regions.get(f, [])
                                   if TextBox(*r).intersects(TextBox(*c)))]
                todo += _unseen(pf, where, left, sampled)
            wanted += self._read_changes(pf, engine, cover, todo, analysis, identity, vocab,
                                         out)
        read += [f for f, _ in wanted]
        result.frames_read = sorted(set(read))
        logger.debug("cine: %d frame(s), %d change frame(s), read 1 whole + %d crop(s)",
                     n, len(analysis.change_frames), len(wanted))
        return out

    def _read_changes(self, pf: PixelFrames, engine, cover: list[TextBox],
                      wanted: list[tuple[int, tuple]], analysis, identity: IdentityValues,
                      vocab, out: list[TextBox]) -> list[tuple[int, tuple]]:
        """OCR the crops ``wanted`` (frame, box) in mosaics; classified boxes that overlap a
        change of their frame are appended to ``out``. Returns ``wanted``."""
        from .classify import classify_boxes

        if not wanted:
            return []
        frames = sorted({f for f, _ in wanted})
        imgs = {f: _blackout(img, cover)
                for f, img in zip(frames, pf.display(frames), strict=True)}
        crops = [(f, c, imgs[f][c[1]:c[3], c[0]:c[2]]) for f, c in wanted]
        # only what overlaps a change: the unchanged rest of a crop was read whole in
        # the first frame (a line cut by the crop's edge would read as garbage)
        more = [_extend_at_edges(b, wanted, pf.columns)
                for b in read_regions(engine.read, crops)
                if any(b.intersects(TextBox(*r), gap=2)
                       for r in analysis.change_regions.get(b.frame, []))]
        out += classify_boxes(more, identity, vocab)
        return list(wanted)

    def _verify(self, ds: Dataset, redacted: list[TextBox], frames: list[int],
                identity: IdentityValues, vocab, engine, full: bool,
                source: str | None, risk: str | None = None) -> list[TextBox]:
        """OCR the written pixels again; identity still readable -> :class:`DeidError`.

        With ``full`` (no first OCR pass, or a second engine) the written pixels are
        searched as the first pass searches: the first frame whole and every change of a
        multi-frame image outside the redacted boxes. Returns the text that search read
        there and could not classify (``unknown``, taken for text): no first pass
        classified it, so nothing redacted it.
        """
        from .classify import classify_boxes

        pf = PixelFrames(ds)
        imgs = pf.display(frames)
        # (black shows lighter where the window starts below the lowest stored value)
        dark = max(48, black_shown(pf) + 16)
        for f, img in zip(frames, imgs, strict=True):
            for b in redacted:
                if b.frame not in (None, f):
                    continue
                region = img[b.y0:b.y1, b.x0:b.x1]
                if region.size and float((region.max(axis=-1) > dark).mean()) > _BLACK_LEAK:
                    raise DeidError(f"redacted box {b.x0},{b.y0}-{b.x1},{b.y1} is not black "
                                    f"in frame {f} after writing", source)
        found: list[TextBox] = []
        if full:
            cover = [b.with_(frame=None) for b in redacted if b.frame is None]
            found += self._find_text(pf, engine, cover, identity, vocab, "phi-only", risk,
                                     PixelResult())
        left = [b for b in found if b.label == "unknown"
                and plausible_text(b, pf.rows, pf.columns)]
        if redacted:
            rows, cols = pf.rows, pf.columns
            places = merge_boxes([b.with_(frame=None) for b in redacted], gap=8)
            crops = []
            for f, img in zip(frames, imgs, strict=True):
                for b in places:
                    c = context_box((b.x0, b.y0, b.x1, b.y1), rows, cols, x_margin=1.5,
                                    y_margin=0.5)
                    crops.append((f, c, img[c[1]:c[3], c[0]:c[2]]))
            found += read_regions(engine.read, crops)
        leaks = [b for b in classify_boxes(found, identity, vocab) if b.label == "identity"]
        if leaks:
            where = sorted({b.frame for b in leaks if b.frame is not None})
            raise DeidError(f"identity still readable after redaction: {len(leaks)} text box(es) "
                            f"in frame(s) {where[:5]}", source)
        return left


def _qc_stem(ds: Dataset, source: str | None) -> str:
    """A file name stem without identity: a hash of the source path or SOP Instance UID."""
    import hashlib

    key = source or str(ds.get("SOPInstanceUID", "")) or "image"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
