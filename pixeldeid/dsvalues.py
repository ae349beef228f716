"""Read and write element values of a pydicom Dataset without decoding it in place.

``ds.get(keyword)`` converts the raw element it reads into a
:class:`~pydicom.dataelem.DataElement` and stores that conversion in the dataset, so the
writer must then re-encode it. :func:`peek` returns the same value and leaves the raw
bytes in place; :func:`set_text` stores a new ASCII text value as raw bytes in the
dataset's own encoding. Both fall back to pydicom's own path whenever the shortcut could
differ from it (ambiguous VRs, sequences, deferred values, non-ASCII text, datasets that
were not read from a file).
"""

from __future__ import annotations

import re
from functools import cache, partial

from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR

#: Text VRs whose value bytes are plain ASCII padded to even length (PS3.5 6.2).
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UT"})
#: VRs whose single ASCII value pydicom decodes to the text without trailing NULs/spaces
#: (UI as a UID, a str subclass: str() of both is the same).
_ASCII_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "LO", "SH"})

#: Raw VRs whose decoded element must replace the raw one (the VR changes on decoding).
_DECODE_IN_PLACE = frozenset({"SQ", "UN"}) | frozenset(AMBIGUOUS_VR)


#: What a value the user supplies may hold: printable ASCII (any file can carry it, whatever
#: its Specific Character Set) without the value separator.
_SUPPLIED_BAD = re.compile(r"[^\x20-\x7e]|\\")


def supplied_value_problem(value: str, max_len: int = 64) -> str | None:
    """Why ``value``, given by the user, cannot be written as one LO (or ST) value in every
    output file; None when it can.

    Parameters
    ----------
    value : str
        A pseudonym, site name, trial field...
    max_len : int
        The VR's maximum length (64 for LO, 1024 for ST).
    """
    if len(value) > max_len:
        return f"{value!r} is longer than {max_len} characters"
    if _SUPPLIED_BAD.search(value):
        return (f"{value!r} holds a backslash, a control character or a non-ASCII character "
                "(only printable ASCII without '\\' can be written in every file)")
    return None


#: Bytes no text value holds (PS3.5 6.1.2: control characters other than ESC, and LF,
#: FF, CR, TAB in texts).
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


def garbled_text(vr: str | None, value) -> bool:
    """Whether ``value``, the raw bytes of a text element (``vr``), holds a control byte
    before its padding (NULs and spaces at the end): the mark of a value whose length was
    damaged and that swallowed the element headers after it."""
    return (vr in _TEXT_VRS and isinstance(value, bytes)
            and _CONTROL.search(value.rstrip(b"\x00 ")) is not None)


@cache
def tag_of(key: str | int) -> int:
    if isinstance(key, str):
        tag = tag_for_keyword(key)
        if tag is None:
            raise ValueError(f"unknown DICOM keyword {key!r}")
        return tag
    return int(key)


@cache
def keyword_of(tag: int) -> str:
    """The keyword of ``tag`` in pydicom's data dictionary ('' when it has none)."""
    return keyword_for_tag(tag) or ""


@cache
def dictionary_vr(tag: int) -> str | None:
    """The VR of ``tag`` in pydicom's data dictionary (None when it is not there)."""
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def peek(ds: Dataset, key: str | int, default=None):
    """``ds[key].value`` (``default`` when absent), leaving a raw element undecoded."""
    tag = tag_of(key)
    elem = ds._dict.get(tag)
    if elem is None:
        return default
    if not isinstance(elem, RawDataElement):
        return elem.value
    if (elem.value is None and elem.length) or elem.VR in _DECODE_IN_PLACE or (
            elem.VR is None and isinstance(ds, Dataset)):
        # pydicom's decoding corrects the VR (UN, implicit, ambiguous): keep its result so
        # the writer encodes the element with the corrected VR
        return ds[tag].value
    value = elem.value
    vr = elem.VR
    if value is None:
        pass
    elif (vr in _ASCII_STRING_VRS and b"\\" not in value and value.isascii()
          and b"\x1b" not in value):  # ISO 2022 text is 7-bit too: its escapes switch sets
        return value.decode("ascii").rstrip("\x00 ")  # as pydicom's multi_string/convert_text
    elif vr == "US" and len(value) == 2 and elem.is_little_endian:
        return value[0] | value[1] << 8
    charset = default_encoding if tag == 0x00080005 else (
        ds.original_character_set or ds._character_set)
    conv = convert_raw_data_element(elem, encoding=charset, ds=ds)
    if conv.VR in AMBIGUOUS_VR or conv.VR == "SQ":
        return ds[tag].value
    return conv.value


#: ``make_raw(fields + RAW_DEFAULTS)`` is ``RawDataElement(*fields)`` without the
#: namedtuple's Python-level ``__new__`` (hot paths: the fast path's parser, the engine);
#: RAW_DEFAULTS are the fields after ``is_little_endian`` (is_raw, is_buffered...).
make_raw = partial(tuple.__new__, RawDataElement)
RAW_DEFAULTS = tuple(RawDataElement._field_defaults[f] for f in RawDataElement._fields[7:])


def with_value(raw: RawDataElement, value: bytes) -> RawDataElement:
    """``raw._replace(value=value, length=len(value))``, built by :data:`make_raw`."""
    return make_raw((raw[0], raw[1], len(value), value) + raw[4:])


def encode_text(text: str, vr: str) -> bytes:
    """ASCII ``text`` as the value bytes of a ``vr`` element: padded to even length with a
    NUL (UI) or a space (PS3.5 6.2)."""
    data = text.encode("ascii")
    return data + (b"\x00" if vr == "UI" else b" ") if len(data) % 2 else data


def set_text(ds: Dataset, keyword: str | int, value: str | list[str]) -> None:
    """Set a text attribute (by keyword or tag) as ``setattr`` would, stored as raw bytes in
    the data set's encoding when the values are ASCII; otherwise pydicom sets it (and a
    raw data set of the fast path declines)."""
    tag = tag_of(keyword)
    vr = dictionary_vr(tag)
    values = value if isinstance(value, list) else [value]
    text = "\\".join(values)
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if (vr not in _TEXT_VRS or little is not True or implicit is None or not text.isascii()
            or any("\\" in v for v in values)):
        one = None if not values else values[0] if len(values) == 1 else values
        if tag in ds._dict:
            ds[tag].value = one
        else:
            setattr(ds, keyword_of(tag), one)
        return
    data = encode_text(text, vr)
    if isinstance(ds, Dataset):
        tag = BaseTag(tag)  # pydicom's own data sets are keyed by BaseTag
    ds._dict[tag] = RawDataElement(tag, vr, len(data), data, 0, implicit, little)


def new_sequence(ds: Dataset, keyword: str) -> list:
    """Add an empty sequence ``keyword`` to ``ds``; return its (appendable) items."""
    if not isinstance(ds, Dataset):  # the fast path's raw data set
        return ds.new_sequence(tag_of(keyword))
    setattr(ds, keyword, Sequence())
    return ds[tag_of(keyword)].value


def new_item(ds: Dataset) -> Dataset:
    """An empty sequence item for ``ds`` (a raw one for the fast path's data sets)."""
    return ds.new_item() if not isinstance(ds, Dataset) else Dataset()


def set_meta(meta: Dataset, keyword: str, value: str | bytes) -> None:
    """Store a File Meta Information value as the raw explicit VR little endian element
    pydicom's reader would hold (nothing decoded or validated: pixeldeid's own values)."""
    tag = BaseTag(tag_of(keyword))
    vr = dictionary_vr(tag)
    if isinstance(value, str):
        value = encode_text(value, vr)
    meta._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
