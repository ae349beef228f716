"""Scrub identifying free text from BIDS sidecars (JSON) and tables (TSV).

BIDS converters such as dcm2niix copy DICOM header fields into the JSON sidecars:
acquisition date and time, institution, station, device serial number, and sometimes
the patient's name or ID. ``scans.tsv`` and ``participants.tsv`` may carry
acquisition or birth dates. The functions here remove these; all other content is kept
(a JSON sidecar that loses keys is re-serialised in the same key order; files with
nothing to remove are copied byte for byte).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from pixeldeid.atomic import atomic_output
from pixeldeid.errors import InputError

logger = logging.getLogger(__name__)

#: JSON sidecar keys removed wherever they occur (top level or nested), compared
#: case-insensitively.
IDENTIFYING_KEYS = frozenset(k.lower() for k in (
    "AcquisitionDateTime", "AcquisitionDate", "ContentDate", "ContentDateTime",
    "SeriesDate", "StudyDate", "StudyDateTime", "InstanceCreationDate", "ScanDate",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "StationName", "DeviceSerialNumber", "PatientName", "PatientID", "PatientBirthDate",
    "PatientAddress", "OtherPatientIDs", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "AccessionNumber", "StudyID", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "SOPInstanceUID", "InstitutionCodeSequence",
))
#: Free-text keys that dcm2niix and other converters copy from the DICOM header (series and
#: protocol names typed at the scanner): kept, but cleaned of identity-shaped text (dates,
#: times, digit runs, phone numbers, e-mail, labelled IDs, a name after a title) with the
#: header core's Clean Descriptors patterns (:func:`pixeldeid.textclean.clean_text`).
FREE_TEXT_KEYS = frozenset(k.lower() for k in (
    "SeriesDescription", "ProtocolName", "StudyDescription", "ImageComments",
    "PerformedProcedureStepDescription", "RequestedProcedureDescription",
    "AcquisitionContrastDescription", "ContrastBolusIngredient", "PatientComments",
    "AdditionalPatientHistory", "ReasonForStudy", "Comments",
))
#: A calendar date (ISO ``YYYY-MM-DD`` or DICOM ``YYYYMMDD`` with a plausible year),
#: optionally followed by a time, as found in TSV cells.
DATE_RE = re.compile(r"(?<!\d)(1[89]\d\d|2\d\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])"
                     r"(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?(?!\d)")
#: TSV cells whose dates are replaced are set to the BIDS missing value.
MISSING = "n/a"


def scrub_json(obj):
    """Return a copy of a parsed JSON value without :data:`IDENTIFYING_KEYS`, with
    :data:`FREE_TEXT_KEYS` cleaned, and the names of removed keys (cleaned ones as
    ``"Key (cleaned)"``) for the report."""
    from pixeldeid.textclean import clean_text

    removed: list[str] = []

    def walk(o):
        if isinstance(o, dict):
            out = {}
            for k, v in o.items():
                name = str(k).lower()
                if name in IDENTIFYING_KEYS:
                    removed.append(str(k))
                    continue
                if name in FREE_TEXT_KEYS and isinstance(v, str):
                    clean = clean_text(v, ())
                    if clean != v:
                        removed.append(f"{k} (cleaned)")
                    out[k] = clean
                    continue
                out[k] = walk(v)
            return out
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(obj), removed


def scrub_json_file(src: Path, dst: Path) -> list[str]:
    """Write a scrubbed copy of a JSON sidecar; return the removed keys.

    Raises
    ------
    InputError
        When ``src`` is not valid JSON (it is then quarantined, never copied).
    """
    raw = Path(src).read_bytes()
    try:
        obj = json.loads(raw.decode("utf-8"))
        clean, removed = scrub_json(obj)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable JSON sidecar: {exc}", str(src)) from exc
    except RecursionError:
        raise InputError("unreadable JSON sidecar: nested too deeply", str(src)) from None
    with atomic_output(dst) as fh:  # unchanged sidecars keep their exact bytes
        fh.write((json.dumps(clean, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
                 if removed else raw)
    if removed:
        logger.info("%s: removed %s", src, ", ".join(removed))
    return removed


def scrub_tsv_text(text: str) -> tuple[str, int]:
    """Replace every cell holding a calendar date with ``n/a``; return text and count.

    The header row is kept. Cells such as ``acq_time`` in ``scans.tsv`` or a birth date
    in ``participants.tsv`` are replaced whole (a date shift would need a per-subject
    key shared with the images; removal is the fail-closed choice).
    """
    lines = text.split("\n")
    count = 0
    out = lines[:1]
    for line in lines[1:]:
        cells = line.split("\t")
        for i, c in enumerate(cells):
            if DATE_RE.search(c):
                cells[i] = MISSING
                count += 1
        out.append("\t".join(cells))
    return "\n".join(out), count


def scrub_tsv_file(src: Path, dst: Path) -> int:
    """Write a copy of a BIDS TSV with dated cells removed; return how many."""
    try:
        text = Path(src).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"unreadable TSV: {exc}", str(src)) from exc
    clean, count = scrub_tsv_text(text)
    with atomic_output(dst) as fh:
        fh.write(clean.encode("utf-8") if count else Path(src).read_bytes())
    return count
