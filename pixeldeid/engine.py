"""The header de-identification engine: PS3.15 Table E.1-1 applied to a pydicom Dataset.

Elements whose action is Keep are never decoded: pydicom keeps them as raw bytes and
writes them back unchanged, which is what makes the engine fast. Sequences are walked
recursively at any depth; private blocks are matched by their creator wherever the block
was relocated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from . import dates as _dates
from .dummy import dummy_value
from .errors import DeidError
from .iodtypes import attribute_type, resolve_compound
from .standard import action_for, safe_private_for
from .textclean import clean_text
from .uids import STRUCTURAL_UID_KEYWORDS

logger = logging.getLogger(__name__)

DATE_VRS = frozenset({"DA", "DT", "TM"})
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"})
COMPOUND = frozenset({"X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"})

TRAILING_PADDING = 0xFFFCFFFC

#: Attributes of code sequence items: coded, not free text; kept in every mode.
CODE_KEYWORDS = frozenset({
    "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
    "LongCodeValue", "URNCodeValue", "ContextIdentifier", "ContextUID", "MappingResource",
    "MappingResourceName", "ContextGroupVersion", "ContextGroupLocalVersion",
    "CodingSchemeName", "CodingSchemeResponsibleOrganization", "EquivalentCodeSequence",
})


@dataclass
class WalkContext:
    """Everything the walk needs that does not change within one instance."""

    options: frozenset[str]
    sop_class_uid: str
    uid_map: object  # callable str -> str
    offset: _dates.DateOffset | None
    tokens: list[str]
    private_allow: frozenset[tuple[str, int, int]] = frozenset()
    removed_values: list[str] = field(default_factory=list)

    @property
    def retain_uids(self) -> bool:
        return "retain-uids" in self.options

    @property
    def full_dates(self) -> bool:
        return "retain-longitudinal-full-dates" in self.options

    @property
    def modified_dates(self) -> bool:
        return "retain-longitudinal-modified-dates" in self.options


def _vr_of(ds: Dataset, tag: BaseTag) -> str:
    """VR of an element without decoding its value."""
    elem = ds._dict[tag]
    vr = elem.VR
    if vr and vr != "UN":
        return vr
    try:
        return dictionary_VR(tag)
    except KeyError:
        return vr or "UN"


def _keyword(tag: int) -> str:
    return keyword_for_tag(tag) or ""


def _values(elem: DataElement) -> list:
    v = elem.value
    if v is None or v == "":
        return []
    if isinstance(v, (list, tuple, MultiValue)):
        return list(v)
    return [v]


def _set_values(elem: DataElement, vals: list) -> None:
    if not vals:
        elem.value = None if elem.VR not in ("SQ",) else Sequence()
    elif len(vals) == 1:
        elem.value = vals[0]
    else:
        elem.value = vals


def _partner(keyword: str) -> str | None:
    """The companion Time keyword of a Date keyword and vice versa."""
    if "Date" in keyword and "DateTime" not in keyword:
        return keyword.replace("Date", "Time", 1)
    if "Time" in keyword and "DateTime" not in keyword:
        return keyword.replace("Time", "Date", 1)
    return None


class Walker:
    """Apply the profile to one dataset and everything nested in it."""

    def __init__(self, ctx: WalkContext) -> None:
        self.ctx = ctx

    # -- entry point -----------------------------------------------------------------
    def walk(self, ds: Dataset, path: tuple[str, ...] = (), depth: int = 0,
             mode: str = "normal") -> None:
        """Apply the profile to ``ds``.

        ``mode`` is how a sequence's own action reaches the elements in it that Table E.1-1
        does not list: ``"normal"`` keeps them, ``"clean"`` (the sequence is C) cleans their
        free text and replaces person names, ``"dummy"`` (the sequence is D) replaces their
        free text and names with dummies. Code sequence attributes stay in every mode.
        """
        if depth > 64:
            raise DeidError("sequence nesting deeper than 64 levels")
        ctx = self.ctx
        done: set[int] = set()
        creators: dict[tuple[int, int], str] = {}
        kept_blocks: set[tuple[int, int]] = set()
        private_tags: list[BaseTag] = []
        for tag in list(ds._dict.keys()):
            group, elem = tag >> 16, tag & 0xFFFF
            if group & 1:
                private_tags.append(tag)
                continue
            if elem == 0 or group in (0x0000, 0x0002) or tag == TRAILING_PADDING:
                del ds[tag]  # group lengths, command and meta elements, trailing padding
                continue
            if tag in done:
                continue
            code = action_for(tag, ctx.options)
            if code is None:
                self._untabled(ds, tag, path, depth, done, mode)
                continue
            if code in COMPOUND:
                kw = _keyword(tag)
                code = resolve_compound(code, attribute_type(ctx.sop_class_uid, path, kw))
            self._apply(ds, tag, code, path, depth, done, mode)
        if private_tags:
            self._privates(ds, private_tags, creators, kept_blocks, path, depth, mode)

    # -- standard elements -----------------------------------------------------------
    def _apply(self, ds: Dataset, tag: BaseTag, code: str, path: tuple[str, ...], depth: int,
               done: set[int], mode: str = "normal") -> None:
        vr = _vr_of(ds, tag)
        if code == "X":
            del ds[tag]
            return
        if code == "K":
            if vr == "SQ":
                self._recurse(ds, tag, path, depth, mode)
            return
        elem = ds[tag]
        if code == "Z":
            elem.value = Sequence() if vr == "SQ" else None
        elif code == "D":
            if vr == "SQ":
                self._recurse(ds, tag, path, depth, "dummy")
            elif vr in DATE_VRS and self.ctx.offset is not None and self.ctx.modified_dates:
                self._shift(ds, tag, vr, done)
            elif vr == "UI":
                self._map_uids(elem)
            else:
                elem.value = dummy_value(vr, elem.value)
        elif code == "U":
            if vr == "SQ":
                self._recurse(ds, tag, path, depth, mode)
            elif vr == "UI":
                self._map_uids(elem)  # under Retain UIDs the table itself says K
            else:
                elem.value = dummy_value(vr, elem.value)
        elif code == "C":
            self._clean(ds, tag, vr, path, depth, done)
        else:  # pragma: no cover - the generator validates codes
            raise DeidError(f"unknown action code {code!r} for {tag}")

    def _clean(self, ds: Dataset, tag: BaseTag, vr: str, path: tuple[str, ...], depth: int,
               done: set[int]) -> None:
        elem = ds[tag]
        if vr == "SQ":
            self._recurse(ds, tag, path, depth, "clean")
        elif vr in DATE_VRS:
            if self.ctx.full_dates:
                return
            if self.ctx.offset is None:
                raise DeidError(f"no date offset to clean {elem.keyword or tag}")
            self._shift(ds, tag, vr, done)
        elif vr in TEXT_VRS:
            vals = [clean_text(v, self.ctx.tokens) for v in _values(elem)]
            _set_values(elem, [v for v in vals])
        elif vr == "PN":
            elem.value = dummy_value("PN", elem.value) if elem.value else None
        elif vr == "UI":
            self._map_uids(elem)
        elif vr in BINARY_VRS:
            # Binary content (e.g. Overlay Data under Clean Graphics) cannot be cleaned
            # without reading it: remove it (fail closed).
            del ds[tag]
        # CS, AS, numbers, AT: no free text; keep.

    def _untabled(self, ds: Dataset, tag: BaseTag, path: tuple[str, ...], depth: int,
                  done: set[int], mode: str = "normal") -> None:
        """Elements not in Table E.1-1: recurse, remap instance UIDs, handle dates by VR,
        and clean or dummy free text inside cleaned or dummied sequences."""
        vr = _vr_of(ds, tag)
        if vr == "SQ":
            self._recurse(ds, tag, path, depth, mode)
        elif mode != "normal" and (vr in TEXT_VRS or vr == "PN") \
                and _keyword(tag) not in CODE_KEYWORDS:
            if mode == "clean" and vr != "PN":
                self._clean(ds, tag, vr, path, depth, done)
            else:
                elem = ds[tag]
                if elem.value:
                    elem.value = dummy_value(vr, elem.value)
        elif vr == "UI":
            if self.ctx.retain_uids or _keyword(tag) in STRUCTURAL_UID_KEYWORDS:
                return
            self._map_uids(ds[tag])
        elif vr in DATE_VRS:
            # PS3.15 E.1.1 Note: handle all dates and times by VR, listed or not.
            if self.ctx.full_dates:
                return
            if self.ctx.modified_dates and self.ctx.offset is not None:
                self._shift(ds, tag, vr, done)
                return
            code = resolve_compound("X/Z/D", attribute_type(self.ctx.sop_class_uid, path,
                                                            _keyword(tag)))
            self._apply(ds, tag, code, path, depth, done)

    # -- helpers ---------------------------------------------------------------------
    def _recurse(self, ds: Dataset, tag: BaseTag, path: tuple[str, ...], depth: int,
                 mode: str = "normal") -> None:
        elem = ds[tag]
        kw = elem.keyword or f"{int(tag):08X}"
        for item in elem.value or []:
            self.walk(item, (*path, kw), depth + 1, mode)

    def _map_uids(self, elem: DataElement) -> None:
        vals = [self.ctx.uid_map(str(v)) for v in _values(elem)]
        _set_values(elem, vals)

    def _shift(self, ds: Dataset, tag: BaseTag, vr: str, done: set[int]) -> None:
        off = self.ctx.offset
        assert off is not None
        elem = ds[tag]
        vals = _values(elem)
        if not vals:
            return
        kw = elem.keyword
        partner_kw = _partner(kw) if kw and vr in ("DA", "TM") else None
        ptag = tag_for_keyword(partner_kw) if partner_kw else None
        partner = ds[ptag] if ptag is not None and ptag in ds._dict else None
        if partner is not None and action_for(partner.tag, self.ctx.options) not in (None, "C", "D"):
            partner = None  # the companion is removed or kept by its own rule
        where = kw or str(tag)
        try:
            if partner is not None and partner.VR in ("DA", "TM") and partner.VR != vr \
                    and len(_values(partner)) == 1 and len(vals) == 1 \
                    and "-" not in str(vals[0]) and "-" not in str(partner.value):
                date_el, time_el = (elem, partner) if vr == "DA" else (partner, elem)
                where = f"{date_el.keyword}/{time_el.keyword}"  # either may be the bad one
                d, t = _dates.shift_pair(str(date_el.value), str(time_el.value), off)
                date_el.value, time_el.value = d, t
                done.add(int(partner.tag))
                return
            if vr == "DA":
                new = [_dates.shift_date(str(v), off) for v in vals]
            elif vr == "TM":
                new = [_dates.shift_time(str(v), off)[0] for v in vals]
            else:
                new = [_dates.shift_datetime(str(v), off) for v in vals]
        except DeidError as exc:
            raise DeidError(f"{where}: {exc.reason}") from None
        _set_values(elem, new)

    # -- private elements ------------------------------------------------------------
    def _privates(self, ds: Dataset, tags: Iterable[BaseTag], creators: dict, kept: set,
                  path: tuple[str, ...], depth: int, mode: str = "normal") -> None:
        retain = "retain-safe-private" in self.ctx.options
        tags = list(tags)
        for tag in tags:
            group, elem = tag >> 16, tag & 0xFFFF
            if 0x0010 <= elem <= 0x00FF:
                value = ds[tag].value
                if isinstance(value, bytes):
                    value = value.decode("latin-1", "replace")
                creators[(group, elem)] = str(value or "").strip()
        for tag in tags:
            group, elem = tag >> 16, tag & 0xFFFF
            if elem < 0x1000:
                continue  # creators and group lengths: decided below
            block = (group, elem >> 8)
            creator = creators.get(block)
            keep = False
            if retain and creator:
                low = elem & 0xFF
                keep = (safe_private_for(creator, group, low) is not None
                        or (creator.upper(), group, low) in self.ctx.private_allow)
            if keep:
                kept.add(block)
                if _vr_of(ds, tag) == "SQ":
                    self._recurse(ds, tag, path, depth, mode)
            else:
                del ds[tag]
        for tag in tags:
            group, elem = tag >> 16, tag & 0xFFFF
            if elem < 0x1000 and (group, elem) not in kept:
                if tag in ds._dict:
                    del ds[tag]


STRING_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})


def removed_text_values(ds: Dataset, options: frozenset[str], depth: int = 0) -> list[str]:
    """Text values (any depth) that the profile removes or replaces, and every person name.

    Their words are identity by definition; the clean (C) action removes them from the
    descriptors and free text it keeps.
    """
    out: list[str] = []
    if depth > 64:
        return out
    for tag in list(ds._dict.keys()):
        group, el = tag >> 16, tag & 0xFFFF
        if el == 0:
            continue
        vr = _vr_of(ds, tag)
        if vr == "SQ":
            for item in ds[tag].value or []:
                out += removed_text_values(item, options, depth + 1)
            continue
        if vr not in STRING_VRS:
            continue
        if group & 1:
            if el < 0x1000:
                continue
            take = True
        else:
            code = action_for(tag, options)
            take = vr == "PN" or (code is not None and code not in ("K", "C"))
        if take:
            v = ds[tag].value
            if isinstance(v, bytes):
                v = v.decode("latin-1", "replace")
            out += [str(x) for x in (v if isinstance(v, (list, MultiValue)) else [v]) if x]
    return out


def is_raw(ds: Dataset, tag: int) -> bool:
    """True when the element is still undecoded raw bytes (used by tests)."""
    return isinstance(ds._dict.get(BaseTag(tag)), RawDataElement)
