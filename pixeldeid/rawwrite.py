"""Fast Part 10 encoding: elements that were never decoded are copied as raw bytes.

pydicom's own writer converts and re-encodes every element; the header engine leaves
untouched elements as :class:`pydicom.dataelem.RawDataElement`, and this writer emits
them with a packed header and their original value bytes. Only changed elements go
through pydicom's element writer. The encoding (implicit/explicit VR, endianness) is
that of the input, so the raw bytes stay valid.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.tag import Tag

from .atomic import FileParts
from .dsvalues import peek
from .errors import DeidError
from .rawds import KNOWN_VRS, FileSlice

#: Explicit VR with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT",
                      "UV"})
_SIMPLE_META = frozenset({0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010,
                          0x00020012, 0x00020013})
_DELIM_LE = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
_DELIM_BE = struct.pack(">HHL", 0xFFFE, 0xE0DD, 0)


def _header(tag: int, vr: str | None, length: int, e: str, implicit: bool) -> bytes:
    """Element header (PS3.5 7.1): implicit VR, explicit short-length or explicit long-length."""
    if implicit or vr is None:
        return struct.pack(e + "HHL", tag >> 16, tag & 0xFFFF, length)
    if vr in LONG_VRS:
        return struct.pack(e + "HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
    return struct.pack(e + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)


def _raw_bytes(raw: RawDataElement, little: bool, implicit: bool) -> bytes | None:
    """Bytes of a raw element in the target encoding, or None when it must be re-encoded."""
    if raw.is_little_endian != little or raw.is_implicit_VR != implicit or raw.value is None:
        return None
    value = raw.value
    undefined = raw.length == 0xFFFFFFFF
    vr = raw.VR
    if vr is not None and vr not in KNOWN_VRS:  # read as it was: a damaged header
        raise DeidError(f"element {Tag(raw.tag)} has no valid VR ({vr!r}); damaged header?")
    if not implicit and (not vr or len(vr) != 2 or (vr not in LONG_VRS and len(value) > 0xFFFF)):
        return None
    head = _header(raw.tag, vr, 0xFFFFFFFF if undefined else len(value), "<" if little else ">",
                   implicit)
    if undefined:
        return head + value + (_DELIM_LE if little else _DELIM_BE)
    return head + value


#: Bulk pixel-like data: not searched for header identity.
BULK_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})


def encode_dataset_parts(ds: Dataset, little: bool, implicit: bool
                         ) -> tuple[list[bytes], list[bool]]:
    """Encode the data set (no preamble or meta) element by element, in tag order.

    Returns the encoded elements and, for each, whether it is bulk pixel data (Pixel Data,
    Float and Double Float Pixel Data).
    """
    patched = _patched_parts(ds, little, implicit)
    if patched is not None:
        return patched
    parts: list[bytes] = []
    bulk: list[bool] = []
    # the fast path's data sets know where each element's bytes lie in the input: runs of
    # unchanged elements are copied as one slice (the bytes the code below would make)
    spans = vars(ds).get("_spans")
    src = vars(ds).get("_src")
    run_start = run_end = -1
    for tag in sorted(ds._dict.keys()):
        elem = ds._dict[tag]
        if spans:
            span = spans.get(tag)
            if span is not None and span[0] is elem and tag not in BULK_TAGS:
                if span[1] != run_end:
                    if run_end >= 0:
                        parts.append(src[run_start:run_end])
                        bulk.append(False)
                    run_start = span[1]
                run_end = span[2]
                continue
            if run_end >= 0:
                parts.append(src[run_start:run_end])
                bulk.append(False)
                run_start = run_end = -1
        bulk.append(tag in BULK_TAGS)
        parts.append(_encode_element(ds, tag, elem, little, implicit))
    if run_end >= 0:
        parts.append(src[run_start:run_end])
        bulk.append(False)
    return parts, bulk


class Patch:
    """How a data set was written, element by element, for data sets that share all but a
    few of its elements (derived data sets, :mod:`pixeldeid.derive`): its tags in order,
    the bytes :func:`encode_dataset_parts` gives for each (:func:`encode_elements`; None
    where it gives none) and which are bulk data."""

    __slots__ = ("order", "parts", "bulk")

    def __init__(self, base: dict, encoded: dict[int, bytes]) -> None:
        tags = sorted(base)
        self.order = {t: i for i, t in enumerate(tags)}
        self.parts = [encoded.get(t) for t in tags]
        self.bulk = [t in BULK_TAGS for t in tags]


def _patched_parts(ds: Dataset, little: bool, implicit: bool):
    """:func:`encode_dataset_parts` of a data set with ``_patch``: (a :class:`Patch`, every
    tag whose element differs from the patch's data set: changed, added or removed); None
    when it has none or the patch does not cover it (an element added in between)."""
    got = vars(ds).get("_patch")
    if got is None:
        return None
    patch, tags = got
    d = ds._dict
    if len(d) + sum(t in patch.order for t in tags) != len(patch.order) + sum(
            t in d for t in tags):
        return None  # (elements added or removed beyond the patch's tags)
    parts = list(patch.parts)
    bulk = list(patch.bulk)
    spans = vars(ds).get("_spans") or {}  # (changed elements as read: their bytes)
    for tag in tags:
        i = patch.order.get(tag)
        elem = d.get(tag)
        if i is None:
            if elem is not None:
                return None  # (a new element: its place is not in the list)
            continue
        span = spans.get(tag)
        bulk[i] = tag in BULK_TAGS
        if elem is None:
            parts[i] = b""
        elif span is not None and span[0] is elem and tag not in BULK_TAGS:
            parts[i] = ds._src[span[1]:span[2]]
        else:
            parts[i] = _encode_element(ds, tag, elem, little, implicit)
    if None in parts:  # a base element without known bytes that is still there
        return None
    return parts, bulk


def encode_elements(ds: Dataset, little: bool, implicit: bool) -> dict[int, bytes]:
    """The bytes of each element of ``ds`` (top level) that :func:`encode_dataset_parts`
    writes, by tag; values left in their file are not included."""
    spans = vars(ds).get("_spans") or {}
    src = vars(ds).get("_src")
    out: dict[int, bytes] = {}
    for tag, elem in ds._dict.items():
        span = spans.get(tag)
        if span is not None and span[0] is elem and tag not in BULK_TAGS:
            out[tag] = src[span[1]:span[2]]
            continue
        got = _encode_element(ds, tag, elem, little, implicit)
        if isinstance(got, bytes):
            out[tag] = got
    return out


def _encode_element(ds: Dataset, tag: int, elem, little: bool, implicit: bool):
    """One element of ``ds`` encoded: bytes, or :class:`FileParts` for a value left in its
    file."""
    if isinstance(elem, RawDataElement):
        if isinstance(elem.value, FileSlice):  # bulk data left in the input file
            if elem.is_little_endian != little or elem.is_implicit_VR != implicit:
                raise ValueError("a value left in its file cannot change its encoding")
            head = _header(int(tag), elem.VR, elem.length, "<" if little else ">", implicit)
            return FileParts([head, elem.value])
        b = _raw_bytes(elem, little, implicit)
        if b is not None:
            return b
    elem = ds[tag]
    if elem.VR == "SQ" and elem.value is not None:
        return _encode_sequence(elem, little, implicit)
    fp = DicomBytesIO()
    fp.is_little_endian = little
    fp.is_implicit_VR = implicit
    # in the data set's character set (an item's is its parent's unless it has its
    # own), as pydicom's write_dataset does; without it text is written as ISO-IR 6/100
    write_data_element(fp, elem, ds._character_set)
    return fp.getvalue()


def _encode_sequence(elem, little: bool, implicit: bool) -> bytes:
    """A decoded sequence, with undefined lengths; the items' raw elements are copied."""
    e = "<" if little else ">"
    out = [_header(int(elem.tag), "SQ", 0xFFFFFFFF, e, implicit)]
    item_start = struct.pack(e + "HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack(e + "HHL", 0xFFFE, 0xE00D, 0)
    empty_item = struct.pack(e + "HHL", 0xFFFE, 0xE000, 0)
    for item in elem.value:
        if not item._dict:  # defined length 0: nothing for a reader to guess the VR of
            out.append(empty_item)
            continue
        out.append(item_start)
        out.extend(encode_dataset_parts(item, little, implicit)[0])
        out.append(item_end)
    out.append(_DELIM_LE if little else _DELIM_BE)
    return b"".join(out)


def _ui(tag: int, value: str) -> bytes:
    return _explicit_le(tag, "UI", _even(value.encode("ascii"), b"\x00"))


def _even(b: bytes, pad: bytes) -> bytes:
    return b + pad if len(b) % 2 else b


def _explicit_le(tag: int, vr: str, value: bytes) -> bytes:
    return _header(tag, vr, len(value), "<", False) + value


def encode_file_meta(meta) -> bytes:
    """File Meta Information of the elements pixeldeid writes (PS3.10 7.1), encoded directly."""
    body = b"".join([
        _explicit_le(0x00020001, "OB", b"\x00\x01"),
        _ui(0x00020002, str(peek(meta, "MediaStorageSOPClassUID"))),
        _ui(0x00020003, str(peek(meta, "MediaStorageSOPInstanceUID"))),
        _ui(0x00020010, str(peek(meta, "TransferSyntaxUID"))),
        _ui(0x00020012, str(peek(meta, "ImplementationClassUID"))),
        _explicit_le(0x00020013, "SH", _even(str(peek(meta, "ImplementationVersionName"))
                                              .encode("ascii"), b" ")),
    ])
    return _explicit_le(0x00020000, "UL", struct.pack("<L", len(body))) + body


def encode_dataset_body(ds: Dataset, little: bool, implicit: bool) -> bytes:
    """Encode the data set (no preamble or meta) in the given encoding."""
    return b"".join(encode_dataset_parts(ds, little, implicit)[0])


def encode_part10(ds: Dataset) -> tuple[bytes, bytes]:
    """Encode ``ds`` as a Part 10 file in the transfer syntax of ``ds.file_meta``.

    Returns the file bytes and the plain (never deflated) bytes of everything except the
    bulk pixel data: preamble, File Meta Information and header elements, for searching.
    Deflated transfer syntaxes fall back to pydicom's complete writer.
    """
    fm = ds.file_meta
    ts = _syntax(str(peek(fm, "TransferSyntaxUID")))
    if set(fm.keys()) <= _SIMPLE_META:
        meta_bytes = encode_file_meta(fm)
    else:
        meta = DicomBytesIO()
        meta.is_little_endian = True
        meta.is_implicit_VR = False
        write_file_meta_info(meta, fm, enforce_standard=True)
        meta_bytes = meta.getvalue()
    head = (ds.preamble or b"\x00" * 128) + b"DICM" + meta_bytes
    pydicom_writes, little, implicit = ts
    if pydicom_writes:
        import io

        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        parts, bulk = encode_dataset_parts(ds, True, False)
        return buf.getvalue(), head + b"".join(p for p, b in zip(parts, bulk, strict=True) if not b)
    parts, bulk = encode_dataset_parts(ds, little, implicit)
    if not any(bulk):
        header = head + b"".join(parts)
        return header, header
    header = head + b"".join([p for p, b in zip(parts, bulk, strict=True) if not b])
    if any(isinstance(p, FileParts) for p in parts):
        chunks: list = []
        run: list = [head]  # bytes written in one go up to each value left in its file
        for p in parts:
            for c in (p.chunks if isinstance(p, FileParts) else (p,)):
                if isinstance(c, bytes):
                    run.append(c)
                else:
                    chunks += [b"".join(run), c]
                    run = []
        if run:
            chunks.append(b"".join(run))
        return FileParts(chunks), header
    return head + b"".join(parts), header


@lru_cache(maxsize=64)
def _syntax(uid: str) -> tuple[bool, bool, bool]:
    """(written by pydicom's writer: deflated or not a transfer syntax, little endian,
    implicit VR) of the transfer syntax ``uid``."""
    from pydicom.uid import UID

    ts = UID(uid)
    if ts.is_deflated or not ts.is_transfer_syntax:
        return True, True, False
    return False, ts.is_little_endian, ts.is_implicit_VR
