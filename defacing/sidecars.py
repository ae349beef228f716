"""Scrub identifying free text from BIDS sidecars (JSON) and tables (TSV).

BIDS converters such as dcm2niix copy DICOM header fields into the JSON sidecars:
acquisition date and time, institution, station, device serial number, the scheduled
procedure's description (often a person's name), comments, and sometimes the patient's
name or ID. ``scans.tsv``, ``sessions.tsv`` and ``participants.tsv`` may carry acquisition
or birth dates and ages. The functions here remove these; all other content is kept (a
JSON sidecar that loses keys is re-serialised in the same key order; files with nothing
to remove are copied byte for byte).

JSON: :data:`IDENTIFYING_KEYS` and keys named like a date, a UID or a comment
(:data:`REMOVED_KEY_RE`) are removed at any depth; :data:`FREE_TEXT_KEYS` (series and
protocol names, needed to tell the scans apart) are kept but cleaned of identity-shaped
text; any other value holding a calendar date in a written form (:func:`has_date`) loses
its key; ``PatientAge`` over 89 years becomes ``090Y`` (as ``pixeldeid dicom`` writes it).

TSV: a cell holding a calendar date in any common written form becomes ``n/a``, every
cell of a birth date column too (``birth_date``, ``dob``: a year alone is identity
there); an age column (``age``, ``age_at_scan``...) over 88 years becomes ``89+`` (the
BIDS recommendation for ages of 89 and over).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

from pixeldeid.atomic import atomic_output
from pixeldeid.errors import InputError

logger = logging.getLogger(__name__)

#: JSON sidecar keys removed wherever they occur (top level or nested), compared
#: case-insensitively: dates, places, devices, people, IDs, UIDs, and the free text that
#: scanners and converters fill with names and IDs (the scheduled procedure's
#: description, comments).
IDENTIFYING_KEYS = frozenset(k.lower() for k in (
    "AcquisitionDateTime", "AcquisitionDate", "ContentDate", "ContentDateTime",
    "SeriesDate", "StudyDate", "StudyDateTime", "InstanceCreationDate", "ScanDate",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "StationName", "DeviceSerialNumber", "PatientName", "PatientID", "PatientBirthDate",
    "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "PatientAddress",
    "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientNames", "MedicalRecordLocator",
    "IssuerOfPatientID", "ReferringPhysicianName", "PerformingPhysicianName",
    "RequestingPhysician", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "OperatorsName", "AccessionNumber", "StudyID", "AdmissionID", "RequestedProcedureID",
    "ScheduledProcedureStepID", "PerformedProcedureStepID", "StudyInstanceUID",
    "SeriesInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID", "InstitutionCodeSequence",
    "ProcedureStepDescription", "PerformedProcedureStepDescription",
    "RequestedProcedureDescription", "ConversionComments", "ImageComments",
    "PatientComments", "AdditionalPatientHistory", "ReasonForStudy", "Comments",
))
#: Keys removed by their form too: ``...Date``, ``...DateTime``, ``...UID(s)``,
#: ``...Comment(s)`` in the CamelCase of DICOM keywords (``Candidate`` is not a date).
REMOVED_KEY_RE = re.compile(r"(?:^|[a-z0-9])(?:Date|DateTime|UIDs?|Comments?)$")
#: Free-text keys that dcm2niix and other converters copy from the DICOM header (series and
#: protocol names typed at the scanner, needed to tell the scans apart): kept, but cleaned
#: of identity-shaped text (dates, times, digit runs, phone numbers, e-mail, labelled IDs,
#: a name after a title) with the header core's Clean Descriptors patterns
#: (:func:`pixeldeid.textclean.clean_text`).
FREE_TEXT_KEYS = frozenset(k.lower() for k in (
    "SeriesDescription", "ProtocolName", "StudyDescription", "AcquisitionContrastDescription",
    "ContrastBolusIngredient",
))
#: Keys whose values may hold a date that is no one's (a software version such as
#: ``v1.0.20190410``, a link, a licence): their values are not searched for dates.
DATE_EXEMPT_KEY_WORDS = ("version", "url", "doi", "license", "link", "reference")
#: A calendar date (ISO ``YYYY-MM-DD`` or DICOM ``YYYYMMDD`` with a plausible year),
#: optionally followed by a time, as found in TSV cells.
DATE_RE = re.compile(r"(?<!\d)(1[89]\d\d|2\d\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])"
                     r"(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?(?!\d)")
_MONTH = (r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?")
#: Other written forms of a date: ``03/02/1961``, ``3/2/61``, ``03.02.1961``,
#: ``03-02-1961``, ``1961/02/03``, ``1961.02.03``, ``3 Feb 1961``, ``03-FEB-1961``,
#: ``February 3, 1961``. A two-digit year only with slashes (``1.10.12`` is a version).
WRITTEN_DATE_RE = re.compile(
    r"(?<![\d.])(?:"
    r"(?:0?[1-9]|[12]\d|3[01])/(?:0?[1-9]|[12]\d|3[01])/(?:\d{4}|\d{2})"
    r"|(?:0?[1-9]|[12]\d|3[01])([.-])(?:0?[1-9]|[12]\d|3[01])\1(?:1[89]|2\d)\d\d"
    r"|(?:1[89]|2\d)\d\d([/.])(?:0?[1-9]|1[0-2])\2(?:0?[1-9]|[12]\d|3[01])"
    r")(?![\d.]\d)"
    rf"|(?<![A-Za-z0-9])(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?[\s./-]*{_MONTH}[\s.,/-]*"
    r"(?:1[89]|2\d)\d\d(?!\d)"
    rf"|(?<![A-Za-z]){_MONTH}\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?,?\s+(?:1[89]|2\d)\d\d"
    r"(?!\d)", re.I)
#: TSV cells whose dates are replaced are set to the BIDS missing value.
MISSING = "n/a"
#: TSV columns of ages and of birth dates (header names, any case).
AGE_COLUMN_RE = re.compile(r"(?:^|_)age(?:$|_)", re.I)
BIRTH_COLUMN_RE = re.compile(r"birth|(?:^|_)dob(?:$|_)", re.I)
#: Columns of a person's name or a record number (participants.tsv with a ``name`` or
#: ``mrn`` column): every cell becomes ``n/a``
IDENTITY_COLUMN_RE = re.compile(
    r"(?:^|_)(?:(?:first|last|given|family|sur|full|patient|subject|maiden)_?name|name|"
    r"initials|mrn|patient_?id|medical_record(?:_number)?|ssn|nhs(?:_number)?|phone|e_?mail|"
    r"address|zip|postcode|postal_code)(?:$|_)", re.I)
#: Ages of this many years and over are written :data:`AGE_OVER` (BIDS: "89+").
AGE_LIMIT = 89
AGE_OVER = "89+"
_AGE_RE = re.compile(r"^0*(\d+(?:\.\d+)?)\s*(?:y|yr|yrs|years?)?$", re.I)
_AS_OTHER_UNIT = re.compile(r"^\d{1,3}\s*[dwm]$", re.I)


def has_date(text: str) -> bool:
    """Whether ``text`` holds a calendar date in a common written form."""
    return bool(DATE_RE.search(text) or WRITTEN_DATE_RE.search(text))


def _removed_key(name: str) -> bool:
    return name.lower() in IDENTIFYING_KEYS or bool(REMOVED_KEY_RE.search(name))


def _date_exempt(name: str) -> bool:
    low = name.lower()
    return any(w in low for w in DATE_EXEMPT_KEY_WORDS)


def _strings(value) -> list[str]:
    """The strings of a JSON value that is a string or a list of strings (else [])."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return []


def _json_age(value):
    """``PatientAge`` with ages over 89 years clipped (AS strings, or numbers of years)."""
    from pixeldeid.dates import clip_age

    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value if value <= AGE_LIMIT else AGE_LIMIT + 1
    if isinstance(value, str):
        return clip_age(value) if value.strip() else value
    return value


def scrub_json(obj):
    """Return a copy of a parsed JSON value without identifying keys, with
    :data:`FREE_TEXT_KEYS` cleaned, and the names of removed keys (cleaned ones as
    ``"Key (cleaned)"``, ones removed for a date in their value as ``"Key (date)"``) for
    the report."""
    from pixeldeid.textclean import clean_text

    removed: list[str] = []

    def walk(o):
        if isinstance(o, dict):
            out = {}
            for k, v in o.items():
                name = str(k)
                low = name.lower()
                if _removed_key(name):
                    removed.append(name)
                    continue
                if low in FREE_TEXT_KEYS and isinstance(v, str):
                    clean = clean_text(v, ())
                    if clean != v:
                        removed.append(f"{k} (cleaned)")
                    out[k] = clean
                    continue
                if low == "patientage":
                    out[k] = _json_age(v)
                    if out[k] != v:
                        removed.append(f"{k} (clipped)")
                    continue
                if not _date_exempt(name) and any(has_date(s) for s in _strings(v)):
                    removed.append(f"{k} (date)")
                    continue
                out[k] = walk(v)
            return out
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(obj), removed


def scrub_json_text(text: str, source: str | Path) -> tuple[str | None, list[str]]:
    """Scrub the JSON document ``text``: (the new text, or None when nothing was removed,
    and the removed keys).

    Raises
    ------
    InputError
        When ``text`` is not valid JSON (the file is then quarantined, never copied).
    """
    try:
        clean, removed = scrub_json(json.loads(text))
    except json.JSONDecodeError as exc:
        raise InputError(f"unreadable JSON sidecar: {exc}", str(source)) from exc
    except RecursionError:
        raise InputError("unreadable JSON sidecar: nested too deeply", str(source)) from None
    if not removed:
        return None, removed
    return json.dumps(clean, indent=2, ensure_ascii=False) + "\n", removed


def read_text(src: str | Path, what: str = "text file") -> tuple[bytes, str]:
    """The bytes of ``src`` and their UTF-8 text; InputError naming the file otherwise."""
    raw = Path(src).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}",
                         str(src)) from None
    return raw, text


def scrub_json_file(src: Path, dst: Path) -> list[str]:
    """Write a scrubbed copy of a JSON sidecar; return the removed keys.

    Raises
    ------
    InputError
        When ``src`` is not valid JSON (it is then quarantined, never copied).
    """
    try:
        raw, text = read_text(src, "JSON sidecar")
    except InputError as exc:
        raise InputError(f"unreadable JSON sidecar: {exc.reason}", str(src)) from None
    clean, removed = scrub_json_text(text, src)
    with atomic_output(dst) as fh:  # unchanged sidecars keep their exact bytes
        fh.write(raw if clean is None else clean.encode("utf-8"))
    if removed:
        logger.info("%s: removed %s", src, ", ".join(removed))
    return removed


def cap_age(cell: str) -> str:
    """An age cell of a TSV: ``89+`` from 89 years, kept below (and ``n/a``, months, weeks
    and days kept); ``n/a`` when it cannot be read (it could hide an age over the limit)."""
    text = cell.strip()
    if not text or text.lower() in ("n/a", "na") or _AS_OTHER_UNIT.match(text):
        return cell
    if text in (AGE_OVER, f"{AGE_LIMIT}+", "90+"):
        return AGE_OVER
    m = _AGE_RE.match(text)
    if not m:
        return MISSING
    return AGE_OVER if float(m.group(1)) >= AGE_LIMIT else cell


def _scrub_cell(cell: str, column: str) -> str:
    """The cell as released: birth date columns emptied, ages capped, dates removed."""
    if column and (BIRTH_COLUMN_RE.search(column) or IDENTITY_COLUMN_RE.search(column)):
        return cell if cell.strip() in ("", MISSING) else MISSING
    if has_date(cell):
        return MISSING
    if column and AGE_COLUMN_RE.search(column):
        return cap_age(cell)
    return cell


def scrub_tsv_text(text: str, header: bool = True) -> tuple[str, int]:
    """Scrub a TSV table; return the text and how many cells changed.

    The header row (when ``header``) is kept and names the columns: every cell of a birth
    date column becomes ``n/a``, ages of 89 years and over ``89+``. Any other cell
    holding a calendar date (:func:`has_date`: ``acq_time`` in ``scans.tsv``...) becomes
    ``n/a`` whole (a date shift would need a per-subject key shared with the images;
    removal is the fail-closed choice). Line endings are kept.
    """
    lines = text.split("\n")
    columns = lines[0].rstrip("\r").split("\t") if header and lines else []
    count = 0
    out = lines[:1] if header else []
    for line in lines[len(out):]:
        end = "\r" if line.endswith("\r") else ""
        cells = line[: len(line) - len(end)].split("\t")
        for i, c in enumerate(cells):
            new = _scrub_cell(c, columns[i] if i < len(columns) else "")
            if new != c:
                cells[i] = new
                count += 1
        out.append("\t".join(cells) + end)
    return "\n".join(out), count


def prune_rows(text: str, column: str, keep: Callable[[str], bool]) -> tuple[str, int]:
    """Remove the rows of a TSV table whose ``column`` cell ``keep`` refuses (the rows of
    ``scans.tsv`` naming a file that is not released); return the text and how many."""
    lines = text.split("\n")
    head = lines[0].rstrip("\r").split("\t") if lines else []
    if column not in head:
        return text, 0
    col = head.index(column)
    out, dropped = lines[:1], 0
    for line in lines[1:]:
        cells = line.rstrip("\r").split("\t")
        if line.strip() and col < len(cells) and not keep(cells[col].strip()):
            dropped += 1
            continue
        out.append(line)
    return "\n".join(out), dropped


def scrub_tsv_file(src: Path, dst: Path) -> int:
    """Write a copy of a BIDS TSV with dated cells removed and ages capped; return how many
    cells changed."""
    raw, text = read_text(src, "TSV")
    clean, count = scrub_tsv_text(text)
    with atomic_output(dst) as fh:
        fh.write(clean.encode("utf-8") if count else raw)
    return count
