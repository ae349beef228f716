"""Identity values to search for, and their spellings.

Values come from the run ledger's ``identity`` table and/or from the headers of the source
files (``--against``). Each value is expanded to the spellings it may take in an output:
person names in every order with carets, spaces, commas and initials; IDs and accession
numbers with and without leading zeros; birth dates in several formats (2-digit years too);
addresses by their street and distinctive words; phone numbers as their digits.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..api import IDENTITY_KEYWORDS
from ..dates import written_forms
from ..dummy import DUMMY_VALUES
from ..pipeline.scan import IDENTITY_FIELDS
from ..textclean import STOPWORDS, dicom_vocabulary, distinctive, has_cjk, institution_words

logger = logging.getLogger(__name__)

KINDS = ("name", "id", "birth_date", "accession", "institution", "uid", "address", "phone",
         "other")
#: Service dates compared with the source's (``--against``): equal ones were not shifted.
SERVICE_DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
#: Header keyword -> identity kind (source scan).
SOURCE_KEYWORDS = {
    "PatientName": "name", "OtherPatientNames": "name", "PatientBirthName": "name",
    "PatientMotherBirthName": "name", "PatientID": "id", "OtherPatientIDs": "id",
    "IssuerOfPatientID": "other", "MedicalRecordLocator": "id", "AccessionNumber": "accession",
    "PatientBirthDate": "birth_date", "InstitutionName": "institution",
    "InstitutionAddress": "other", "PatientAddress": "address", "PatientTelephoneNumbers": "phone",
    # other people and the department (every other PN at any depth is a name too)
    "ReferringPhysicianName": "name", "PerformingPhysicianName": "name",
    "OperatorsName": "name", "NameOfPhysiciansReadingStudy": "name",
    "InstitutionalDepartmentName": "institution", "StudyID": "other",
}
assert set(IDENTITY_KEYWORDS) <= set(SOURCE_KEYWORDS)
assert {kw for _k, kws in IDENTITY_FIELDS for kw in kws} <= set(SOURCE_KEYWORDS)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS_LONG = ("january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december")
_DUMMY = frozenset(str(v).lower() for v in DUMMY_VALUES.values() if isinstance(v, str))


@dataclass(frozen=True)
class IdentityValue:
    """One known identifying value (never printed: findings give its kind and length)."""

    kind: str
    value: str
    patient: str = ""
    #: lower-case texts a spelling of this value may sit in without being a finding (an
    #: institution's word in its own kept Manufacturer: a vendor's site, "TOSHIBA" and
    #: "TOSHIBA_MEC")
    allowed: tuple[str, ...] = ()


#: Device attributes the profile keeps whose values may share an institution's words
DEVICE_KEYWORDS = ("Manufacturer", "ManufacturerModelName")


@dataclass(frozen=True)
class Term:
    """A lower-case spelling searched for, with the kind and length of the value it came from."""

    text: str
    kind: str
    length: int
    #: patients (pseudonyms) whose institution *word* this is; a word of one patient's
    #: institution in another patient's file is no finding ("Quixmore syndrome" vs "St
    #: Quixmore Infirmary"). Empty: searched in every file.
    owners: frozenset[str] = frozenset()
    #: which spelling of the value this is, when not the value itself ("its digits
    #: alone"): findings say it (never the text)
    form: str = ""


def _name_parts(value: str) -> list[str]:
    first = value.split("=")[0]
    return [p.strip(" .") for p in re.split(r"[\^,\s]+", first) if p.strip(" .")]


def name_spellings(value: str) -> set[str]:
    """Spellings of a person name: ``DOE^JOHN``, ``DOE JOHN``, ``JOHN DOE``, ``DOE, JOHN``,
    ``J DOE``, ``J. DOE``, ``DOE J``, each distinctive part alone (lower case)."""
    out: set[str] = set()
    groups = [g for g in str(value).split("=") if g.strip()]
    for g in groups or [str(value)]:
        parts = _name_parts(g)
        if not parts:
            continue
        out.add(" ".join(g.lower().split()))
        vocab = dicom_vocabulary()
        for p in parts:
            lp = p.lower()
            if distinctive(lp) and lp not in vocab and lp not in STOPWORDS and lp not in _DUMMY:
                out.add(lp)
        if len(parts) >= 2:
            fam, given = parts[0].lower(), parts[1].lower()
            if has_cjk(fam + given):  # CJK names are written without a separator: 王小明
                out.add(f"{fam}{given}")
            rest = [p.lower() for p in parts[2:3]]
            for sep in ("^", " ", ", ", ","):
                out.add(f"{fam}{sep}{given}")
            out.add(f"{given} {fam}")
            if rest:
                out.add(f"{given} {rest[0]} {fam}")
                out.add(f"{fam}^{given}^{rest[0]}")
            if len(fam) >= 2:  # initials where the family name is long enough to mean something
                out.update({f"{given[0]} {fam}", f"{given[0]}. {fam}", f"{fam} {given[0]}",
                            f"{fam}^{given[0]}", f"{fam}, {given[0]}"})
    return out


#: The number of a letter-prefixed ID is searched alone from this many digits on: a
#: shorter one ("1234" of ABCD1234) is any count, code or size.
MIN_ID_NUMBER = 5
_PREFIXED_ID = re.compile(r"^([a-z]+)[-_ ]?0*([1-9]\d{2,})$")


def id_spellings(value: str) -> set[str]:
    """An ID as written and without leading zeros; a letter-prefixed one without the
    zeros after its prefix, and its number alone when that has :data:`MIN_ID_NUMBER`
    digits or more (lower case)."""
    v = str(value).strip().lower()
    out = {v} if v else set()
    stripped = v.lstrip("0")
    if stripped != v and len(stripped) >= 3:
        out.add(stripped)
    m = _PREFIXED_ID.match(v)  # MRN0012345 -> MRN12345, 12345
    if m:
        out.add(m.group(1) + m.group(2))
        if len(m.group(2)) >= MIN_ID_NUMBER:
            out.add(m.group(2))
    return out


def date_spellings(value: str) -> set[str]:
    """A YYYYMMDD date as 19510829, 1951-08-29, 1951/08/29, 1951.08.29, 08/29/1951,
    29/08/1951, 29.08.1951, 29-08-1951, 29-aug-1951, 29 aug 1951, aug 29, 1951, 29augu1951 ..."""
    v = re.sub(r"\D", "", str(value))
    if len(v) != 8:
        return {str(value).strip().lower()} if str(value).strip() else set()
    y, m, d = v[:4], v[4:6], v[6:]
    out = set(written_forms(v))  # the numeric ones, as the header core searches them
    mi = int(m) - 1
    if 0 <= mi < 12:
        for mon in (_MONTHS[mi], _MONTHS_LONG[mi]):
            dd = str(int(d))
            out.update({f"{d}-{mon}-{y}", f"{d} {mon} {y}", f"{dd} {mon} {y}", f"{mon} {dd}, {y}",
                        f"{mon} {d} {y}", f"{d}{mon}{y}"})
    out.update(two_digit_year_spellings(v))
    return out


def two_digit_year_spellings(yyyymmdd: str) -> set[str]:
    """A YYYYMMDD date with a 2-digit year, as clinical text writes birth dates:
    17-mar-48, 17 mar 48, 17/03/48, 03/17/48, 17.03.48, 17-03-48 (not 170348: any
    6-digit number)."""
    y, m, d = yyyymmdd[2:4], yyyymmdd[4:6], yyyymmdd[6:]
    mi = int(m) - 1
    out = {f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{d}-{m}-{y}"}
    if 0 <= mi < 12:
        out.update({f"{d}-{_MONTHS[mi]}-{y}", f"{d} {_MONTHS[mi]} {y}", f"{d}{_MONTHS[mi]}{y}"})
    return out


#: A phone number: digits with the usual separators only, 7 digits or more.
_PHONE = re.compile(r"[+(]?\d[\d\s().+/-]{5,}\d")
_PHONE_MIN_DIGITS = 7
#: A street address: a house number, a word, then a further part ("12 Wexcombe Lane,
#: Tarnby", "12a Mill Rd^Leeds"); not a slide title such as "3 liver sections".
_STREET = re.compile(r"^\d+[a-z]?\s+[a-z][^,^\n]*[,^\n]\s*\w")


def phone_spellings(value: str) -> set[str]:
    """A phone number as written, as its digits alone and with its digit groups joined by
    a space, a hyphen, a dot or nothing, the first in brackets ("(555) 0199 321")."""
    v = " ".join(str(value).lower().split())
    out = {v} if v else set()
    groups = re.findall(r"\d+", v)
    if not _PHONE.fullmatch(v) or sum(map(len, groups)) < _PHONE_MIN_DIGITS:
        return out
    for sep in ("", " ", "-", "."):
        out.add(sep.join(groups))
    if len(groups) > 1:
        for sep in (" ", "-"):
            out.update({f"({groups[0]}) {sep.join(groups[1:])}",
                        f"({groups[0]}){sep.join(groups[1:])}"})
    return out


def address_spellings(value: str) -> set[str]:
    """An address as written, each of its comma- or caret-separated parts ("12 wexcombe
    lane", "little whinging") and each distinctive word of its street (the part with the
    house number; :func:`~pixeldeid.textclean.institution_words`: "wexcombe", not "lane"),
    not the words of a town alone ("little")."""
    v = " ".join(str(value).lower().split())
    if not v:
        return set()
    parts = [p.strip(" .") for p in re.split(r"[,^;\n]", v)]
    street = [institution_words(p) for p in parts if re.match(r"\d+[a-z]?\s", p)]
    return ({v} | {p for p in parts if distinctive(p) and not p.isdigit()}
            | set().union(*street))


def institution_spellings(value: str) -> set[str]:
    """An institution name, and each distinctive word of it
    (:func:`~pixeldeid.textclean.institution_words`)."""
    v = " ".join(str(value).lower().split())
    return ({v} if v else set()) | institution_words(v)


def spellings(kind: str, value: str) -> set[str]:
    """Every lower-case spelling searched for a value of ``kind``."""
    value = str(value).strip()
    if not value:
        return set()
    if kind == "name":
        return name_spellings(value)
    if kind in ("id", "accession"):
        return id_spellings(value)
    if kind == "birth_date":
        return date_spellings(value)
    if kind == "institution":
        return institution_spellings(value)
    if kind == "address":
        return address_spellings(value)
    if kind == "phone":
        return phone_spellings(value)
    # values of the run ledger come as "other": addresses and phones among them by shape
    out = phone_spellings(value)
    if _STREET.search(value.lower()):
        out |= address_spellings(value)
    return out


def spelling_form(kind: str, value: str, spelling: str) -> str:
    """What part or form of ``value`` the lower-case ``spelling`` is, for a finding
    ("its digits alone", "a part of it"); empty for the value itself or a plain respelling
    (case, order, separators)."""
    full = " ".join(str(value).lower().split())
    if spelling == full:
        return ""
    if spelling.isdigit() and not full.isdigit():
        return "its digits alone"
    if kind == "birth_date" and re.search(r"\d{4}", spelling) is None:
        return "with a 2-digit year"
    if spelling in re.split(r"[\^,\s=]+", full) or (
            kind in ("address", "other") and spelling in full):
        return "a part of it"
    return ""


def terms_for(values: Iterable[IdentityValue], *, exclude: Iterable[str] = (),
              min_len: int = 3) -> list[Term]:
    """The distinct search terms of ``values`` (longest first).

    ``exclude`` holds words that legitimately appear in the outputs (the pseudonyms): a
    spelling equal to one, or contained in one, is not searched for.
    """
    excl = [e.lower() for e in exclude if e]
    best: dict[str, Term] = {}
    for iv in values:
        for s in spellings(iv.kind, iv.value):
            if not distinctive(s, min_len) or s in _DUMMY or any(s in e for e in excl):
                continue
            if any(s in a for a in iv.allowed):
                continue
            full = " ".join(iv.value.lower().split())
            owners = (frozenset({iv.patient}) if iv.kind == "institution" and iv.patient
                      and s != full else frozenset())
            t = Term(s, iv.kind, len(iv.value.strip()), owners,
                     spelling_form(iv.kind, iv.value, s))
            prev = best.get(s)
            if prev is None:
                best[s] = t
            elif prev.owners:  # a word of several patients' institutions, or of every file
                best[s] = replace(prev, owners=prev.owners | owners if owners else frozenset())
    return sorted(best.values(), key=lambda t: (-len(t.text), t.text))


def identity_from_ledger(ledger) -> list[IdentityValue]:
    """Identity values of the run ledger's ``identity`` table (:class:`RunLedger`)."""
    return [IdentityValue(k if k in KINDS else "other", v, p) for p, k, v in ledger.identity()]


def _values_of(elem) -> list[str]:
    v = elem.value
    if v is None or elem.VR == "SQ":
        return []
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return [str(x) for x in v if str(x).strip()]
    if isinstance(v, bytes):
        try:
            v = v.decode("utf-8").strip("\x00 ")
        except UnicodeDecodeError:
            return []
    return [str(v)] if str(v).strip() else []


def _identity_elements(ds) -> Iterable[tuple[str, str, object]]:
    """``(label, kind, element)`` of the identity elements of a header: those of
    :data:`SOURCE_KEYWORDS`, the Patient ID of every Other Patient IDs Sequence item, and
    every other person name (PN) at any depth (staff, reviewers, contacts)."""
    for kw, kind in SOURCE_KEYWORDS.items():
        if kw in ds:
            yield kw, kind, ds.data_element(kw)
    for item in ds.get("OtherPatientIDsSequence", []) or []:
        if "PatientID" in item:
            yield "OtherPatientIDsSequence", "id", item.data_element("PatientID")
    top = {int(ds.data_element(kw).tag) for kw in SOURCE_KEYWORDS if kw in ds}
    for elem in ds.iterall():
        if elem.VR == "PN" and int(elem.tag) not in top:
            yield elem.keyword or str(elem.tag), "name", elem


def identity_from_dataset(ds, patient: str = "") -> list[IdentityValue]:
    """Identity values of one source header (see :func:`_identity_elements`); an
    institution's words that its own device attributes hold too are allowed there."""
    devices = tuple(" ".join(v.lower().split()) for kw in DEVICE_KEYWORDS if kw in ds
                    for v in _values_of(ds.data_element(kw)))
    return [IdentityValue(kind, v, patient, devices if kind == "institution" else ())
            for _kw, kind, elem in _identity_elements(ds) for v in _values_of(elem)]


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


def source_problem(ds) -> str | None:
    """Why the identity values of a source header cannot be trusted, or None.

    A damaged length swallows the elements after it: the value then holds their binary
    tags and lengths (control bytes). A value that is merely longer than its VR allows
    but is plain text is common in the field (a 66-character address) and is used.
    """
    for kw, _kind, elem in _identity_elements(ds):
        if any(_CONTROL_CHARS.search(v) for v in _values_of(elem)):
            return f"{kw}: a value holding binary (damaged length)"
    return None


def is_instance_uid(keyword: str) -> bool:
    """Whether an attribute holds a UID of one study, series, instance, frame of reference
    or event (not a class, transfer syntax or coding scheme UID)."""
    return keyword.endswith(("InstanceUID", "FrameOfReferenceUID", "EventUID")) or keyword in (
        "ConcatenationUID", "DimensionOrganizationUID")


def source_uids(ds) -> set[str]:
    """The instance UIDs of a source header at any depth (its own and those it references)."""
    out: set[str] = set()
    for elem in ds.iterall():
        if elem.VR == "UI" and is_instance_uid(elem.keyword or ""):
            out.update(v.strip("\x00 ") for v in _values_of(elem) if len(v.strip()) >= 8)
    return out


def pixel_fingerprint(path: str | os.PathLike, ds=None) -> str | None:
    """A digest of the Pixel Data value of a DICOM file (its length, first and last 64 KiB),
    to pair an output with its source when pixels were not changed; None without pixels."""
    import hashlib

    import pydicom

    try:
        if ds is None:  # the raw element only: the deferred value is never read
            ds = pydicom.dcmread(path, defer_size=256, force=True)
        raw = ds._dict.get(0x7FE00010)
        start, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if start is None or not length:
            return None
        with open(path, "rb") as fh:
            fh.seek(start)
            if length == 0xFFFFFFFF or length <= 2 << 16:
                data = fh.read(min(length, 2 << 16))
            else:
                data = fh.read(1 << 16)
                fh.seek(start + length - (1 << 16))
                data += fh.read(1 << 16)
        return hashlib.sha256(str(length).encode() + data).hexdigest()
    except Exception:  # noqa: BLE001 - no pairing: the date check is skipped
        return None


#: Content item attributes that de-identification keeps (structure, numbers), not text,
#: dates or UIDs: what pairs an SR output with its source.
_CONTENT_KEYS = ("ValueType", "RelationshipType", "NumericValue", "CodeValue",
                 "CodingSchemeDesignator", "TemplateIdentifier")


def _content_structure(items, out: list[str]) -> None:
    for it in items or []:
        out.append("|".join(str(it.get(k, "") or "") for k in _CONTENT_KEYS))
        for kw in ("ConceptNameCodeSequence", "ConceptCodeSequence", "MeasuredValueSequence",
                   "MeasurementUnitsCodeSequence", "ContentTemplateSequence", "ContentSequence"):
            if kw in it:
                out.append(kw)
                _content_structure(it.get(kw), out)


def pairing_key(path: str | os.PathLike, ds=None) -> str | None:
    """What pairs an output with its source for the date check: the digest of its pixel
    data (:func:`pixel_fingerprint`), else of its SR content tree (value types, codes,
    numbers: kept by de-identification, unlike its UIDs, dates and times); None without
    either."""
    import hashlib

    fp = pixel_fingerprint(path)  # (its own read: ``ds`` may lack the pixel data)
    if fp or ds is None or "ContentSequence" not in ds:
        return fp
    try:
        parts = [str(ds.get("SOPClassUID", ""))]
        _content_structure(ds.ContentSequence, parts)
    except Exception:  # noqa: BLE001 - no pairing
        return None
    if len(parts) < 3:  # too little structure to tell one SR from another
        return None
    return "sr:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()


def identity_from_sources(sources: Iterable[str | os.PathLike], *,
                          progress: bool | None = None,
                          unreadable: list[tuple[str, str]] | None = None,
                          dates: dict[str, dict[str, str] | None] | None = None,
                          ) -> tuple[list[IdentityValue], list[str]]:
    """Scan the source headers for identity values; return ``(values, dicom source files)``.

    The instance UIDs of each source (kind ``uid``) are values too. ``dates``, when given,
    receives the service dates of each source by :func:`pairing_key` (None where
    sources with the same pixels or SR content have other dates).
    Non-DICOM sources (NIfTI, slides) carry no patient header here; they are skipped.
    A DICOM source that cannot be read, or whose header is damaged, adds no values (they
    would be made of other elements' bytes); it is appended to ``unreadable`` as
    ``(path, reason)``, and the verification cannot be clean (its patient's values are
    unknown).
    """
    import pydicom
    from tqdm import tqdm

    from ..batch import iter_inputs

    files = [p for p, reason in iter_inputs(sources) if reason is None]
    seen: set[tuple[str, str]] = set()
    values: list[IdentityValue] = []
    dicoms: list[str] = []
    def add(ivs: Iterable[IdentityValue]) -> None:
        for iv in ivs:
            if (iv.kind, iv.value) not in seen:
                seen.add((iv.kind, iv.value))
                values.append(iv)

    for p in tqdm(files, desc="scan sources", unit="file", leave=False,
                  disable=None if progress is None else not progress):
        if p.suffix.lower() == ".json":
            add(identity_from_sidecar(p))
            continue
        if p.suffix.lower() in SLIDE_SUFFIXES:
            add(identity_from_slide(p))
            continue
        try:
            with open(p, "rb") as fh:
                head = fh.read(132)
            if head[128:132] != b"DICM":
                continue
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            found = identity_from_dataset(ds)  # elements are read here (lazily)
            found += [IdentityValue("uid", u) for u in sorted(source_uids(ds))]
            problem = source_problem(ds)
            if dates is not None and not problem:
                fp = pairing_key(p, ds)
                got = {kw: str(ds.get(kw, "") or "").strip() for kw in SERVICE_DATE_KEYWORDS}
                got = {k: v for k, v in got.items() if v}
                if fp and got:
                    dates[fp] = got if dates.get(fp, got) == got else None
        except Exception as exc:  # noqa: BLE001 - an unreadable source adds no values
            problem = f"unreadable: {type(exc).__name__}"
        if problem:
            logger.debug("source %s: %s", p, problem)
            if unreadable is not None:
                unreadable.append((str(p), problem))
            continue
        dicoms.append(str(p))
        add(found)
    return values, dicoms


#: Slide files whose vendor metadata gives identity values (DICOM WSI is read as DICOM).
SLIDE_SUFFIXES = (".svs", ".ndpi", ".tif", ".tiff", ".bif", ".scn", ".mrxs", ".vms")


def identity_from_slide(path: str | os.PathLike) -> list[IdentityValue]:
    """Values of a source slide's vendor metadata that ``pixeldeid wsi`` removes (keys not on
    its allowlist, e.g. Aperio Title, User, Filename, Barcode), as ``other`` values.

    Needs openslide and the ``wsi`` package; returns nothing without them or for a file
    that is not a slide.
    """
    try:
        import openslide

        from wsi.metadata_rules import classify_key
    except ImportError:
        return []
    try:
        slide = openslide.OpenSlide(str(path))
    except Exception:  # noqa: BLE001 - not a slide
        return []
    try:
        props = dict(slide.properties)
    finally:
        slide.close()
    out = []
    for key, value in props.items():
        if key.split(".", 1)[0] in ("openslide", "tiff"):
            continue  # copies of the vendor fields and TIFF structure
        v = str(value).strip()
        if (4 <= len(v) <= 64 and classify_key(key.split(".", 1)[-1]) == "remove"
                and not re.fullmatch(r"[-+\d.,:/ ]+", v)):
            out.append(IdentityValue("other", v))
    return out


def identity_from_sidecar(path: str | os.PathLike) -> list[IdentityValue]:
    """Identity values of a BIDS/dcm2niix JSON sidecar (written without anonymization, a
    sidecar carries the DICOM keywords: PatientName, PatientID, PatientBirthDate ...)."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    if not isinstance(doc, dict):
        return []
    out = []
    for kw, kind in SOURCE_KEYWORDS.items():
        v = doc.get(kw)
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, (str, int)) and str(x).strip():
                out.append(IdentityValue(kind, str(x).strip()))
    return out
