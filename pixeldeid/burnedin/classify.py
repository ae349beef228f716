"""Classify burned-in text: identity (redact), safe annotation (keep in phi-only), unknown.

A box is **identity** when its text matches a value of the original header in any spelling a
vendor burns in (person-name components in any order, with or without carets, initials; IDs
with or without leading zeros; dates as 08/29/1951, 29-AUG-1951, 1951-08-29, 19510829 ...;
institution names, also truncated) allowing the OCR confusions O/0, I/1/l and S/5, or when it
has an identity shape (dates, times, phone numbers, digit runs of 6 or more, DOB/MRN/ID/Name
labels, "LAST, FIRST" and "LAST^FIRST" names). It is **safe** when every token is in the
modality's vocabulary (``configs/vocabulary/*.yaml``), and **unknown** otherwise. Unknown text
is redacted like identity (fail closed). Box texts never reach the logs.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement, convert_raw_data_element

from ..errors import ProfileError
from ..paths import configs_dir, read_yaml
from ..schemas import validate
from ..textclean import fold as text_fold
from .boxes import TextBox

log = logging.getLogger(__name__)

POLICIES = ("off", "auto", "template", "phi-only", "all-text")

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
MONTH_NAMES = ("JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST",
               "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER")

# -- normalisation -------------------------------------------------------------------------
# OCR confusions folded together for identity matching (after upper-casing): O/0, I/1/l, S/5.
_FOLD = str.maketrans({"0": "O", "1": "I", "L": "I", "|": "I", "!": "I", "5": "S", "$": "S"})
_NON_ALNUM = re.compile(r"[^0-9A-Z|!$]+")


def fold(text: str) -> str:
    """Upper-case, strip accents (as :func:`pixeldeid.textclean.fold` does for the header's
    text: MÜLLER and MULLER, ØSTERGÅRD and OSTERGARD, GROß and GROSS are one; OCR reads
    either), drop all but letters and digits, fold O/0, I/1/l and S/5."""
    return _NON_ALNUM.sub("", text_fold(text).upper()).translate(_FOLD)


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^0-9A-Za-z|!$]+", text_fold(text)) if t]


# Letters OCR reads in place of digits inside numbers (for the pattern rules).
_DIGIT_FOLD = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "I": "1", "l": "1",
                             "|": "1", "!": "1", "i": "1", "S": "5", "s": "5", "B": "8",
                             "Z": "2", "z": "2"})


def _digit_folded(text: str) -> str:
    """Text where letters inside mostly-numeric tokens are read as the digits they resemble."""
    def fix(m: re.Match) -> str:
        tok = m.group(0)
        digits = sum(c.isdigit() for c in tok)
        alnum = sum(c.isalnum() for c in tok)
        return tok.translate(_DIGIT_FOLD) if alnum and digits * 2 >= alnum else tok

    return re.sub(r"[^\s]+", fix, text)


# -- identity patterns ---------------------------------------------------------------------
# month names, tolerant of the OCR confusions O/0, I/l/1 and S/5
_MON = r"(?:JAN|FEB|MAR|APR|MAY|JUN|JU[LI1]|AUG|[S5]EPT?|[O0]CT|N[O0]V|DEC)[A-Z]*\.?"
_SEP = r"\s?[/.\-]\s?"
_PATTERNS: dict[str, re.Pattern] = {
    "date": re.compile(
        r"(?<!\d)(?:"
        rf"\d{{1,2}}{_SEP}\d{{1,2}}{_SEP}(?:\d{{4}}|\d{{2}})"      # 08/29/1951, 4/14/20
        rf"|\d{{4}}{_SEP}\d{{1,2}}{_SEP}\d{{1,2}}"                 # 1951-08-29
        rf"|\d{{1,2}}[\s\-/.]?{_MON}[\s\-/.,]?\s?(?:\d{{4}}|\d{{2}})"  # 29-AUG-1951, 7OCT16
        rf"|(?<![A-Z]){_MON}[\s\-/.]?\d{{1,2}}(?:st|nd|rd|th)?[\s\-/.,]{{0,2}}(?:\d{{4}}|\d{{2}})"  # AUG 29, 1951
        r"|(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"  # 19510829
        r")(?!\d)", re.I),
    # 10:42, 10:42:07, 05.24.57PM, "2.09: 04" (OCR reads ':' as '.' and adds spaces)
    "time": re.compile(r"(?<!\d)\d{1,2}\s?[:.]\s?[0-5]\d(?:\s?[:.]\s?[0-5]\d)?\s?[AP]\.?M(?![A-Z])"
                       r"|(?<!\d)\d{1,2}\s?[:.]\s?[0-5]\d\s?[:.]\s?[0-5]\d(?!\d)"
                       r"|(?<!\d)\d{1,2}\s?:\s?[0-5]\d(?!\d)", re.I),
    "phone": re.compile(r"(?:\+\d{1,3}[\s.\-]?)?\(?\d{3}\)?[\s.\-]\d{3}[\s.\-]\d{4}(?!\d)"),
    "digits": re.compile(r"\d{6,}"),
    "label": re.compile(
        r"(?<![A-Z])(?:D\.?O\.?B|DOB|MRN|MR\s?#|ID|PID|PT\s?ID|NAME|ACC|ACCESSION|ACC\s?#|SSN|"
        r"BIRTH|BORN|PATIENT|OPERATOR|SONOGRAPHER|PHYSICIAN|REFERRING|REF\.?\s?(?:PHYS|DR)|"
        r"ATTENDING|TECHNOLOGIST|HOSPITAL|CLINIC|MEDICAL|MEDICINE|HEALTH(?:CARE)?|MED\s+CTR|"
        r"INFIRMARY|UNIVERSITY)(?![A-Z])", re.I),
    "honorific": re.compile(r"(?<![A-Z])(?:DR|MR|MRS|MS|PROF)\.?\s+[A-Z][A-Z'\-]+", re.I),
    "credential": re.compile(r"[A-Z][A-Z'\-]+\s*,?\s+(?:MD|M\.D\.|RN|RDMS|RDCS|RVT|RVS|DO|PHD|"
                             r"MBBS|FRCR|RT\(R\))(?![A-Z])", re.I),
}
# "LAST, FIRST" / "LAST,FIRST" / "LAST^FIRST" (judged with the vocabulary: safe words are no name)
_NAME_SHAPE = re.compile(r"([A-Za-z][A-Za-z'\-]+)\s*(?:,|\^+)\s*([A-Za-z][A-Za-z'\-]*)")
_CARET = re.compile(r"[A-Za-z]\s*\^")


def identity_pattern(text: str, vocabulary: Vocabulary | None = None) -> str | None:
    """Name of the identity shape ``text`` has (date, time, phone ...), or None."""
    variants = {text, _digit_folded(text)}
    for name, pat in _PATTERNS.items():
        if any(pat.search(v) for v in variants):
            return name
    if _CARET.search(text):
        return "name-shape"
    for m in _NAME_SHAPE.finditer(text):
        words = [w for w in m.groups() if w]
        if vocabulary is None or not all(vocabulary.is_safe_token(w) for w in words):
            return "name-shape"
    return None


# -- identity values -----------------------------------------------------------------------
_HONORIFICS = {fold(w) for w in ("DR", "MR", "MRS", "MS", "MISS", "PROF", "MD", "PHD", "RN", "JR",
                                  "SR", "II", "III", "IV", "RDMS", "RDCS", "RVT", "DO", "MBBS")}
_JUNK = {"", "NOINFO", "NOINFONOINFO", "ANONYMOUS", "ANON", "UNKNOWN", "NONE", "NA", "NULL",
         "REMOVED", "DEIDENTIFIED", "XXX", "XXXX"}

_ID_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "MedicalRecordLocator",
    "AdmissionID", "RequestedProcedureID", "PerformedProcedureStepID", "ScheduledProcedureStepID",
    "PlacerOrderNumberImagingServiceRequest", "FillerOrderNumberImagingServiceRequest",
    "IssuerOfPatientID", "DeviceSerialNumber", "ServiceEpisodeID", "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID", "PatientAccountNumber",
)
_INSTITUTION_KEYWORDS = ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
                         "InstitutionCodeSequence", "ReferringPhysicianAddress")
_OTHER_KEYWORDS = ("PatientAddress", "PatientTelephoneNumbers", "ReferringPhysicianTelephoneNumbers",
                   "StationName", "RegionOfResidence", "CountryOfResidence", "PatientMotherBirthName",
                   "EthnicGroup", "Occupation", "PatientReligiousPreference", "ResponsibleOrganization",
                   "PersonAddress", "PersonTelephoneNumbers", "PerformingPhysicianName",
                   "NamesOfIntendedRecipientsOfResults", "ContentCreatorName")


def _element(ds, tag, encoding):
    """The element ``tag`` of ``ds`` decoded as ``ds[tag]`` decodes it (``encoding``: the
    character set of ``ds``), without storing it in ``ds``: the writer copies a raw element
    byte for byte, but re-encodes a decoded one (a kept text whose bytes are invalid in its
    character set would get U+FFFD in them)."""
    elem = ds.get_item(tag)
    if not isinstance(elem, RawDataElement):
        return elem
    if elem.value is None and elem.length != 0:  # (a deferred read: pydicom reads it now)
        return ds[tag]
    return convert_raw_data_element(
        elem, encoding=default_encoding if tag == 0x00080005 else encoding, ds=ds)


def _walk(ds):
    """Every element of ``ds`` and its sequences (:func:`_element`: ``ds`` is not changed);
    an element that cannot be decoded is skipped (its value cannot be searched for, the
    identity patterns still apply)."""
    try:  # (as Dataset.__getitem__ chooses it)
        encoding = ds.original_character_set or ds._character_set
    except Exception:  # noqa: BLE001 - a broken Specific Character Set: pydicom's default
        encoding = default_encoding
    for tag in list(ds.keys()):
        try:
            elem = _element(ds, tag, encoding)
            value = elem.value
        except Exception:  # noqa: BLE001 - hostile or broken values: skip this one element
            log.debug("identity values: element %s not decodable, skipped", tag)
            continue
        yield elem
        if elem.VR == "SQ":
            for item in value or []:
                yield from _walk(item)


def _useful(value: str) -> bool:
    f = fold(value)
    return len(f) >= 2 and f not in _JUNK


def _parse_date(value: str) -> tuple[int, int, int] | None:
    m = re.fullmatch(r"\s*(\d{4})(\d{2})(\d{2}).*", value)
    if not m:
        return None
    y, mo, d = (int(g) for g in m.groups())
    if 1 <= mo <= 12 and 1 <= d <= 31:
        return y, mo, d
    return None


def date_spellings(y: int, m: int, d: int) -> set[str]:
    """Folded spellings of a date as vendors burn it in (separators dropped)."""
    out: set[str] = set()
    years = (f"{y:04d}", f"{y % 100:02d}")
    months = (f"{m:02d}", f"{m}")
    days = (f"{d:02d}", f"{d}")
    for yy in years:
        for mm in months:
            for dd in days:
                out.update({mm + dd + yy, dd + mm + yy, yy + mm + dd})
        for mon in (MONTHS[m - 1], MONTH_NAMES[m - 1]):
            for dd in days:
                out.update({dd + mon + yy, mon + dd + yy, yy + mon + dd})
    # short all-digit spellings (e.g. 4/1/20 -> 4120) match too much: keep 6+ characters
    return {fold(s) for s in out if len(s) >= 6}


@dataclass
class IdentityValues:
    """Identity values of the ORIGINAL (not yet de-identified) header, to find in pixels.

    Parameters
    ----------
    names : list of str
        Person names (PN values, any form: ``LAST^FIRST^MIDDLE``, ``First Last``).
    ids : list of str
        Patient IDs, accession numbers and other identifiers.
    dates : list of str
        Dates as ``YYYYMMDD`` (DA, or the date part of DT).
    institutions : list of str
        Institution names, departments and addresses.
    other : list of str
        Other identifying text (patient address, phone numbers, station name ...).
    """

    names: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    institutions: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # never print the values
        return (f"IdentityValues(names={len(self.names)}, ids={len(self.ids)}, "
                f"dates={len(self.dates)}, institutions={len(self.institutions)}, "
                f"other={len(self.other)})")

    @classmethod
    def from_dataset(cls, ds) -> IdentityValues:
        """Collect the identity values of a dataset (every PN, DA and DT element, nested too)."""
        from pydicom.multival import MultiValue

        vals = cls()
        seen: set[tuple[str, str]] = set()

        def add(kind: str, value: object) -> None:
            items = value if isinstance(value, (list, tuple, MultiValue)) else [value]
            for v in items:
                s = str(v).strip() if v is not None else ""
                if kind == "dates":
                    s = s[:8]
                if s and _useful(s) and (kind, s) not in seen:
                    seen.add((kind, s))
                    getattr(vals, kind).append(s)

        for elem in _walk(ds):
            kw = elem.keyword
            if elem.VR == "SQ" or elem.value is None or elem.value == "":
                continue
            if elem.VR == "PN":
                add("names", elem.value)
            elif elem.VR in ("DA", "DT"):
                add("dates", elem.value)
            elif kw in _ID_KEYWORDS:
                add("ids", elem.value)
            elif kw in _INSTITUTION_KEYWORDS:
                add("institutions", elem.value)
            elif kw in _OTHER_KEYWORDS:
                add("other", elem.value)
        return vals

    def is_empty(self) -> bool:
        """True when there is nothing to look for."""
        return not (self.names or self.ids or self.dates or self.institutions or self.other)

    # derived matchers (computed once)
    @cached_property
    def _name_words(self) -> tuple[set[str], set[str], set[str]]:
        """(long words >= 3, short words of 2, initials strings) of the names, folded."""
        long_words: set[str] = set()
        short_words: set[str] = set()
        initials: set[str] = set()
        for name in self.names:
            for group in str(name).split("="):  # alphabetic / ideographic / phonetic
                comps = group.split("^")[:3]  # family, given, middle (not prefix/suffix)
                words_in_order = []
                for comp in comps:
                    for w in re.split(r"[\s,.]+", comp):
                        fw = fold(w)
                        if not fw or fw in _HONORIFICS:
                            continue
                        words_in_order.append(fw)
                        if len(fw) >= 3:
                            long_words.add(fw)
                        elif len(fw) == 2:
                            short_words.add(fw)
                # initials: of every word, in the given order and family-last order
                letters = [w[0] for w in words_in_order]
                if len(letters) >= 2:
                    initials.add("".join(letters))
                    initials.add("".join(letters[1:] + letters[:1]))
                    initials.add("".join(letters[1:]) + letters[0])
                    if len(letters) >= 3:  # given + family only (middle dropped)
                        initials.add(letters[1] + letters[0])
                        initials.add(letters[0] + letters[1])
        return long_words, short_words, {i for i in initials if len(i) >= 2}

    @cached_property
    def _id_cores(self) -> tuple[set[str], set[str]]:
        """(IDs of 4+ characters matched as substrings, 2-3 character IDs matched as tokens)."""
        long_ids: set[str] = set()
        short_ids: set[str] = set()
        for v in self.ids:
            f = fold(v)
            core = f.lstrip("O") or f  # leading zeros (folded to O) are optional
            for c in {f, core}:
                if len(c) >= 4:
                    long_ids.add(c)
                elif len(c) >= 2:
                    short_ids.add(c)
        return long_ids, short_ids

    @cached_property
    def _date_forms(self) -> set[str]:
        out: set[str] = set()
        for v in self.dates:
            parsed = _parse_date(v)
            if parsed:
                out |= date_spellings(*parsed)
        return out

    @cached_property
    def _phrases(self) -> set[str]:
        """Institution and other values, folded (matched by long common substrings)."""
        return {f for f in (fold(v) for v in self.institutions + self.other) if len(f) >= 3}

    def match(self, text: str, vocabulary: Vocabulary | None = None) -> str | None:
        """Which kind of identity value ``text`` contains ('name', 'id', ...), or None.

        Two-letter initials are not matched on a token the vocabulary calls safe ("MI").
        """
        ftext = fold(text)
        if not ftext:
            return None
        ftokens = [fold(t) for t in _tokens(text)]
        long_words, short_words, initials = self._name_words
        for w in long_words:
            if w in ftext:
                return "name"
            if len(w) >= 6 and _common_run(w, ftext) >= 5:  # truncated or partly misread
                return "name"
        for raw, t in zip(_tokens(text), ftokens, strict=True):
            if t in short_words:
                return "name"
            if t in initials and not (len(t) == 2 and vocabulary is not None
                                      and vocabulary.is_safe_token(raw)):
                return "name"
            if len(t) >= 5 and any(len(w) >= 5 and _similar(t, w) for w in long_words):
                return "name"
        singles = "".join(t for t in ftokens if len(t) == 1)  # "J.Q.S.", "A L"
        if len(singles) >= 2 and singles in initials:
            return "name"
        long_ids, short_ids = self._id_cores
        if any(i in ftext for i in long_ids):
            return "id"
        for raw, t in zip(_tokens(text), ftokens, strict=True):
            # a 2-3 character ID ("US", "PR") is no match on a vocabulary word
            if t in short_ids and not (vocabulary is not None and vocabulary.is_safe_word(raw)):
                return "id"
        if any(d in ftext for d in self._date_forms):
            return "date"
        for p in self._phrases:
            need = min(len(p), 6)
            if _common_run(p, ftext) >= need:
                return "institution-or-other"
        return None


def _common_run(a: str, b: str) -> int:
    """Length of the longest common substring of ``a`` and ``b``."""
    m = difflib.SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return m.size


def _similar(a: str, b: str) -> bool:
    """Equal but for one or two OCR errors (ratio >= 0.8)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.8


# -- vocabulary ----------------------------------------------------------------------------
def vocabulary_files() -> list[Path]:
    """The shipped vocabulary files (``configs/vocabulary/*.yaml``)."""
    return sorted((configs_dir() / "vocabulary").glob("*.yaml"))


def _load_vocab_file(path: Path) -> dict:

    data = read_yaml(path, "vocabulary")
    validate(data, "vocabulary", "vocabulary", str(path))
    for key in ("patterns", "phrases"):
        for p in data.get(key, []):
            try:
                re.compile(p)
            except re.error as exc:
                raise ProfileError(f"invalid regular expression in {key}: {p!r} ({exc})",
                                   str(path)) from None
    return data


_SPLIT_SEP = re.compile(r"[\s,;:=*#()<>\[\]{}|_~\"'`^]+")
_SUB_SEP = re.compile(r"[/\-+]+")
_PIECES = re.compile(r"[+\-]?\d+(?:[.,]\d+)?%?|[.,]\d+|[A-Z]?[a-z]+|[A-Z]+(?![a-z])|%|\*+"
                     r"|[^\sA-Za-z\d]")


class Vocabulary:
    """Safe words and token patterns for one modality (common + modality files)."""

    def __init__(self, words: Iterable[str] = (), patterns: Iterable[str] = (),
                 phrases: Iterable[str] = (), name: str = "", units: Iterable[str] = ()) -> None:
        self.name = name
        self.words = frozenset(w.lower() for w in words)
        self.units = frozenset(u.lower() for u in units)  # safe only beside a number
        self.patterns = tuple(patterns)
        self.phrases = tuple(phrases)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in self.patterns) or r"(?!x)x", re.I)
        self._phrase = re.compile("|".join(f"(?:{p})" for p in self.phrases) or r"(?!x)x", re.I)

    def __repr__(self) -> str:
        return f"Vocabulary({self.name!r}, words={len(self.words)}, patterns={len(self.patterns)})"

    @classmethod
    def from_files(cls, paths: Sequence[str | Path], name: str = "") -> Vocabulary:
        """Merge vocabulary files (validated against ``vocabulary.schema.json``)."""
        words: list[str] = []
        patterns: list[str] = []
        phrases: list[str] = []
        units: list[str] = []
        for p in paths:
            data = _load_vocab_file(Path(p))
            words += data.get("words", [])
            patterns += data.get("patterns", [])
            phrases += data.get("phrases", [])
            units += data.get("units", [])
        return cls(words, patterns, phrases, name, units)

    @classmethod
    def load(cls, modality: str = "") -> Vocabulary:
        """The shipped vocabulary for a DICOM Modality code ('' = the common words only)."""
        return _load_vocabulary(str(modality or "").strip().upper())

    def is_safe_word(self, token: str) -> bool:
        """True when ``token`` is one of the vocabulary's words (not a pattern)."""
        return token.strip().lower() in self.words

    def is_safe_token(self, token: str, units: bool = True) -> bool:
        """True when one token is a safe word, a unit (when ``units``) or matches a pattern."""
        t = token.strip()
        low = t.lower()
        return bool(t) and (low in self.words or (units and low in self.units)
                            or self._pattern.fullmatch(t) is not None)

    def _safe_piece_run(self, token: str, units: bool = True) -> bool:
        if self.is_safe_token(token, units):
            return True
        if token.endswith(".") and token.rstrip("."):  # "3850Hz.", "0." (OCR reads a dot)
            return self._safe_piece_run(token.rstrip("."), units)
        parts = [p for p in _SUB_SEP.split(token) if p]
        if parts and parts != [token] and all(self._safe_piece_run(p, units) for p in parts):
            return True
        # glued OCR output: "Gn55DR63", "TIS0.0MI0.6", "DynR58", "AdvBreast"
        pieces = _PIECES.findall(token)
        if "".join(pieces) != token or len(pieces) < 2:
            return False
        return all(self.is_safe_token(p, units) for p in pieces)

    def is_safe(self, text: str) -> bool:
        """True when every token of ``text`` is safe (identity is NOT checked here)."""
        t = text.strip()
        if not t:
            return False
        if self._phrase.fullmatch(t):
            return True
        tokens = [tok for tok in _SPLIT_SEP.split(t) if tok]
        if not tokens:
            return True  # punctuation only: nothing readable
        # units ("mA", "HU", "min") are safe only in a box with a number: alone they are names
        with_number = any(c.isdigit() for c in t)
        if not all(self._safe_piece_run(tok, with_number) for tok in tokens):
            return False
        # a run of lone letters ("A L", "J D") is the shape of initials, not an annotation
        letters = re.findall(r"[A-Za-z]+", t)
        return not (len(letters) >= 2 and all(len(w) == 1 for w in letters)
                    and not re.search(r"\d", t))


@cache
def _load_vocabulary(modality: str) -> Vocabulary:
    files = []
    for path in vocabulary_files():
        data = _load_vocab_file(path)
        mods = data.get("modalities") or []
        if not mods or modality in mods:
            files.append(path)
    return Vocabulary.from_files(files, modality or "common")


# -- classification ------------------------------------------------------------------------
def classify_text(text: str, identity: IdentityValues, vocabulary: Vocabulary) -> str:
    """``'identity'``, ``'safe'`` or ``'unknown'`` for one box text (see the module doc)."""
    return explain_text(text, identity, vocabulary)[0]


def explain_text(text: str, identity: IdentityValues,
                 vocabulary: Vocabulary) -> tuple[str, str]:
    """(label, reason) for one box text; the reason names the rule, never the text."""
    t = (text or "").strip()
    if not t:
        return "unknown", "no text"
    kind = identity.match(t, vocabulary)
    if kind:
        return "identity", f"header {kind}"
    shape = identity_pattern(t, vocabulary)
    if shape:
        return "identity", shape
    if any(ord(c) > 127 and c.isalnum() for c in t):
        return "unknown", "non-latin characters (likely misread)"
    if not any(c.isalnum() for c in t):
        return "safe", "no letters or digits"
    if vocabulary.is_safe(t):
        return "safe", "vocabulary"
    return "unknown", "not in vocabulary"


def classify_boxes(boxes: Iterable[TextBox], identity: IdentityValues,
                   vocabulary: Vocabulary) -> list[TextBox]:
    """The same boxes with ``label`` set; template and region boxes keep their label."""
    out = []
    for b in boxes:
        if b.source != "ocr":
            out.append(b)
        else:
            out.append(b.with_(label=classify_text(b.text, identity, vocabulary)))
    return out


def check_policy(policy: str) -> str:
    """Return ``policy`` or raise :class:`ProfileError` with "did you mean"."""
    if policy not in POLICIES:
        close = difflib.get_close_matches(policy, POLICIES, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ProfileError(f"unknown pixel policy {policy!r}{hint} (known: {', '.join(POLICIES)})")
    return policy


def boxes_to_redact(boxes: Iterable[TextBox], policy: str) -> list[TextBox]:
    """Boxes to black out under ``policy``.

    ``all-text``: every box; ``phi-only`` and ``auto``: identity and unknown (fail closed),
    safe annotations kept; ``template``: template and ultrasound-region boxes only;
    ``off``: none.
    """
    check_policy(policy)
    boxes = list(boxes)
    if policy == "off":
        return []
    if policy == "all-text":
        return boxes
    if policy == "template":
        return [b for b in boxes if b.source != "ocr"]
    return [b for b in boxes if b.label != "safe"]
