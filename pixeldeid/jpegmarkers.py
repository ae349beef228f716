"""Remove metadata segments from JPEG and JPEG 2000 codestreams without decoding.

Compressed frames in encapsulated DICOM Pixel Data can carry identity outside the
DICOM header: EXIF/XMP APP1 segments (camera owner, artist, dates), COM comments,
IPTC APP13, JUMBF APP11, ICC profiles (APP2, whose description text can be set to
anything) and other application segments. ``strip_jpeg_metadata`` walks the marker
segments and drops them, copying the entropy-coded data verbatim (no decoding, no
quality loss).

Kept, because decoders need them for colour: the JFIF APP0 header (its thumbnail
removed) and the Adobe APP14 colour-transform marker (its 12 fixed bytes only). All
other APPn segments (APP0 other than JFIF such as the JFXX thumbnail, ICC_PROFILE and
every other APP2, APP1, APP3..APP15) and COM are removed, both in the header and
between the scans of progressive or multi-scan images. The other kept segments
(SOFn, DHT, DQT, DAC, DRI, DNL, DHP, EXP, SOS, JPEG-LS SOF55 and LSE preset
parameters) are copied only when their length is exactly what their fields describe,
so no extra bytes can ride in them. Markers whose content cannot be checked (the
reserved JPG marker FFC8, JPGn FFF0..FFFD other than JPEG-LS SOF55/LSE, JPEG-LS
mapping tables, RES and unknown markers) make the frame refused, never copied. Data
after EOI other than one padding byte is removed. The same marker syntax serves
every T.81 process (baseline, extended, spectral selection, full progression, lossless,
Huffman or arithmetic coded (SOF9-11, DAC), and hierarchical: DHP, EXP and the
differential frames SOF5-7/SOF13-15, with APPn/COM between frames removed too) and
JPEG-LS (SOF55, ITU-T T.87). Inside T.81 entropy-coded data an FF may only be followed
by 00, RSTn, fill or a marker: anything else (FF01..FFBF) is refused. Bytes without FF
between the last MCU and the next marker cannot be told from entropy-coded data without
decoding: they are copied, and the caller's residual search covers them.

JPEG 2000 (and HTJ2K) codestreams keep only the marker segments that ISO/IEC 15444-1,
-2 and -15 define, where they may be (main header or tile-part header), checked against
their fields where those fix the length; COM marker segments (FF64), which may hold free
text, are removed, and any other marker segment makes the codestream refused. In a JP2
file the JP2 header box is rebuilt with only the image description boxes (ihdr, bpcc,
colr, pclr, cmap, cdef, res with resc/resd), an ICC profile in colr gets its text
blanked (:func:`pixeldeid.iccprofile.blank_text`), text and vendor boxes are removed.

``strip_encapsulated`` applies this to every frame of encapsulated Pixel Data and
makes the Basic Offset Table either empty or exactly the offsets of the frames
(a table holding anything else is rebuilt); fragments after the end of the last
frame's codestream are removed. ``extended_offset_table`` computes the Extended
Offset Table of the result.
"""
from __future__ import annotations

import logging
import struct

from pixeldeid.errors import InputError
from pixeldeid.iccprofile import ICCProfileError, blank_text

__all__ = ["strip_jpeg_metadata", "strip_encapsulated", "frame_kind", "extended_offset_table"]

logger = logging.getLogger(__name__)

SOI, EOI, SOS, COM = 0xD8, 0xD9, 0xDA, 0xFE
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0..7
# markers that carry a segment and are copied once their length is checked against their
# fields (_check_kept): SOFn, DHT, DAC, DQT, DNL, DRI, DHP, EXP, SOF55 (JPEG-LS), LSE
# (JPEG-LS preset parameters). Not FFC8 (JPG, reserved) nor FFF0..FFFD otherwise (JPGn):
# their content is unknown, so a frame holding them is refused.
_SOF = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0),
        0xDE, 0xF7}  # SOFn, DHP, SOF55
_SEGMENTS_KEEP = {*_SOF, 0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xDF, 0xF8}
# APPn identifiers that may be named in the report (never echo unknown identifiers:
# a crafted segment could put a name where the identifier should be)
_KNOWN_IDS = (
    b"JFIF\0", b"JFXX\0", b"Exif\0", b"http://ns.adobe.com/xap/1.0/\0",
    b"http://ns.adobe.com/xmp/extension/\0", b"ICC_PROFILE\0", b"MPF\0", b"FPXR\0",
    b"Photoshop 3.0\0", b"Adobe", b"Ducky", b"JP", b"SPIFF\0", b"AVI1", b"Meta\0",
)
_ID_NAMES = {b"http://ns.adobe.com/xap/1.0/\0": "XMP",
             b"http://ns.adobe.com/xmp/extension/\0": "XMP extension", b"JP": "JUMBF"}

J2K_SOC, J2K_SOT, J2K_SOD, J2K_EOC, J2K_COM, J2K_TLM = 0x4F, 0x90, 0x93, 0xD9, 0x64, 0x55
J2K_SIZ = 0x51
# J2K marker segments (ISO/IEC 15444-1 Table A.2 with CAP and PRF, 15444-2 Table A.2,
# 15444-15 CPF): copied once their length is checked (_j2k_fields_ok). Main header only:
# SIZ, CAP, TLM, PRF, PLM, CPF, PPM, CRG, CBD; tile-part headers only: PLT, PPT. COM
# (FF64) is removed; any other marker segment (reserved codes, JPWL, unknown) is refused.
_J2K_SEGMENTS = frozenset({
    0x50, 0x51, 0x52, 0x53, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5C, 0x5D, 0x5E, 0x5F, 0x60,
    0x61, 0x63,  # CAP SIZ COD COC TLM PRF PLM PLT CPF QCD QCC RGN POC PPM PPT CRG
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79,  # DCO VMS DFS ADS MCT
})  # MCC NLT MCO CBD ATK
_J2K_MAIN = _J2K_SEGMENTS - {0x58, 0x61}
_J2K_TILE = _J2K_SEGMENTS - {0x50, 0x51, 0x55, 0x56, 0x57, 0x59, 0x60, 0x63, 0x78}
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_PAD = b"\0\xff"  # padding bytes after EOI/EOC that are kept (odd-length frames)
# JP2 boxes: jP, ftyp, rreq, jp2h and jp2c are checked (_JP2_CHECKED); text and vendor
# data boxes are removed; inside jp2h only the image description boxes are kept
_JP2_DROP = {b"xml ", b"uuid", b"uinf", b"jp2i", b"asoc", b"lbl ", b"nlst"}
_JP2_NAMED = _JP2_DROP | {b"ulst", b"url ", b"ihdr", b"bpcc", b"colr", b"pclr", b"cmap",
                          b"cdef", b"res ", b"resc", b"resd", b"jp2h", b"jp2c", b"ftyp",
                          b"rreq", b"roid", b"cgrp", b"opct", b"creg", b"ftbl", b"dtbl"}
_JP2_BRANDS = {b"jp2 ", b"jpx ", b"jpxb", b"jph ", b"jhc ", b"J2P0", b"J2P1"}


def frame_kind(frame: bytes) -> str:
    """Return ``"jpeg"``, ``"j2k"`` or ``"jp2"`` for a compressed frame; raise otherwise."""
    if frame[:2] == b"\xff\xd8":
        return "jpeg"
    if frame[:2] == b"\xff\x4f":
        return "j2k"
    if frame[:12] == JP2_SIGNATURE:
        return "jp2"
    raise InputError("frame is neither a JPEG nor a JPEG 2000 codestream")


def _app_name(marker: int, payload: bytes) -> str:
    base = "COM" if marker == COM else f"APP{marker - 0xE0}"
    if marker != COM:
        for ident in _KNOWN_IDS:
            if payload.startswith(ident):
                label = _ID_NAMES.get(ident) or ident.rstrip(b"\0").decode()
                return f"{base} {label}"
    return base


def _keep_app(marker: int, payload: bytes) -> bool:
    if marker == 0xE0:
        return payload.startswith(b"JFIF\0")
    if marker == 0xEE:
        return payload.startswith(b"Adobe")
    return False


def _trim_kept(marker: int, payload: bytes) -> bytes | None:
    """Trim a kept APP0/APP14 to its fixed fields (no JFIF thumbnail, nothing after the
    Adobe transform byte); ``None`` when it is already minimal."""
    if marker == 0xE0 and (len(payload) > 14 or payload[12:14].strip(b"\0")):
        return payload[:12] + b"\0\0"  # JFIF: version, units, densities; 0x0 thumbnail
    if marker == 0xEE and len(payload) > 12:
        return payload[:12]  # "Adobe", version, flags0, flags1, transform
    return None


def _frame_is_ls(marker: int, before: bool | None, pos: int) -> bool:
    """Whether the frame header ``marker`` starts a JPEG-LS frame (SOF55); a hierarchical
    image's later frames must be of the same kind as its first (``before``)."""
    is_ls = marker == 0xF7
    if before is not None and before != is_ls:
        raise InputError(f"JPEG mixes JPEG-LS and T.81 frame headers (byte {pos})")
    return is_ls


def _dac_ok(tctb: int, cs: int) -> bool:
    """A DAC conditioning entry (T.81 B.2.4.3): DC bounds L <= U, or AC Kx in 1..63."""
    tc, tb = tctb >> 4, tctb & 0x0F
    if tb > 3 or tc > 1:
        return False
    return (cs & 0x0F) <= (cs >> 4) if tc == 0 else 1 <= cs <= 63


def _check_kept(marker: int, payload: bytes, pos: int) -> None:
    """Raise unless ``payload`` of a kept segment is exactly as long as its fields say
    (T.81 B.2, T.87 C.2): extra bytes in a copied segment could hold anything."""
    n = len(payload)
    ok = n > 0
    if marker in _SOF:  # P, Y, X, Nf, Nf x (C, H/V, Tq)
        ok = n >= 6 and n == 6 + 3 * payload[5]
    elif marker == SOS:  # Ns, Ns x (Cs, Td/Ta or Tm), Ss/NEAR, Se/ILV, Ah/Al
        ok = n >= 1 and n == 4 + 2 * payload[0]
    elif marker == 0xC4:  # DHT: (Tc/Th, 16 counts, values)+
        i = 0
        while ok and i < n:
            ok = i + 17 <= n
            i += 17 + sum(payload[i + 1:i + 17])
        ok = ok and i == n
    elif marker == 0xDB:  # DQT: (Pq/Tq, 64 or 128 bytes)+
        i = 0
        while i < n:
            i += 1 + (128 if payload[i] >> 4 else 64)
        ok = ok and i == n
    elif marker == 0xCC:  # DAC: (Tc/Tb, Cs)+, at most 4 DC and 4 AC tables
        ok = ok and n % 2 == 0 and n <= 16 and all(
            _dac_ok(payload[i], payload[i + 1]) for i in range(0, n, 2))
    elif marker in (0xDC, 0xDD):  # DNL, DRI (JPEG-LS allows 2..4 byte values)
        ok = 2 <= n <= 4
    elif marker == 0xDF:  # EXP: Eh/Ev, each 0 or 1
        ok = n == 1 and not payload[0] & 0xEE
    elif marker == 0xF8:  # LSE: preset coding parameters (ID 1) or oversize size (ID 4)
        if payload[:1] == b"\x02" or payload[:1] == b"\x03":
            raise InputError(f"JPEG-LS mapping table (LSE) at byte {pos}: its content cannot "
                             f"be checked")
        ok = (payload[:1] == b"\x01" and n == 11) or (
            payload[:1] == b"\x04" and n >= 2 and n == 2 + 2 * payload[1])
    if not ok:
        raise InputError(f"JPEG marker segment FF{marker:02X} at byte {pos} is not as long "
                         f"as its fields (extra or missing bytes)")


def _tail_ok(tail: bytes) -> bool:
    """Whether ``tail`` after EOI/EOC is at most one padding byte (kept)."""
    return len(tail) <= 1 and not tail.strip(_PAD)


def _segment(data: bytes, pos: int) -> tuple[int, int]:
    """Return (marker, end) of the marker segment whose FF is at ``pos``."""
    if pos + 4 > len(data):
        raise InputError(f"truncated JPEG: marker segment at byte {pos} cut short")
    (length,) = struct.unpack_from(">H", data, pos + 2)
    end = pos + 2 + length
    if length < 2 or end > len(data):
        raise InputError(f"truncated JPEG: segment length {length} at byte {pos} runs past the end")
    return data[pos + 1], end


def _entropy_end(data: bytes, pos: int, jpeg_ls: bool = False) -> int:
    """Return the offset of the first marker (its FF, after fill bytes) following scan data.

    T.81 (every process but JPEG-LS: baseline, extended, progressive, lossless,
    hierarchical, Huffman or arithmetic): inside entropy-coded data an FF is followed by
    00 (a stuffed FF data byte), D0-D7 (RSTn) or more FF (fill before a marker); an FF
    followed by 01..BF (TEM, RES) cannot be there and makes the frame refused, and
    C0..FE is the next marker, checked by the caller. T.87 (JPEG-LS): an FF followed by a
    byte below 0x80 is bit stuffing. What remains undetectable without decoding the scan:
    bytes without FF (or with FF 00) between the end of the last MCU and the next marker
    read as entropy-coded data and are copied (decoders skip them); the caller's residual
    search of the compressed data covers those.
    """
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            raise InputError("truncated JPEG: scan data ends without a marker (no EOI)")
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 1 >= n:
            raise InputError("truncated JPEG: fill bytes at the end of the data")
        nxt = data[pos + 1]
        if 0xD0 <= nxt <= 0xD7 or (nxt < 0x80 if jpeg_ls else nxt == 0):
            pos += 2
            continue
        if nxt < 0xC0 and not jpeg_ls:
            raise InputError(f"JPEG entropy-coded data holds FF{nxt:02X} at byte {pos}: not "
                             f"stuffing, a restart marker or a marker (hidden data?)")
        return pos


def strip_jpeg_metadata(frame: bytes) -> tuple[bytes, list[str]]:
    """Remove APPn and COM metadata segments from a JPEG or JPEG 2000 frame.

    Parameters
    ----------
    frame : bytes
        One compressed frame: a JPEG (T.81 any process, or JPEG-LS) starting with
        SOI, or a JPEG 2000 codestream starting with SOC.

    Returns
    -------
    data : bytes
        The frame without the segments; ``frame`` itself when nothing was removed.
        Entropy-coded data is copied verbatim. One padding byte (00 or FF) after EOI is
        kept, any other data after EOI is removed (reported as ``"trailing data"``).
    removed : list of str
        Names of the removed segments, e.g. ``["APP1 Exif", "COM"]``; identifiers of
        unknown APPn segments are not echoed.

    Raises
    ------
    InputError
        Not a JPEG/JPEG 2000 codestream, truncated, a reserved or unknown marker (FFC8,
        JPGn, a J2K marker segment no part of 15444 defines), FF01..FFBF inside T.81
        entropy-coded data, a kept segment whose length does not match its fields, an
        unknown JP2 box, an ICC profile in a JP2 colr box that cannot be parsed, or a
        tile-part COM that cannot be removed safely.

    Notes
    -----
    Kept: JFIF APP0 (trimmed) and Adobe APP14 (colour transform, trimmed). ICC_PROFILE
    APP2 is removed like every other APPn.
    """
    frame = bytes(frame)
    kind = frame_kind(frame)
    if kind == "j2k":
        return _strip_j2k(frame)
    if kind == "jp2":
        return _strip_jp2(frame)
    out = [frame[:2]]
    removed: list[str] = []
    pos, n = 2, len(frame)
    jpeg_ls, frames = False, 0  # the frame header (SOF55 or T.81 SOFn): how scans are coded
    while True:
        start = pos
        if pos >= n or frame[pos] != 0xFF:
            raise InputError(f"corrupt JPEG: expected a marker at byte {pos}")
        while pos + 1 < n and frame[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 1 >= n:
            raise InputError("truncated JPEG: no EOI")
        marker = frame[pos + 1]
        if marker == EOI:
            out.append(frame[start:pos + 2])
            tail = frame[pos + 2:]
            if _tail_ok(tail):
                out.append(tail)
            else:
                removed.append("trailing data")
            break
        if marker in _STANDALONE:
            out.append(frame[start:pos + 2])
            pos += 2
            continue
        if marker == SOI or marker == 0x00:
            raise InputError(f"corrupt JPEG: unexpected marker FF{marker:02X} at byte {pos}")
        marker, end = _segment(frame, pos)
        if 0xE0 <= marker <= 0xEF or marker == COM:
            payload = frame[pos + 4:end]
            if marker != COM and _keep_app(marker, payload):
                trimmed = _trim_kept(marker, payload)
                if trimmed is None:
                    out.append(frame[start:end])
                else:
                    out.append(struct.pack(">BBH", 0xFF, marker, len(trimmed) + 2) + trimmed)
                    removed.append(_app_name(marker, payload) + " extra data")
            else:
                removed.append(_app_name(marker, payload))
            pos = end
        elif marker == SOS:
            _check_kept(marker, frame[pos + 4:end], pos)
            scan_end = _entropy_end(frame, end, jpeg_ls)
            out.append(frame[start:scan_end])
            pos = scan_end
        elif marker in _SEGMENTS_KEEP:
            _check_kept(marker, frame[pos + 4:end], pos)
            if marker in _SOF and marker != 0xDE:  # (DHP is no frame of its own)
                jpeg_ls = _frame_is_ls(marker, jpeg_ls if frames else None, pos)
                frames += 1
            out.append(frame[start:end])
            pos = end
        else:
            raise InputError(f"JPEG with reserved or unknown marker FF{marker:02X} at byte {pos}")
    if not removed:
        return frame, []
    logger.debug("removed JPEG segments: %s", ", ".join(removed))
    return b"".join(out), removed


def _j2k_fields_ok(marker: int, p: bytes, csiz: int) -> bool:
    """Whether a kept J2K segment is exactly as long as its fields say (T.800 A.5-A.9,
    T.814 for CAP); segments of variable content are only checked to be non-empty."""
    n, c = len(p), 1 if csiz < 257 else 2
    if marker == J2K_SIZ:  # Rsiz, 8 x 32-bit sizes and offsets, Csiz, Csiz x 3
        return n >= 36 and n == 36 + 3 * struct.unpack_from(">H", p, 34)[0]
    if marker == 0x50:  # CAP: Pcap, one Ccap per bit set
        return n >= 4 and n == 4 + 2 * bin(struct.unpack_from(">I", p)[0]).count("1")
    if marker == 0x52:  # COD: Scod, SGcod (4), SPcod (5), precinct sizes (NL+1)
        return n >= 10 and n == 10 + (p[5] + 1 if p[0] & 1 else 0)
    if marker == 0x53:  # COC: Ccoc, Scoc, SPcoc (5), precinct sizes (NL+1)
        return n >= c + 6 and n == c + 6 + (p[c + 1] + 1 if p[c] & 1 else 0)
    if marker == 0x5E:  # RGN: Crgn, Srgn, SPrgn
        return n == c + 2
    if marker == 0x5F:  # POC: (RSpoc, CSpoc, LYEpoc, REpoc, CEpoc, Ppoc)+
        return n > 0 and n % (5 + 2 * c) == 0
    if marker == 0x63:  # CRG: Xcrg, Ycrg per component
        return n == 4 * csiz
    return n > 0


def _j2k_header(cs: bytes, pos: int, end: int, stop: frozenset[int],
                allowed: frozenset[int], csiz: int,
                where: str) -> tuple[list[bytes], int, int, list[str]]:
    """Walk the marker segments of a main or tile-part header from ``pos`` to the first
    marker in ``stop`` (before ``end``); return the kept segments, where it stopped, the
    bytes dropped and the names of the removed segments (COM). Unknown or misplaced
    segments are refused."""
    kept: list[bytes] = []
    removed: list[str] = []
    dropped = 0
    while True:
        if pos + 2 > end or cs[pos] != 0xFF:
            raise InputError(f"corrupt JPEG 2000 {where} at byte {pos}: expected a marker")
        marker = cs[pos + 1]
        if marker in stop:
            return kept, pos, dropped, removed
        if marker != J2K_COM and marker not in allowed:
            raise InputError(f"JPEG 2000 {where} with a reserved, unknown or misplaced marker "
                             f"segment FF{marker:02X} at byte {pos}")
        _, seg_end = _segment(cs, pos)
        if seg_end > end:
            raise InputError(f"JPEG 2000 marker segment at byte {pos} runs out of its {where}")
        if marker == J2K_COM:
            removed.append("J2K COM")
            dropped += seg_end - pos
        elif not _j2k_fields_ok(marker, cs[pos + 4:seg_end], csiz):
            raise InputError(f"JPEG 2000 marker segment FF{marker:02X} at byte {pos} is not as "
                             f"long as its fields (extra or missing bytes)")
        else:
            kept.append(cs[pos:seg_end])
        pos = seg_end


def _strip_j2k(cs: bytes) -> tuple[bytes, list[str]]:
    """Check the marker segments of a J2K codestream, removing COM (FF64) from the main
    and tile-part headers; segments 15444-1/-2/-15 do not define are refused."""
    if cs[:4] != b"\xff\x4f\xff\x51" or len(cs) < 4 + 38:
        raise InputError("corrupt JPEG 2000: no SOC followed by SIZ")
    csiz = struct.unpack_from(">H", cs, 4 + 36)[0]
    kept, pos, _, removed = _j2k_header(cs, 2, len(cs), frozenset({J2K_SOT, J2K_EOC}),
                                        _J2K_MAIN, csiz, "main header")
    if cs[pos + 1] == J2K_EOC:
        raise InputError("JPEG 2000 codestream without tiles")
    has_tlm = any(seg[1] == J2K_TLM for seg in kept)
    out = [cs[:2], *kept]
    n = len(cs)
    # tile parts: SOT (Psot gives the tile-part length), header segments, SOD, data
    while pos < n:
        if cs[pos:pos + 2] == b"\xff\xd9":
            tail = cs[pos + 2:]
            if not _tail_ok(tail):
                removed.append("trailing data")
                tail = b""
            out.append(cs[pos:pos + 2] + tail)
            break
        if cs[pos:pos + 4] != b"\xff\x90\x00\x0a" or pos + 12 > n:
            raise InputError(f"corrupt JPEG 2000: expected SOT (length 10) at byte {pos}")
        (psot,) = struct.unpack_from(">I", cs, pos + 6)
        part_end = n if psot == 0 else pos + psot
        if part_end > n or (psot and psot < 14):
            raise InputError(f"truncated JPEG 2000: tile-part length {psot} at byte {pos}")
        header, hpos, dropped, names = _j2k_header(cs, pos + 12, part_end,
                                                   frozenset({J2K_SOD}), _J2K_TILE, csiz,
                                                   "tile-part header")
        removed.extend(names)
        if dropped and has_tlm:
            raise InputError("JPEG 2000 tile-part COM with a TLM index: cannot remove safely")
        if psot == 0:
            body_end = n
            eoc = cs.rfind(b"\xff\xd9")
            if eoc >= hpos:  # (what follows it is checked at EOC below)
                body_end = eoc
        else:
            body_end = part_end
        new_psot = 0 if psot == 0 else psot - dropped
        out.append(cs[pos:pos + 6] + struct.pack(">I", new_psot) + cs[pos + 10:pos + 12])
        out.extend(header)
        out.append(cs[hpos:body_end])
        pos = body_end
    else:
        raise InputError("truncated JPEG 2000: no EOC")
    if not removed:
        return cs, []
    logger.debug("removed JPEG 2000 segments: %s", ", ".join(removed))
    return b"".join(out), removed


def _box_name(box: bytes) -> str:
    """A box type for the report: named only when it is a known one (never echo text)."""
    return f"{box.decode().strip()} box" if box in _JP2_NAMED else "unknown box"


def _box(box: bytes, content: bytes) -> bytes:
    return struct.pack(">I", 8 + len(content)) + box + content


def _sub_boxes(data: bytes, where: str) -> list[tuple[bytes, bytes]]:
    """(type, content) of the boxes that exactly fill ``data`` (a super-box's content)."""
    boxes, pos, n = [], 0, len(data)
    while pos < n:
        if pos + 8 > n:
            raise InputError(f"JP2 {where} box ends inside a box header")
        length, box = struct.unpack_from(">I", data, pos)[0], data[pos + 4:pos + 8]
        head = 8
        if length == 1 and pos + 16 <= n:
            length, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        if length < head or pos + length > n:
            raise InputError(f"JP2 box inside {where} at byte {pos} has a wrong length")
        boxes.append((box, data[pos + head:pos + length]))
        pos += length
    return boxes


def _pclr_ok(p: bytes) -> bool:
    """Palette: NE, NPC, B_i, then NE entries of NPC values of ceil(B_i/8) bytes."""
    if len(p) < 3:
        return False
    ne, npc = struct.unpack_from(">HB", p)
    if len(p) < 3 + npc:
        return False
    width = sum(((b & 0x7F) + 8) // 8 for b in p[3:3 + npc])
    return len(p) == 3 + npc + ne * width


def _colr(p: bytes) -> tuple[bytes, list[str]]:
    """Check a colour specification box; blank the text of an ICC profile (METH 2, 3)."""
    if len(p) < 3:
        raise InputError("JP2 colr box shorter than its fields")
    if p[0] == 1:
        if len(p) != 7:
            raise InputError("JP2 colr box (enumerated) is not as long as its fields")
        return p, []
    if p[0] not in (2, 3):
        raise InputError(f"JP2 colr box with method {p[0]}: it cannot be checked")
    try:
        icc, names = blank_text(p[3:])
    except ICCProfileError as exc:
        raise InputError(f"JP2 colr box: {exc.reason}") from None
    return p[:3] + icc, [f"JP2 colr {name}" for name in names]


def _res(p: bytes) -> tuple[bytes, list[str]]:
    """Resolution super-box: resc and resd (10 bytes each) kept, anything else removed."""
    out, removed = [], []
    for box, content in _sub_boxes(p, "res "):
        if box not in (b"resc", b"resd"):
            removed.append(f"JP2 res {_box_name(box)}")
        elif len(content) != 10:
            raise InputError("JP2 resolution box is not as long as its fields")
        else:
            out.append(_box(box, content))
    return b"".join(out), removed


_JP2H_FIXED = (b"ihdr", b"bpcc", b"pclr", b"cmap", b"cdef")


def _jp2h_box_ok(box: bytes, c: bytes, nc: int) -> bool:
    """Whether an ihdr, bpcc, pclr, cmap or cdef box is exactly as long as its fields
    (``nc``: the number of components ihdr gives)."""
    if box == b"ihdr":
        return len(c) == 14
    if box == b"bpcc":
        return len(c) == nc
    if box == b"pclr":
        return _pclr_ok(c)
    if box == b"cmap":  # CMP, MTYP, PCOL per channel
        return len(c) > 0 and len(c) % 4 == 0
    return len(c) >= 2 and len(c) == 2 + 6 * struct.unpack_from(">H", c)[0]  # cdef


def _jp2h(p: bytes) -> tuple[bytes, list[str]]:
    """Rebuild the JP2 header super-box keeping only ihdr, bpcc, colr, pclr, cmap, cdef
    and res (checked against their fields); anything else is removed."""
    boxes = _sub_boxes(p, "jp2h")
    if not boxes or boxes[0][0] != b"ihdr" or len(boxes[0][1]) != 14:
        raise InputError("JP2 header box does not start with a 14-byte ihdr box")
    nc = struct.unpack_from(">H", boxes[0][1], 8)[0]
    out, removed = [], []
    for box, content in boxes:
        names: list[str] = []
        if box == b"colr":
            content, names = _colr(content)
        elif box == b"res ":
            content, names = _res(content)
            if not content:  # (a resolution box holds at least one of resc, resd)
                removed.extend(names)
                continue
        elif box not in _JP2H_FIXED:
            removed.append(f"JP2 jp2h {_box_name(box)}")
            continue
        elif not _jp2h_box_ok(box, content, nc):
            raise InputError(f"JP2 {box.decode()} box is not as long as its fields")
        removed.extend(names)
        out.append(_box(box, content))
    return b"".join(out), removed


def _ftyp(p: bytes) -> tuple[bytes, list[str]]:
    """File type box: a known brand; unknown compatibility entries and a minor version
    other than 0 (four free bytes each) are removed."""
    if len(p) < 8 or len(p) % 4 or p[:4] not in _JP2_BRANDS:
        raise InputError("JP2 file type box with an unknown brand or a wrong length")
    entries = [p[i:i + 4] for i in range(8, len(p), 4)]
    known = [e for e in entries if e in _JP2_BRANDS]
    removed = ["JP2 ftyp unknown compatibility entries"] if len(known) < len(entries) else []
    if p[4:8] != b"\0\0\0\0":
        removed.append("JP2 ftyp minor version")
    return (p[:4] + b"\0\0\0\0" + b"".join(known), removed) if removed else (p, [])


def _rreq(p: bytes) -> tuple[bytes, list[str]]:
    """Reader requirements box: checked against its fields; vendor features (16-byte
    UUIDs of vendor boxes, which are removed) are dropped."""
    bad = InputError("JP2 reader requirements box is not as long as its fields")
    ml = p[0] if p else 0
    pos = 1 + 2 * ml  # ML, FUAM, DCM
    if ml == 0 or len(p) < pos + 2:
        raise bad
    pos += 2 + struct.unpack_from(">H", p, pos)[0] * (2 + ml)  # NSF, (SF, SM) x NSF
    if len(p) < pos + 2:
        raise bad
    nvf = struct.unpack_from(">H", p, pos)[0]  # NVF, (VF, VM) x NVF
    if len(p) != pos + 2 + nvf * (16 + ml):
        raise bad
    if not nvf:
        return p, []
    return p[:pos] + b"\0\0", ["JP2 rreq vendor features"]


def _strip_jp2(data: bytes) -> tuple[bytes, list[str]]:
    """Remove metadata boxes of a JP2 file and COM segments of its codestream; rebuild
    the JP2 header box with the boxes that describe the image only."""
    out: list[bytes] = []
    removed: list[str] = []
    pos, n = 0, len(data)
    while pos < n:
        if pos + 8 > n:
            if not _tail_ok(data[pos:]):
                raise InputError(f"truncated JP2 box header at byte {pos}")
            out.append(data[pos:])
            break
        length, box = struct.unpack_from(">I", data, pos)[0], data[pos + 4:pos + 8]
        head = 8
        if length == 1:
            if pos + 16 > n:
                raise InputError(f"truncated JP2 box header at byte {pos}")
            length, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif length == 0:
            length = n - pos
        if length < head or pos + length > n:
            raise InputError(f"JP2 box at byte {pos} runs past the end")
        content = data[pos + head:pos + length]
        names: list[str] = []
        if box in _JP2_CHECKED:
            new, names = _JP2_CHECKED[box](content)
        elif box == b"jP  " and content == b"\r\n\x87\n":
            new = content
        elif box in _JP2_DROP:
            removed.append(f"JP2 {box.decode().strip()} box")
        else:
            raise InputError(f"JP2 file with an unknown or malformed box at byte {pos}")
        removed.extend(names)
        if box not in _JP2_DROP:
            out.append(_box(box, new) if names else data[pos:pos + length])
        pos += length
    if not removed:
        return data, []
    return b"".join(out), removed


_JP2_CHECKED = {b"jp2c": _strip_j2k, b"jp2h": _jp2h, b"ftyp": _ftyp, b"rreq": _rreq}


def _items(buffer: bytes) -> list[bytes]:
    """Split encapsulated Pixel Data into its items (BOT first), checking the syntax."""
    items, pos, n = [], 0, len(buffer)
    while pos < n:
        if pos + 8 > n:
            raise InputError("truncated encapsulated Pixel Data item header")
        group, elem, length = struct.unpack_from("<HHI", buffer, pos)
        if (group, elem) == (0xFFFE, 0xE0DD):
            if buffer[pos + 8:].strip(b"\0"):
                raise InputError("data after the sequence delimiter in encapsulated Pixel Data")
            break
        if (group, elem) != (0xFFFE, 0xE000):
            raise InputError(f"expected an item tag at byte {pos} of encapsulated Pixel Data")
        if length == 0xFFFFFFFF or pos + 8 + length > n:
            raise InputError(f"encapsulated Pixel Data item at byte {pos} runs past the end")
        items.append(buffer[pos + 8:pos + 8 + length])
        pos += 8 + length
    if not items:
        raise InputError("encapsulated Pixel Data has no Basic Offset Table item")
    return items


def _offsets(frames: list[list[bytes]]) -> list[int]:
    """Byte offsets of the first fragment item of each frame, from the first fragment."""
    offsets, pos = [], 0
    for frags in frames:
        offsets.append(pos)
        pos += sum(8 + len(f) for f in frags)
    return offsets


def _frames_by_bot(bot: bytes, frags: list[bytes], number_of_frames: int) -> list[list[bytes]]:
    if len(bot) % 4:
        raise InputError("Basic Offset Table length is not a multiple of 4")
    offsets = list(struct.unpack(f"<{len(bot) // 4}I", bot))
    if len(offsets) != number_of_frames or offsets[0] != 0:
        raise InputError("Basic Offset Table does not match Number of Frames")
    starts, pos = {}, 0
    for i, f in enumerate(frags):
        starts[pos] = i
        pos += 8 + len(f)
    if any(o not in starts for o in offsets):
        raise InputError("Basic Offset Table offset is not at a fragment boundary")
    idx = [starts[o] for o in offsets] + [len(frags)]
    if any(a >= b for a, b in zip(idx[:-1], idx[1:], strict=True)):
        raise InputError("Basic Offset Table offsets are not increasing")
    return [frags[a:b] for a, b in zip(idx[:-1], idx[1:], strict=True)]


def _frames(items: list[bytes], number_of_frames: int) -> list[list[bytes]]:
    """Group fragments into frames using the BOT or the codestream start markers.

    A Basic Offset Table is trusted only where the grouping needs it (several frames,
    more fragments than frames) and only when it is consistent; otherwise frames begin at
    the fragments that start a codestream. The caller checks the table against the result.
    """
    bot, frags = items[0], items[1:]
    if number_of_frames < 1:
        raise InputError(f"invalid Number of Frames {number_of_frames}")
    if len(frags) < number_of_frames:
        raise InputError(f"{len(frags)} fragments for {number_of_frames} frames")
    if number_of_frames == 1:
        return [frags]
    if len(frags) == number_of_frames:
        return [[f] for f in frags]
    if bot:
        try:
            return _frames_by_bot(bot, frags, number_of_frames)
        except InputError as exc:
            logger.debug("Basic Offset Table not used: %s", exc.reason)
    # no usable BOT: a frame begins at a fragment that starts with SOI or SOC+SIZ
    groups: list[list[bytes]] = []
    for f in frags:
        if f[:2] == b"\xff\xd8" or f[:4] == b"\xff\x4f\xff\x51" or f[:12] == JP2_SIGNATURE:
            groups.append([f])
        elif groups:
            groups[-1].append(f)
        else:
            raise InputError("first fragment does not start a JPEG/JPEG 2000 codestream")
    if len(groups) != number_of_frames:
        raise InputError(f"found {len(groups)} frames in the fragments, expected {number_of_frames}")
    return groups


def _item(data: bytes) -> bytes:
    if len(data) % 2:
        data += b"\0"
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(data)) + data


def strip_encapsulated(pixel_data: bytes, number_of_frames: int) -> tuple[bytes, list[str]]:
    """Strip metadata segments from every frame of encapsulated Pixel Data.

    Parameters
    ----------
    pixel_data : bytes
        Value of an encapsulated (7FE0,0010): Basic Offset Table item, fragments,
        optional sequence delimiter.
    number_of_frames : int
        Number of Frames of the image (1 when absent).

    Returns
    -------
    data : bytes
        New Pixel Data value: ``pixel_data`` itself (bit-identical) when nothing was
        removed and the Basic Offset Table is empty or exactly right; otherwise unchanged
        frames keep their fragments, changed frames become one fragment each, and the
        Basic Offset Table is the frames' offsets (an empty one stays empty). A Basic
        Offset Table that is not exactly the frames' offsets is rebuilt (reported as
        ``"Basic Offset Table"``). Fragments after the end of a frame's codestream go
        with its trailing data. An Extended Offset Table in the dataset is made stale by
        a change: see :func:`extended_offset_table`.
    removed : list of str
        ``"frame N: NAME"`` for each removed segment (N from 1).

    Raises
    ------
    InputError
        Malformed encapsulation, fragments that do not match the frame count, or a
        frame ``strip_jpeg_metadata`` rejects.
    """
    pixel_data = bytes(pixel_data)
    items = _items(pixel_data)
    frames = _frames(items, int(number_of_frames))
    bot = items[0]
    bot_ok = not bot or bot == struct.pack(f"<{len(frames)}I", *_offsets(frames))
    removed: list[str] = []
    new_frames: list[list[bytes]] = []
    for i, frags in enumerate(frames, start=1):
        data, names = strip_jpeg_metadata(b"".join(frags))
        removed.extend(f"frame {i}: {name}" for name in names)
        new_frames.append([data] if names else frags)
    if not removed and bot_ok:
        return pixel_data, []
    if not bot_ok:
        removed.append("Basic Offset Table (not the frames' offsets: rebuilt)")
    body = [_item(f) for frags in new_frames for f in frags]
    new_bot = b""
    if bot:  # offsets of the items as written (_item pads odd fragments)
        offsets, pos = [], 0
        for frags in new_frames:
            offsets.append(pos)
            pos += sum(8 + len(f) + len(f) % 2 for f in frags)
        new_bot = struct.pack(f"<{len(offsets)}I", *offsets)
    return _item(new_bot) + b"".join(body), removed


def extended_offset_table(pixel_data: bytes, number_of_frames: int) -> tuple[bytes, bytes] | None:
    """The Extended Offset Table and its Lengths (7FE0,0001/0002) of encapsulated Pixel Data.

    Returns the two OV values (little endian 64-bit): the offset of each frame's item
    from the first fragment's item and the length of its fragment; ``None`` when a frame
    spans several fragments (PS3.5 A.4: the table is then not allowed).
    """
    items = _items(bytes(pixel_data))
    frags = items[1:]
    if len(frags) != int(number_of_frames):
        return None
    offsets = _offsets([[f] for f in frags])
    return (struct.pack(f"<{len(frags)}Q", *offsets),
            struct.pack(f"<{len(frags)}Q", *(len(f) for f in frags)))
