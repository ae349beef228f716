"""Pixel access for burned-in text work: frame geometry, display images, the raw frame layout.

:class:`PixelFrames` looks at a dataset's Image Pixel attributes without decoding
anything; :meth:`PixelFrames.display` decodes only the frames asked for and turns them into
8-bit RGB images for OCR (palette applied, YBR converted, MONOCHROME1 inverted, more than
8 bits windowed). :func:`native_view` gives a writable numpy view of uncompressed pixel
data laid out as ``(frames, rows, cols[, samples])`` for in-place redaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRBigEndian

from pixeldeid.errors import InputError

__all__ = ["PixelFrames", "NATIVE_SYNTAXES", "PHOTOMETRICS", "native_view", "black_value"]

logger = logging.getLogger(__name__)

JPEG_FAMILY = frozenset({
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
})
NATIVE_SYNTAXES = frozenset({
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
})
PHOTOMETRICS = frozenset({
    "MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR",
    "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420",
})


def _source(ds: Dataset) -> str | None:
    name = getattr(ds, "filename", None)
    return name if isinstance(name, str) else None


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax UID: file meta, else its original encoding, else EVRLE."""
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if ts is None:
        implicit, little = getattr(ds, "original_encoding", (None, None))
        if little is False:
            ts = ExplicitVRBigEndian
        else:
            ts = "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1"
    return UID(str(ts))


class PixelFrames:
    """The pixel data of a dataset, seen as frames (nothing is decoded on construction).

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        A dataset with Pixel Data.

    Raises
    ------
    InputError
        No Pixel Data, float/double pixel data, or Image Pixel attributes that do not fit.
    """

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        path = _source(ds)
        if "PixelData" not in ds:
            raise InputError("no Pixel Data (float or double pixel data is not supported)", path)
        try:
            self.rows = int(ds.Rows)
            self.columns = int(ds.Columns)
            self.samples = int(ds.get("SamplesPerPixel", 1) or 1)
            self.bits_allocated = int(ds.BitsAllocated)
            self.bits_stored = int(ds.get("BitsStored", self.bits_allocated) or self.bits_allocated)
            self.signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
            self.planar = int(ds.get("PlanarConfiguration", 0) or 0)
            nf = ds.get("NumberOfFrames", 1)
            self.n_frames = int(nf) if nf not in (None, "") else 1
        except (AttributeError, TypeError, ValueError) as exc:
            raise InputError(f"Image Pixel attributes unusable: {exc}", path) from exc
        self.photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        self.transfer_syntax = str(transfer_syntax(ds))
        if self.rows <= 0 or self.columns <= 0 or self.n_frames <= 0:
            raise InputError(f"empty image: Rows={self.rows} Columns={self.columns} "
                             f"NumberOfFrames={self.n_frames}", path)
        if self.photometric not in PHOTOMETRICS:
            raise InputError(f"PhotometricInterpretation {self.photometric!r} not supported", path)
        if self.samples not in (1, 3) or (self.samples == 3) != (
                self.photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")):
            raise InputError(f"SamplesPerPixel {self.samples} does not fit "
                             f"PhotometricInterpretation {self.photometric!r}", path)
        if self.bits_allocated not in (1, 8, 16, 32) or not 1 <= self.bits_stored <= \
                self.bits_allocated:
            raise InputError(f"BitsAllocated {self.bits_allocated} / BitsStored "
                             f"{self.bits_stored} not supported", path)
        self.path = path

    @property
    def native(self) -> bool:
        """Whether the pixel data is uncompressed (not encapsulated)."""
        return self.transfer_syntax in NATIVE_SYNTAXES

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return (self.rows, self.columns) if self.samples == 1 else \
            (self.rows, self.columns, self.samples)

    def _indices(self, indices: Sequence[int] | None) -> list[int]:
        if indices is None:
            return list(range(self.n_frames))
        out = [int(i) for i in indices]
        bad = [i for i in out if not 0 <= i < self.n_frames]
        if bad:
            raise InputError(f"frame index {bad[0]} out of range (0..{self.n_frames - 1})", self.path)
        return out

    def check_frame_headers(self, indices: Sequence[int] | None = None) -> None:
        """Refuse JPEG-family frames whose header disagrees with the dataset's geometry.

        Decoders can hang or exhaust memory on such frames (e.g. a zero height), so they
        are checked before any decoding.

        Raises
        ------
        InputError
            A frame that is missing, not a JPEG stream, or of another size/sample count.
        """
        if self.transfer_syntax not in JPEG_FAMILY:
            return
        from pydicom.encaps import generate_frames

        from pixeldeid.burnedin.dctredact import parse_header

        wanted = set(self._indices(indices))
        try:
            for i, frame in enumerate(generate_frames(self.ds.PixelData,
                                                      number_of_frames=self.n_frames)):
                if i in wanted:
                    head = parse_header(frame)
                    got = (head.height, head.width, len(head.components))
                    if got != (self.rows, self.columns, self.samples):
                        raise InputError(f"JPEG frame {i} is {got[0]}x{got[1]}x{got[2]}, the "
                                         f"dataset says {self.rows}x{self.columns}x"
                                         f"{self.samples}", self.path)
                    wanted.discard(i)
                if not wanted:
                    break
        except InputError as exc:
            raise InputError(exc.reason, self.path) from None
        except (ValueError, KeyError, StopIteration) as exc:
            raise InputError(f"encapsulated frames unreadable: {exc}", self.path) from exc
        if wanted:
            raise InputError(f"frame {min(wanted)} missing from the encapsulated data", self.path)

    def decode(self, indices: Sequence[int] | None = None, *, as_rgb: bool = True) -> np.ndarray:
        """Decoded stored values, ``(n, rows, cols[, 3])``; YBR converted to RGB when ``as_rgb``.

        Only the asked frames are decoded (one at a time), for native and encapsulated data.
        """
        from pydicom.pixels import get_decoder

        idx = self._indices(indices)
        self.check_frame_headers(idx)
        try:
            decoder = get_decoder(self.transfer_syntax)
        except NotImplementedError as exc:
            raise InputError(f"no decoder for transfer syntax {self.transfer_syntax}", self.path) \
                from exc
        out = None
        try:
            if indices is None and self.native:
                arr, _ = decoder.as_array(self.ds, as_rgb=as_rgb)
                return arr.reshape((self.n_frames, *arr.shape[-len(self.frame_shape):])) \
                    if self.n_frames == 1 else arr
            for k, i in enumerate(idx):
                arr, _ = decoder.as_array(self.ds, index=i, as_rgb=as_rgb)
                if out is None:
                    out = np.empty((len(idx), *arr.shape), dtype=arr.dtype)
                out[k] = arr
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoders fail in many ways on bad data
            raise InputError(f"pixel data cannot be decoded: {type(exc).__name__}: {exc}",
                             self.path) from exc
        if out is None:
            return np.empty((0, *self.frame_shape), dtype=np.uint8)
        return out

    def other_windows(self) -> list[int]:
        """Indices of the image's windows after the first, distinct from it, for a grey
        image of more than 8 bits (text shown by a second window, a lung window, may not
        show in the first): Window Center/Width at the top level or in the functional
        groups of an enhanced image, and the VOI LUTs of a VOI LUT Sequence (:func:`windows`).

        Raises
        ------
        InputError
            More than :data:`MAX_WINDOWS` distinct ones (each is read: a file with a
            hundred would cost minutes; not read in part).
        """
        if self.samples != 1 or self.photometric == "PALETTE COLOR" or (
                self.bits_stored <= 8 and not self.signed and self.bits_allocated == 8):
            return []
        given = windows(self.ds)
        out = [k for k in range(1, len(given)) if given[k] not in given[:k]]
        if len(out) >= MAX_WINDOWS:
            raise InputError(f"{len(out) + 1} windows (VOI): too many to read each for "
                             f"burned-in text (at most {MAX_WINDOWS})", _source(self.ds))
        return out

    def display(self, indices: Sequence[int] | None = None, window: int = 0) -> np.ndarray:
        """Frames as ``(n, rows, cols, 3)`` uint8 RGB for OCR and analysis.

        Palette colour is applied, YBR converted to RGB, MONOCHROME1 inverted; more than 8 bits
        are windowed with Window Center/Width number ``window`` (the first; after the modality
        LUT), else each frame's min..max.
        """
        arr = self.decode(indices)
        if self.photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            rgb = apply_color_lut(arr, self.ds).astype(np.float64)
            top = float(2 ** int(self.ds.RedPaletteColorLookupTableDescriptor[2]) - 1)
            return np.clip(np.rint(rgb * (255.0 / max(top, 1.0))), 0, 255).astype(np.uint8)
        if self.samples == 3:
            if arr.dtype == np.uint8:
                return np.ascontiguousarray(arr)
            top = float(2 ** self.bits_stored - 1)
            return np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        if self.bits_stored <= 8 and not self.signed and self.bits_allocated == 8:
            grey = arr.astype(np.uint8)
        else:
            grey = _window(arr, self.ds, window)
        if self.photometric == "MONOCHROME1":
            grey = 255 - grey
        return np.repeat(grey[..., None], 3, axis=-1)


#: The most windows (VOI) an image may have: each is read for burned-in text
MAX_WINDOWS = 8


def _first_item(ds: Dataset, *path: str) -> Dataset | None:
    """The first item at the end of the sequence ``path`` of ``ds``, or None."""
    for kw in path:
        seq = ds.get(kw)
        if not seq:
            return None
        ds = seq[0]
    return ds


def _groups(ds: Dataset, macro: str) -> Dataset | None:
    """The item of functional group ``macro`` (Frame VOI LUT, Pixel Value Transformation)
    of an enhanced image: shared, else the first frame's."""
    return (_first_item(ds, "SharedFunctionalGroupsSequence", macro)
            or _first_item(ds, "PerFrameFunctionalGroupsSequence", macro))


def windows(ds: Dataset) -> list[tuple[float, float] | tuple[str, int]]:
    """The image's windows (VOI) in order, readable ones only: the (center, width) pairs of
    Window Center/Width (top level, else an enhanced image's Frame VOI LUT functional
    group), then ``("lut", i)`` for each item of a VOI LUT Sequence."""
    def values(v) -> list:
        return list(v) if isinstance(v, Sequence) and not isinstance(v, str) else [v]

    src = ds if "WindowCenter" in ds else (_groups(ds, "FrameVOILUTSequence") or ds)
    out: list[tuple[float, float] | tuple[str, int]] = []
    for c, w in zip(values(src.get("WindowCenter")), values(src.get("WindowWidth")),
                    strict=False):
        try:
            out.append((float(c), float(w)))
        except (TypeError, ValueError):
            continue
    lut = ds.get("VOILUTSequence") or src.get("VOILUTSequence") or []
    out += [("lut", i) for i, item in enumerate(lut) if "LUTData" in item]
    return out


def _rescale(ds: Dataset) -> tuple[float, float]:
    """Rescale Slope and Intercept: top level, else an enhanced image's Pixel Value
    Transformation functional group."""
    src = ds if "RescaleSlope" in ds or "RescaleIntercept" in ds else (
        _groups(ds, "PixelValueTransformationSequence") or ds)
    try:
        return (float(src.get("RescaleSlope", 1) or 1),
                float(src.get("RescaleIntercept", 0) or 0))
    except (TypeError, ValueError):
        return 1.0, 0.0


def _window(arr: np.ndarray, ds: Dataset, which: int = 0) -> np.ndarray:
    """Grey frames (n, H, W) to uint8 with window ``which`` of :func:`windows` (the first),
    else per-frame min..max."""
    slope, intercept = _rescale(ds)
    values = arr.astype(np.float64) * slope + intercept
    out = np.empty(values.shape, dtype=np.uint8)
    given = windows(ds)
    view = given[which] if which < len(given) else None
    if view is not None and view[0] == "lut":
        return _lut_view(values, ds, int(view[1]))
    c, w = view if view is not None else (None, None)
    for k in range(values.shape[0]):
        v = values[k]
        if c is not None and w is not None and w >= 1:
            lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
        else:
            lo, hi = float(v.min()), float(v.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        out[k] = np.clip(np.rint((v - lo) * scale), 0, 255).astype(np.uint8)
    return out


def _lut_view(values: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """Frames (after the modality LUT) through item ``index`` of the VOI LUT Sequence
    (PS3.3 C.11.2: values below the first entry take the first, above the last the last),
    scaled from the LUT's output range to 0-255."""
    item = ds.get("VOILUTSequence")[index]
    desc = [int(v) for v in item.LUTDescriptor]
    n, first, bits = desc[0] or 65536, desc[1], desc[2]
    raw = item.LUTData
    lut = np.asarray(raw if not isinstance(raw, (bytes, bytearray))
                     else np.frombuffer(raw, dtype="<u2" if bits > 8 else np.uint8),
                     dtype=np.float64).ravel()[:n]
    if not lut.size:
        raise InputError("VOI LUT without data", _source(ds))
    if first >= 1 << 15 and bits <= 16:  # (a signed first value stored unsigned)
        first -= 1 << 16
    idx = np.clip(np.rint(values - first), 0, lut.size - 1).astype(np.intp)
    top = float(max(lut.max(), 1.0))
    return np.clip(np.rint(lut[idx] * (255.0 / top)), 0, 255).astype(np.uint8)


def black_shown(frames: PixelFrames, stored: np.ndarray | None = None) -> int:
    """The grey level (0-255) :meth:`PixelFrames.display` shows for :func:`black_value`: 0
    mostly; more where the first window starts below the lowest value the image can store
    (an unsigned CT with intercept -1024 under a lung window shows it as 55)."""
    if frames.samples != 1 or frames.photometric == "PALETTE COLOR" or (
            frames.bits_stored <= 8 and not frames.signed and frames.bits_allocated == 8):
        return 0
    black = np.full((1, 1, 1), black_value(frames, stored)[0], dtype=np.float64)
    grey = int(_window(black, frames.ds)[0, 0, 0])
    return 255 - grey if frames.photometric == "MONOCHROME1" else grey


def black_value(frames: PixelFrames, stored: np.ndarray | None = None) -> tuple[int, ...]:
    """The stored value(s) that show as black for the frames' photometric interpretation.

    MONOCHROME2: 0 (signed data: the smaller of 0 and the image minimum); MONOCHROME1: the
    largest stored value (signed: the larger of 0 and the image maximum); RGB: 0, 0, 0; YBR:
    0 and the neutral chroma (half range; YBR_RCT/ICT
    decode to RGB: 0, 0, 0); PALETTE COLOR: the index of the darkest entry.
    ``stored`` (the image's stored values) is needed only for signed monochrome data.
    """
    pi, bs = frames.photometric, frames.bits_stored
    if pi == "MONOCHROME2":
        if frames.signed:  # clamped: raw views may carry bits above BitsStored
            low = int(min(0, stored.min())) if stored is not None and stored.size else 0
            return (max(low, -(1 << (bs - 1))),)
        return (0,)
    if pi == "MONOCHROME1":
        if frames.signed:
            top = (1 << (bs - 1)) - 1
            high = int(max(0, stored.max())) if stored is not None and stored.size else top
            return (min(high, top),)
        return ((1 << bs) - 1,)
    if pi in ("RGB", "YBR_RCT", "YBR_ICT"):  # JPEG 2000 colour transforms decode to RGB
        return (0, 0, 0)
    if pi.startswith("YBR"):
        return (0, 1 << (bs - 1), 1 << (bs - 1))
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        desc = frames.ds.RedPaletteColorLookupTableDescriptor
        n = int(desc[0]) or 65536
        first = int(desc[1])
        top = (1 << frames.bits_stored) - 1
        candidates = np.arange(first, min(first + n, top + 1), dtype=np.int64)
        if candidates.size == 0:
            candidates = np.array([first], dtype=np.int64)
        dtype = np.uint8 if frames.bits_allocated == 8 else np.uint16
        rgb = apply_color_lut(candidates.astype(dtype), frames.ds).astype(np.float64)
        luma = rgb @ np.array([0.299, 0.587, 0.114])
        return (int(candidates[int(np.argmin(luma))]),)
    raise InputError(f"no black value for PhotometricInterpretation {pi!r}", frames.path)


def native_view(frames: PixelFrames, buf: bytearray | memoryview) -> np.ndarray:
    """A writable view of uncompressed pixel bytes as ``(n, rows, cols[, samples])``.

    Planar configuration 1 is seen through a transposed view (writes go to the right bytes).
    YBR_FULL_422 is seen as ``(n, rows, cols // 2, 4)`` pixel pairs ``Y1 Y2 Cb Cr``. Bytes
    after the last frame (odd-length padding) are left out of the view.

    Raises
    ------
    InputError
        1-bit data, or fewer bytes than the frames need.
    """
    if frames.bits_allocated == 1:
        raise InputError("1-bit pixel data cannot be redacted in place", frames.path)
    nbytes = frames.bits_allocated // 8
    order = ">" if frames.transfer_syntax == ExplicitVRBigEndian else "<"
    dtype = np.dtype(f"{order}{'i' if frames.signed else 'u'}{nbytes}")
    n, r, c, s = frames.n_frames, frames.rows, frames.columns, frames.samples
    if frames.photometric == "YBR_FULL_422":
        if c % 2 or nbytes != 1:
            raise InputError(f"native YBR_FULL_422 with Columns={c} and BitsAllocated="
                             f"{frames.bits_allocated} is not supported", frames.path)
        need = n * r * c * 2
    else:
        need = n * r * c * s * nbytes
    if len(buf) < need:
        raise InputError(f"Pixel Data has {len(buf)} bytes, {need} needed for {n} frame(s)",
                         frames.path)
    flat = np.frombuffer(buf, dtype=dtype, count=need // nbytes)
    if frames.photometric == "YBR_FULL_422":
        return flat.reshape(n, r, c // 2, 4)
    if s == 1:
        return flat.reshape(n, r, c)
    if frames.planar == 1:
        return flat.reshape(n, s, r, c).transpose(0, 2, 3, 1)
    return flat.reshape(n, r, c, s)


def set_encapsulated_frames(ds: Dataset, frames: list[bytes]) -> None:
    """Write encapsulated ``frames`` back into ``ds.PixelData`` the way the input had them.

    An Extended Offset Table is rebuilt when the input had one; else the Basic Offset
    Table is filled only when the input's was (an empty one stays empty).
    """
    import struct

    from pydicom.encaps import encapsulate, encapsulate_extended

    if "ExtendedOffsetTable" in ds:
        data, offsets, lengths = encapsulate_extended(frames)
        ds.PixelData = data
        ds.ExtendedOffsetTable = offsets
        ds.ExtendedOffsetTableLengths = lengths
    else:
        old = ds.PixelData
        has_bot = len(old) >= 8 and struct.unpack("<I", old[4:8])[0] > 0
        ds.PixelData = encapsulate(frames, has_bot=has_bot)
    ds["PixelData"].is_undefined_length = True
