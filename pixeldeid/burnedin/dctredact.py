"""JPEG baseline redaction in the DCT domain (no generation loss).

Each frame that a box touches is read as quantised DCT coefficients with ``jpeglib``;
every MCU (8x8 blocks per component, 16x16 / 16x8 luma pixels with 4:2:0 / 4:2:2 chroma
subsampling) that intersects a box is set to black: the DC coefficient that decodes to 0
after the level shift for luma (and for every component of RGB-coded JPEG), 0 (neutral) for
chroma, all AC coefficients 0. Every other block keeps bit-identical coefficients, the
quantisation tables stay. The rewritten frame keeps the original's header segments (APPn,
COM, DQT, SOF; as the header core left them) with new Huffman tables (optimised) and scan.
Frames without boxes keep their bytes.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import re
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from pixeldeid.burnedin.boxes import TextBox
from pixeldeid.burnedin.frames import PixelFrames, set_encapsulated_frames
from pixeldeid.errors import InputError, MissingDependencyError
from pixeldeid.jpegfiles import jpeglib_files

__all__ = ["supports", "redact_jpeg_dataset", "redact_jpeg_frame", "JpegHeader", "parse_header",
           "is_available"]

logger = logging.getLogger(__name__)

_STANDALONE = {0xD8, 0x01} | set(range(0xD0, 0xD8))
_SOF_DCT_8BIT = {0xC0, 0xC1}  # baseline, extended sequential Huffman


def is_available() -> bool:
    """Whether ``jpeglib`` can be imported."""
    try:
        import jpeglib  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class JpegHeader:
    """The segments of a JPEG stream before its first scan, and the scan itself."""

    segments: list[tuple[int, bytes]]    # (marker, whole segment bytes incl. marker) before SOS
    scan: bytes                          # from the SOS marker to the end
    sof_marker: int
    precision: int
    height: int
    width: int
    components: list[tuple[int, int, int, int]]  # (id, h, v, tq)

    def app(self, marker: int) -> list[bytes]:
        return [seg[4:] for m, seg in self.segments if m == marker]


def parse_header(data: bytes) -> JpegHeader:
    """Split a JPEG stream into header segments and the scan; read the frame header.

    Raises
    ------
    InputError
        Not a JPEG stream, truncated segments, no SOF or no SOS.
    """
    if data[:2] != b"\xff\xd8":
        raise InputError("JPEG frame does not start with SOI")
    pos, segments, sof = 2, [], None
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) \
                and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(data) or data[pos] != 0xFF:
            raise InputError(f"JPEG frame: no marker at byte {pos} before the scan")
        marker = data[pos + 1]
        if marker in _STANDALONE:
            segments.append((marker, data[pos:pos + 2]))
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if length < 2 or pos + 2 + length > len(data):
            raise InputError(f"JPEG frame: segment 0xFF{marker:02X} runs past the end")
        seg = data[pos:pos + 2 + length]
        if marker == 0xDA:
            scan = data[pos:]
            break
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7:
            sof = (marker, seg)
        segments.append((marker, seg))
        pos += 2 + length
    if sof is None:
        raise InputError("JPEG frame: no SOF segment")
    marker, seg = sof
    precision, height, width, nc = struct.unpack(">BHHB", seg[4:10])
    comps = []
    for k in range(nc):
        cid, hv, tq = seg[10 + 3 * k:13 + 3 * k]
        comps.append((cid, hv >> 4, hv & 15, tq))
    if len(comps) != nc or any(h < 1 or v < 1 for _, h, v, _ in comps):
        raise InputError("JPEG frame: bad SOF component list")
    return JpegHeader(segments, scan, marker, precision, height, width, comps)


def _first_frame(ds: Dataset, n_frames: int) -> bytes:
    from pydicom.encaps import generate_frames

    return next(generate_frames(ds.PixelData, number_of_frames=n_frames))


def supports(pf: PixelFrames) -> bool:
    """Whether the frames can be redacted in the DCT domain (8-bit Huffman sequential, jpeglib)."""
    if not is_available() or pf.bits_allocated != 8 or pf.samples not in (1, 3):
        return False
    try:
        head = parse_header(_first_frame(pf.ds, pf.n_frames))
    except (InputError, StopIteration, ValueError) as exc:
        logger.debug("no DCT redaction: %s", exc)
        return False
    return (head.sof_marker in _SOF_DCT_8BIT and head.precision == 8
            and len(head.components) == pf.samples
            and (head.height, head.width) == (pf.rows, pf.columns))


def _rgb_coded(head: JpegHeader, photometric: str) -> bool:
    """Whether the components are R, G, B (no colour transform), as DICOM decoders decide.

    A JFIF APP0 means YCbCr, an Adobe APP14 says by its transform flag; otherwise the
    Photometric Interpretation decides (pydicom's rule; libjpeg alone would go by the
    component identifiers). :func:`redact_jpeg_dataset` checks the guess on one frame.
    """
    if len(head.components) != 3:
        return False
    if any(p.startswith(b"JFIF\0") for p in head.app(0xE0)):
        return False
    adobe = [p for p in head.app(0xEE) if p.startswith(b"Adobe") and len(p) >= 12]
    if adobe:
        return adobe[0][11] == 0
    return photometric == "RGB"


def _mcu_ranges(box: TextBox, head: JpegHeader) -> list[tuple[int, int, int, int]]:
    """Per component, the block rows/columns [by0, by1, bx0, bx1) of the MCUs the box touches."""
    comps = head.components
    if len(comps) == 1:
        factors = [(1, 1)]
    else:
        factors = [(h, v) for _, h, v, _ in comps]
    hmax = max(h for h, _ in factors)
    vmax = max(v for _, v in factors)
    mw, mh = 8 * hmax, 8 * vmax
    mx0, mx1 = box.x0 // mw, math.ceil(box.x1 / mw)
    my0, my1 = box.y0 // mh, math.ceil(box.y1 / mh)
    return [(my0 * v, my1 * v, mx0 * h, mx1 * h) for h, v in factors]


def _segment_qt(head: JpegHeader) -> dict[int, np.ndarray]:
    tables = {}
    for m, seg in head.segments:
        if m != 0xDB:
            continue
        body, pos = seg[4:], 0
        while pos < len(body):
            pq, tq = body[pos] >> 4, body[pos] & 15
            size = 128 if pq else 64
            vals = np.frombuffer(body[pos + 1:pos + 1 + size], dtype=">u2" if pq else "u1")
            tables[tq] = vals.astype(np.int64)
            pos += 1 + size
    return tables


# libjpeg's warnings about damaged data (jerror.h JWRN_*); harmless ones (JFIF revision,
# thumbnail size) are not damage
_DAMAGE = re.compile(r"^(Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters"
                     r"|Inconsistent progression|Huffman table 0x[0-9a-f]+ was not defined)")


_LOCK = threading.Lock()


def _remove_leftovers(data: bytes, since: float) -> None:
    """Remove jpeglib's own temporary copies of ``data`` (left behind when libjpeg fails)."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), "tmp*.jpeg")):
        try:
            st = os.stat(path)
            if st.st_size == len(data) and st.st_mtime >= since - 2:
                with open(path, "rb") as fh:
                    same = fh.read() == data
                if same:
                    os.remove(path)
        except OSError:
            continue


@contextlib.contextmanager
def _libjpeg_damage() -> Iterator[list[str]]:
    """Collect libjpeg's damaged-data warnings (printed on the C stderr) meanwhile.

    Anything else written to the process stderr meanwhile (another thread's log) is
    written back after the block. One block at a time per process (fd 2 is shared).
    """
    out: list[str] = []
    fd = 2  # C stderr, whatever sys.stderr is now
    with _LOCK, tempfile.TemporaryFile() as sink:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()
        saved = os.dup(fd)
        os.dup2(sink.fileno(), fd)
        try:
            yield out
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            other = []
            for line in sink.read().decode("utf-8", "replace").splitlines():
                (out if _DAMAGE.match(line.strip()) else other).append(line)
            if any(x.strip() for x in other):
                os.write(fd, ("\n".join(other) + "\n").encode())


def redact_jpeg_frame(data: bytes, boxes: Sequence[TextBox], photometric: str = "",
                      tmpdir: str | None = None,
                      geometry: tuple[int, int, int] | None = None,
                      rgb: bool | None = None) -> tuple[bytes, int]:
    """Black out the MCUs that ``boxes`` touch in one JPEG frame; returns (bytes, changed blocks).

    The result keeps the original header segments except the Huffman tables and restart
    interval, which come with the new (optimised) scan. ``geometry`` (rows, columns,
    samples) is checked against the frame header before libjpeg sees the frame; a frame
    libjpeg warns about (corrupt or truncated data) is refused rather than repaired.
    ``rgb``: whether the three components are R, G, B (None: decided from the markers and
    ``photometric``).
    """
    try:
        import jpeglib
    except ImportError as exc:
        raise MissingDependencyError("JPEG DCT-domain redaction", "pixels", "jpeglib") from exc
    head = parse_header(data)
    if head.sof_marker not in _SOF_DCT_8BIT or head.precision != 8:
        raise InputError(f"JPEG frame SOF 0xFF{head.sof_marker:02X} with {head.precision}-bit "
                         "samples is not 8-bit Huffman sequential")
    if geometry is not None and (head.height, head.width, len(head.components)) != geometry:
        raise InputError(f"JPEG frame is {head.height}x{head.width}x{len(head.components)}, "
                         f"the dataset says {geometry[0]}x{geometry[1]}x{geometry[2]}")
    if not any(m == 0xDB for m, _ in head.segments):
        raise InputError("JPEG frame has no quantisation table")
    if not head.scan.rstrip(b"\0").endswith(b"\xff\xd9"):
        raise InputError("JPEG frame does not end with EOI (truncated?)")
    if rgb is None:
        rgb = _rgb_coded(head, photometric)
    qts = _segment_qt(head)
    if any(c[3] not in qts for c in head.components):
        raise InputError("JPEG frame refers to an undefined quantisation table")
    started = time.time()
    with jpeglib_files(data, tmpdir) as (src, dst):
        with _libjpeg_damage() as messages:
            try:
                jpeg = jpeglib.read_dct(src)
                names = ["Y", "Cb", "Cr"][:len(head.components)]
                arrays = [np.array(getattr(jpeg, n)) for n in names]
            except (OSError, RuntimeError, ValueError, TypeError) as exc:
                _remove_leftovers(data, started)
                raise InputError(f"libjpeg cannot read the JPEG frame: {exc}") from exc
        if messages:
            raise InputError(f"JPEG frame is damaged (libjpeg: {messages[0][:120]})")
        before = [a.copy() for a in arrays]
        for box in boxes:
            for k, (by0, by1, bx0, bx1) in enumerate(_mcu_ranges(box, head)):
                arr = arrays[k]
                region = arr[by0:min(by1, arr.shape[0]), bx0:min(bx1, arr.shape[1])]
                region[...] = 0
                if k == 0 or rgb:
                    q = int(qts[head.components[k][3]][0])
                    region[..., 0, 0] = -math.ceil(1024 / q)
        changed = sum(int(np.any(a != b, axis=(2, 3)).sum())
                      for a, b in zip(arrays, before, strict=True))
        for n, a in zip(names, arrays, strict=True):
            setattr(jpeg, n, a)
        with _libjpeg_damage() as messages:
            try:
                jpeg.write_dct(dst, flags=["+OPTIMIZE_CODING"])
            except (OSError, RuntimeError, ValueError, TypeError) as exc:
                _remove_leftovers(data, started)
                raise InputError(f"libjpeg cannot write the JPEG frame: {exc}") from exc
        if messages:
            raise InputError(f"JPEG frame rewrite failed (libjpeg: {messages[0][:120]})")
        with open(dst, "rb") as fh:
            written = fh.read()
    return _splice(head, parse_header(written)), changed


def _splice(orig: JpegHeader, new: JpegHeader) -> bytes:
    """The original header segments with the new Huffman tables, restart interval and scan."""
    if (new.precision, new.height, new.width) != (orig.precision, orig.height, orig.width) \
            or [c[1:3] for c in new.components] != [c[1:3] for c in orig.components]:
        raise InputError("JPEG frame geometry changed on rewriting")
    q_orig, q_new = _segment_qt(orig), _segment_qt(new)
    for co, cn in zip(orig.components, new.components, strict=True):
        if not np.array_equal(q_orig[co[3]], q_new[cn[3]]):
            raise InputError("JPEG quantisation table changed on rewriting")
    ids = {cn[0]: co[0] for co, cn in zip(orig.components, new.components, strict=True)}
    scan = bytearray(new.scan)
    ns = scan[4]
    for k in range(ns):
        if scan[5 + 2 * k] not in ids:
            raise InputError("rewritten JPEG scan names an unknown component")
        scan[5 + 2 * k] = ids[scan[5 + 2 * k]]
    keep = [seg for m, seg in orig.segments if m not in (0xC4, 0xDD, 0xD8)]
    tables = [seg for m, seg in new.segments if m in (0xC4, 0xDD)]
    return b"\xff\xd8" + b"".join(keep) + b"".join(tables) + bytes(scan)


def _looks_black(frame: bytes, boxes: Sequence[TextBox], pf: PixelFrames) -> bool:
    """Whether the box interiors of a rewritten frame decode (as pydicom shows them) to black.

    Two pixels of each box edge are left out: chroma upsampling may bring a neighbour's
    colour there.
    """
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    try:
        arr, _ = get_decoder(pf.transfer_syntax).as_array(
            encapsulate([frame], has_bot=False), rows=pf.rows, columns=pf.columns,
            samples_per_pixel=pf.samples, photometric_interpretation=pf.photometric,
            bits_allocated=8, bits_stored=8, pixel_representation=0, number_of_frames=1,
            planar_configuration=0, as_rgb=True)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad frame
        raise InputError(f"rewritten JPEG frame cannot be decoded: {exc}") from exc
    for b in boxes:
        inner = arr[b.y0 + 2:b.y1 - 2, b.x0 + 2:b.x1 - 2]
        if inner.size and int(inner.max()) > 16:
            return False
    return True


def redact_jpeg_dataset(ds: Dataset, pf: PixelFrames, boxes: Sequence[TextBox]):
    """Redact every frame that a box touches in the DCT domain; others keep their bytes.

    Returns a :class:`~pixeldeid.burnedin.redact.RedactReport` with method ``'dct'``.
    """
    from pydicom.encaps import generate_frames

    from pixeldeid.burnedin.redact import RedactReport, frames_touched

    ts = pf.transfer_syntax
    frames = list(generate_frames(ds.PixelData, number_of_frames=pf.n_frames))
    if len(frames) != pf.n_frames:
        raise InputError(f"{len(frames)} JPEG frames for NumberOfFrames {pf.n_frames}", pf.path)
    touched = frames_touched(boxes, pf.n_frames)
    changed = 0
    geometry = (pf.rows, pf.columns, pf.samples)
    rgb: bool | None = None
    with tempfile.TemporaryDirectory(prefix="pixeldeid-dct-") as tmp:
        for i in touched:
            mine = [b for b in boxes if b.frame is None or b.frame == i]
            try:
                if rgb is None and pf.samples == 3:
                    rgb = _rgb_coded(parse_header(frames[i]), pf.photometric)
                    new, n = redact_jpeg_frame(frames[i], mine, pf.photometric, tmp, geometry,
                                               rgb)
                    if not _looks_black(new, mine, pf):
                        # the colour model guessed from the markers is not the decoders' one
                        rgb = not rgb
                        new, n = redact_jpeg_frame(frames[i], mine, pf.photometric, tmp,
                                                   geometry, rgb)
                        if not _looks_black(new, mine, pf):
                            raise InputError("redacted blocks do not decode to black")
                        logger.info("JPEG components taken as %s (decoded check)",
                                    "RGB" if rgb else "YCbCr")
                else:
                    new, n = redact_jpeg_frame(frames[i], mine, pf.photometric, tmp, geometry,
                                               rgb)
            except InputError as exc:
                raise InputError(f"frame {i}: {exc.reason}", pf.path) from exc
            frames[i] = new
            changed += n
    set_encapsulated_frames(ds, frames)
    logger.debug("DCT redaction: %d block(s) on %d frame(s)", changed, len(touched))
    return RedactReport("dct", ts, ts, len(touched), len(boxes), changed)
