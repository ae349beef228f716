"""OCR of output pixels where pixels were at risk (adapter over :mod:`pixeldeid.burnedin`).

The burned-in text package is optional here: every import is lazy, and when an engine
cannot be had the caller reports the file as "not OCR-verified" instead of passing it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Modalities whose pixels commonly carry burned-in text.
AT_RISK_MODALITIES = frozenset({"US", "SC", "OT", "XA", "NM", "ES", "XC", "GM", "RF", "DOC",
                                "IVUS", "OP", "SM"})


def pixels_at_risk(ds) -> bool:
    """Whether an output's pixel data may hold burned-in text (modality, SOP class,
    Burned In Annotation, slide label/overview images)."""
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return False
    modality = str(ds.get("Modality", "") or "").upper()
    if modality == "SM":
        itype = [str(v).upper() for v in (ds.get("ImageType") or [])]
        return bool({"LABEL", "OVERVIEW"} & set(itype))
    if modality in AT_RISK_MODALITIES:
        return True
    if str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES":
        return True
    from pydicom.uid import UID

    name = UID(str(ds.get("SOPClassUID", ""))).name
    return "Secondary Capture" in name or "Ultrasound" in name


def get_engine(name: str = "auto"):
    """The OCR engine ``name`` (cached by the burned-in package).

    Raises
    ------
    MissingDependencyError
        The burned-in text package or the engine is not installed.
    """
    from ..errors import MissingDependencyError

    try:
        from ..burnedin.ocr import get_engine as _get
    except ImportError as exc:
        raise MissingDependencyError("OCR verification", "ocr", "pixeldeid.burnedin.ocr") from exc
    return _get(name)


def frames_rgb(ds, indices: Sequence[int]) -> np.ndarray:
    """Frames as (n, rows, cols, 3) uint8 RGB for OCR.

    Uses ``pixeldeid.burnedin.frames.PixelFrames`` when present, else pydicom with a
    min-max window.
    """
    try:
        from ..burnedin.frames import PixelFrames

        return np.asarray(PixelFrames(ds).display(list(indices)))
    except ImportError:
        pass
    arr = np.asarray(ds.pixel_array)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if n == 1:
        arr = arr[None]
    arr = arr[list(indices)]
    if spp == 3 and str(ds.get("PhotometricInterpretation", "")).startswith("YBR"):
        from pydicom.pixels import convert_color_space

        arr = convert_color_space(arr, str(ds.PhotometricInterpretation), "RGB")
    if spp == 1:
        if "PALETTE" in str(ds.get("PhotometricInterpretation", "")):
            from pydicom.pixels import apply_color_lut

            return np.asarray(apply_color_lut(arr, ds)).astype(np.uint8)
        out = []
        for f in arr:
            f = f.astype(np.float32)
            lo, hi = float(f.min()), float(f.max())
            g = ((f - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
            if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
                g = 255 - g
            out.append(np.stack([g] * 3, axis=-1))
        return np.stack(out)
    return arr.astype(np.uint8)


def window_views(ds, frames: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    """Frames under the image's windows after the first (text a lung window shows, black
    under the first): every frame of ``frames`` for up to 3 frames, else the first one,
    as :mod:`pixeldeid.burnedin` reads them; none without that package."""
    try:
        from ..burnedin.frames import PixelFrames
    except ImportError:
        return []
    pf = PixelFrames(ds)
    which = list(frames) if len(frames) <= 3 else list(frames)[:1]
    return [(f"frame {f} under window {w + 1}", img) for w in pf.other_windows()
            for f, img in zip(which, pf.display(which, window=w), strict=True)]


#: Every frame of a cine up to this many is read (OCR costs about 0.2-0.5 s a frame on a CPU).
OCR_ALL_FRAMES = 32
#: At most this many frames of a longer cine are read: evenly spaced ones and the frames
#: where the cine analysis sees the overlay change.
OCR_MAX_FRAMES = 96


def frames_to_read(n_frames: int, extra: Sequence[int] = (), most: int = OCR_ALL_FRAMES,
                   changes: Sequence[int] = ()) -> list[int]:
    """Every frame of a cine of up to ``most`` frames; of a longer one ``most`` evenly
    spaced frames (first and last included) and the ``changes`` frames (where overlay text
    changes), at most :data:`OCR_MAX_FRAMES` in all; plus the frames named in ``extra``
    (redacted frames)."""
    if n_frames <= most:
        base = set(range(n_frames))
    else:
        base = {int(i) for i in np.linspace(0, n_frames - 1, most).round()}
        room = max(0, OCR_MAX_FRAMES - len(base))
        more = sorted({int(f) for f in changes if 0 <= int(f) < n_frames} - base)
        if len(more) > room:  # a clock ticking in every frame: evenly spaced among them
            more = [more[int(i)] for i in np.linspace(0, len(more) - 1, room).round()] if room else []
        base |= set(more)
    return sorted(base | {int(f) for f in extra if f is not None and 0 <= int(f) < n_frames})


def cine_change_frames(ds, n_frames: int) -> list[int] | None:
    """The frames of a cine where :func:`pixeldeid.burnedin.cine.analyse_cine`, comparing
    every frame, sees overlay text change or appear; None without that package or when the
    pixels do not decode (then no frame is known unchanged)."""
    try:
        from ..burnedin.cine import analyse_cine
        from ..burnedin.frames import PixelFrames
    except ImportError:
        return None
    try:
        return list(analyse_cine(PixelFrames(ds).display, n_frames).change_frames)
    except Exception as exc:  # noqa: BLE001 - undecodable: the caller reads a sample only
        logger.debug("cine analysis failed: %s", exc)
        return None


def coverage(read: Sequence[int], n_frames: int, changes: Sequence[int] | None) -> str:
    """How much of a cine OCR read, for the result ("40 of 200 frames read: ...")."""
    head = f"{len(read)} of {n_frames} frames read"
    if changes is None:
        return (f"{head} (evenly spaced; no cine analysis told which other frames show new "
                f"text): the others were not read")
    left = sorted(set(changes) - set(read))
    if left:
        return (f"{head} (evenly spaced, and {len(set(changes)) - len(left)} of the "
                f"{len(set(changes))} frames where the overlay changes): the others were not read")
    return (f"{head} (evenly spaced, and every frame where the cine analysis of all frames "
            f"saw the overlay change); the others were compared, not read")


class ClassifierError(RuntimeError):
    """The burned-in text classifier cannot run (its vocabulary missing or broken): the
    text read cannot be told safe, so the file is not OCR-verified."""


def classify(texts: Sequence[str], values, modality: str) -> list[bool]:
    """Whether each OCR text is identity per :mod:`pixeldeid.burnedin.classify` (when present).

    ``values`` are :class:`~pixeldeid.verify.identity.IdentityValue`; returns all False
    when the burned-in package is not installed (the caller also matches the terms itself).

    Raises
    ------
    ClassifierError
        The classifier is installed but cannot run (a wheel without its vocabulary
        passed a DOB and an MRN read in the pixels as clean).
    """
    try:
        from ..burnedin.classify import IdentityValues, Vocabulary, classify_text
    except ImportError:
        return [False] * len(texts)
    by = {"name": [], "id": [], "birth_date": [], "institution": [], "other": []}
    for v in values:
        key = {"accession": "id", "address": "other", "phone": "other"}.get(v.kind, v.kind)
        by.setdefault(key, []).append(v.value)
    try:
        ident = IdentityValues(names=by["name"], ids=by["id"], dates=by["birth_date"],
                               institutions=by["institution"], other=by["other"])
        vocab = Vocabulary.load(modality)
        return [classify_text(t, ident, vocab) == "identity" for t in texts]
    except Exception as exc:  # noqa: BLE001 - vocabulary missing or invalid: not verified
        raise ClassifierError(f"burned-in text classifier unusable: {exc}".splitlines()[0]) \
            from exc
