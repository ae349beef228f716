"""Identity values of a BIDS dataset, searched for in the text files it releases.

The JSON sidecars of a dataset converted from DICOM may name the patient (PatientName,
PatientID, PatientBirthDate, AccessionNumber...), and ``participants.tsv`` or
``sessions.tsv`` may hold birth dates; a session label may be the scan date. Those keys
and cells are removed from the files that hold them (:mod:`defacing.sidecars`), and
dated session labels are renamed (:mod:`defacing.sessions`). The same values anywhere
else (a README, a note, a sidecar key no list knows) quarantine the file: a value seen
once is searched for everywhere (:func:`find_identity`), as the header core's residual
check does for DICOM.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from pixeldeid.dates import written_forms
from pixeldeid.textclean import contains_tokens, distinctive, identity_tokens

from .sidecars import BIRTH_COLUMN_RE, IDENTITY_COLUMN_RE, MISSING

#: JSON keys whose values are a person's identity (the patient's, or another person's).
IDENTITY_JSON_KEYS = frozenset(k.lower() for k in (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "PatientAddress",
    "PatientTelephoneNumbers", "MedicalRecordLocator", "AdmissionID",
))
NAME_JSON_KEYS = frozenset(k.lower() for k in (
    "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
    "ReferringPhysicianName", "PerformingPhysicianName", "RequestingPhysician",
    "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "OperatorsName",
))
BIRTH_JSON_KEYS = frozenset(("patientbirthdate",))
#: Values that name no one (placeholders written by converters and anonymisers).
PLACEHOLDERS = frozenset((
    "anonymous", "anonymized", "anonymised", "anon", "unknown", "none", "null", "n/a", "na",
    "removed", "deidentified", "de-identified", "patient", "subject", "phantom", "test",
    "qa", "volunteer", "research",
))
#: A BIDS entity (``sub-01``, ``ses-pre``): a label, not identity.
_ENTITY_RE = re.compile(r"^(?:sub|ses)-[A-Za-z0-9]+$")
#: Plain text that labels a patient's identity (``PatientName:``, ``DOB=``, a DICOM dump's
#: ``(0010,0010)``): a text file holding it is quarantined.
PATIENT_LABEL_RE = re.compile(
    r"\b(?:patient'?s?[ _]?(?:name|id|birth[ _]?date)|date[ _]of[ _]birth|birth[ _]?date"
    r"|d\.?o\.?b\.?|mrn)\s*[:=]|\(0010,\s*00[1-4]0\)", re.I)
#: Shortest all-digit token searched for (shorter numbers are found in every table).
MIN_DIGIT_TOKEN = 6


def birth_date_forms(value: str) -> list[str]:
    """Written forms of a DICOM (``YYYYMMDD``) or ISO birth date
    (:func:`pixeldeid.dates.written_forms`), else the value itself."""
    v = value.strip()
    return written_forms(v) or ([v] if v else [])


def _json_values(obj, found: dict[str, list[str]], depth: int = 0) -> None:
    """Collect the identity values of a parsed sidecar into ``found`` (by kind)."""
    if depth > 64:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            low = str(k).lower()
            kind = ("name" if low in NAME_JSON_KEYS else "id" if low in IDENTITY_JSON_KEYS
                    else "birth" if low in BIRTH_JSON_KEYS else "")
            if kind:
                values = v if isinstance(v, list) else [v]
                found[kind].extend(str(x) for x in values if isinstance(x, (str, int)))
            else:
                _json_values(v, found, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            _json_values(v, found, depth + 1)


def _tsv_column_values(text: str, pattern: re.Pattern[str]) -> list[str]:
    """The cells of the columns of a TSV table whose names match ``pattern``."""
    lines = [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
    if not lines:
        return []
    cols = [i for i, c in enumerate(lines[0].split("\t")) if pattern.search(c)]
    out = []
    for line in lines[1:]:
        cells = line.split("\t")
        out.extend(cells[i].strip() for i in cols if i < len(cells))
    return [v for v in out if v and v != MISSING]


def sidecar_files(root: Path) -> list[Path]:
    """The JSON sidecars and TSV tables of the BIDS dataset at ``root`` (any letter case;
    not below hidden folders such as ``.git``)."""
    return [p for p in sorted(root.rglob("*")) if p.suffix.lower() in (".json", ".tsv")
            and not any(part.startswith(".") for part in p.relative_to(root).parts[:-1])
            and p.is_file() and not p.is_symlink()]


def collect_values(files: Iterable[Path]) -> dict[str, list[str]]:
    """Identity values of a dataset's JSON sidecars and TSV tables, by kind (``name``,
    ``id``, ``birth``). Unreadable files are skipped here (they are quarantined when
    their turn comes)."""
    found: dict[str, list[str]] = {"name": [], "id": [], "birth": []}
    for p in files:
        low = p.name.lower()
        try:
            if low.endswith(".json"):
                _json_values(json.loads(p.read_bytes().decode("utf-8")), found)
            elif low.endswith(".tsv"):
                text = p.read_bytes().decode("utf-8")
                found["birth"].extend(_tsv_column_values(text, BIRTH_COLUMN_RE))
                found["name"].extend(_tsv_column_values(text, IDENTITY_COLUMN_RE))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            continue
    return found


def searchable(token: str, labels: frozenset[str]) -> bool:
    """Whether ``token`` is worth searching text files for: distinctive, not a
    placeholder, a BIDS entity or a subject label, and not a short number."""
    t = token.strip()
    low = t.lower()
    if not distinctive(t) or low in PLACEHOLDERS or low in labels or _ENTITY_RE.match(t):
        return False
    return not (t.isdigit() and len(t) < MIN_DIGIT_TOKEN)


def dataset_tokens(values: dict[str, list[str]], labels: Iterable[str] = (),
                   extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Searchable tokens of ``values`` (:func:`collect_values`) and of ``extra`` (the
    dates of dated session labels), without the dataset's subject ``labels``."""
    births = [f for v in values.get("birth", []) for f in birth_date_forms(v)]
    names = [v for v in values.get("name", []) if v.strip().lower() not in PLACEHOLDERS]
    ids = [v for v in values.get("id", []) if not _ENTITY_RE.match(v.strip())]
    toks = identity_tokens([*ids, *births, *extra], names=names)
    low_labels = frozenset(x.lower() for x in labels)
    return tuple(sorted({t for t in toks if searchable(t, low_labels)}, key=len, reverse=True))


def find_identity(text: str, tokens: tuple[str, ...], *, labels: bool = False) -> str | None:
    """Why ``text`` may not be released, or None: it holds one of ``tokens`` (as a whole
    word, any case), or (``labels``) text that labels a patient's identity."""
    if tokens and contains_tokens(text, tokens):
        return ("holds an identity value found elsewhere in the dataset (a name, ID or birth "
                "date of a sidecar or table, or the date of a session label)")
    if labels and PATIENT_LABEL_RE.search(text):
        return "holds text labelled as a patient's name, ID or birth date"
    return None
