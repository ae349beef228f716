"""Redaction of compressed pixel data other than DCT-domain JPEG.

RLE Lossless, JPEG-LS lossless, JPEG 2000 lossless and JPEG lossless (process 14, written
with selection value 1 by imagecodecs) are decoded frame by frame, the frames with boxes redacted and
re-encoded losslessly in the same transfer syntax; each re-encoded frame is decoded again
and must equal the redacted pixels, and frames without boxes keep their bytes. Where no
encoder exists (12-bit JPEG, lossy JPEG-LS and JPEG 2000, HTJ2K, anything whose round trip fails) the whole image is decoded and written as
Explicit VR Little Endian: YBR converted to RGB, Planar Configuration 0, and the Lossy Image
Compression attributes kept (a lossy source stays recorded as lossy; no second lossy
generation is made).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from pixeldeid.burnedin.boxes import TextBox
from pixeldeid.burnedin.frames import PixelFrames, black_value, set_encapsulated_frames
from pixeldeid.errors import InputError

__all__ = ["redact_encapsulated", "LOSSLESS_REENCODE", "can_reencode"]

logger = logging.getLogger(__name__)

LOSSLESS_REENCODE = frozenset({str(RLELossless), str(JPEGLSLossless), str(JPEG2000Lossless),
                               str(JPEGLossless), str(JPEGLosslessSV1)})
_LJPEG = frozenset({str(JPEGLossless), str(JPEGLosslessSV1)})


class _NoRoundTrip(Exception):
    """Re-encoding is not possible or not lossless for this image."""


def can_reencode(pf: PixelFrames) -> bool:
    """Whether the frames can be re-encoded losslessly in their own transfer syntax."""
    ts = pf.transfer_syntax
    if ts not in LOSSLESS_REENCODE:
        return False
    if ts in _LJPEG:
        try:
            import imagecodecs
        except ImportError:
            return False
        return hasattr(imagecodecs, "jpeg8_encode") and 2 <= pf.bits_stored <= 16
    from pydicom.pixels import get_encoder

    try:
        return get_encoder(ts).is_available
    except NotImplementedError:
        return False


def redact_encapsulated(ds: Dataset, pf: PixelFrames, boxes: Sequence[TextBox], *,
                        device: str = "cpu"):
    """Redact compressed pixel data: lossless re-encoding where possible, else decompression.

    Returns a :class:`~pixeldeid.burnedin.redact.RedactReport` with method ``'reencoded'``
    or ``'decompressed'``.
    """
    if can_reencode(pf):
        try:
            return _reencode(ds, pf, boxes, device)
        except _NoRoundTrip as exc:
            logger.info("lossless re-encoding in %s not possible (%s); writing Explicit VR "
                        "Little Endian", pf.transfer_syntax, exc)
    return _decompress(ds, pf, boxes, device)


def _frame_view(pf: PixelFrames, photometric: str) -> PixelFrames:
    shim = copy.copy(pf)
    shim.photometric = photometric
    return shim


def _fill(pf: PixelFrames, arr: np.ndarray) -> int | tuple[int, ...]:
    fill = black_value(pf, arr if pf.signed and pf.photometric.startswith("MONO") else None)
    return fill if pf.samples > 1 else fill[0]


def _encode(ts: str, arr: np.ndarray, opts: dict) -> bytes:
    if ts in _LJPEG:  # process 14, selection value 1 (valid for both syntaxes)
        import imagecodecs

        data = np.ascontiguousarray(arr)
        if data.dtype.kind == "i":  # stored values, two's complement in BitsStored bits
            data = (data.astype(np.int64) & ((1 << opts["bits_stored"]) - 1)).astype(
                np.uint16 if opts["bits_allocated"] > 8 else np.uint8)
        return bytes(imagecodecs.jpeg8_encode(data, lossless=True, predictor=1,
                                              bitspersample=opts["bits_stored"]))
    from pydicom.pixels import get_encoder

    kwargs = dict(opts, number_of_frames=1)
    if ts == str(JPEG2000Lossless) and opts["photometric_interpretation"] in ("YBR_RCT", "RGB") \
            and opts["samples_per_pixel"] == 3:
        kwargs["use_mct"] = opts["photometric_interpretation"] == "YBR_RCT"
    return get_encoder(ts).encode(arr, **kwargs)


def _decode_bytes(ts: str, data: bytes, opts: dict) -> np.ndarray:
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    kwargs = dict(opts, number_of_frames=1)
    arr, _ = get_decoder(ts).as_array(encapsulate([data], has_bot=False), as_rgb=False,
                                      **kwargs)
    return arr


def _reencode(ds: Dataset, pf: PixelFrames, boxes: Sequence[TextBox], device: str):
    from pydicom.encaps import generate_frames
    from pydicom.pixels import get_decoder
    from pydicom.pixels.utils import as_pixel_options

    from pixeldeid.burnedin.redact import RedactReport, frames_touched, redact_frames

    ts = pf.transfer_syntax
    opts = as_pixel_options(ds)
    frames = list(generate_frames(ds.PixelData, number_of_frames=pf.n_frames))
    if len(frames) != pf.n_frames:
        raise InputError(f"{len(frames)} compressed frames for NumberOfFrames {pf.n_frames}",
                         pf.path)
    decoder = get_decoder(ts)
    touched = frames_touched(boxes, pf.n_frames)
    pf.check_frame_headers(touched)
    stored_all = None
    if pf.signed and pf.photometric.startswith("MONO"):
        stored_all = pf.decode(as_rgb=False)
    for i in touched:
        try:
            arr, meta = decoder.as_array(ds, index=i, as_rgb=False)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input
            raise InputError(f"frame {i} cannot be decoded: {exc}", pf.path) from exc
        arr = np.array(arr)
        shown = _frame_view(pf, str(meta.get("photometric_interpretation", pf.photometric)))
        fill = _fill(shown, stored_all if stored_all is not None else arr)
        mine = [b.with_(frame=None) for b in boxes if b.frame is None or b.frame == i]
        redact_frames(arr[None], mine, fill)
        try:
            data = _encode(ts, arr, opts)
            back = _decode_bytes(ts, data, opts)
        except Exception as exc:  # noqa: BLE001 - encoder/decoder refusal: fall back
            raise _NoRoundTrip(f"frame {i}: {type(exc).__name__}: {exc}") from exc
        if back.shape != arr.shape or not np.array_equal(back, arr):
            raise _NoRoundTrip(f"frame {i} does not decode to the redacted pixels")
        frames[i] = data
    set_encapsulated_frames(ds, frames)
    return RedactReport("reencoded", ts, ts, len(touched), len(boxes))


def _decompress(ds: Dataset, pf: PixelFrames, boxes: Sequence[TextBox], device: str):
    from pixeldeid.burnedin.redact import _redact_native

    ts = pf.transfer_syntax
    pf.check_frame_headers()
    try:
        ds.decompress(as_rgb=True, generate_instance_uid=False)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input
        raise InputError(f"pixel data in {ts} cannot be decoded: {exc}", pf.path) from exc
    for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if kw in ds:
            del ds[kw]
    if str(ds.file_meta.TransferSyntaxUID) != str(ExplicitVRLittleEndian):
        raise InputError(f"decompression left transfer syntax {ds.file_meta.TransferSyntaxUID}",
                         pf.path)
    native = PixelFrames(ds)
    report = _redact_native(ds, native, list(boxes), device)
    report.method = "decompressed"
    report.transfer_syntax_in = ts
    return report

