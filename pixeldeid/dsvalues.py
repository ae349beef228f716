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

from functools import cache

from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.valuerep import AMBIGUOUS_VR

#: Text VRs whose value bytes are plain ASCII padded to even length (PS3.5 6.2).
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UT"})


@cache
def _tag(key: str | int) -> BaseTag:
    if isinstance(key, str):
        tag = tag_for_keyword(key)
        if tag is None:
            raise ValueError(f"unknown DICOM keyword {key!r}")
        return BaseTag(tag)
    return BaseTag(key)


def peek(ds: Dataset, key: str | int, default=None):
    """``ds[key].value`` (``default`` when absent), leaving a raw element undecoded."""
    tag = _tag(key)
    elem = ds._dict.get(tag)
    if elem is None:
        return default
    if not isinstance(elem, RawDataElement):
        return elem.value
    if (elem.value is None and elem.length) or elem.VR == "SQ" or elem.VR in AMBIGUOUS_VR:
        return ds[tag].value
    charset = default_encoding if tag == 0x00080005 else (
        ds.original_character_set or ds._character_set)
    conv = convert_raw_data_element(elem, encoding=charset, ds=ds)
    if conv.VR in AMBIGUOUS_VR or conv.VR == "SQ":
        return ds[tag].value
    return conv.value


def set_text(ds: Dataset, keyword: str, value: str | list[str]) -> None:
    """``setattr(ds, keyword, value)`` for a text attribute, stored as raw bytes when it can be."""
    tag = _tag(keyword)
    vr = dictionary_VR(tag)
    values = value if isinstance(value, list) else [value]
    text = "\\".join(values)
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if (vr not in _TEXT_VRS or little is not True or implicit is None or not text.isascii()
            or any("\\" in v for v in values)):
        setattr(ds, keyword, value)
        return
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    ds._dict[tag] = RawDataElement(tag, vr, len(data), data, 0, implicit, little)
