"""Derive an instance's output from the previous instance of its series.

The instances of one series differ in a few values: SOP Instance UID, Instance Number,
slice position, acquisition time, the reference to the image they were made from, pixel
data. What the header engine does with everything else is the same for each of them.
:class:`Deriver` keeps the last instance the fast path (:mod:`pixeldeid.rawds`)
de-identified as a :class:`Template`: its parse, its output and the context of its walk
(the patient's identity tokens, the other people's names, the date offset). For the next
file it compares the header with the template's, element by element and byte for byte.
When each element that differs is one that context does not depend on
(:func:`context_free`), the output is the template's output with those elements (and the
Date or Time paired with them) de-identified by the same
:class:`~pixeldeid.engine.Walker` in the same context (:meth:`Walker.walk_tags`), and
the file meta made anew. Anything else (another patient, a changed text or person name,
elements added, missing or in another layout) and the file goes the ordinary fast way,
then serves as the next template. The residual check runs on every output all the same.

``PIXELDEID_DERIVE=0`` turns derivation off (every file takes the ordinary fast path).
``PIXELDEID_CHECK_DERIVED=<file>`` also de-identifies each derived file the ordinary way
and appends a line to ``<file>`` when the two outputs differ (the test suite sets it).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import empty_value_for_VR
from pydicom.dataset import FileMetaDataset

from .dsvalues import (
    RAW_DEFAULTS,
    dictionary_vr,
    garbled_text,
    keyword_of,
    make_raw,
    peek,
    set_meta,
)
from .engine import Walker, _partner
from .rawds import (
    Decline,
    FileSlice,
    RawDataset,
    RawSequence,
    _parse,
    _Parser,
    element_head,
    file_stamp,
)
from .rawwrite import Patch, encode_elements

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

#: VRs whose values no part of a walk's context is made from (identity tokens, other
#: people's names, the words of removed text, the SOP class, the patient): UIDs, dates and
#: times, numbers, attribute tags and binary data.
CONTEXT_FREE_VRS = frozenset({
    "UI", "DA", "TM", "DT", "IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV",
    "AT", "US or SS", "OB", "OW", "OF", "OD", "OL", "OV", "OB or OW", "US or OW"})

#: Top-level attributes the context or the steps after the walk read (besides groups 0x0000,
#: 0x0002, 0x0010 (patient), 0x0012 (clinical trial, de-identification method), 0x0028
#: (image pixel description: overlays), 0x50xx curves and 0x60xx overlays): SOP Class UID,
#: Study and Series Date (the patient's age), the character set, the Extended Offset Table.
CONTEXT_TAGS = frozenset({0x00080005, 0x00080016, 0x00080020, 0x00080021, 0x7FE00001,
                          0x7FE00002, 0x7FE00008, 0x7FE00009, 0xFFFCFFFC})
_CONTEXT_GROUPS = frozenset({0x0000, 0x0002, 0x0010, 0x0012, 0x0028})
PIXEL_DATA = 0x7FE00010
#: top-level elements compared with the template's in one go
GROUP = 8
ENV_CHECK = "PIXELDEID_CHECK_DERIVED"


def _vr_context_free(tag: int, vr: str | None) -> bool:
    """Whether an element of VR ``vr`` (None: implicit) holds nothing a context is made of.
    A standard attribute's dictionary VR must say so too (an explicit UN is read as that)."""
    dvr = dictionary_vr(tag) if not tag >> 16 & 1 else None
    if vr in (None, "UN"):
        return dvr in CONTEXT_FREE_VRS
    return vr in CONTEXT_FREE_VRS and (dvr is None or dvr in CONTEXT_FREE_VRS)


def context_free(tag: int, vr: str | None, options: frozenset[str]) -> bool:
    """Whether a top-level element ``tag`` may differ from the template's and the rest of
    the output still be the template's.

    A sequence when what it holds is too (:func:`signature`, compared by the caller).
    Private elements: a creator or a sequence never; any other when it has a context-free
    VR, or, with no safe private attribute retained, any VR (every private element then
    goes).
    """
    group = tag >> 16
    if group & 1:
        if tag & 0xFFFF < 0x1000:
            return False
        return _vr_context_free(tag, vr) or (
            vr != "SQ" and "retain-safe-private" not in options)
    if (group in _CONTEXT_GROUPS or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF
            or tag in CONTEXT_TAGS):
        return False
    return vr == "SQ" or _vr_context_free(tag, vr)  # (a sequence: see signature())


def signature(seq: RawSequence, depth: int = 0) -> list:
    """What a sequence holds that a context may be made of: (tag, VR, bytes) of each value
    of a VR other than :data:`CONTEXT_FREE_VRS` at any depth, and the nesting."""
    out: list = []
    if depth > 64:
        raise Decline("sequences nested too deep")
    for item in seq.value:
        out.append("item")
        for tag, elem in item._dict.items():
            if isinstance(elem, RawSequence):
                out.append((tag, "SQ"))
                out += signature(elem, depth + 1)
            elif not _vr_context_free(tag, elem.VR):
                value = elem.value
                out.append((tag, elem.VR, value if isinstance(value, bytes) else repr(value)))
    return out


@dataclasses.dataclass
class Template:
    """An instance de-identified by the fast path, to derive the next ones from."""

    data: bytes  #: the bytes parsed (the head of the file, or all of it)
    index: list  #: (tag, start, end, VR) of each top-level element in ``data``
    pristine: RawDataset  #: the parse of ``data``, never walked
    out: RawDataset  #: its de-identified data set
    ctx: object  #: the WalkContext of its walk
    transfer_syntax: bytes
    sop_class: bytes
    patient: str  #: the original patient (:func:`pixeldeid.api.patient_key`)
    signatures: dict = dataclasses.field(default_factory=dict)
    #: how ``out`` was written, element by element (:class:`pixeldeid.rawwrite.Patch`)
    patch: Patch | None = None
    _groups: list | None = None
    derived: int = 0

    @property
    def read_size(self) -> int:
        """How much of a file to read: the template's elements before one left in its file
        (Pixel Data), and 4 KB more (values a little longer)."""
        head = self.index[-1][1] if self.index[-1][2] > len(self.data) else self.index[-1][2]
        return min(len(self.data), head) + 4096

    def groups(self) -> list:
        """The top-level elements in runs of :data:`GROUP`: (start, end, bytes of the run,
        members), each member (tag, start, end, VR, bytes); bytes None where they are not
        all in :attr:`data` (Pixel Data left in its file)."""
        if self._groups is None:
            n = len(self.data)
            members = [(t, p, e, vr, self.data[p:e] if e <= n else None)
                       for t, p, e, vr in self.index]
            self._groups = []
            for i in range(0, len(members), GROUP):
                run = members[i:i + GROUP]
                p, e = run[0][1], run[-1][2]
                self._groups.append((p, e, self.data[p:e] if e <= n else None, run))
        return self._groups

    def signature(self, tag: int) -> list:
        got = self.signatures.get(tag)
        if got is None:
            got = self.signatures[tag] = signature(self.pristine._dict[tag])
        return got


class Deriver:
    """Derives outputs from the :class:`Template` of the previous instance (one per
    process; not thread safe)."""

    def __init__(self, deid) -> None:
        self.deid = deid
        self.template: Template | None = None
        self.stats: collections.Counter = collections.Counter()
        self._barren = 0  # templates in a row that derived nothing
        self._skipped = 0
        self.check_file = os.environ.get(ENV_CHECK) or None

    # -- templates ----------------------------------------------------------------------
    def adopt(self, out: RawDataset) -> None:
        """Make ``out``, a data set the fast path just de-identified and wrote (a file
        that could not be derived), the template. After several templates in a row that
        derived nothing (files of series in turn, or ones that differ in text), only
        every 16th such file is made one: a template costs a parse."""
        tpl = self.template
        if tpl is not None:
            self._barren = 0 if tpl.derived else self._barren + 1
            if self._barren >= 4:
                self._skipped += 1
                if self._skipped % 16:
                    return
        self.template = None
        try:
            self.template = _template(out)
        except Exception as exc:  # noqa: BLE001 - no template: files go the ordinary way
            logger.debug("no template from %s: %s", getattr(out, "filename", "?"), exc)
        if self.template is not None:
            self.stats["templates"] += 1

    def derive(self, path: str) -> RawDataset | None:
        """The de-identified data set of the file ``path``, ready to encode, or None when
        it cannot be derived from the template."""
        tpl = self.template
        if tpl is None:
            return None
        try:
            out = self._derive(tpl, path)
        except Exception as exc:  # noqa: BLE001 - the ordinary way decides and reports
            logger.debug("not derived %s: %s", path, exc)
            out = None
        if out is None:
            self.stats["ordinary"] += 1
            return None
        tpl.derived += 1
        self.stats["derived"] += 1
        if self.check_file:
            self._check(out, path)
        return out

    def _derive(self, tpl: Template, path: str) -> RawDataset | None:
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            data = os.read(fd, tpl.read_size)  # (a header the size of the template's, or less)
        finally:
            os.close(fd)
        size = st.st_size
        if len(data) < 144 or data[128:132] != b"DICM":
            return None
        pos = 132
        meta: dict = {}
        while pos + 8 <= len(data) and data[pos] == 2 and data[pos + 1] == 0:
            tag, _vr, length, start = element_head(data, pos, False)
            if length == 0xFFFFFFFF or start + length > len(data):
                return None
            meta[tag] = data[start:start + length]
            pos = start + length
        if meta.get(0x00020010) != tpl.transfer_syntax or meta.get(0x00020002) != tpl.sop_class:
            return None
        spans: dict = {}
        changed = _changes(tpl, data, pos, size, path, file_stamp(st), spans)
        if changed is None:
            return None
        ds = self._apply(tpl, changed, path)
        ds.__dict__.update(_spans=spans, _src=data)  # the changed elements' bytes as read
        return ds

    def _apply(self, tpl: Template, changed: dict, path: str) -> RawDataset:
        from .api import _RecordingUIDs

        full = dict(tpl.pristine._dict)
        full.update(changed)
        closure = set(changed)
        for tag, elem in changed.items():
            vr = elem.VR if elem.VR not in (None, "UN") else dictionary_vr(tag)
            partner = _partner(keyword_of(tag) or "") if vr in ("DA", "TM") else None
            ptag = tag_for_keyword(partner) if partner else None
            if ptag is not None and ptag in full:
                if not context_free(ptag, getattr(full[ptag], "VR", None), tpl.ctx.options):
                    raise Decline("a changed date or time paired with a context value")
                closure.add(ptag)
        src = tpl.pristine
        walked = RawDataset(full, src.original_encoding[0], src.original_character_set)
        uid_map = _RecordingUIDs(self.deid.uids)
        Walker(dataclasses.replace(tpl.ctx, uid_map=uid_map)).walk_tags(walked, closure)
        out_dict = dict(tpl.out._dict)
        for tag in closure:
            elem = full.get(tag)
            if elem is None:
                out_dict.pop(tag, None)
            else:
                out_dict[tag] = elem
        base = tpl.out
        ds = RawDataset(out_dict, base.original_encoding[0], base.original_character_set)
        if tpl.patch is None:
            tpl.patch = Patch(base._dict, encode_elements(base, True, base.original_encoding[0]))
        ds._patch = (tpl.patch, closure)  # the rest is written as the template's was
        ds.file_meta = meta = FileMetaDataset()  # the template's, with this instance's UID
        meta._dict.update(base.file_meta._dict)
        set_meta(meta, "MediaStorageSOPInstanceUID", str(peek(ds, "SOPInstanceUID")))
        ds.preamble = base.preamble
        ds.filename = path
        ds._pixeldeid_patient = tpl.patient  # the original patient, as pseudonyms know it
        ds._pixeldeid_residual_tokens = base._pixeldeid_residual_tokens
        ds._pixeldeid_residual_uids = sorted(set(base._pixeldeid_residual_uids)
                                             | uid_map.replaced)
        return ds

    # -- self-check ---------------------------------------------------------------------
    def _check(self, out: RawDataset, path: str) -> None:
        """Compare ``out`` encoded with the ordinary fast path's output of ``path``;
        append a line to :attr:`check_file` when they differ."""
        from .rawds import read_raw

        def encoded(make):
            try:
                return bytes(self.deid.encode(make(), source=path)[0])
            except OSError:
                return None  # the file changed or went: nothing to compare
            except Exception as exc:  # noqa: BLE001 - compared as text
                return f"{type(exc).__name__}: {exc}"

        derived = encoded(lambda: out)
        full = encoded(lambda: self.deid.deidentify_dataset(read_raw(path), source=path))
        if derived is None or full is None:
            return
        if derived != full:
            kind = "error" if isinstance(derived, str) or isinstance(full, str) else "bytes"
            with open(self.check_file, "a", encoding="utf-8") as fh:
                fh.write(f"{path}\t{kind}\t{str(derived)[:200] if kind == 'error' else ''}"
                         f"\t{str(full)[:200] if kind == 'error' else ''}\n")


def _template(out: RawDataset) -> Template | None:
    """A :class:`Template` from the de-identified data set ``out`` of the fast path."""
    ctx = vars(out).get("_pixeldeid_ctx")
    data = vars(out).get("_src")
    if ctx is None or data is None:
        return None
    pixel = out._dict.get(PIXEL_DATA)
    tail = None
    if pixel is not None and isinstance(pixel.value, FileSlice):
        v = pixel.value
        tail = FileSlice(v.path, v.size, v.stamp)
    index: list = []
    pristine = _parse(data, getattr(out, "filename", ""), tail, index=index)
    groups = {t >> 16 for t in pristine._dict}
    if any(0x5000 <= g <= 0x50FF or 0x6000 <= g <= 0x60FF for g in groups):
        return None  # overlays and curves: the steps after the walk look at them
    from .api import patient_key

    meta = pristine.file_meta._dict
    return Template(data, index, pristine, out, ctx, meta[0x00020010].value,
                    meta[0x00020002].value, patient_key(pristine))


def _changes(tpl: Template, data: bytes, pos: int, size: int, path: str,
             stamp: tuple, spans: dict) -> dict | None:
    """The top-level elements of ``data`` (a file whose data set starts at ``pos``) that
    differ from the template's, parsed (and in ``spans``, tag: (element, start, end) of
    those whose bytes are written as they are, as the parser records them); None when the
    file cannot be derived."""
    index = tpl.index
    if not index:
        return None
    delta = pos - index[0][1]
    changed: dict = {}
    made: list = []
    charset = tpl.pristine.original_character_set
    end = pos
    for gp, ge, group_bytes, members in tpl.groups():
        q = gp + delta
        if group_bytes is not None and data[q:q + ge - gp] == group_bytes:
            end = q + ge - gp  # (most runs of elements are the template's to the byte)
            continue
        for tag, p, e, vr, same in members:
            q = p + delta
            if same is not None and data[q:q + e - p] == same:
                end = q + e - p
                continue
            stop = _changed(tpl, tag, vr, data, q, size, path, stamp, changed, made,
                            spans)
            if stop is None:
                return None
            end = stop
            delta += (stop - q) - (e - p)
    if end != size:
        return None  # more elements, trailing bytes, or a short file
    for one in made:
        if 0x00080005 in one._dict:
            return None
        d = one.__dict__
        d["original_character_set"] = d["_character_set"] = charset
    return changed


def _pixel_length(tpl: Template) -> int | None:
    """The length of the template's Pixel Data (its image attributes were checked)."""
    elem = tpl.pristine._dict.get(PIXEL_DATA)
    return getattr(elem, "length", None) if elem is not None else None


def _changed(tpl: Template, tag: int, vr: str | None, data: bytes, q: int, size: int,
             path: str, stamp: tuple, changed: dict, made: list, spans: dict) -> int | None:
    """Parse the element at ``q`` of ``data`` that differs from the template's element
    ``tag`` into ``changed`` (the data sets of a sequence's items into ``made``); return
    where it ends, or None when the file cannot be derived."""
    implicit = tpl.pristine.original_encoding[0]
    if q + 12 > len(data):
        return None
    btag, bvr, length, start = element_head(data, q, implicit)
    if btag != tag or bvr != vr or not context_free(tag, vr, tpl.ctx.options):
        return None
    if vr == "SQ":
        parser = _Parser(data, implicit)
        seq, stop = parser.sequence(tag, start, length, 0)
        if signature(seq) != tpl.signature(tag):
            return None
        made += parser.made
        changed[tag] = seq
        return stop
    if length == 0xFFFFFFFF:
        return None
    if tag == PIXEL_DATA and length != _pixel_length(tpl):
        return None  # (checked against the image attributes on the full path)
    stop = start + length
    if stop <= len(data):
        value = data[start:stop] if length else empty_value_for_VR(vr, raw=True)
        if garbled_text(vr or dictionary_vr(tag), value):
            return None
    elif tag == PIXEL_DATA and stop == size:
        value = FileSlice(path, size, stamp, start, length)
    else:
        return None
    changed[tag] = one = make_raw((tag, vr, length, value, start, implicit, True)
                                  + RAW_DEFAULTS)
    if stop <= len(data) and (start - q == 8 or data[q + 6:q + 8] == b"\0\0"):
        spans[tag] = (one, q, stop)  # (as the parser records them)
    return stop
