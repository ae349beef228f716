"""In-place TIFF / BigTIFF / NDPI structure editor for de-identification.

The editor parses the IFD chain itself (classic TIFF in both byte orders, BigTIFF,
and Hamamatsu NDPI: classic TIFF with 8-byte next-IFD offsets and the high 32 bits of
every tag's value/offset stored in 4-byte words after the IFD) and edits the file by
patching bytes at known offsets. Nothing is re-serialised, so every byte that is not
edited stays where it was.

Rules of the edits:

- a tag value that shrinks (or keeps its size) is written in place, the rest of its old
  slot zero-padded; a value that grows is appended at end of file (8-byte aligned), the
  tag repointed and its old bytes zeroed;
- a value slot shared by several tags (NDPI writes one copy of tag 65449, Make, Model...
  and points every IFD at it) is changed for all of them at once, so no stale copy stays;
- ``unlink_ifd`` drops an IFD from the chain and zeroes the IFD, its out-of-line values
  and its strips/tiles (and those of its SubIFDs), except byte ranges still referenced by
  the remaining IFDs;
- SubIFDs (tag 330: OME-TIFF pyramid levels) are parsed too (``subifds``) and edited
  through the same methods, addressed by ``SUB_BASE + k``;
- ``replace_tile`` appends new tile bytes, patches TileOffsets/TileByteCounts (or the
  strip tags) and zeroes the old tile.

After editing, call :func:`scan_raw` over the whole file for every removed value.

Examples
--------
>>> from wsi.tiffedit import TiffEditor, scan_raw
>>> with TiffEditor("slide.svs", mode="r+") as ed:           # doctest: +SKIP
...     for ifd in ed.ifds:
...         print(ifd.index, ifd.offset, ed.get_value(ifd.index, 270))
...     ed.set_ascii(0, 270, "Aperio Image Library |AppMag = 20")
...     ed.unlink_ifd(2)                                       # the label
...     ed.replace_tile(0, 5, new_jpeg_bytes)
>>> scan_raw("slide.svs", ["Jane Doe", "S12-3456"])          # doctest: +SKIP
[]
"""

from __future__ import annotations

import base64
import logging
import mmap
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixeldeid.errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "TYPE_SIZES",
    "Tag",
    "Ifd",
    "TiffEditor",
    "SUB_BASE",
    "scan_raw",
    "value_forms",
]

#: byte size of one item of each TIFF field type
TYPE_SIZES: dict[int, int] = {
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8,
    11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8,
}
_TYPE_FMT: dict[int, str] = {
    1: "B", 2: "B", 3: "H", 4: "I", 5: "I", 6: "b", 7: "B", 8: "h", 9: "i", 10: "i",
    11: "f", 12: "d", 13: "I", 16: "Q", 17: "q", 18: "Q",
}
MAX_TAGS = 4096
ALIGN = 8
#: out-of-line values this large are cached between re-parses (see ``TiffEditor._big``)
BIG_VALUE = 1 << 16

# tag codes used here
NEW_SUBFILE_TYPE = 254
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
COMPRESSION = 259
IMAGE_DESCRIPTION = 270
STRIP_OFFSETS = 273
ROWS_PER_STRIP = 278
STRIP_BYTE_COUNTS = 279
TILE_WIDTH = 322
TILE_LENGTH = 323
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
JPEG_TABLES = 347
SUB_IFDS = 330
NDPI_FORMAT_FLAG = 65420
#: index of the first SubIFD (``TiffEditor.subifds``): SubIFDs are addressed like chain IFDs,
#: by ``SUB_BASE + k``, in every method taking an IFD index
SUB_BASE = 1 << 20
MAX_SUB_DEPTH = 4


@dataclass
class Tag:
    """One IFD entry.

    Attributes
    ----------
    code, type, count : int
        The entry's tag code, field type and value count.
    entry_offset : int
        File offset of the 12/20-byte directory entry.
    value_offset : int
        File offset of the value bytes (inside the entry when ``inline``).
    inline : bool
        Whether the value sits in the entry's value field.
    raw : bytes
        The value bytes as stored (``count * item size``).
    """

    code: int
    type: int
    count: int
    entry_offset: int
    value_offset: int
    inline: bool
    raw: bytes
    byteorder: str = "<"
    #: NDPI: high 32 bits stored for this entry after the IFD (for inline offsets)
    ndpi_high: int = 0

    @property
    def nbytes(self) -> int:
        return len(self.raw)

    @property
    def value(self) -> Any:
        """The decoded value: ``str`` for ASCII, ``bytes`` for BYTE/UNDEFINED, else a tuple."""
        return decode_value(self.type, self.count, self.raw, self.byteorder)

    def array(self) -> np.ndarray:
        """An integer tag's values as an int64 array (fast for large offset tables)."""
        fmt = _TYPE_FMT.get(self.type)
        if fmt is None or fmt in "fd" or self.type in (2, 5, 10):
            return np.asarray(self.value, dtype=np.int64).ravel()
        dt = np.dtype(fmt).newbyteorder(self.byteorder)
        return np.frombuffer(self.raw, dtype=dt, count=self.count).astype(np.int64)


@dataclass
class Ifd:
    """One image file directory of the chain."""

    index: int
    offset: int
    tags: dict[int, Tag]
    next_offset: int
    next_field_offset: int  # where the next-IFD pointer of this IFD is stored
    size: int  # bytes of the directory structure (count, entries, next, NDPI high words)
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, code: int, default: Any = None) -> Any:
        tag = self.tags.get(code)
        return default if tag is None else tag.value

    def first(self, code: int, default: Any = None) -> Any:
        """First item of a numeric tag, or ``default``."""
        v = self.get(code)
        if v is None:
            return default
        if isinstance(v, (tuple, list)):
            return v[0] if v else default
        return v

    @property
    def is_tiled(self) -> bool:
        return TILE_OFFSETS in self.tags

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return int(self.first(IMAGE_LENGTH, 0)), int(self.first(IMAGE_WIDTH, 0))

    @property
    def description(self) -> str | None:
        v = self.get(IMAGE_DESCRIPTION)
        return v if isinstance(v, str) else None


def merge_ranges(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Merge ranges ``[s, e)`` into disjoint sorted intervals (adjacent ones joined)."""
    s = np.asarray(s, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    if len(s) == 0:
        return np.zeros((0, 2), np.int64)
    if len(s) > 1 and not bool(np.all(s[1:] >= s[:-1])):
        order = np.argsort(s, kind="stable")
        s, e = s[order], e[order]
    if len(s) > 1 and not bool(np.all(s[1:] >= e[:-1])):
        e = np.maximum.accumulate(e)
    new_group = np.ones(len(s), dtype=bool)
    new_group[1:] = s[1:] > e[:-1]
    first = np.flatnonzero(new_group)
    last = np.append(first[1:] - 1, len(s) - 1)
    return np.stack([s[first], e[last]], axis=1)


def decode_value(type_: int, count: int, raw: bytes, byteorder: str = "<") -> Any:
    """Decode raw TIFF value bytes."""
    if type_ == 2:
        return raw.split(b"\x00", 1)[0].decode("utf-8", errors="replace") if raw else ""
    if type_ in (1, 7):
        return bytes(raw)
    fmt = _TYPE_FMT.get(type_)
    if fmt is None:
        return bytes(raw)
    n = count * (2 if type_ in (5, 10) else 1)
    if n > 64:
        dt = np.dtype(fmt).newbyteorder(byteorder)
        return tuple(np.frombuffer(raw, dtype=dt, count=n).tolist())
    return struct.unpack(f"{byteorder}{n}{fmt}", raw[: n * struct.calcsize(fmt)])


def encode_value(type_: int, values: Sequence[Any] | str | bytes, byteorder: str = "<") -> bytes:
    """Encode values as raw TIFF bytes of ``type_`` (ASCII gets a trailing NUL)."""
    if type_ == 2:
        b = values.encode("utf-8") if isinstance(values, str) else bytes(values)
        return b if b.endswith(b"\x00") else b + b"\x00"
    if isinstance(values, (bytes, bytearray)):
        return bytes(values)
    fmt = _TYPE_FMT[type_]
    vals = [int(v) if fmt not in "fd" else float(v) for v in values]
    if len(vals) > 64:
        return np.asarray(vals, dtype=np.dtype(fmt).newbyteorder(byteorder)).tobytes()
    return struct.pack(f"{byteorder}{len(vals)}{fmt}", *vals)


class TiffEditor:
    """Read a TIFF/BigTIFF/NDPI structure and patch it in place.

    Parameters
    ----------
    path : path
        The TIFF file.
    mode : {"r", "r+"}
        ``"r+"`` allows edits (the file itself is modified: copy it first unless in-place
        editing is wanted).

    Raises
    ------
    InputError
        The file is not a TIFF, is truncated, or its IFD chain points outside the file
        or loops.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r", *, journal: bool = True,
                 sync: bool = True) -> None:
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', not {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.sync = sync
        try:
            self._fh = open(self.path, "rb" if mode == "r" else "r+b")
        except OSError as exc:
            raise InputError(f"cannot open: {exc.strerror or exc}", str(path)) from exc
        #: out-of-line values of at least BIG_VALUE bytes as last read, by (offset, size):
        #: a re-parse after an edit does not read a megabyte XMP again (every write drops
        #: the entries it overlaps)
        self._big: dict[tuple[int, int], bytes] = {}
        self._crcs: dict[int, tuple[bytes, int]] = {}
        try:
            self._parse_header()
            self.ifds: list[Ifd] = []
            self.refresh()
        except BaseException:
            self._fh.close()
            raise
        self.edits: list[str] = []
        self._journal: list[tuple[int, bytes]] | None = [] if journal else None
        self._orig_size = self.size

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> TiffEditor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rollback(self) -> None:
        """Undo every edit made through this editor (restores bytes, truncates appends)."""
        if self.mode != "r+" or self._journal is None:
            raise RuntimeError("rollback needs mode='r+' with journal=True")
        self._big.clear()
        for off, old in reversed(self._journal):
            self._fh.seek(off)
            self._fh.write(old)
        self._fh.truncate(self._orig_size)
        self._fh.flush()
        self._journal.clear()
        self.edits.append("rollback")
        self.refresh()

    def flush(self) -> None:
        """Push buffered writes to the file (before another reader, e.g. tifffile, opens it)."""
        if not self._fh.closed and self.mode == "r+":
            self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            if self.mode == "r+":
                self._fh.flush()
                if self.sync:
                    os.fsync(self._fh.fileno())
            self._fh.close()

    # ----------------------------------------------------------------- parsing
    def _err(self, msg: str) -> InputError:
        return InputError(msg, str(self.path))

    @property
    def size(self) -> int:
        self._fh.seek(0, os.SEEK_END)
        return self._fh.tell()

    def read(self, offset: int, n: int) -> bytes:
        """Read ``n`` bytes at ``offset`` (``InputError`` when past end of file)."""
        if offset < 0 or n < 0:
            raise self._err(f"negative offset/length {offset}/{n}")
        try:
            self._fh.seek(offset)
            data = self._fh.read(n)
        except (OSError, OverflowError) as exc:
            raise self._err(f"cannot read {n} bytes at offset {offset}: {exc}") from exc
        if len(data) != n:
            raise self._err(f"truncated: {n} bytes at offset {offset} past end of file")
        return data

    def _parse_header(self) -> None:
        head = self._fh.read(16)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            raise self._err("not a TIFF file (bad byte-order mark)")
        bo = "<" if head[:2] == b"II" else ">"
        self.byteorder = bo
        version = struct.unpack(bo + "H", head[2:4])[0]
        if version == 42:
            self.kind = "classic"
            self.first_ifd_field = 4
            self.first_ifd = struct.unpack(bo + "I", head[4:8])[0]
        elif version == 43:
            if len(head) < 16:
                raise self._err("truncated BigTIFF header")
            osz, zero = struct.unpack(bo + "HH", head[4:8])
            if osz != 8 or zero != 0:
                raise self._err(f"invalid BigTIFF header {osz}/{zero}")
            self.kind = "bigtiff"
            self.first_ifd_field = 8
            self.first_ifd = struct.unpack(bo + "Q", head[8:16])[0]
        else:
            raise self._err(f"not a TIFF file (version {version})")
        if bo == "<" and version == 42 and len(head) >= 12:
            # NDPI: classic little-endian with tag 65420 in the first IFD, whose offset is
            # stored as 8 bytes (the high half is non-zero in files over 4 GB)
            off64 = struct.unpack("<Q", head[4:12])[0]
            for cand in dict.fromkeys((self.first_ifd, off64)):
                if cand < 8 or not self._has_ndpi_flag(cand):
                    continue
                self.kind = "ndpi"
                self.first_ifd = off64
                break

    def _has_ndpi_flag(self, off: int) -> bool:
        if off + 2 > self.size:
            return False
        try:
            n = struct.unpack("<H", self.read(off, 2))[0]
            if not 0 < n <= MAX_TAGS:
                return False
            codes = self.read(off + 2, 12 * n)
        except InputError:
            return False
        return any(struct.unpack_from("<H", codes, 12 * i)[0] == NDPI_FORMAT_FLAG for i in range(n))

    @property
    def is_bigtiff(self) -> bool:
        return self.kind == "bigtiff"

    @property
    def is_ndpi(self) -> bool:
        return self.kind == "ndpi"

    def refresh(self) -> None:
        """Re-read the IFD chain from the file."""
        ifds: list[Ifd] = []
        seen: set[int] = set()
        off = self.first_ifd
        fsize = self.size
        while off:
            if off in seen:
                raise self._err(f"IFD chain loops at offset {off}")
            if off < 8 or off >= fsize:
                raise self._err(f"IFD offset {off} outside the file ({fsize} bytes)")
            seen.add(off)
            ifd = self._parse_ifd(len(ifds), off)
            ifds.append(ifd)
            off = ifd.next_offset
            if len(ifds) > 100000:
                raise self._err("too many IFDs")
        if not ifds:
            raise self._err("no IFD in file")
        self.ifds = ifds
        self._parse_subifds(seen)

    def _parse_subifds(self, seen: set[int]) -> None:
        """Parse the SubIFD trees (tag 330) of the chain IFDs into ``self.subifds``
        (indices from :data:`SUB_BASE`, parents before children) and ``self.sub_parent``
        (SubIFD index -> the chain IFD it hangs from)."""
        subs: list[Ifd] = []
        parent: dict[int, int] = {}
        mine: set[int] = set()  # writers both list SubIFDs in tag 330 and chain them
        if not self.is_ndpi:
            todo = [(d, d.index, 0) for d in self.ifds if SUB_IFDS in d.tags]
            while todo:
                d, top, depth = todo.pop(0)
                if depth >= MAX_SUB_DEPTH:
                    raise self._err(f"SubIFDs nested deeper than {MAX_SUB_DEPTH}")
                for off in d.tags[SUB_IFDS].array().tolist():
                    while off and off not in mine:
                        if off in seen:
                            raise self._err(f"SubIFD at {off} is also a chain IFD")
                        if off < 8 or off >= self.size:
                            raise self._err(f"SubIFD offset {off} outside the file")
                        mine.add(off)
                        sub = self._parse_ifd(SUB_BASE + len(subs), off)
                        subs.append(sub)
                        parent[sub.index] = top
                        if SUB_IFDS in sub.tags:
                            todo.append((sub, top, depth + 1))
                        off = sub.next_offset
                        if len(subs) > 100000:
                            raise self._err("too many SubIFDs")
        self.subifds = subs
        self.sub_parent = parent

    def subifds_of(self, index: int) -> list[int]:
        """Indices of every SubIFD hanging (directly or not) from chain IFD ``index``."""
        return [i for i, p in self.sub_parent.items() if p == index]

    def _parse_ifd(self, index: int, off: int) -> Ifd:
        bo = self.byteorder
        big = self.kind == "bigtiff"
        cnt_size, entry_size = (8, 20) if big else (2, 12)
        n = struct.unpack(bo + ("Q" if big else "H"), self.read(off, cnt_size))[0]
        if n == 0 or n > MAX_TAGS:
            raise self._err(f"IFD {index} at {off}: implausible tag count {n}")
        entries = self.read(off + cnt_size, n * entry_size)
        next_field = off + cnt_size + n * entry_size
        if big or self.kind == "ndpi":
            next_off = struct.unpack(bo + "Q", self.read(next_field, 8))[0]
            size = cnt_size + n * entry_size + 8
        else:
            next_off = struct.unpack(bo + "I", self.read(next_field, 4))[0]
            size = cnt_size + n * entry_size + 4
        high = None
        if self.kind == "ndpi":
            high = self.read(next_field + 8, 4 * n)
            size += 4 * n
        fsize = self.size
        tags: dict[int, Tag] = {}
        for i in range(n):
            e = off + cnt_size + i * entry_size
            rec = entries[i * entry_size:(i + 1) * entry_size]
            if big:
                code, typ, count = struct.unpack(bo + "HHQ", rec[:12])
                field_bytes = rec[12:20]
                vsz = 8
                vfield = e + 12
            else:
                code, typ, count = struct.unpack(bo + "HHI", rec[:8])
                field_bytes = rec[8:12]
                vsz = 4
                vfield = e + 8
            isz = TYPE_SIZES.get(typ)
            if isz is None:
                logger.debug("%s: IFD %d tag %d has unknown type %d", self.path, index, code, typ)
                continue
            nbytes = isz * count
            if nbytes <= vsz:
                hi = struct.unpack_from("<I", high, 4 * i)[0] if high is not None else 0
                tags[code] = Tag(code, typ, count, e, vfield, True, field_bytes[:nbytes], bo, hi)
                continue
            voff = struct.unpack(bo + ("Q" if big else "I"), field_bytes)[0]
            if high is not None:
                voff |= struct.unpack_from("<I", high, 4 * i)[0] << 32
            if voff + nbytes > fsize or voff < 8:
                raise self._err(
                    f"IFD {index} tag {code}: value of {nbytes} bytes at {voff} outside the file")
            if nbytes >= BIG_VALUE:
                raw = self._big.get((voff, nbytes))
                if raw is None:
                    raw = self._big[voff, nbytes] = self.read(voff, nbytes)
            else:
                raw = self.read(voff, nbytes)
            tags[code] = Tag(code, typ, count, e, voff, False, raw, bo)
        return Ifd(index, off, tags, next_off, next_field, size)

    # ----------------------------------------------------------------- queries
    def ifd(self, index: int) -> Ifd:
        try:
            if index >= SUB_BASE:
                return self.subifds[index - SUB_BASE]
            return self.ifds[index]
        except IndexError:
            raise IndexError(f"IFD {index} out of range ({len(self.ifds)} IFDs)") from None

    def get_value(self, ifd: int, code: int, default: Any = None) -> Any:
        return self.ifd(ifd).get(code, default)

    def segments(self, ifd: int) -> list[tuple[int, int]]:
        """``(offset, byte count)`` of every strip or tile of an IFD (NDPI high bits restored)."""
        offs, cnts = self.segment_arrays(ifd)
        return list(zip(offs.tolist(), cnts.tolist(), strict=True))

    def segment_arrays(self, ifd: int) -> tuple[np.ndarray, np.ndarray]:
        """Offsets (NDPI high bits restored) and byte counts of all strips/tiles, as arrays."""
        d = self.ifd(ifd)
        oc, cc = (TILE_OFFSETS, TILE_BYTE_COUNTS) if d.is_tiled else (STRIP_OFFSETS, STRIP_BYTE_COUNTS)
        if oc not in d.tags or cc not in d.tags:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        offs, cnts = d.tags[oc].array(), d.tags[cc].array()
        n = min(len(offs), len(cnts))
        offs, cnts = offs[:n], cnts[:n]
        if self.is_ndpi:
            oc_tag = d.tags[oc]
            if oc_tag.inline and oc_tag.count == 1 and oc_tag.ndpi_high:
                offs = offs + (oc_tag.ndpi_high << 32)  # high bits stored after the IFD
            else:
                offs = np.array([self._fix_ndpi_offset(ifd, int(o)) for o in offs], dtype=np.int64)
        return offs, cnts

    def read_segment(self, ifd: int, index: int) -> bytes:
        """The raw bytes of strip/tile ``index`` of IFD ``ifd``."""
        offs, cnts = self.segment_arrays(ifd)
        return self.read(int(offs[index]), int(cnts[index]))

    def _fix_ndpi_offset(self, ifd: int, off: int) -> int:
        """NDPI strip offsets are 32-bit; restore the high bits the way openslide does."""
        if not self.is_ndpi:
            return off
        diroff = self.ifd(ifd).offset
        result = (diroff & ~0xFFFFFFFF) | (off & 0xFFFFFFFF)
        if result >= diroff and result >= (1 << 32):
            result -= 1 << 32
        return result

    def referenced_ranges(self, exclude_ifds: Iterable[int] = ()) -> np.ndarray:
        """Byte ranges ``[start, end)`` used by the IFDs not in ``exclude_ifds``, merged into
        disjoint sorted intervals."""
        ex = set(exclude_ifds)
        head = np.array([[0, 16 if self.kind != "classic" else 8]], dtype=np.int64)
        parts = [head] + [self._ifd_ranges(d) for d in self.ifds if d.index not in ex]
        parts += [self._ifd_ranges(d) for d in self.subifds
                  if d.index not in ex and self.sub_parent[d.index] not in ex]
        both = np.concatenate(parts)
        return merge_ranges(both[:, 0], both[:, 1])

    def _ifd_ranges(self, d: Ifd) -> np.ndarray:
        """Merged ranges of one IFD (structure, values, strips/tiles), cached per content
        (keyed by every entry's place and stored bytes: the tile tables are decoded only on a
        miss)."""
        vs = [t for t in d.tags.values() if not t.inline]
        key = (d.offset, d.size, tuple(
            (t.code, t.type, t.count, t.value_offset, t.ndpi_high, self._crc(t.raw))
            for t in d.tags.values()))
        cache = self.__dict__.setdefault("_range_cache", {})
        hit = cache.get(key)
        if hit is not None:
            return hit
        so, sc = self.segment_arrays(d.index)
        tiles = merge_ranges(so, so + sc)  # fast when the tiles are in file order
        s = np.concatenate([np.array([d.offset], np.int64),
                            np.array([t.value_offset for t in vs], np.int64), tiles[:, 0]])
        e = np.concatenate([np.array([d.offset + d.size], np.int64),
                            np.array([t.value_offset + t.nbytes for t in vs], np.int64), tiles[:, 1]])
        out = merge_ranges(s, e)
        cache[key] = out
        return out

    def _crc(self, raw: bytes) -> int:
        """CRC-32 of a value, remembered for large values (same bytes object, same CRC)."""
        if len(raw) < BIG_VALUE:
            return zlib.crc32(raw)
        hit = self._crcs.get(id(raw))
        if hit is None or hit[0] is not raw:
            hit = self._crcs[id(raw)] = (raw, zlib.crc32(raw))
        return hit[1]

    def _written(self, offset: int, n: int) -> None:
        """Forget the cached large values that bytes ``[offset, offset + n)`` overlap."""
        for key in [k for k in self._big if k[0] < offset + n and offset < k[0] + k[1]]:
            del self._big[key]

    # ----------------------------------------------------------------- raw edits
    def _check_writable(self) -> None:
        if self.mode != "r+":
            raise PermissionError(f"{self.path}: opened read-only (use mode='r+')")

    def write_at(self, offset: int, data: bytes) -> None:
        """Overwrite bytes at ``offset`` (must lie inside the file)."""
        self._check_writable()
        if offset < 0 or offset + len(data) > self.size:
            raise ValueError(f"write of {len(data)} bytes at {offset} outside the file")
        if self._journal is not None and offset < self._orig_size:
            self._journal.append((offset, self.read(offset, min(len(data), self._orig_size - offset))))
        self._written(offset, len(data))
        self._fh.seek(offset)
        self._fh.write(data)

    def zero_range(self, offset: int, n: int) -> None:
        """Overwrite ``n`` bytes at ``offset`` with zeros."""
        if n <= 0:
            return
        self._check_writable()
        if offset < 0 or offset + n > self.size:
            raise ValueError(f"zeroing {n} bytes at {offset} outside the file")
        if self._journal is not None and offset < self._orig_size:
            self._journal.append((offset, self.read(offset, min(n, self._orig_size - offset))))
        self._written(offset, n)
        chunk = 1 << 20
        self._fh.seek(offset)
        left = n
        while left > 0:
            k = min(chunk, left)
            self._fh.write(b"\x00" * k)
            left -= k

    def zero_unreferenced(self, offset: int, n: int, live: np.ndarray | None = None) -> int:
        """Zero ``[offset, offset+n)`` except parts in ``live`` ranges; return bytes zeroed."""
        if n <= 0:
            return 0
        if live is None:
            live = self.referenced_ranges()
        end = offset + n
        # the live ranges overlapping [offset, end): disjoint and sorted, so bisect
        i0 = int(np.searchsorted(live[:, 1], offset, side="right"))
        i1 = int(np.searchsorted(live[:, 0], end, side="left"))
        hits = live[i0:max(i0, i1)]
        pos = offset
        zeroed = 0
        for s, e in sorted(hits.tolist()):
            if s > pos:
                self.zero_range(pos, s - pos)
                zeroed += s - pos
            pos = max(pos, e)
        if pos < end:
            self.zero_range(pos, end - pos)
            zeroed += end - pos
        return zeroed

    def append(self, data: bytes, align: int = ALIGN) -> int:
        """Append ``data`` at end of file (``align``-byte aligned); return its offset."""
        self._check_writable()
        end = self.size
        pad = (-end) % align
        self._fh.seek(end)
        self._written(end, pad + len(data))
        if pad:
            self._fh.write(b"\x00" * pad)
        off = end + pad
        if self.kind == "classic" and off + len(data) > 0xFFFFFFFF:
            raise ValueError(f"{self.path}: appending would pass the 4 GB classic TIFF limit")
        self._fh.write(data)
        return off

    # ----------------------------------------------------------------- tag edits
    def _write_entry(self, ifd: Ifd, tag: Tag, type_: int, count: int, value_field: bytes,
                     high: int = 0) -> None:
        bo = self.byteorder
        if self.kind == "bigtiff":
            self.write_at(tag.entry_offset + 2, struct.pack(bo + "HQ", type_, count) + value_field)
        else:
            self.write_at(tag.entry_offset + 2, struct.pack(bo + "HI", type_, count) + value_field)
        if self.kind == "ndpi":
            i = (tag.entry_offset - ifd.offset - 2) // 12
            n = (ifd.size - 2 - 8) // 16
            self.write_at(ifd.offset + 2 + 12 * n + 8 + 4 * i, struct.pack("<I", high))

    def _sharers(self, tag: Tag) -> list[tuple[Ifd, Tag]]:
        """Every (IFD, tag) whose out-of-line value occupies the same slot as ``tag``."""
        if tag.inline:
            return []
        out = []
        for d in [*self.ifds, *self.subifds]:
            for t in d.tags.values():
                if not t.inline and t.value_offset == tag.value_offset and t.nbytes == tag.nbytes:
                    out.append((d, t))
        return out

    def set_tag_bytes(self, ifd: int, code: int, raw: bytes, *, type_: int | None = None,
                      count: int | None = None) -> None:
        """Replace the raw value of tag ``code`` of IFD ``ifd``.

        ``count`` defaults to ``len(raw) // item size``. A value slot shared with other
        tags is changed for all of them. Old bytes that are no longer used are zeroed.
        """
        self._check_writable()
        d = self.ifd(ifd)
        tag = d.tags.get(code)
        if tag is None:
            raise KeyError(f"IFD {ifd} has no tag {code}")
        typ = tag.type if type_ is None else type_
        isz = TYPE_SIZES[typ]
        if count is None:
            if len(raw) % isz:
                raise ValueError(f"{len(raw)} bytes is not a multiple of type {typ}'s size {isz}")
            count = len(raw) // isz
        raw = bytes(raw[: count * isz]).ljust(count * isz, b"\x00")
        vsz = 8 if self.kind == "bigtiff" else 4
        holders = self._sharers(tag) or [(d, tag)]
        old_off, old_n, old_inline = tag.value_offset, tag.nbytes, tag.inline
        # NDPI readers (openslide) mis-read short values moved inline: keep them in their slot
        if len(raw) <= vsz and not (self.is_ndpi and not old_inline):
            field_b = raw.ljust(vsz, b"\x00")
            for hd, ht in holders:
                self._write_entry(hd, ht, typ, count, field_b)
            new_off = None
        elif not old_inline and len(raw) <= old_n:
            self.write_at(old_off, raw + b"\x00" * (old_n - len(raw)))
            fmt = "Q" if self.kind == "bigtiff" else "I"
            low = old_off if self.kind == "bigtiff" else old_off & 0xFFFFFFFF
            for hd, ht in holders:
                if ht.count != count or ht.type != typ:
                    self._write_entry(hd, ht, typ, count, struct.pack(self.byteorder + fmt, low),
                                      high=old_off >> 32)
            new_off = old_off
        else:
            new_off = self.append(raw)
            fmt = "Q" if self.kind == "bigtiff" else "I"
            low = new_off if self.kind == "bigtiff" else new_off & 0xFFFFFFFF
            for hd, ht in holders:
                self._write_entry(hd, ht, typ, count, struct.pack(self.byteorder + fmt, low),
                                  high=new_off >> 32)
        self.refresh()
        # zero what is no longer used (shrunk values were zero-padded above)
        if not old_inline and new_off != old_off:
            self.zero_unreferenced(old_off, old_n)
        self.edits.append(f"ifd{ifd}:tag{code}:{old_n}->{len(raw)}")

    def set_ascii(self, ifd: int, code: int, text: str | bytes) -> None:
        """Set an ASCII tag (a trailing NUL is added)."""
        self.set_tag_bytes(ifd, code, encode_value(2, text, self.byteorder), type_=2)

    def set_values(self, ifd: int, code: int, values: Sequence[Any], type_: int | None = None) -> None:
        """Set a numeric tag from a sequence of numbers (keeps the tag's type by default)."""
        tag = self.ifd(ifd).tags.get(code)
        if tag is None:
            raise KeyError(f"IFD {ifd} has no tag {code}")
        typ = tag.type if type_ is None else type_
        self.set_tag_bytes(ifd, code, encode_value(typ, values, self.byteorder), type_=typ)

    def remove_tag_value(self, ifd: int, code: int) -> None:
        """Blank a tag without deleting the entry: ASCII becomes empty, bytes become zeros."""
        tag = self.ifd(ifd).tags[code]
        if tag.type == 2:
            self.set_ascii(ifd, code, "")
        else:
            self.set_tag_bytes(ifd, code, b"\x00" * tag.nbytes)

    # ----------------------------------------------------------------- IFD edits
    def _set_pointer(self, field_offset: int, value: int) -> None:
        if self.kind in ("bigtiff", "ndpi"):
            self.write_at(field_offset, struct.pack(self.byteorder + "Q", value))
        else:
            self.write_at(field_offset, struct.pack(self.byteorder + "I", value))

    def unlink_ifd(self, index: int, *, zero: bool = True) -> int:
        """Remove IFD ``index`` from the chain; zero its structure, values and image data.

        Byte ranges still referenced by the other IFDs (shared values) are kept.
        Returns the number of bytes zeroed. Indices of later IFDs shift down by one.
        """
        return self.unlink_ifds([index], zero=zero)

    def unlink_ifds(self, indices: Iterable[int], *, zero: bool = True) -> int:
        """Remove several IFDs from the chain at once (:meth:`unlink_ifd` for each, with the
        byte ranges the kept IFDs use computed once: the tile tables of a large level are
        read a single time). Returns the bytes zeroed; indices of later IFDs shift down."""
        self._check_writable()
        remove = sorted(set(indices))
        if not remove:
            return 0
        if remove[-1] >= SUB_BASE:
            raise ValueError("a SubIFD cannot be unlinked on its own")
        ifds = [self.ifd(i) for i in range(len(self.ifds))]
        ranges: list[tuple[int, int]] = []
        for i in remove:  # the IFD and the SubIFDs hanging from it
            for k in [i, *self.subifds_of(i)]:
                d = self.ifd(k)
                ranges.append((d.offset, d.size))
                ranges += [(t.value_offset, t.nbytes) for t in d.tags.values() if not t.inline]
                so, sc = self.segment_arrays(k)
                ranges += list(zip(so.tolist(), sc.tolist(), strict=True))
        live = self.referenced_ranges(exclude_ifds=remove)
        gone = set(remove)
        for i in remove:  # the predecessor of each run of removed IFDs skips the whole run
            if i - 1 in gone:
                continue
            last = i
            while last + 1 in gone:
                last += 1
            nxt = ifds[last].next_offset
            field_off = self.first_ifd_field if i == 0 else ifds[i - 1].next_field_offset
            self._set_pointer(field_off, nxt)
            if i == 0:
                self.first_ifd = nxt
        zeroed = 0
        if zero:
            for off, n in ranges:
                if 0 < off and n > 0 and off + n <= self.size:
                    zeroed += self.zero_unreferenced(off, n, live)
        self.refresh()
        self.edits += [f"unlink ifd{i}" for i in reversed(remove)]
        return zeroed

    def replace_tile(self, ifd: int, tile_index: int, new_bytes: bytes) -> int:
        """Append a new tile/strip, repoint it, zero the old one; return the new offset."""
        self._check_writable()
        d = self.ifd(ifd)
        ocode, ccode = (TILE_OFFSETS, TILE_BYTE_COUNTS) if d.is_tiled else (STRIP_OFFSETS, STRIP_BYTE_COUNTS)
        offs = list(d.get(ocode))
        cnts = list(d.get(ccode))
        so, sc = self.segment_arrays(ifd)
        old_off, old_n = int(so[tile_index]), int(sc[tile_index])
        new_off = self.append(new_bytes)
        offs[tile_index] = new_off
        cnts[tile_index] = len(new_bytes)
        otag, ctag = d.tags[ocode], d.tags[ccode]
        otype = otag.type
        ndpi_single = self.is_ndpi and otag.inline and otag.count == 1
        if max(offs) > 0xFFFFFFFF and otype in (3, 4) and not ndpi_single:
            if self.kind != "bigtiff":
                raise ValueError(f"{self.path}: tile offset past 4 GB in a 32-bit TIFF")
            otype = 16
        ctype = ctag.type
        if len(new_bytes) > 0xFFFF and ctype == 3:
            ctype = 4
        self._patch_array(ifd, ocode, tile_index, new_off, otype)
        self._patch_array(ifd, ccode, tile_index, len(new_bytes), ctype)
        self.refresh()
        self.zero_unreferenced(old_off, old_n)
        return new_off

    def _patch_array(self, ifd: int, code: int, i: int, value: int, type_: int) -> None:
        """Patch item ``i`` of a numeric array tag, in place when the type is unchanged."""
        d = self.ifd(ifd)
        tag = d.tags[code]
        if self.is_ndpi and tag.inline and tag.count == 1 and type_ in (4, 13):
            # NDPI: low 32 bits in the entry, high 32 bits in the word after the IFD
            n = (d.size - 2 - 8) // 16
            k = (tag.entry_offset - d.offset - 2) // 12
            self.write_at(tag.value_offset, struct.pack("<I", value & 0xFFFFFFFF))
            self.write_at(d.offset + 2 + 12 * n + 8 + 4 * k, struct.pack("<I", value >> 32))
            tag.raw = struct.pack("<I", value & 0xFFFFFFFF)
            tag.ndpi_high = value >> 32
        elif type_ == tag.type:
            isz = TYPE_SIZES[type_]
            pos = tag.value_offset + i * isz
            self.write_at(pos, encode_value(type_, [value], self.byteorder))
            raw = bytearray(tag.raw)
            raw[i * isz:(i + 1) * isz] = encode_value(type_, [value], self.byteorder)
            tag.raw = bytes(raw)
        else:
            vals = list(tag.value)
            vals[i] = value
            self.set_values(ifd, code, vals, type_=type_)

    def replace_tiles(self, ifd: int, new: dict[int, bytes]) -> list[int]:
        """Replace several tiles/strips of one IFD; return their new offsets.

        Same as :meth:`replace_tile` for each, with one re-read of the structure and one
        computation of the live ranges for the whole batch."""
        self._check_writable()
        if not new:
            return []
        d = self.ifd(ifd)
        ocode, ccode = (TILE_OFFSETS, TILE_BYTE_COUNTS) if d.is_tiled else (STRIP_OFFSETS, STRIP_BYTE_COUNTS)
        otag, ctag = d.tags[ocode], d.tags[ccode]
        so, sc = self.segment_arrays(ifd)
        end = self.size + sum(len(b) + ALIGN for b in new.values())
        fits = (otag.type in (16, 18) or end <= 0xFFFFFFFF
                or (self.is_ndpi and otag.inline and otag.count == 1))
        if not fits or (ctag.type == 3 and max(len(b) for b in new.values()) > 0xFFFF):
            return [self.replace_tile(ifd, i, b) for i, b in sorted(new.items())]
        old = [(int(so[i]), int(sc[i])) for i in new]
        out = []
        for i, b in sorted(new.items()):
            off = self.append(b)
            self._patch_array(ifd, ocode, i, off, otag.type)
            self._patch_array(ifd, ccode, i, len(b), ctag.type)
            out.append(off)
        self.refresh()
        live = self.referenced_ranges()
        for o, n in old:
            self.zero_unreferenced(o, n, live)
        self.edits.append(f"ifd{ifd}: {len(new)} tiles replaced")
        return out


# --------------------------------------------------------------------- raw scan
def value_forms(value: str | bytes) -> list[bytes]:
    """Byte forms a value may take in a file: UTF-8, UTF-16 LE/BE and base64.

    Base64 of a value embedded in a longer base64 stream depends on its alignment, so all
    three alignments are produced (each trimmed to the characters fully determined by
    the value).
    """
    b = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    forms = [b]
    try:
        s = b.decode("utf-8")
        forms += [s.encode("utf-16-le"), s.encode("utf-16-be")]
    except UnicodeDecodeError:
        pass
    for shift in range(3):
        enc = base64.b64encode(b"\x00" * shift + b)
        # drop characters mixing in the unknown neighbours
        start = {0: 0, 1: 2, 2: 3}[shift]
        total = shift + len(b)
        full = (total // 3) * 4
        tail = {0: 0, 1: 1, 2: 2}[total % 3]
        core = enc[start:full + tail]
        if len(core) >= 4:
            forms.append(core)
    out: list[bytes] = []
    for f in forms:
        if f and f not in out:
            out.append(f)
    return out


def _find_all(block: bytes, patterns: list[tuple[str | bytes, bytes]]) -> list[tuple[int, int]]:
    """(pattern index, position) of every occurrence, with bytes.find."""
    out = []
    for k, (_, pat) in enumerate(patterns):
        # NULs at either end (UTF-16) make find() crawl through zeroed areas:
        # search for the rest and check the NULs around each hit
        core = pat.strip(b"\x00")
        lead = len(pat) - len(pat.lstrip(b"\x00"))
        trail = len(pat) - lead - len(core)
        i = block.find(core, lead)
        while i != -1:
            e = i + len(core)
            if block[i - lead:i] == b"\x00" * lead and block[e:e + trail] == b"\x00" * trail:
                out.append((k, i - lead))
            i = block.find(core, i + 1)
    return out


def scan_raw(path: str | os.PathLike, values: Iterable[str | bytes], *,
             chunk: int = 64 << 20, forms: bool = True) -> list[tuple[str | bytes, int]]:
    """Search the raw bytes of a whole file for each value; return ``(value, offset)`` hits.

    Each value is looked for as UTF-8, UTF-16 (both byte orders) and base64 (every
    alignment) when ``forms`` is true. The file is memory-mapped and searched in
    overlapping chunks.
    """
    vals = [v for v in values if v]
    if not vals:
        return []
    patterns: list[tuple[str | bytes, bytes]] = []
    for v in vals:
        for f in (value_forms(v) if forms else [v.encode() if isinstance(v, str) else bytes(v)]):
            patterns.append((v, f))
    longest = max(len(p) for _, p in patterns)
    hits: list[tuple[str | bytes, int]] = []
    seen: set[tuple[int, int]] = set()
    size = os.path.getsize(path)
    if size == 0:
        return []
    try:  # multi-pattern search in one pass (optional dependency, ~4x faster)
        import ahocorasick_rs

        automaton = ahocorasick_rs.BytesAhoCorasick([p for _, p in patterns])
    except ImportError:
        automaton = None
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        try:
            pos = 0
            while pos < size:
                end = min(size, pos + chunk + longest)
                if automaton is not None:
                    found = [(k, s) for k, s, _ in
                             automaton.find_matches_as_indexes(view[pos:end], overlapping=True)]
                else:
                    found = _find_all(bytes(view[pos:end]), patterns)
                for k, s in found:
                    key = (k, pos + s)
                    if key not in seen:
                        seen.add(key)
                        hits.append((patterns[k][0], pos + s))
                pos += chunk
        finally:
            view.release()
    hits.sort(key=lambda h: h[1])
    return hits
