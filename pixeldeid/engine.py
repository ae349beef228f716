"""The header de-identification engine: PS3.15 Table E.1-1 applied to a pydicom Dataset.

Elements whose action is Keep are never decoded: pydicom keeps them as raw bytes and
writes them back unchanged, which is what makes the engine fast. Sequences are walked
recursively at any depth; private blocks are matched by their creator wherever the block
was relocated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from pydicom.datadict import DicomDictionary, dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from . import dates as _dates
from .dsvalues import dictionary_vr, encode_text, keyword_of, peek, set_text, with_value
from .dummy import dummy_value
from .errors import DeidError, shape_of
from .iodtypes import attribute_type, required_type, resolve_compound
from .srcodes import standard_meaning_for
from .standard import action_for, creator_key, rules, safe_private_for
from .textclean import clean_text, contains_tokens, may_contain_tokens, remove_tokens
from .uids import STRUCTURAL_UID_KEYWORDS

logger = logging.getLogger(__name__)

DATE_VRS = frozenset({"DA", "DT", "TM"})
#: External coding schemes whose code value alone says what the meaning is (languages,
#: countries, units: TID 1204 Language of Content, UCUM units); pydicom's PS3.16 tables
#: do not list them, and their meanings are kept unless they hold identity
CODED_BY_VALUE = frozenset({"RFC5646", "ISO3166_1", "ISO639_1", "ISO639_2", "UCUM"})
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"})
COMPOUND = frozenset({"X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"})

TRAILING_PADDING = 0xFFFCFFFC

#: Free-text attributes that must keep a value when cleaning empties them (Type 1 in
#: their usual place: SR TEXT content items, text objects of presentation states).
NONEMPTY_TEXT = frozenset({"TextValue", "UnformattedTextValue"})

#: Attributes of code sequence items: coded, not free text; kept (but see Walker.walk).
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
    #: identity words taken out of the free text the profile keeps (attributes the table
    #: does not list): the names of the people other than the patient in the file, as
    #: the residual check searches for them
    kept_text_tokens: tuple[str, ...] = ()
    #: the instance lists the instances it references (Common Instance Reference Module):
    #: its reference sequences (X/Z/U*) are kept whatever their Type, see _element
    lists_references: bool = False

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
    vr = ds._dict[tag].VR
    if vr and vr != "UN":
        return vr
    return dictionary_vr(tag) or vr or "UN"


#: VRs whose raw value bytes are (single-byte) text that pixeldeid may rewrite in place.
RAW_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH",
                            "ST", "TM", "UC", "UI", "UR", "UT"})


def _raw(ds: Dataset, tag: int) -> RawDataElement | None:
    """The element as undecoded raw bytes, or None when pydicom has already decoded it."""
    e = ds._dict.get(tag)
    return e if isinstance(e, RawDataElement) and e.value is not None else None


def get_strings(ds: Dataset, tag: int, vr: str) -> list[str]:
    """Values of an ASCII-valued element (UI, DA, TM, DT...), read without decoding the element."""
    raw = _raw(ds, tag)
    if raw is not None:
        try:
            text = raw.value.decode("ascii")
        except UnicodeDecodeError:
            raise DeidError(f"{keyword_of(tag) or tag}: non-ASCII bytes in a {vr} value") from None
        text = text.rstrip("\x00 ")
        return [v.strip("\x00 ") for v in text.split("\\")] if text else []
    return [str(v) for v in _values(ds[tag])]


def put_strings(ds: Dataset, tag: int, vr: str, values: list[str]) -> None:
    """Replace the values of an ASCII-valued element, keeping it raw when it was raw."""
    raw = _raw(ds, tag)
    if raw is not None:
        data = encode_text("\\".join(values), vr)
        ds._dict[tag] = with_value(raw, data)
    else:
        _set_values(ds[tag], list(values))


def zero_length(ds: Dataset, tag: int, vr: str) -> None:
    """Make an element zero-length (Z), keeping it raw when it was raw."""
    raw = _raw(ds, tag)
    if raw is not None:
        ds._dict[tag] = with_value(raw, b"")
    else:
        ds[tag].value = Sequence() if vr == "SQ" else None


#: Attributes that hold identity but that Table E.1-1 (PS3.15 2024c) does not list, with
#: the action they get (PS3.15 E.1.1: identity may also hide in attributes the table does
#: not name). Both are free text (LO) dates: they go as the Patient's Birth Date does (Z,
#: kept by no option; Type 3 here, so removed).
UNLISTED_ACTIONS: dict[int, str] = {
    0x00100033: "X",  # Patient's Birth Date in Alternative Calendar
    0x00100034: "X",  # Patient's Death Date in Alternative Calendar
    # the issuers of the patient's ID and of the accession number, and the order numbers
    # in their sequence form: the hospital's namespaces and OIDs, and identifiers that
    # lead back to the order and the patient (their single-valued forms, Issuer of Patient
    # ID and Placer/Filler Order Number / Imaging Service Request, are X in the table)
    0x00100024: "X",  # Issuer of Patient ID Qualifiers Sequence
    0x00080051: "X",  # Issuer of Accession Number Sequence
    0x00400026: "X",  # Order Placer Identifier Sequence
    0x00400027: "X",  # Order Filler Identifier Sequence
    # the same issuer macro wherever else it stands (its namespace and OID name the
    # hospital), and the agency or department that assigned an identifier
    0x00400031: "X",  # Local Namespace Entity ID
    0x00400032: "X",  # Universal Entity ID
    0x00400036: "X",  # Assigning Facility Sequence
    0x0040003A: "X",  # Assigning Agency or Department Code Sequence
    # a person to contact, who authorized a SOP instance, who owns a film session
    0x0074100C: "X",  # Contact Display Name
    0x01000424: "X",  # SOP Authorization Comment
    0x21000160: "X",  # Owner ID
}

#: VRs of retired attributes the table does not list that go (X): free text, names and
#: addresses of a retired Trial or order form (Placer Order Number / Procedure, Report
#: Status Comment Trial, a URL in Uniform Resource Locator Trial) that no current IOD
#: requires and no option keeps.
RETIRED_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "UR"})

#: UR attributes that name definitions (coding schemes, codes, parts of a document), not
#: places: kept. Every other UR attribute the table does not list (Retrieve URL, Retrieve
#: URI, Storage URL, Contact URI, file and folder URIs...) names a server, a person or the
#: original UIDs, and goes by its Type (X, Z or a dummy).
DEFINITION_URLS = frozenset({"CodingSchemeURL", "URNCodeValue",
                             "RelativeURIReferenceWithinEncapsulatedDocument"})

#: Where the engine departs from a cell of Table E.1-1 (PS3.15 2024c), and why: under
#: Retain UIDs the table keeps every instance UID but leaves the cell of the SR UIDREF
#: content item (0040,A124) empty, so Basic's U would replace the references to the very
#: UIDs it keeps (a TID 1500 "Source Series for Segmentation" would point nowhere).
OPTION_OVERRIDES: dict[tuple[int, str], str] = {
    (0x0040A124, "retain-uids"): "K",
}

_CODES: dict[frozenset[str], dict[int, str | None]] = {}


def code_for(tag: int, options: frozenset[str]) -> str | None:
    """:func:`pixeldeid.standard.action_for`, memoised per option set (the hot path), with
    :data:`UNLISTED_ACTIONS` and :data:`OPTION_OVERRIDES`."""
    table = _CODES.get(options)
    if table is None:
        table = _CODES.setdefault(options, {})
    t = int(tag)
    try:
        return table[t]
    except KeyError:
        code = action_for(t, options) or UNLISTED_ACTIONS.get(t) or _retired_text(t)
        for opt in options:
            code = OPTION_OVERRIDES.get((t, opt), code)
        table[t] = code
        return code


ENCAPSULATED_DOCUMENT = 0x00420011
#: ICC Profile (0028,2000): its description and copyright tags are text anyone can set
ICC_PROFILE = 0x00282000


def _raw_length(ds: Dataset, tag: int) -> int:
    """Length of an element's value without decoding it."""
    elem = ds._dict[tag]
    value = elem.value
    if isinstance(elem, RawDataElement):
        return elem.length if value is None else len(value)
    return len(value) if value is not None else 0


def _retired_text(tag: int) -> str | None:
    """X for a retired text attribute (:data:`RETIRED_TEXT_VRS`) of an even group."""
    entry = DicomDictionary.get(tag)
    if entry is not None and entry[3] and entry[0] in RETIRED_TEXT_VRS and not tag >> 16 & 1:
        return "X"
    return None


def _value_list(v) -> list:
    """An element value as a list of its values (none for empty)."""
    if v is None or v == "":
        return []
    if isinstance(v, (list, tuple, MultiValue)):
        return list(v)
    return [v]


def _values(elem: DataElement) -> list:
    return _value_list(elem.value)


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
        free text and names with dummies. Code sequence attributes (coded concepts) stay in
        every mode, except in the items of a sequence whose own action is D (mode
        ``"dummy-codes"``): there the code is the identity (Person Identification Code
        Sequence, ...) and is dummied too; deeper sequences are ``"dummy"``.
        """
        if depth > 64:
            raise DeidError("sequence nesting deeper than 64 levels")
        codes = mode == "dummy-codes"
        if codes:
            mode = "dummy"
        done: set[int] = set()
        creators: dict[tuple[int, int], str] = {}
        kept_blocks: set[tuple[int, int]] = set()
        private_tags: list[BaseTag] = []
        for tag in list(ds._dict.keys()):
            if tag >> 16 & 1:
                private_tags.append(tag)
            elif tag not in done:
                self._element(ds, tag, path, depth, done, mode, codes)
        if private_tags:
            self._privates(ds, private_tags, creators, kept_blocks, path, depth, mode)

    def walk_tags(self, ds: Dataset, tags: Iterable[int]) -> None:
        """Apply the profile to the top-level elements ``tags`` of ``ds`` only, exactly as
        :meth:`walk` treats each (in tag order; a Date and Time pair as one timestamp).

        For :mod:`pixeldeid.derive`: the elements of an instance that differ from those of
        the previous instance of its series. Private elements are treated with the private
        creators of ``ds``.
        """
        done: set[int] = set()
        private_tags: list[BaseTag] = []
        for tag in sorted(tags):
            if tag >> 16 & 1:
                private_tags.append(tag)
            elif tag not in done and tag in ds._dict:
                self._element(ds, tag, (), 0, done, "normal", False)
        if private_tags:
            groups = {t >> 16 for t in private_tags}
            creators = [t for t in ds._dict if t >> 16 in groups and 0x10 <= t & 0xFFFF <= 0xFF]
            self._privates(ds, sorted({*private_tags, *creators}), {}, set(), (), 0, "normal")

    def _element(self, ds: Dataset, tag: int, path: tuple[str, ...], depth: int,
                 done: set[int], mode: str, codes: bool) -> None:
        """Apply the profile to the standard (even group) element ``tag`` of ``ds``."""
        group, elem = tag >> 16, tag & 0xFFFF
        if elem == 0 or group in (0x0000, 0x0002) or tag == TRAILING_PADDING:
            del ds[tag]  # group lengths, command and meta elements, trailing padding
            return
        ctx = self.ctx
        if ds._dict[tag].VR not in _SEQUENCE_VRS and dictionary_vr(tag) == "SQ":
            # a sequence written as bytes (VR OB...) is copied unread: what its items
            # hold cannot be de-identified (UN is parsed as the sequence it is)
            raise DeidError(f"{keyword_of(tag) or tag}: a sequence encoded with VR "
                            f"{ds._dict[tag].VR}; its items cannot be read")
        code = code_for(tag, ctx.options)
        if code is None:
            if dictionary_vr(tag) is None:
                # an even-group element no data dictionary defines (damaged, or a
                # vendor's misuse): what it holds is unknown, so it goes (PS3.15 E.1.1:
                # identity may also hide in new or non-standard attributes)
                del ds[tag]
                return
            self._untabled(ds, tag, path, depth, done, mode, codes)
            return
        if code == "X/Z/U*" and ctx.lists_references:
            # PS3.15 E.1.1: X "unless ... replacement of contained instance UIDs (U) is
            # required to maintain IOD conformance": the Common Instance Reference Module
            # lists what these sequences reference, and goes wrong without them
            code = "U"
        elif code in COMPOUND:
            kw = keyword_of(tag)
            code = resolve_compound(code, attribute_type(ctx.sop_class_uid, path, kw))
        self._apply(ds, tag, code, path, depth, done, mode)

    # -- standard elements -----------------------------------------------------------
    def _apply(self, ds: Dataset, tag: BaseTag, code: str, path: tuple[str, ...], depth: int,
               done: set[int], mode: str = "normal") -> None:
        vr = _vr_of(ds, tag)
        if code == "X":
            kind = required_type(self.ctx.sop_class_uid, path, keyword_of(tag))
            if kind is None:
                del ds[tag]
                return
            # the IOD requires it here unconditionally (Presentation Creation Date of a
            # presentation state, Series Description of an RT Structure Set's source
            # series): emptied (Type 2) or a dummy (Type 1), as the compound codes do, so
            # the output stays valid DICOM
            code = resolve_compound("X/Z/D", kind)
        if code == "K":
            if vr == "SQ":
                self._recurse(ds, tag, path, depth, mode)
            elif vr in NUMBER_VRS:
                check_number(ds, tag, vr)
            elif vr == "AS":
                self._clip_ages(ds, tag)
            return
        if code == "Z" and required_type(self.ctx.sop_class_uid, path,
                                         keyword_of(tag)) == "1":
            # PS3.15 E.1.1: Z allows a dummy value, and a Type 1 attribute needs one (RT
            # Accessory Holder Slot ID of an RT Patient Position Acquisition Instruction)
            code = "D"
        if code in ("U", "D") and vr not in ("UI", "SQ") and dictionary_vr(tag) == "UI":
            # a UID attribute whose VR bytes are damaged (PN, DA, OB...): that VR's dummy
            # (ANONYMOUS, 19000101) would name every such instance alike
            vr = _retyped_as_uid(ds, tag)
        if code == "Z":
            zero_length(ds, tag, vr)
        elif code == "D" and tag == ENCAPSULATED_DOCUMENT and _raw_length(ds, tag):
            # D would release a PDF, CDA or mesh of NUL bytes that still says what it
            # was: the document itself cannot be de-identified, so the file is not released
            raise DeidError("an encapsulated document (Encapsulated Document, PS3.15 "
                            "action D) cannot be de-identified; not released")
        elif code == "D":
            if vr == "SQ":
                self._recurse(ds, tag, path, depth, "dummy-codes")
            elif vr in DATE_VRS and self.ctx.offset is not None and self.ctx.modified_dates:
                self._shift(ds, tag, vr, done)
            elif vr == "UI":
                self._map_uids(ds, tag)
            else:
                self._dummy(ds, tag, vr)
        elif code == "U":
            if vr == "SQ":
                self._recurse(ds, tag, path, depth, mode)
            elif vr == "UI":
                self._map_uids(ds, tag)  # under Retain UIDs the table itself says K
            else:
                self._dummy(ds, tag, vr)
        elif code == "C":
            self._clean(ds, tag, vr, path, depth, done)
        else:  # pragma: no cover - the generator validates codes
            raise DeidError(f"unknown action code {code!r} for {tag}")

    def _clean(self, ds: Dataset, tag: BaseTag, vr: str, path: tuple[str, ...], depth: int,
               done: set[int]) -> None:
        if dictionary_vr(tag) in TEXT_VRS and (vr not in _CLEANED_VRS
                                               or ds._dict[tag].VR == "UN"):
            # (a descriptor written as CS, DS or UR; a text of 64 KB or more, which
            # explicit VR can only write as UN)
            vr = _retyped_as_text(ds, tag)
        if vr == "SQ":
            self._recurse(ds, tag, path, depth, "clean")
        elif vr in DATE_VRS:
            if self.ctx.full_dates:
                return
            if self.ctx.offset is None:
                raise DeidError(f"no date offset to clean {keyword_of(tag) or tag}")
            self._shift(ds, tag, vr, done)
        elif vr in TEXT_VRS:
            old = _value_list(peek(ds, tag))
            vals = [clean_text(v, self.ctx.tokens) for v in old]
            if old and not any(vals) and (keyword_of(tag) in NONEMPTY_TEXT or attribute_type(
                    self.ctx.sop_class_uid, path, keyword_of(tag)) == "1"):
                vals = ["REMOVED"]  # Type 1 (SR TEXT content, a Structure Set Label): a value
            if vals != old:
                set_text(ds, tag, vals)
        elif vr == "PN":
            elem = ds[tag]
            elem.value = dummy_value("PN", elem.value) if elem.value else None
        elif vr == "AE":
            # an AE title names a device (kept under Retain Device Identity) unless it
            # holds identity: then the whole title is replaced, not a part (_ZQXOPER_WS)
            old = get_strings(ds, tag, vr)
            if any(_holds_token(v, self.ctx.tokens) for v in old):
                put_strings(ds, tag, vr, [str(dummy_value("AE"))] * len(old))
        elif vr == "UI":
            self._map_uids(ds, tag)
        elif vr in BINARY_VRS:
            # Binary content (e.g. Overlay Data under Clean Graphics) cannot be cleaned
            # without reading it: remove it (fail closed).
            del ds[tag]
        # CS, AS, numbers, AT: no free text; keep.

    def _untabled(self, ds: Dataset, tag: BaseTag, path: tuple[str, ...], depth: int,
                  done: set[int], mode: str = "normal", codes: bool = False) -> None:
        """Elements not in Table E.1-1: recurse, remap instance UIDs, handle dates by VR,
        replace person names (every PN is identity: the table misses a few, e.g.
        Evaluator Name, and a damaged tag can put a name under another attribute), and
        clean or dummy free text inside cleaned or dummied sequences (``codes``: code
        attributes too, see :meth:`walk`)."""
        vr = _vr_of(ds, tag)
        if tag == ICC_PROFILE:
            self._blank_icc(ds, tag)
            return
        if mode == "normal" and vr not in _ACTED_ON_UNTABLED:
            if vr in TEXT_VRS and not self.ctx.retain_uids:
                self._map_text_uids(ds, tag)
            if vr in TEXT_VRS and self.ctx.kept_text_tokens:
                self._drop_names(ds, tag)
            elif vr in NUMBER_VRS:
                check_number(ds, tag, vr)
            elif vr == "AS":
                self._clip_ages(ds, tag)
            return  # (most elements: numbers, codes, text outside cleaned sequences)
        kw = keyword_of(tag)
        if vr == "SQ":
            self._recurse(ds, tag, path, depth, mode)
        elif mode != "normal" and not codes and kw == "CodeMeaning":
            # a coded concept stays, but its meaning is text a person typed into SR
            # content (a CODE item "Referred by <name>"): a code the standard defines gets
            # the standard's meaning; any other loses the patient's identity words when
            # cleaned, and its whole text when dummied (a physician's name is not one of
            # the patient's identity words)
            old = _value_list(peek(ds, tag))
            vals = [self._code_meaning(ds, str(v), mode) for v in old]
            if vals != old:
                set_text(ds, tag, vals)
        elif vr == "UR" and kw not in DEFINITION_URLS:
            code = resolve_compound("X/Z/D", attribute_type(self.ctx.sop_class_uid, path, kw))
            self._apply(ds, tag, code, path, depth, done)
        elif vr == "PN" or (mode != "normal" and vr in TEXT_VRS
                            and (codes or kw not in CODE_KEYWORDS)):
            if mode == "clean" and vr != "PN":
                self._clean(ds, tag, vr, path, depth, done)
            else:
                elem = ds[tag]
                if elem.value:
                    elem.value = dummy_value(vr, elem.value)
        elif vr == "UI":
            if self.ctx.retain_uids or kw in STRUCTURAL_UID_KEYWORDS:
                return
            self._map_uids(ds, tag)
        elif vr in DATE_VRS:
            self._date_by_vr(ds, tag, vr, path, depth, done)

    def _date_by_vr(self, ds: Dataset, tag: BaseTag, vr: str, path: tuple[str, ...],
                    depth: int, done: set[int]) -> None:
        """A date or time the table does not list (or a kept private one): PS3.15 E.1.1
        Note, handle all dates and times by VR, listed or not."""
        if self.ctx.full_dates:
            return
        if self.ctx.modified_dates and self.ctx.offset is not None:
            self._shift(ds, tag, vr, done)
            return
        code = resolve_compound("X/Z/D", attribute_type(self.ctx.sop_class_uid, path,
                                                        keyword_of(tag)))
        self._apply(ds, tag, code, path, depth, done)

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def _blank_icc(ds: Dataset, tag: int) -> None:
        """The text of an ICC profile's tags (description, copyright, device names: set by
        anyone, a patient's name seen there) replaced by spaces; the colour transform and
        the profile's size stay (:func:`~pixeldeid.iccprofile.blank_text`)."""
        from .iccprofile import ICCProfileError, blank_text

        elem = ds[tag]
        if not isinstance(elem.value, (bytes, bytearray)) or not elem.value:
            return
        try:
            new, _blanked = blank_text(bytes(elem.value))
        except ICCProfileError as exc:
            raise DeidError(f"ICC Profile: {exc.reason}") from None
        if new != elem.value:
            elem.value = new

    @staticmethod
    def _clip_ages(ds: Dataset, tag: int) -> None:
        """Every kept age over 89 becomes ``090Y`` (HIPAA), at any depth and in any
        attribute (a Patient's Age in a request item, a Selector AS Value); an age that
        cannot be read is emptied."""
        old = get_strings(ds, tag, "AS")
        new = [_dates.clip_age(v) if v.strip() else v for v in old]
        if new != old:
            put_strings(ds, tag, "AS", new)

    def _drop_names(self, ds: Dataset, tag: int) -> None:
        """Take the identity words out of kept free text the table does not list (Content
        Description "Annotated by Dr <name>", a Segment Label, a Beam Name): a value left
        empty becomes ``REMOVED``. Code attributes stay as they are."""
        raw = getattr(ds._dict[tag], "value", None)
        if isinstance(raw, bytes) and not may_contain_tokens(raw, self.ctx.kept_text_tokens):
            return  # (most values: no name even as a substring, nothing to decode)
        old = _value_list(peek(ds, tag))
        if not old or not any(contains_tokens(str(v), self.ctx.kept_text_tokens) for v in old):
            return
        if keyword_of(tag) in CODE_KEYWORDS:
            return
        vals = [remove_tokens(str(v), self.ctx.kept_text_tokens) or "REMOVED" for v in old]
        if vals != old:
            set_text(ds, tag, vals)

    def _code_meaning(self, item: Dataset, meaning: str, mode: str) -> str:
        """The Code Meaning of ``item`` to write in a cleaned (``mode`` "clean") or dummied
        sequence."""
        value = next((str(v) for kw in ("CodeValue", "LongCodeValue", "URNCodeValue")
                      if (v := peek(item, kw))), "")
        scheme = str(peek(item, "CodingSchemeDesignator", "") or "")
        standard = standard_meaning_for(meaning, scheme, value)
        if standard is not None:
            return standard
        if scheme in CODED_BY_VALUE and value and not contains_tokens(
                meaning, tuple(self.ctx.tokens) + tuple(self.ctx.kept_text_tokens)):
            return meaning  # ("English" for RFC5646 eng: the code says it)
        if mode == "clean":
            return remove_tokens(meaning, self.ctx.tokens) or "REMOVED"
        return "REMOVED"

    def _recurse(self, ds: Dataset, tag: BaseTag, path: tuple[str, ...], depth: int,
                 mode: str = "normal") -> None:
        elem = ds[tag]
        kw = elem.keyword or f"{int(tag):08X}"
        items = elem.value or []
        if not all(hasattr(item, "_dict") for item in items):  # (Dataset, RawDataset)
            raise DeidError(f"{kw}: a sequence whose items cannot be read")
        for item in items:
            self.walk(item, (*path, kw), depth + 1, mode)

    def _map_text_uids(self, ds: Dataset, tag: int) -> None:
        """Replace the UIDs written in kept free text ("see <a Study Instance UID>") as the
        UID elements are replaced: the text names the same new instance, whether or not
        this file references it (a GSPS Content Description released another study's
        original UID). A value the new UIDs would make too long for its VR loses them
        instead (the output stays valid); text naming a coding scheme keeps its OID."""
        raw = getattr(ds._dict[tag], "value", None)
        if isinstance(raw, bytes) and not _TEXT_UID_BYTES.search(raw):
            return  # (most values: one quick search)
        kw = keyword_of(tag)
        if kw in CODE_KEYWORDS or kw in _OID_TEXT_KEYWORDS:
            return
        old = [str(v) for v in _value_list(peek(ds, tag))]
        vals = [_TEXT_UID.sub(lambda m: self.ctx.uid_map(m.group(0)), v) for v in old]
        if vals == old:
            return
        limit = _TEXT_MAX.get(_vr_of(ds, tag))
        if limit is not None and any(len(v) > limit for v in vals):
            vals = [re.sub(r"\s+", " ", _TEXT_UID.sub("", v)).strip() or "REMOVED"
                    for v in old]
        set_text(ds, tag, vals)

    def _map_uids(self, ds: Dataset, tag: int) -> None:
        vals = [self.ctx.uid_map(v) for v in get_strings(ds, tag, "UI")]
        put_strings(ds, tag, "UI", vals)

    def _dummy(self, ds: Dataset, tag: int, vr: str) -> None:
        if vr in RAW_STRING_VRS and _raw(ds, tag) is not None:
            put_strings(ds, tag, vr, [str(dummy_value(vr))])
        else:
            elem = ds[tag]
            elem.value = dummy_value(vr, elem.value)

    def _shift(self, ds: Dataset, tag: BaseTag, vr: str, done: set[int]) -> None:
        off = self.ctx.offset
        assert off is not None
        vals = get_strings(ds, tag, vr)
        if not vals:
            return
        kw = keyword_of(tag)
        partner_kw = _partner(kw) if kw and vr in ("DA", "TM") else None
        ptag = tag_for_keyword(partner_kw) if partner_kw else None
        pvr = _vr_of(ds, BaseTag(ptag)) if ptag is not None and ptag in ds._dict else None
        if pvr is not None and code_for(ptag, self.ctx.options) not in (None, "C", "D"):
            pvr = None  # the companion is removed or kept by its own rule
        where = kw or str(tag)
        try:
            pvals = get_strings(ds, ptag, pvr) if pvr in ("DA", "TM") and pvr != vr else []
            if pvals and len(pvals) == len(vals) and not any("-" in v for v in vals + pvals):
                # value i of the Date and value i of the Time are one timestamp (also for
                # VM 1-n pairs: Date/Time of Last Calibration)
                if vr == "DA":
                    dtag, dvals, ttag, tvals = tag, vals, ptag, pvals
                else:
                    dtag, dvals, ttag, tvals = ptag, pvals, tag, vals
                where = f"{keyword_of(dtag)}/{keyword_of(ttag)}"  # either may be the bad one
                pairs = [_dates.shift_pair(d, t, off) for d, t in zip(dvals, tvals, strict=True)]
                put_strings(ds, dtag, "DA", [d for d, _ in pairs])
                put_strings(ds, ttag, "TM", [t for _, t in pairs])
                done.add(int(ptag))
                return
            if vr == "DA":
                new = [_dates.shift_date(v, off) for v in vals]
            elif vr == "TM":
                new = [_dates.shift_time(v, off)[0] for v in vals]
            else:
                new = [_dates.shift_datetime(v, off) for v in vals]
        except DeidError as exc:
            raise DeidError(f"{where}: {exc.reason}") from None
        put_strings(ds, tag, vr, new)

    # -- private elements ------------------------------------------------------------
    def _privates(self, ds: Dataset, tags: Iterable[BaseTag], creators: dict, kept: set,
                  path: tuple[str, ...], depth: int, mode: str = "normal") -> None:
        retain = "retain-safe-private" in self.ctx.options
        tags = list(tags)
        for tag in tags:
            group, elem = tag >> 16, tag & 0xFFFF
            if 0x0010 <= elem <= 0x00FF:
                value = peek(ds, tag)
                if isinstance(value, bytes):
                    value = value.decode("latin-1", "replace")
                creators[(group, elem)] = str(value or "")  # (matched by creator_key)
        for tag in tags:
            group, elem = tag >> 16, tag & 0xFFFF
            if elem < 0x1000:
                continue  # creators and group lengths: decided below
            block = (group, elem >> 8)
            creator = creators.get(block)
            keep = False
            safe = None
            if retain and creator and creator.strip(" \x00"):
                low = elem & 0xFF
                safe = safe_private_for(creator, group, low)
                keep = safe is not None or (creator_key(creator), group,
                                            low) in self.ctx.private_allow
            vr = self._kept_private_vr(ds, tag, safe, creator) if keep else None
            if vr is None:
                del ds[tag]
                continue
            kept.add(block)
            if vr == "SQ":
                self._recurse(ds, tag, path, depth, mode)
            elif vr == "UI" and not self.ctx.retain_uids and not (
                    safe is not None and "Version" in safe.name):
                # a UID kept in a safe private element (NQHeader Analyzed Series UID)
                # references an instance: replaced as its target is (a version UID
                # names software, not an instance)
                self._map_uids(ds, tag)
            elif vr in DATE_VRS:  # shifted or removed as every other date is
                self._date_by_vr(ds, tag, vr, path, depth, set())
            elif vr == "AS":
                self._clip_ages(ds, tag)
            elif vr in NUMBER_VRS:  # text in a kept number: as for a standard one
                check_number(ds, tag, vr)
            elif vr in TEXT_VRS and self.ctx.kept_text_tokens:
                # other people's names, the site's words, the Study ID: as in the free
                # text the table does not list
                self._drop_names(ds, tag)
        for tag in tags:
            group, elem = tag >> 16, tag & 0xFFFF
            if elem < 0x1000 and (group, elem) not in kept:
                if tag in ds._dict:
                    del ds[tag]


    def _kept_private_vr(self, ds: Dataset, tag: int, safe, creator: str) -> str | None:
        """The VR a safe or allowlisted private element is kept as, or None: it goes.

        An element the file gives no VR (implicit VR, UN) takes the table's; one that
        holds a sequence (an item tag first) is read as the sequence it is; text whose
        bytes are no text of that VR, an allowlisted element whose VR nothing tells, a
        VR of another kind than the table's (text in a number, a PN where the table says
        LO) and any person name go: what they hold cannot be handled as what is listed.
        """
        # (the table may list several: "OW/OB", "US/SS")
        wants = tuple(safe.vr.split("/")) if safe is not None and safe.vr else ()
        want = wants[0] if wants else None
        vr = ds._dict[tag].VR
        if vr in ("UN", None):
            raw = getattr(ds._dict[tag], "value", None)
            if want == "SQ" or (isinstance(raw, bytes) and raw[:4] in _ITEM_TAGS):
                self._read_private_sequence(ds, tag, vr, creator)
                return "SQ"
            if want is None or (want in STRING_VRS and isinstance(raw, bytes)
                                and raw.rstrip(b"\x00").translate(None, _TEXT_BYTES)):
                return None
            elem = ds._dict[tag]
            if isinstance(elem, RawDataElement):
                ds._dict[tag] = elem._replace(VR=want)
            return want
        if vr == "PN" or (wants and vr != "SQ" and vr not in wants and _VR_KIND.get(vr, vr)
                          not in {_VR_KIND.get(w, w) for w in wants}):
            return None
        return vr

    @staticmethod
    def _read_private_sequence(ds: Dataset, tag: int, vr: str | None, creator: str) -> None:
        """Read a kept safe private sequence that was written as UN or in implicit VR (a
        PACS that did not know the creator's dictionary) as the sequence it is, its items in
        implicit VR Little Endian (PS3.5 6.2.2); one written with another VR (OB...) or that
        does not parse cannot be de-identified."""
        where = f"private sequence ({tag >> 16:04X},xx{tag & 0xFF:02X}) of a safe creator"
        elem = ds._dict[tag]
        if vr not in ("UN", None):
            raise DeidError(f"{where}: encoded with VR {vr}; its items cannot be read")
        value = elem.value
        if isinstance(value, (bytes, bytearray)):
            ds._dict[tag] = RawDataElement(BaseTag(tag), "SQ", len(value), bytes(value),
                                           getattr(elem, "value_tell", 0), True, True)
        try:
            items = ds[tag].value
        except Exception as exc:  # noqa: BLE001 - damaged bytes: reported, not released
            raise DeidError(f"{where}: its items cannot be read ({type(exc).__name__})") from None
        if not isinstance(items, (Sequence, list)) or not all(
                hasattr(i, "_dict") for i in items):
            raise DeidError(f"{where}: its items cannot be read")


#: VRs of numbers written as text
NUMBER_VRS = frozenset({"IS", "DS"})
#: what IS and DS values are made of (PS3.5 6.2), a decimal comma and padding included
_NUMBER_BYTES = b"0123456789+-.,eE \x00\\"
#: words for numbers that some writers put in DS values
_NUMBER_WORDS = frozenset({"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
_NOT_NUMBER_TEXT = str.maketrans("", "", _NUMBER_BYTES.decode("ascii"))


def check_number(ds: Dataset, tag: int, vr: str) -> None:
    """Raise DeidError when the kept IS or DS element ``tag`` holds text that is no number:
    what a person typed there ("DRJONES-ONCALL" in Series Number) cannot be checked for
    identity, so the file is not released (PS3.15 keeps these attributes as numbers)."""
    elem = ds._dict[tag]
    value = elem.value
    if isinstance(elem, RawDataElement) and isinstance(value, bytes):
        if not value.translate(None, _NUMBER_BYTES):
            return  # (every well-formed value: one quick test)
        text = value.decode("latin-1")
    else:
        text = "\\".join(str(v) for v in _value_list(value))
    words = [w.strip(" \x00").lower() for w in text.split("\\")]
    if all(not w.translate(_NOT_NUMBER_TEXT) or w in _NUMBER_WORDS for w in words):
        return
    raise DeidError(f"{keyword_of(tag) or Tag(tag)} {Tag(tag)}: text in a number ({vr}) "
                    f"value, shaped {shape_of(text)}; what it holds cannot be checked for "
                    f"identity")


#: VRs whose values :meth:`Walker._clean` acts on as they are written
_CLEANED_VRS = frozenset({"SQ", "PN", "AE", "UI"}) | DATE_VRS | TEXT_VRS | BINARY_VRS


def _retyped_as_text(ds: Dataset, tag: BaseTag) -> str:
    """Give an element that should hold free text but was written with another VR (Study
    Description as CS, DS or UR, from a damaged or foreign file) its dictionary VR, its
    value read as text, so that it is cleaned as text; return that VR."""
    vr = dictionary_vr(tag)
    elem = ds._dict[tag]
    if isinstance(elem, RawDataElement):
        ds._dict[tag] = elem._replace(VR=vr)
    else:
        ds[tag] = DataElement(tag, vr, "\\".join(str(v) for v in _values(elem)))
    return vr


#: The text of a UID (PS3.5 9.1): numeric components separated by periods.
_UID_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)+")


def _retyped_as_uid(ds: Dataset, tag: BaseTag) -> str:
    """Give a UID attribute stored with another VR (a damaged VR: PN, DA, AT, OB...) VR UI
    when its value is the text of UIDs, so that it is mapped as a UID; return "UI".
    DeidError when it is not: no new UID can be made for it."""
    elem = ds._dict[tag]
    if isinstance(elem.value, (bytes, bytearray)):
        text: str | None = bytes(elem.value).decode("latin-1")
    elif all(isinstance(v, str) or type(v).__name__ == "PersonName" for v in _values(elem)):
        text = "\\".join(str(v) for v in _values(elem))
    else:  # (a number, a tag: AT, US, FD...)
        text = None
    bare = (text or "").rstrip("\x00 ")
    vals = [v.strip("\x00 ") for v in bare.split("\\")] if bare else []
    if text is None or (text and not vals) or not all(
            len(v) <= 64 and _UID_TEXT.fullmatch(v) for v in vals):  # (NUL bytes: no UID)
        raise DeidError(f"{keyword_of(tag) or Tag(tag)} is not a UID (stored with VR "
                        f"{elem.VR}; damaged header?)")
    if isinstance(elem, RawDataElement):
        data = encode_text("\\".join(vals), "UI")
        ds._dict[tag] = elem._replace(VR="UI", length=len(data), value=data)
    else:
        ds[tag] = DataElement(tag, "UI", vals if len(vals) > 1 else "".join(vals))
    return "UI"


def _holds_token(value: str, tokens: list[str]) -> bool:
    """Whether ``value`` holds one of ``tokens`` anywhere (case-insensitive; AE titles join
    words with ``_`` and digits, so word boundaries do not apply)."""
    low = value.lower()
    return any(len(t) >= 3 and t.lower() in low for t in tokens)


STRING_VRS = TEXT_VRS | {"PN"}
#: A UID written in text: first arc 0-2 and 5+ more (not a version number "2.0.1.5")
#: A UID written in text: first arc 0-2, 5+ more, 16+ characters (not a version number
#: "2.0.1.5" nor a kernel "1.2.3.4.5.6"); a sentence's full stop or a "_suffix" may follow,
#: an arc may have a leading zero (Toshiba/Canon UIDs do)
_TEXT_UID = re.compile(r"(?<![0-9A-Za-z.])(?=[0-9.]{16})[0-2](?:\.[0-9]+){5,}(?!\.?[0-9])")
_TEXT_UID_BYTES = re.compile(rb"(?<![0-9A-Za-z.])[0-2](?:\.[0-9]+){5,}")
#: Text that names a coding scheme by its registered OID, not an instance
_OID_TEXT_KEYWORDS = frozenset({"CodingSchemeExternalID"})
#: The longest values of text VRs (PS3.5 6.2) a UID in text may make too long
_TEXT_MAX = {"SH": 16, "LO": 64, "ST": 1024, "LT": 10240, "CS": 16}
#: The kinds of VR a kept private element may be written with instead of the table's
#: (a vendor's LT for the table's LO): text, a number as text, a binary number
_VR_KIND = {**dict.fromkeys(("SH", "LO", "ST", "LT", "UT", "UC", "CS"), "text"),
            **dict.fromkeys(("DS", "IS"), "number-text"),
            **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"), "number")}
#: An item tag, little and big endian: a value that starts with one is a sequence
_ITEM_TAGS = (b"\xfe\xff\x00\xe0", b"\xff\xfe\xe0\x00")
#: Bytes text values may hold (printable, character set bytes, TAB/LF/FF/CR, ESC)
_TEXT_BYTES = bytes([9, 10, 12, 13, 27, *range(0x20, 0x7F), *range(0x80, 0x100)])
#: VRs a sequence may be read with (UN: pydicom parses it as the sequence it is)
_SEQUENCE_VRS = frozenset({"SQ", "UN", None})
#: VRs of untabled elements that Walker._untabled acts on in a "normal" walk
_ACTED_ON_UNTABLED = frozenset({"SQ", "UR", "PN", "UI"}) | DATE_VRS


@cache
def cleans_text(options: frozenset[str]) -> bool:
    """True when the options give the clean (C) action to some attribute that is not a
    date or time (descriptors, free text, sequences): then the words of the removed
    identity values are needed for cleaning (:func:`removed_text_values`)."""
    for rule in rules():
        if rule.group & 1 or rule.group_mask != 0xFFFF:
            continue  # private row and repeating groups (overlay/curve data: binary)
        tag = (rule.group << 16) | rule.element
        if code_for(tag, options) != "C":
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return True
        if vr not in DATE_VRS:
            return True
    return False


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
            code = code_for(tag, frozenset(options))
            take = vr == "PN" or (code is not None and code not in ("K", "C"))
        if take:
            v = peek(ds, tag)
            if isinstance(v, bytes):
                v = v.decode("latin-1", "replace")
            out += [str(x) for x in (v if isinstance(v, (list, MultiValue)) else [v]) if x]
    return out

