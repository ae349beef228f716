"""Fast Part 10 reading of well-formed files into the Dataset pydicom's reader builds.

:func:`pydicom.dcmread` reads a file element by element through a file object (two or
three small reads per element). :func:`fast_dcmread` reads the whole file once and walks
its bytes with :func:`struct.unpack_from`, building the same
:class:`~pydicom.dataelem.RawDataElement` objects, the same (lazy) sequences and the same
file meta. It only takes the common, well-formed case: a ``DICM`` preamble, explicit or
implicit VR little endian, every element complete and with a standard VR. Anything else
(big endian, deflate, a truncated or malformed element, an undefined-length value of an
unusual kind) returns ``None`` and the caller reads the file with pydicom, whose warnings
and errors then apply unchanged.
"""

from __future__ import annotations

import os
import struct

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import ENCODED_VR, _dictionary_vr_fast, read_sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32
from pydicom.values import convert_string

_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
#: Transfer syntaxes whose data set is not explicit VR little endian after the meta.
_OTHER_ENCODINGS = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})

_HEAD = struct.Struct("<HH2sH")
_IMPL = struct.Struct("<HHL")
_LEN32 = struct.Struct("<L")
_LONG = frozenset(v.encode() for v in EXPLICIT_VR_LENGTH_32)
_VR_NAMES = {b: b.decode() for b in ENCODED_VR}
_SEQ_DELIM = b"\xfe\xff\xdd\xe0"
_ITEM = 0xFFFEE000


#: The first read: the whole header of most files; a last element that runs past it
#: (the pixel data) is read straight into its own bytes, so it is copied once.
HEAD_BYTES = 1 << 16


class _NotFast(Exception):
    """The file needs pydicom's reader (malformed, unusual or another encoding)."""


class _WholeFile(Exception):
    """The first read did not hold everything the parse needs: read the whole file."""


class _Source:
    """The bytes read so far, the open file and its size."""

    def __init__(self, data: bytes, fh, size: int) -> None:
        self.data, self.fh, self.size = data, fh, size

    @property
    def partial(self) -> bool:
        return len(self.data) < self.size

    def tail_value(self, start: int, length: int) -> bytes:
        """The value of the file's last element, read from the file (not copied twice)."""
        if not self.partial or start + length != self.size:
            raise _WholeFile
        self.fh.seek(start)
        value = self.fh.read(length)
        if len(value) != length:
            raise _NotFast
        return value


def fast_dcmread(path: str | os.PathLike) -> FileDataset | None:
    """Read ``path`` like ``pydicom.dcmread(path)``; None when pydicom must read it."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            src = _Source(fh.read(HEAD_BYTES), fh, size)
            try:
                return _read(src, name)
            except _WholeFile:
                fh.seek(0)
                data = fh.read()
                return _read(_Source(data, None, len(data)), name)
    except Exception:  # noqa: BLE001 - anything unusual: pydicom reads it and says what
        return None


def _read(src: _Source, filename: str) -> FileDataset:
    data = src.data
    if len(data) < 132 or data[128:132] != b"DICM":
        raise _NotFast
    meta_raw, pos = _elements(src, 132, False, group2=True)
    meta = FileMetaDataset(Dataset(meta_raw))
    meta.set_original_encoding(False, True, default_encoding)
    ts_elem = meta_raw.get(0x00020010)
    if ts_elem is None or not ts_elem.value:
        raise _NotFast
    ts = ts_elem.value.decode("ascii", "replace").rstrip("\x00 ")
    if ts in _OTHER_ENCODINGS:
        raise _NotFast
    implicit = ts == _IMPLICIT_LE
    if pos + 6 <= len(data):
        if data[pos] == 0 and data[pos + 1] == 0:
            raise _NotFast  # a command set (group 0000): pydicom reads it apart
        b0, b1 = data[pos + 4], data[pos + 5]
        if (not (0x40 < b0 < 0x5B and 0x40 < b1 < 0x5B)) != implicit:
            raise _NotFast  # the data set's encoding disagrees with the transfer syntax
    raw, end = _elements(src, pos, implicit)
    if end != src.size:
        raise _NotFast
    encoding = _encoding(raw.get(0x00080005)) if 0x00080005 in raw else default_encoding
    ds = Dataset(raw, parent_encoding=default_encoding)
    ds.set_original_encoding(implicit, True, encoding)
    fds = FileDataset(filename, ds, data[:128], meta, implicit, True)
    fds.set_original_encoding(implicit, True, ds._character_set)
    return fds


def _encoding(elem: RawDataElement | None):
    value = elem.value if elem is not None else None
    return convert_encodings(convert_string(value or b"", True))


def _elements(src: _Source, pos: int, implicit: bool, *, group2: bool = False
              ) -> tuple[dict, int]:
    """Parse elements from ``pos``; return them (by tag) and where parsing stopped."""
    out: dict = {}
    data = src.data
    n = len(data)
    unpack_head, unpack_impl, unpack_len = _HEAD.unpack_from, _IMPL.unpack_from, _LEN32.unpack_from
    encoding = default_encoding
    while pos < n or (src.partial and pos < src.size):
        if pos + 12 > n and src.partial:
            raise _WholeFile
        if pos + 8 > n:
            raise _NotFast
        if implicit:
            group, elem, length = unpack_impl(data, pos)
            vr = None
            start = pos + 8
        else:
            group, elem, vrb, length = unpack_head(data, pos)
            if group2 and group != 2:
                break
            vr = _VR_NAMES.get(vrb)
            if vr is None:
                raise _NotFast
            start = pos + 8
            if vrb in _LONG:
                if start + 4 > n:
                    raise _NotFast
                length = unpack_len(data, start)[0]
                start += 4
        tag = group << 16 | elem
        if tag == 0xFFFEE00D or group == 0xFFFE:
            raise _NotFast  # a delimiter or item outside a sequence
        if length == 0xFFFFFFFF:
            out[BaseTag(tag)], pos = _undefined(src, tag, vr, start, implicit, encoding)
            continue
        end = start + length
        if end > n:
            if end > src.size:
                raise _NotFast  # truncated: pydicom says how
            value = src.tail_value(start, length)
        elif length:
            value = data[start:end]
        else:
            value = empty_value_for_VR(vr, raw=True)
        if tag == 0x00080005:
            encoding = convert_encodings(convert_string(value or b"", True))
        btag = BaseTag(tag)
        out[btag] = RawDataElement(btag, vr, length, value, start, implicit, True)
        pos = end
    return out, pos


def _undefined(src: _Source, tag: int, vr: str | None, start: int, implicit: bool,
               encoding) -> tuple[DataElement | RawDataElement, int]:
    """An undefined-length element: a sequence (parsed now, as pydicom does) or an
    encapsulated value up to its Sequence Delimitation Item."""
    if vr == "UN":
        raise _NotFast  # PS3.5 6.2.2: a sequence in implicit VR, decoded by pydicom's rules
    if vr is None:
        try:
            vr = _dictionary_vr_fast(tag)
        except KeyError:
            raise _NotFast from None
    if src.partial:
        raise _WholeFile  # its end is found by parsing to the delimiter
    data = src.data
    if vr == "SQ":
        fp = DicomBytesIO(data)
        fp.is_little_endian = True
        fp.is_implicit_VR = implicit
        fp.seek(start)
        seq = read_sequence(fp, implicit, True, 0xFFFFFFFF, encoding)
        return DataElement(BaseTag(tag), vr, seq, start, is_undefined_length=True), fp.tell()
    end = data.find(_SEQ_DELIM, start)
    if end < 0 or end + 8 > len(data) or data[end + 4:end + 8] != b"\x00\x00\x00\x00":
        raise _NotFast
    return RawDataElement(BaseTag(tag), vr, 0xFFFFFFFF, data[start:end], start, implicit,
                          True), end + 8
