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
baseline, extended, progressive and lossless JPEG (ITU-T T.81) and JPEG-LS (SOF55,
ITU-T T.87).

JPEG 2000 (and HTJ2K) codestreams keep everything except COM marker segments
(FF64), which may hold free text, in the main header and in tile-part headers.

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
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_PAD = b"\0\xff"  # padding bytes after EOI/EOC that are kept (odd-length frames)
# JP2 boxes: kept (image and colour description), removed (text and vendor data)
_JP2_KEEP = {b"jP  ", b"ftyp", b"rreq", b"jp2h"}
_JP2_DROP = {b"xml ", b"uuid", b"uinf", b"jp2i", b"asoc", b"lbl ", b"nlst"}


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
    elif marker == 0xCC:  # DAC: (Tc/Tb, Cs)+
        ok = ok and n % 2 == 0
    elif marker in (0xDC, 0xDD):  # DNL, DRI (JPEG-LS allows 2..4 byte values)
        ok = 2 <= n <= 4
    elif marker == 0xDF:  # EXP: Eh/Ev
        ok = n == 1
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


def _entropy_end(data: bytes, pos: int) -> int:
    """Return the offset of the first marker (its FF, after fill bytes) following scan data."""
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            raise InputError("truncated JPEG: scan data ends without a marker (no EOI)")
        nxt = data[pos + 1]
        # FF00 (T.81 stuffing), FF followed by a byte < 0x80 (T.87 bit stuffing) and
        # RSTn are scan data; FFFF is fill before a marker
        if nxt < 0x80 or 0xD0 <= nxt <= 0xD7:
            pos += 2
            continue
        if nxt == 0xFF:
            while pos + 1 < n and data[pos + 1] == 0xFF:
                pos += 1
            if pos + 1 >= n:
                raise InputError("truncated JPEG: fill bytes at the end of the data")
            if data[pos + 1] < 0x80 or 0xD0 <= data[pos + 1] <= 0xD7:
                pos += 2
                continue
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
        JPGn), a kept segment whose length does not match its fields, an unknown JP2
        box, or a tile-part COM that cannot be removed safely.

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
            scan_end = _entropy_end(frame, end)
            out.append(frame[start:scan_end])
            pos = scan_end
        elif marker in _SEGMENTS_KEEP:
            _check_kept(marker, frame[pos + 4:end], pos)
            out.append(frame[start:end])
            pos = end
        else:
            raise InputError(f"JPEG with reserved or unknown marker FF{marker:02X} at byte {pos}")
    if not removed:
        return frame, []
    logger.debug("removed JPEG segments: %s", ", ".join(removed))
    return b"".join(out), removed


def _strip_j2k(cs: bytes) -> tuple[bytes, list[str]]:
    """Remove COM (FF64) from the main and tile-part headers of a J2K codestream."""
    n = len(cs)
    out = [cs[:2]]
    removed: list[str] = []
    pos = 2
    has_tlm = False
    # main header: marker segments up to the first SOT
    while True:
        if pos + 2 > n or cs[pos] != 0xFF:
            raise InputError(f"corrupt JPEG 2000: expected a marker at byte {pos}")
        marker = cs[pos + 1]
        if marker == J2K_SOT:
            break
        if marker == J2K_EOC:
            raise InputError("JPEG 2000 codestream without tiles")
        _, end = _segment(cs, pos)
        if marker == J2K_COM:
            removed.append("J2K COM")
        else:
            has_tlm |= marker == J2K_TLM
            out.append(cs[pos:end])
        pos = end
    # tile parts: SOT (Psot gives the tile-part length), header segments, SOD, data
    while pos < n:
        if cs[pos:pos + 2] == b"\xff\xd9":
            tail = cs[pos + 2:]
            if not _tail_ok(tail):
                removed.append("trailing data")
                tail = b""
            out.append(cs[pos:pos + 2] + tail)
            break
        if cs[pos:pos + 2] != b"\xff\x90" or pos + 12 > n:
            raise InputError(f"corrupt JPEG 2000: expected SOT at byte {pos}")
        (psot,) = struct.unpack_from(">I", cs, pos + 6)
        part_end = n if psot == 0 else pos + psot
        if part_end > n or (psot and psot < 14):
            raise InputError(f"truncated JPEG 2000: tile-part length {psot} at byte {pos}")
        hpos = pos + 12
        header: list[bytes] = []
        dropped = 0
        while True:
            if hpos + 2 > part_end or cs[hpos] != 0xFF:
                raise InputError(f"corrupt JPEG 2000 tile-part header at byte {hpos}")
            if cs[hpos + 1] == J2K_SOD:
                break
            _, end = _segment(cs, hpos)
            if cs[hpos + 1] == J2K_COM:
                dropped += end - hpos
                removed.append("J2K COM")
            else:
                header.append(cs[hpos:end])
            hpos = end
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


def _strip_jp2(data: bytes) -> tuple[bytes, list[str]]:
    """Remove metadata boxes of a JP2 file and COM segments of its codestream."""
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
        if box == b"jp2c":
            cs, names = _strip_j2k(data[pos + head:pos + length])
            removed.extend(names)
            if names:
                out.append(struct.pack(">I", 8 + len(cs)) + box + cs)
            else:
                out.append(data[pos:pos + length])
        elif box in _JP2_KEEP:
            out.append(data[pos:pos + length])
        elif box in _JP2_DROP:
            removed.append(f"JP2 {box.decode().strip()} box")
        else:
            raise InputError(f"JP2 file with an unknown box type at byte {pos}")
        pos += length
    if not removed:
        return data, []
    return b"".join(out), removed


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
