"""Blank the free text of an ICC profile in place, leaving its colour transform unchanged.

An ICC profile (ICC.1:2001-04 v2, ICC.1:2010/2022 v4) embedded in DICOM (ICC Profile
(0028,2000), also in the Optical Path Sequence) or in a JP2 ``colr`` box carries text that
can be set to anything: the description (``desc``), copyright (``cprt``), device
manufacturer and model descriptions (``dmnd``, ``dmdd``), viewing conditions (``vued``),
characterization target (``targ``) and private tags. :func:`blank_text` overwrites that
text with spaces without moving anything: every tag keeps its offset and size, the tag
table and the header are unchanged (but for the profile ID, recomputed), so every
colour-related tag is bit-identical and the transform is the same.

Text is found by the type of each tag's data, whatever the tag's signature:

* ``desc`` (v2 textDescriptionType): the ASCII, Unicode and ScriptCode parts;
* ``mluc`` (multiLocalizedUnicodeType): every UTF-16BE record;
* ``text`` (textType), and ``data`` (dataType) when its flag says ASCII;
* ``ncl2`` (namedColor2Type) prefix, suffix and colour names, ``clrt``
  (colorantTableType) colorant names, ``dict`` (dictType, e.g. the ``meta`` tag) names,
  values and their ``mluc`` display names.

Bytes that no tag covers (padding between tags, the reserved header bytes 100-127) are
zeroed, and bytes of a text element that none of its fields covers are zeroed too. Tag
types that hold text but are not parsed here (``pseq``, ``psid``, ``crdi``, ``bfd ``,
``ncol``, ``devs``, and the iccMAX text types) make the profile refused, as does any
profile whose structure does not parse. Other tag types (curves, matrices, lookup
tables, private binary types) are numbers for the colour transform and are copied.
"""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from pixeldeid.errors import InputError

__all__ = ["ICCProfileError", "blank_text", "profile_id"]

_HEADER = 128
_ID = slice(84, 100)
_RESERVED = slice(100, 128)
# tag signatures whose name may be echoed in the report (a private signature could be text)
_KNOWN_TAGS = frozenset({
    b"desc", b"cprt", b"dmnd", b"dmdd", b"vued", b"targ", b"scrd", b"dscm", b"meta",
    b"ncl2", b"clrt", b"clot", b"ps2i", b"ps2s", b"ciis", b"pseq", b"psid", b"crdi",
})
# tag types that hold text but are not parsed: the profile is refused
_UNPARSED_TEXT = frozenset({
    b"pseq", b"psid", b"crdi", b"bfd ", b"ncol", b"devs", b"utf8", b"ut16", b"zut8",
    b"zxml", b"MS10",
})


class ICCProfileError(InputError):
    """An ICC profile whose structure cannot be parsed, so its text cannot be blanked.

    The reason names the problem (field, tag number), never the profile's text.
    """


def _u32(buf: bytearray | bytes, pos: int) -> int:
    return struct.unpack_from(">I", buf, pos)[0]


def _fill(buf: bytearray, start: int, length: int, unit: bytes, *, nul: bool = False) -> None:
    """Overwrite ``length`` bytes at ``start`` with ``unit`` repeated (a last unit of
    zeros when ``nul``: the terminator of a counted NUL-terminated string)."""
    if length <= 0:
        return
    data = (unit * (length // len(unit) + 1))[:length]
    if nul:
        data = data[:length - len(unit)] + b"\0" * len(unit) if length >= len(unit) else b"\0"
    buf[start:start + length] = data


def _zero(buf: bytearray, start: int, end: int) -> None:
    if end > start:
        buf[start:end] = bytes(end - start)


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ICCProfileError(f"ICC profile: {what}")


def _blank_desc(buf: bytearray, s: int, size: int) -> None:
    """v2 textDescriptionType: ASCII, Unicode and ScriptCode parts (the last two may be
    cut short, as some writers do)."""
    end, p = s + size, s + 12
    _need(p <= end, "desc element shorter than its ASCII count")
    count = _u32(buf, s + 8)
    _need(p + count <= end, "desc ASCII part runs past its tag")
    _fill(buf, p, count, b" ", nul=True)
    p += count
    if p + 8 <= end:  # Unicode language code, count in characters, UTF-16BE
        count = _u32(buf, p + 4)
        p += 8
        _need(p + 2 * count <= end, "desc Unicode part runs past its tag")
        _fill(buf, p, 2 * count, b"\0 ", nul=True)
        p += 2 * count
        if p + 3 <= end:  # ScriptCode code, count, 67 bytes
            count = buf[p + 2]
            p += 3
            room = min(67, end - p)
            _need(count <= 67, "desc ScriptCode count over 67")
            _zero(buf, p, p + room)
            _fill(buf, p, min(count, room), b" ", nul=count <= room)
            p += room
    _zero(buf, p, end)


def _blank_mluc(buf: bytearray, s: int, size: int) -> None:
    """multiLocalizedUnicodeType: every record's UTF-16BE string, slack zeroed."""
    _need(size >= 16, "mluc element shorter than its header")
    n, rec = _u32(buf, s + 8), _u32(buf, s + 12)
    _need(rec == 12, "mluc record size is not 12")
    first = 16 + 12 * n
    _need(first <= size, "mluc record table runs past its tag")
    strings = []
    for i in range(n):
        length, off = struct.unpack_from(">II", buf, s + 16 + 12 * i + 4)
        _need(first <= off and off + length <= size, f"mluc record {i} runs out of its tag")
        strings.append((off, off + length))
    _zero_outside(buf, s, first, size, strings)
    for off, stop in strings:
        _fill(buf, s + off, stop - off, b"\0 ")


def _zero_outside(buf: bytearray, s: int, lo: int, hi: int,
                  used: list[tuple[int, int]]) -> None:
    """Zero the bytes of ``[s+lo, s+hi)`` that no ``used`` range (relative to ``s``) covers."""
    pos = lo
    for a, b in sorted(used):
        _zero(buf, s + pos, s + a)
        pos = max(pos, b)
    _zero(buf, s + pos, s + hi)


def _blank_text(buf: bytearray, s: int, size: int) -> None:
    """textType: NUL-terminated ASCII to the end of the tag."""
    _fill(buf, s + 8, size - 8, b" ", nul=True)


def _blank_data(buf: bytearray, s: int, size: int) -> None:
    """dataType: blanked when its flag says ASCII (binary data is left)."""
    _need(size >= 12, "data element shorter than its header")
    if _u32(buf, s + 8) == 0:
        _fill(buf, s + 12, size - 12, b" ", nul=True)


def _blank_names(buf: bytearray, first: int, count: int, stride: int, end: int) -> int:
    """Blank ``count`` 32-byte NUL-terminated names, ``stride`` bytes apart; return the
    end of the table."""
    _need(first + count * stride <= end, "named colour table runs past its tag")
    for i in range(count):
        _fill(buf, first + i * stride, 32, b" ", nul=True)
    return first + count * stride


def _blank_ncl2(buf: bytearray, s: int, size: int) -> None:
    """namedColor2Type: prefix, suffix and every colour's root name."""
    _need(size >= 84, "ncl2 element shorter than its header")
    count, coords = _u32(buf, s + 12), _u32(buf, s + 16)
    _blank_names(buf, s + 20, 2, 32, s + size)
    _zero(buf, _blank_names(buf, s + 84, count, 38 + 2 * coords, s + size), s + size)


def _blank_clrt(buf: bytearray, s: int, size: int) -> None:
    """colorantTableType: every colorant's name."""
    _need(size >= 12, "clrt element shorter than its header")
    _zero(buf, _blank_names(buf, s + 12, _u32(buf, s + 8), 38, s + size), s + size)


def _blank_dict(buf: bytearray, s: int, size: int) -> None:
    """dictType: UTF-16BE names and values, ``mluc`` display names and values."""
    _need(size >= 16, "dict element shorter than its header")
    n, rec = _u32(buf, s + 8), _u32(buf, s + 12)
    first = 16 + n * rec
    _need(rec in (16, 24, 32) and first <= size, "dict record table does not fit its tag")
    used: list[tuple[int, int]] = []
    for i in range(n):
        fields = struct.unpack_from(f">{rec // 4}I", buf, s + 16 + i * rec)
        for k in range(0, len(fields), 2):
            off, length = fields[k], fields[k + 1]
            if off == 0 and length == 0:
                continue
            _need(first <= off and off + length <= size, f"dict record {i} runs out of its tag")
            used.append((off, off + length))
            if k < 4:
                _fill(buf, s + off, length, b"\0 ")
            else:
                _need(buf[s + off:s + off + 4] == b"mluc",
                      f"dict record {i} display text is not mluc")
                _blank_mluc(buf, s + off, length)
    _zero_outside(buf, s, first, size, used)


_BLANKERS: dict[bytes, Callable[[bytearray, int, int], None]] = {
    b"desc": _blank_desc, b"mluc": _blank_mluc, b"text": _blank_text, b"data": _blank_data,
    b"ncl2": _blank_ncl2, b"clrt": _blank_clrt, b"dict": _blank_dict,
}


def _size(profile: bytes) -> int:
    """The profile's size field, checked against the data (one DICOM pad byte allowed)."""
    _need(len(profile) >= _HEADER + 4, "shorter than its header and tag count")
    size = _u32(profile, 0)
    padded = size % 2 == 1 and len(profile) == size + 1 and profile[-1] == 0
    _need(size == len(profile) or padded, "size field does not match the data")
    _need(profile[36:40] == b"acsp", "no 'acsp' signature")
    return size


def _tags(profile: bytes, size: int) -> list[tuple[bytes, int, int]]:
    """The tag table: (signature, offset, size) of each tag, every range checked."""
    n = _u32(profile, _HEADER)
    table_end = _HEADER + 4 + 12 * n
    _need(table_end <= size, "tag table runs past the end")
    tags = []
    for i in range(n):
        sig, off, length = struct.unpack_from(">4sII", profile, _HEADER + 4 + 12 * i)
        _need(off >= table_end and off + length <= size, f"tag {i} data out of range")
        _need(length >= 8, f"tag {i} shorter than a type signature")
        tags.append((sig, off, length))
    return tags


def _text_sizes(tags: list[tuple[bytes, int, int]], text: set[int]) -> dict[int, int]:
    """The length of each text element up to the next tag's data: compact profiles (a
    456-byte sRGB of slide scanners) declare a v2 ``desc`` of 95 bytes whose Unicode and
    ScriptCode parts are the next tags' data (``cprt``, ``wtpt``...); those bytes are left
    to their tags. A text element may share its whole range with another tag; one that
    starts inside another tag's data (as cut so) is refused."""
    ends = {}
    for i in text:
        _, a, la = tags[i]
        ends[i] = min([a + la] + [b for _, b, _ in tags if a < b < a + la])
    for i in text:
        _, a, la = tags[i]
        for j, (_, b, lb) in enumerate(tags):
            if j != i and (a, la) != (b, lb) and b <= a < ends.get(j, b + lb):
                raise ICCProfileError(f"ICC profile: tag {i} text starts inside the data of "
                                      f"tag {j}")
    return {i: ends[i] - tags[i][1] for i in text}


def _label(sig: bytes) -> str:
    return f"ICC {sig.decode()} text" if sig in _KNOWN_TAGS else "ICC private tag text"


def profile_id(profile: bytes) -> bytes:
    """The profile ID of ICC.1:2010 7.2.18: MD5 of the profile with the flags (44-47),
    rendering intent (64-67) and profile ID (84-99) fields zeroed."""
    data = bytearray(profile[:_u32(profile, 0)])
    data[44:48] = bytes(4)
    data[64:68] = bytes(4)
    data[_ID] = bytes(16)
    return hashlib.md5(bytes(data)).digest()


def blank_text(profile: bytes) -> tuple[bytes, list[str]]:
    """Replace the text of an ICC profile's text-bearing tags with spaces, in place.

    Parameters
    ----------
    profile : bytes
        An ICC v2 or v4 profile, optionally followed by one zero pad byte (a DICOM value of
        odd profile size).

    Returns
    -------
    data : bytes
        The profile with the same length, tag table and tag offsets; ``profile`` itself
        when nothing changed. Text is spaces (U+0020 in UTF-16), string terminators stay,
        bytes no field covers are zeros; a non-zero profile ID is recomputed.
    blanked : list of str
        What was changed, e.g. ``["ICC desc text", "ICC cprt text"]``; private tag
        signatures are not echoed (``"ICC private tag text"``), nor is any text.

    Raises
    ------
    ICCProfileError
        A ``ValueError`` (an :class:`~pixeldeid.errors.InputError`): wrong size field, no
        ``acsp`` signature, a tag table or element running out of range, overlapping text
        and data, or a text-bearing tag type that is not parsed here.
    """
    profile = bytes(profile)
    size = _size(profile)
    tags = _tags(profile, size)
    buf = bytearray(profile)
    text = set()
    for i, (_, off, _length) in enumerate(tags):
        kind = profile[off:off + 4]
        if kind in _UNPARSED_TEXT:
            raise ICCProfileError(f"ICC profile: tag {i} of type {kind.decode()!r} holds text "
                                  f"that cannot be blanked")
        if kind in _BLANKERS:
            text.add(i)
    sizes = _text_sizes(tags, text)
    blanked: list[str] = []
    for i in sorted(text):
        sig, off, length = tags[i]
        _BLANKERS[profile[off:off + 4]](buf, off, sizes[i])
        if buf[off:off + length] != profile[off:off + length] and _label(sig) not in blanked:
            blanked.append(_label(sig))
    _zero_gaps(buf, tags, size, blanked)
    if not blanked:
        return profile, []
    if profile[_ID].strip(b"\0"):
        buf[_ID] = profile_id(bytes(buf))
    return bytes(buf), blanked


def _zero_gaps(buf: bytearray, tags: list[tuple[bytes, int, int]], size: int,
               blanked: list[str]) -> None:
    """Zero the reserved header bytes and the bytes between and after the tags' data."""
    if any(buf[_RESERVED]):
        buf[_RESERVED] = bytes(28)
        blanked.append("ICC header reserved bytes")
    table_end = _HEADER + 4 + 12 * len(tags)
    before = bytes(buf[table_end:size])
    _zero_outside(buf, 0, table_end, size, [(off, off + n) for _, off, n in tags])
    if bytes(buf[table_end:size]) != before:
        blanked.append("ICC unused bytes")
