"""The header fast path's data model: a file's elements as raw bytes, sequences parsed.

:class:`RawDataset` looks, to pixeldeid's header engine, like the pydicom Dataset it
normally walks: ``_dict`` of :class:`~pydicom.dataelem.RawDataElement` by tag, sequences
(:class:`RawSequence`) whose items are RawDatasets, ``in``, ``del``, ``get`` and attribute
reads by keyword. The same :class:`~pixeldeid.engine.Walker`, the same
:mod:`pixeldeid.dsvalues` reads and writes and the same writer
(:mod:`pixeldeid.rawwrite`) run on it, so what is removed, replaced or kept is decided by
the one engine; what is saved is pydicom's per-element objects, conversions and reads.

Anything the fast path does not take raises :class:`Decline` (a subclass of
:class:`LookupError`), and the caller de-identifies the file the ordinary way: another
encoding than little endian, a JPEG transfer syntax (its frames are cleaned of metadata),
a malformed or truncated element, an unusual character set, or, during the walk, any
value that must be decoded rather than copied (setting a pydicom attribute, converting an
element). A declined file costs its parse, nothing else.
"""

from __future__ import annotations

import os
import struct

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import RawDataElement, empty_value_for_VR
from pydicom.filereader import ENCODED_VR
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from .dsvalues import RAW_DEFAULTS, dictionary_vr, garbled_text, keyword_of, make_raw, peek, tag_of

_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
#: Character sets whose text pixeldeid's own ASCII values and pydicom's decoding agree on.
_CHARSETS = frozenset({b"", b"ISO_IR 100", b"ISO_IR 6", b"ISO_IR 192"})

_HEAD = struct.Struct("<HH2sH")
_IMPL = struct.Struct("<HHL")
_LEN32 = struct.Struct("<L")
_VR_NAMES = {b: b.decode() for b in ENCODED_VR}
#: The VRs of PS3.5 (what an explicit VR element may say it is).
KNOWN_VRS = frozenset(_VR_NAMES.values())
_LONG = frozenset(EXPLICIT_VR_LENGTH_32)
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 64


class Decline(LookupError):
    """The fast path does not take this file: de-identify it the ordinary way."""


class _WholeFile(Exception):
    """The first read did not hold all the parse needs: read the whole file."""


#: The first read: the header of most files. Pixel Data that runs past it is not read.
HEAD_BYTES = 1 << 16


def file_stamp(st: os.stat_result) -> tuple[int, int, int]:
    """What tells a file's content changed besides its size: the modification time, the
    status change time (a rewrite that kept the size and set the modification time back,
    as ``cp -p`` and ``rsync -a`` do, still changes it) and the inode (a file replaced by
    another)."""
    return st.st_mtime_ns, st.st_ctime_ns, st.st_ino


class FileSlice:
    """The value of an element left in its file: ``length`` bytes at ``offset``.

    Not bytes on purpose: code that would use it as bytes fails (and the fast path hands
    the file to the ordinary path) instead of writing something else. The writer copies
    it from file to file (:func:`pixeldeid.atomic.write_exclusive`) after checking that
    the file has not changed since it was parsed.
    """

    __slots__ = ("path", "size", "stamp", "offset", "length")

    def __init__(self, path: str, size: int, stamp: tuple, offset: int = 0,
                 length: int = 0) -> None:
        self.path, self.size, self.stamp = path, size, stamp
        self.offset, self.length = offset, length

    def at(self, offset: int, length: int) -> FileSlice:
        return FileSlice(self.path, self.size, self.stamp, offset, length)

    def __len__(self) -> int:
        return self.length

    def check(self, fd: int) -> None:
        """Raise OSError when the open file ``fd`` is not the file that was parsed."""
        st = os.fstat(fd)
        if st.st_size != self.size or file_stamp(st) != self.stamp:
            raise OSError(f"{self.path} changed while it was being de-identified")

    def read(self) -> bytes:
        with open(self.path, "rb") as fh:
            self.check(fh.fileno())
            fh.seek(self.offset)
            data = fh.read(self.length)
        if len(data) != self.length:
            raise OSError(f"{self.path}: short read")
        return data


class RawSequence:
    """A sequence element whose items are :class:`RawDataset`."""

    __slots__ = ("tag", "value")
    VR = "SQ"

    def __init__(self, tag: int, items: list) -> None:
        self.tag = tag
        self.value = items

    @property
    def keyword(self) -> str:
        return keyword_of(self.tag)


class RawDataset:
    """Raw elements of one data set (or sequence item), keyed by tag (plain ints: faster
    to look up than pydicom's BaseTag)."""

    #: The parser declines what :func:`pixeldeid.api.instance_problem` would otherwise
    #: look for element by element: a value shorter than its length (each is read whole,
    #: or is a :class:`FileSlice` of its declared length), elements out of tag order,
    #: items in another encoding (their VR bytes are no VR), and text values holding
    #: control bytes.
    parsed_strictly = True

    def __init__(self, elements: dict, implicit: bool, charset) -> None:
        d = self.__dict__
        d["_dict"] = elements
        d["original_encoding"] = (implicit, True)
        d["original_character_set"] = charset
        d["_character_set"] = charset

    # -- what the engine reads ----------------------------------------------------------
    def __contains__(self, key) -> bool:
        return tag_of(key) in self._dict

    def __getitem__(self, key):
        elem = self._dict[tag_of(key)]
        if isinstance(elem, RawSequence):
            return elem
        raise Decline(f"element {key} would have to be decoded")

    def __delitem__(self, key) -> None:
        if isinstance(key, str):
            key = tag_of(key)
        del self._dict[key]

    def get(self, key, default=None):
        return peek(self, key, default)

    def __getattr__(self, name: str):
        if name[:1].isupper():
            value = peek(self, name, _MISSING)
            if value is not _MISSING:
                return value
        raise AttributeError(name)

    def __setattr__(self, name: str, value) -> None:
        if name[:1].isupper():  # a DICOM keyword: pydicom would encode it
            raise Decline(f"setting {name} needs pydicom")
        self.__dict__[name] = value

    def __delattr__(self, name: str) -> None:
        if name[:1].isupper():
            del self[name]
        else:
            del self.__dict__[name]

    def new_item(self) -> RawDataset:
        """An empty item in this data set's encoding."""
        return RawDataset({}, self.original_encoding[0], self.original_character_set)

    def new_sequence(self, tag: int) -> list:
        """Add an empty sequence element ``tag``; return its list of items."""
        seq = RawSequence(tag, [])
        self._dict[tag] = seq
        return seq.value


_MISSING = object()


class _Parser:
    def __init__(self, data: bytes, implicit: bool) -> None:
        self.data, self.implicit = data, implicit
        self.made: list[RawDataset] = []
        self.tail: FileSlice | None = None  # set for a first read that stops short
        self.stop_tag = 0x100000000  # top level: stop before this tag (a header scan)
        #: when a list: (tag, start, end, VR) of each top-level element, appended as parsed
        self.index: list | None = None
        #: a header scan's top-level tags: the other elements are skipped, not parsed
        self.keep: frozenset[int] | None = None

    @property
    def partial(self) -> bool:
        return self.tail is not None

    def _new(self, elements: dict, spans: dict) -> RawDataset:
        """A data set of ``elements``; ``spans``: tag -> (element, start, end) of the bytes
        that encode each element exactly as the writer would (copied as they are while the
        element is unchanged)."""
        ds = RawDataset(elements, self.implicit, default_encoding)
        ds.__dict__["_spans"] = spans
        ds.__dict__["_src"] = self.data
        self.made.append(ds)
        return ds

    def dataset(self, pos: int, end: int | None, depth: int) -> tuple[RawDataset, int]:
        """Elements from ``pos`` to ``end`` (None: to an Item Delimitation Item)."""
        if depth > _MAX_DEPTH:
            raise Decline("sequences nested too deep")
        data, implicit = self.data, self.implicit
        size = len(data)
        n = size if end is None else end
        first_read = self.partial
        stop_tag = self.stop_tag if depth == 0 else 0x100000000
        prev = -1
        out: dict = {}
        spans: dict = {}
        while pos < n:
            if pos + 12 > size and first_read:
                raise _WholeFile
            if pos + 8 > n:
                raise Decline("truncated element header")
            tag, vr, length, start = element_head(data, pos, implicit)
            group = tag >> 16
            if tag >= stop_tag:
                return self._new(out, spans), n
            if tag <= prev and group != 0xFFFE:
                raise Decline("elements out of order")
            prev = tag
            if tag == _ITEM_END:
                if end is not None or length:
                    raise Decline("misplaced item delimiter")
                return self._new(out, spans), start
            if group == 0xFFFE:
                raise Decline("misplaced item")
            if depth == 0 and self.keep is not None and tag not in self.keep:
                pos = self.skip(vr, length, start, depth)
                continue
            if vr == "SQ" or (vr == "UN" and length == 0xFFFFFFFF):
                if vr != "SQ":
                    raise Decline("UN sequence")
                at = pos
                out[tag], pos = self.sequence(tag, start, length, depth)
                if depth == 0 and self.index is not None:
                    self.index.append((tag, at, pos, "SQ"))
                continue
            if length == 0xFFFFFFFF:
                raise Decline("undefined length value")  # encapsulated pixel data: JPEG etc.
            stop = start + length
            if stop > n:
                raise Decline("truncated value")
            if stop <= size:
                value = data[start:stop] if length else empty_value_for_VR(vr, raw=True)
                if garbled_text(vr or dictionary_vr(tag), value):
                    raise Decline("control bytes in a text value")
            elif depth == 0 and tag == 0x7FE00010 and stop == self.tail.size:
                value = self.tail.at(start, length)  # copied file to file when written
            else:
                raise _WholeFile
            out[tag] = one = make_raw((tag, vr, length, value, start, implicit, True)
                                      + RAW_DEFAULTS)
            if stop <= size and (start - pos == 8 or data[pos + 6:pos + 8] == b"\0\0"):
                spans[tag] = (one, pos, stop)  # (a long header's reserved bytes are zero)
            if depth == 0 and self.index is not None:
                self.index.append((tag, pos, stop, vr))
            pos = stop
        if end is None:
            if first_read:
                raise _WholeFile
            raise Decline("item without delimiter")
        if pos != n:
            raise Decline("element overruns its item")
        return self._new(out, spans), pos

    def skip(self, vr: str | None, length: int, start: int, depth: int) -> int:
        """The end of the element whose value starts at ``start``, nothing of it parsed but
        the element heads of the items of a sequence of undefined length (a header scan)."""
        if vr == "SQ" or (vr == "UN" and length == 0xFFFFFFFF):
            if length != 0xFFFFFFFF:
                return self._within(start + length)
            pos = start
            while True:
                group, elem, ilen = _IMPL.unpack_from(self.data, self._within(pos + 8) - 8)
                itag = group << 16 | elem
                pos += 8
                if itag == _SEQ_END:
                    return pos
                if itag != _ITEM:
                    raise Decline("not an item")
                pos = (self._within(pos + ilen) if ilen != 0xFFFFFFFF
                       else self._skip_item(pos, depth + 1))
        if length == 0xFFFFFFFF:
            raise Decline("undefined length value")
        return self._within(start + length)

    def _skip_item(self, pos: int, depth: int) -> int:
        if depth > _MAX_DEPTH:
            raise Decline("sequences nested too deep")
        while True:
            self._within(pos + 8)
            tag, vr, length, start = element_head(self.data, pos, self.implicit)
            if tag == _ITEM_END:
                return start
            pos = self.skip(vr, length, start, depth)

    def _within(self, end: int) -> int:
        """``end``, unless the data read ends before it (then the whole file is read, or
        it is truncated)."""
        if end > len(self.data):
            if self.partial:
                raise _WholeFile
            raise Decline("truncated element")
        return end

    def sequence(self, tag: int, pos: int, length: int, depth: int) -> tuple[RawSequence, int]:
        data = self.data
        undefined = length == 0xFFFFFFFF
        end = len(data) if undefined else pos + length
        if end > len(data):
            if self.partial:
                raise _WholeFile
            raise Decline("truncated sequence")
        items: list[RawDataset] = []
        while pos < end:
            if pos + 8 > len(data) and self.partial:
                raise _WholeFile
            if pos + 8 > end:
                raise Decline("truncated item")
            group, elem, ilen = _IMPL.unpack_from(data, pos)
            itag = group << 16 | elem
            pos += 8
            if itag == _SEQ_END:
                if not undefined or ilen:
                    raise Decline("misplaced sequence delimiter")
                return RawSequence(tag, items), pos
            if itag != _ITEM:
                raise Decline("not an item")
            if ilen == 0xFFFFFFFF:
                item, pos = self.dataset(pos, None, depth + 1)
            else:
                if pos + ilen > end:
                    raise Decline("item overruns its sequence")
                item, pos = self.dataset(pos, pos + ilen, depth + 1)
            items.append(item)
        if undefined:
            if self.partial:
                raise _WholeFile
            raise Decline("sequence without delimiter")
        return RawSequence(tag, items), pos


def read_raw(path: str | os.PathLike, *, stop_tag: int | None = None,
             keep: frozenset[int] | None = None, head: int | None = None) -> RawDataset:
    """Parse a Part 10 file into a :class:`RawDataset` (raises :class:`Decline`).

    The first read takes :data:`HEAD_BYTES`; when only the Pixel Data, last in the file,
    runs past it, it is not read at all: its value is a :class:`FileSlice`, copied from
    file to file when the output is written. Otherwise the whole file is read.
    ``stop_tag``: parse the top level only up to this tag (a header scan, unchecked);
    ``keep``: with ``stop_tag``, parse only these top-level elements (skip the others);
    ``head``: the size of the first read (default :data:`HEAD_BYTES`).
    """
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read(head or HEAD_BYTES)
            if len(data) < st.st_size:
                tail = FileSlice(os.fspath(path), st.st_size, file_stamp(st))
                try:
                    return _parse(data, path, tail, stop_tag=stop_tag, keep=keep)
                except _WholeFile:
                    fh.seek(0)
                    data = fh.read()
            return _parse(data, path, None, stop_tag=stop_tag, keep=keep)
    except Decline:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable, malformed: the ordinary path says
        raise Decline(f"{type(exc).__name__}: {exc}") from exc


#: the first read of :func:`scan_patient` (the whole file is read when its elements run
#: past it)
SCAN_BYTES = 1 << 14
#: what :func:`scan_patient` reads: the character set, SOP Instance UID, Patient's Name,
#: Patient ID and Patient's Birth Date (:func:`pixeldeid.api.patient_key`)
_SCAN_TAGS = frozenset({0x00080005, 0x00080018, 0x00100010, 0x00100020, 0x00100030})


def scan_patient(path: str | os.PathLike) -> tuple[str, str]:
    """(patient key, SOP Instance UID) from the first elements of a file, for numbering
    patients before a parallel run; raises :class:`Decline` (then pydicom reads it)."""
    from .api import patient_key

    ds = read_raw(path, stop_tag=0x00110000, keep=_SCAN_TAGS, head=SCAN_BYTES)
    sop = peek(ds, "SOPInstanceUID")
    if not sop:
        raise Decline("no SOP Instance UID")
    return patient_key(ds), str(sop).strip()


def _parse(data: bytes, path, tail: FileSlice | None, *,
           stop_tag: int | None = None, index: list | None = None,
           keep: frozenset[int] | None = None) -> RawDataset:
    if len(data) < 144 or data[128:132] != b"DICM":
        raise Decline("no DICM preamble")
    meta_raw: dict = {}
    pos = 132
    while True:
        if pos + 12 > len(data) and tail is not None:
            raise _WholeFile
        if not (pos + 8 <= len(data) and data[pos] == 2 and data[pos + 1] == 0):
            break
        one, pos = _meta_element(data, pos)
        meta_raw[one.tag] = one
    ts_elem = meta_raw.get(0x00020010)
    if ts_elem is None or not ts_elem.value:
        raise Decline("no transfer syntax")
    ts = ts_elem.value.decode("ascii", "replace").rstrip("\x00 ")
    if ts == _IMPLICIT_LE:
        implicit = True
    elif ts == _EXPLICIT_LE:
        implicit = False
    else:
        raise Decline(f"transfer syntax {ts}")
    if pos + 6 > len(data) or data[pos] == 0 and data[pos + 1] == 0:
        raise Decline("empty data set or command set")
    b0, b1 = data[pos + 4], data[pos + 5]
    if (not (0x40 < b0 < 0x5B and 0x40 < b1 < 0x5B)) != implicit:
        raise Decline("data set encoding disagrees with the transfer syntax")
    parser = _Parser(data, implicit)
    parser.tail = tail
    parser.index = index
    if stop_tag is not None:
        parser.stop_tag = stop_tag
        parser.keep = keep
    size = tail.size if tail is not None else len(data)
    ds, end = parser.dataset(pos, size, 0)
    if end != size:
        raise Decline("trailing bytes")
    charset = _charset(ds)
    if stop_tag is not None:
        ds.__dict__["original_character_set"] = ds.__dict__["_character_set"] = charset
        return ds
    for one in parser.made:
        if one is not ds and 0x00080005 in one._dict:
            raise Decline("a character set inside a sequence item")
        d = one.__dict__
        d["original_character_set"] = d["_character_set"] = charset
    ds.file_meta = RawDataset(meta_raw, False, default_encoding)
    _check_instance(ds)
    ds.preamble = data[:128]
    ds.filename = os.fspath(path)
    return ds


def element_head(data: bytes, pos: int, implicit: bool) -> tuple[int, str | None, int, int]:
    """(tag, VR, length, value offset) of the element at ``pos``: the VR None where the
    encoding has none (implicit VR, items and delimiters) unless the tag is a sequence's."""
    if implicit or (data[pos] == 0xFE and data[pos + 1] == 0xFF):  # no VR: items
        group, elem, length = _IMPL.unpack_from(data, pos)
        vr = None
        start = pos + 8
    else:
        group, elem, vr, length, start = _explicit_head(data, pos)
    tag = group << 16 | elem
    if vr is None and dictionary_vr(tag) == "SQ":
        vr = "SQ"
    return tag, vr, length, start


def _explicit_head(data: bytes, pos: int) -> tuple[int, int, str, int, int]:
    """Group, element, VR, length and value offset of the explicit VR element at ``pos``."""
    group, elem, vrb, length = _HEAD.unpack_from(data, pos)
    vr = _VR_NAMES.get(vrb)
    if vr is None:
        raise Decline("unknown VR")
    start = pos + 8
    if vr in _LONG:
        length = _LEN32.unpack_from(data, start)[0]
        start += 4
    return group, elem, vr, length, start


def _meta_element(data: bytes, pos: int) -> tuple[RawDataElement, int]:
    group, elem, vr, length, start = _explicit_head(data, pos)
    if length == 0xFFFFFFFF:
        raise Decline("bad meta element")
    if start + length > len(data):
        raise _WholeFile  # (and, read whole, a truncated file fails below)
    tag = group << 16 | elem
    value = data[start:start + length] if length else empty_value_for_VR(vr, raw=True)
    return RawDataElement(tag, vr, length, value, start, False, True), start + length


def _charset(ds: RawDataset):
    """The data set's character set, when it is one pixeldeid's ASCII values agree with."""
    elem = ds._dict.get(0x00080005)
    value = (elem.value or b"") if elem is not None else b""
    value = value.strip(b" \x00")
    if value not in _CHARSETS:
        raise Decline("character set")
    return convert_encodings(value.decode("ascii") or default_encoding)


def _check_instance(ds: RawDataset) -> None:
    """What :func:`pixeldeid.api.read_dicom` checks; the ordinary path reports failures."""
    from .api import instance_problem

    reason = instance_problem(ds)
    if reason:
        raise Decline(reason)
