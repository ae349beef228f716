"""Remove free-text units from the video elementary streams of DICOM video transfer syntaxes.

PS3.5 8.2.5-8.2.8: MPEG-2 (1.2.840.10008.1.2.4.100/.101 and their fragmentable
variants), MPEG-4 AVC/H.264 (.102 to .106 and variants) and HEVC/H.265 (.107/.108)
carry the video bit stream in the fragments of encapsulated Pixel Data. The stream is
not decoded; its units are found by their start codes (00 00 01), which cannot occur
inside a unit (emulation prevention in H.264/HEVC, the start code rules of MPEG-2):

* H.264 / HEVC Annex B byte streams: SEI NAL units (H.264 type 6; HEVC types 39 and 40),
  which carry free text such as user_data_unregistered, and filler data NAL units
  (H.264 12, HEVC 38) are removed; the other NAL unit types of the standards are copied
  verbatim; reserved and unspecified types make the stream refused.
* MPEG-2 video: user_data (start code 00 00 01 B2, up to the next start code) is
  removed; reserved and system start codes (a program or transport stream) make the
  stream refused.

Nothing may follow the end of a stream: bytes after an H.264 end of stream NAL unit
(type 11), an HEVC end of bitstream NAL unit (type 37) or the MPEG-2 sequence_end_code
(00 00 01 B7) are removed (zero bytes, stream padding, are left); further start codes
there make the stream refused. End of sequence NAL units (H.264 10, HEVC 36) and access
unit delimiters must be as short as their syntax (no room for text); otherwise refused.

A stream that does not start like an elementary stream of its kind (an ISO BMFF/MP4
container whatever its first box's size field, an MPEG-2 transport or program stream,
anything unrecognised) is refused: its container may hold identity (``udta`` boxes,
titles) that is not checked here.
"""

from __future__ import annotations

from pixeldeid.errors import InputError
from pixeldeid.jpegmarkers import _item, _items

__all__ = ["VIDEO_TRANSFER_SYNTAXES", "strip_video", "strip_video_stream"]

_P = "1.2.840.10008.1.2.4."
MPEG2 = frozenset(_P + s for s in ("100", "100.1", "101", "101.1"))
H264 = frozenset(_P + s for s in ("102", "102.1", "103", "103.1", "104", "104.1", "105",
                                  "105.1", "106", "106.1"))
HEVC = frozenset(_P + s for s in ("107", "108"))
#: Transfer syntax UID -> kind of elementary stream ("mpeg2", "h264", "hevc").
VIDEO_TRANSFER_SYNTAXES = {**dict.fromkeys(MPEG2, "mpeg2"), **dict.fromkeys(H264, "h264"),
                           **dict.fromkeys(HEVC, "hevc")}

# NAL unit types (H.264 Table 7-1, H.265 Table 7-1): copied / removed; others refused
_H264_KEEP = frozenset({1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15, 19, 20, 21})
_H264_DROP = {6: "H.264 SEI", 12: "H.264 filler data"}
_HEVC_KEEP = frozenset({*range(0, 10), *range(16, 22), *range(32, 38)})
_HEVC_DROP = {38: "HEVC filler data", 39: "HEVC prefix SEI", 40: "HEVC suffix SEI"}
# MPEG-2 video start codes (ISO/IEC 13818-2 Table 6-1): picture, slices, sequence header,
# sequence error, extension, sequence end, group of pictures; B2 user data is removed
_MPEG2_KEEP = frozenset({0x00, *range(0x01, 0xB0), 0xB3, 0xB4, 0xB5, 0xB7, 0xB8})
_MPEG2_USER_DATA = 0xB2
_SEQUENCE_HEADER = 0xB3
_SEQUENCE_END = 0xB7
# NAL unit types after which the stream ends (H.264 end of stream, HEVC end of bitstream)
_END = {"h264": 11, "hevc": 37}
# NAL unit types whose payload has a fixed size (beyond the NAL unit header): end of
# sequence (none) and access unit delimiters (one byte: picture type and stop bit)
_FIXED = {"h264": {9: 1, 10: 0}, "hevc": {35: 1, 36: 0}}
# ISO BMFF box types that may come first in an MP4/MOV/3GP/fragmented file (ISO/IEC
# 14496-12): a stream whose first box is one of them is a container
_BMFF_FIRST = frozenset({b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide",
                         b"pdin", b"moof", b"sidx", b"uuid", b"meta", b"emsg", b"prft",
                         b"mfra", b"ssix"})


def _start_codes(stream: bytes, what: str) -> list[int]:
    """Offsets of the start code prefixes 00 00 01; only zero bytes may come before the first."""
    first = stream.find(b"\0\0\1")
    if stream[4:8] in _BMFF_FIRST or (first >= 0 and stream[first + 3:first + 7] in _BMFF_FIRST):
        raise InputError(f"{what} Pixel Data is an ISO BMFF (MP4/MOV) container, not an "
                         f"elementary stream: its boxes cannot be checked")
    if stream[:1] == b"\x47":
        raise InputError(f"{what} Pixel Data looks like an MPEG-2 transport stream, not an "
                         f"elementary stream: it cannot be checked")
    if first < 0 or stream[:first].strip(b"\0"):
        raise InputError(f"{what} Pixel Data does not start like an elementary stream "
                         f"(no start code)")
    starts = []
    pos = first
    while pos >= 0:
        starts.append(pos)
        pos = stream.find(b"\0\0\1", pos + 3)
    return starts


def _classify(stream: bytes, kind: str, what: str, k: int, sc: int, end: int) -> tuple[str, str]:
    """Classify the unit whose start code is at ``sc`` (payload up to ``end``, without the
    zero bytes before the next start code): ``("keep", "")``, ``("drop", NAME)`` or
    ``("end", "")`` for the unit that ends the stream; raise for one that cannot be checked."""
    head = sc + 3
    b0 = stream[head]
    if kind == "mpeg2":
        if k == 0 and b0 != _SEQUENCE_HEADER:
            raise InputError("MPEG-2 video stream does not start with a sequence header "
                             "(a program stream or another container?)")
        if b0 == _MPEG2_USER_DATA:
            return "drop", "MPEG-2 user data"
        if b0 == _SEQUENCE_END:
            return "end", ""
        if b0 in _MPEG2_KEEP:
            return "keep", ""
        raise InputError(f"MPEG-2 video stream with reserved or system start code "
                         f"{b0:02X} at byte {sc}: it cannot be checked")
    hdr = 1 if kind == "h264" else 2
    if b0 & 0x80 or head + hdr > end:
        raise InputError(f"{what} stream: invalid NAL unit header at byte {sc}")
    t = b0 & 0x1F if kind == "h264" else (b0 >> 1) & 0x3F
    keep, drop = (_H264_KEEP, _H264_DROP) if kind == "h264" else (_HEVC_KEEP, _HEVC_DROP)
    if t == _END[kind]:
        return "end", ""
    if t in _FIXED[kind] and end - head - hdr != _FIXED[kind][t]:
        raise InputError(f"{what} stream: NAL unit type {t} at byte {sc} is not as long as "
                         f"its syntax (extra bytes)")
    if t in keep:
        return "keep", ""
    if t not in drop:
        raise InputError(f"{what} stream: reserved or unspecified NAL unit type {t} "
                         f"at byte {sc}: it cannot be checked")
    return "drop", drop[t]


def _end_cut(stream: bytes, kind: str, what: str, sc: int, last: bool) -> int | None:
    """Where to cut the stream after its end unit at ``sc`` (``None``: nothing but zero
    bytes follows); units after it are refused."""
    if not last:
        raise InputError(f"{what} stream: units after the end of stream at byte {sc}")
    cut = sc + 3 + (2 if kind == "hevc" else 1)
    return cut if stream[cut:].strip(b"\0") else None


def strip_video_stream(stream: bytes, kind: str) -> tuple[bytes, list[str]]:
    """Remove SEI / filler NAL units (``"h264"``, ``"hevc"``) or user data (``"mpeg2"``).

    Parameters
    ----------
    stream : bytes
        An Annex B byte stream (H.264, HEVC) or an MPEG-2 video elementary stream.
    kind : str
        ``"h264"``, ``"hevc"`` or ``"mpeg2"``.

    Returns
    -------
    data : bytes
        The stream, ``stream`` itself when nothing was removed.
    removed : list of str
        Names of the removed units, e.g. ``["H.264 SEI", "H.264 data after the end of
        stream"]``.

    Raises
    ------
    InputError
        A container, a stream that does not start like one of its kind, reserved unit
        types, units longer than their syntax, units after the end of stream.
    """
    what = {"h264": "H.264", "hevc": "HEVC", "mpeg2": "MPEG-2"}[kind]
    starts = _start_codes(stream, what)
    n = len(stream)
    pieces: list[bytes] = []
    removed: list[str] = []
    cursor = 0
    for k, sc in enumerate(starts):
        head = sc + 3
        nxt = starts[k + 1] if k + 1 < len(starts) else n
        if head >= nxt:
            raise InputError(f"{what} stream: empty unit at byte {sc}")
        end = nxt  # the unit without the zero bytes before the next start code
        while end > head + 1 and stream[end - 1] == 0:
            end -= 1
        action, name = _classify(stream, kind, what, k, sc, end)
        if action == "keep":
            continue
        if action == "end":
            cut = _end_cut(stream, kind, what, sc, k + 1 == len(starts))
            if cut is not None:
                pieces.append(stream[cursor:cut])
                cursor = n
                removed.append(f"{what} data after the end of stream")
            break
        # H.264/HEVC: the zero bytes before its start code go with it (a NAL unit never
        # ends with 00); MPEG-2 stuffing is left, a header may end with a zero byte
        lo, floor = sc, max(cursor, starts[k - 1] + 4 if k else 0)
        while kind != "mpeg2" and lo > floor and stream[lo - 1] == 0:
            lo -= 1
        pieces.append(stream[cursor:lo])
        cursor = end
        removed.append(name)
    if not removed:
        return stream, []
    pieces.append(stream[cursor:])
    return b"".join(pieces), removed


def strip_video(pixel_data: bytes, transfer_syntax: str) -> tuple[bytes, list[str]]:
    """Strip the video stream held in the fragments of encapsulated Pixel Data.

    Returns the new Pixel Data value (``pixel_data`` itself when nothing was removed and
    the Basic Offset Table is empty or the single offset 0) and ``"video: NAME"`` for each
    removed unit. A changed stream gets an empty Basic Offset Table and is split into
    fragments no longer than the input's longest (one fragment stays one fragment).
    """
    kind = VIDEO_TRANSFER_SYNTAXES[str(transfer_syntax)]
    pixel_data = bytes(pixel_data)
    items = _items(pixel_data)
    bot, frags = items[0], items[1:]
    if not frags:
        raise InputError("video Pixel Data without fragments")
    new, names = strip_video_stream(b"".join(frags), kind)
    removed = [f"video: {name}" for name in names]
    bot_ok = not bot or (len(frags) == 1 and bot == b"\0\0\0\0")
    if not removed and bot_ok:
        return pixel_data, []
    if not bot_ok:
        removed.append("Basic Offset Table (not the stream's offset: emptied)")
    size = max(len(f) for f in frags)
    size += size % 2
    chunks = [new[i:i + size] for i in range(0, len(new), size)] or [b""]
    return _item(b"") + b"".join(_item(c) for c in chunks), removed

