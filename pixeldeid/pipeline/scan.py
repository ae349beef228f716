"""Scan the inputs of a run once: what each file is, and its DICOM header (no pixels).

DICOM files are read with ``stop_before_pixels`` (their identity values, patient, study,
series, instance and Frame of Reference), NIfTI files are told by their suffix and magic
number, slides by their suffix and TIFF magic. Text files (BIDS sidecars and tables,
``.bval``/``.bvec``, README, CHANGES, LICENSE) are kind ``sidecar`` with a reason: the plan
releases them inside a BIDS dataset and skips them elsewhere. Anything else, and anything
that cannot be read, gets a reason instead of a kind: the plan quarantines it.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["ScanRecord", "scan_file", "SLIDE_SUFFIXES", "SIDECAR_SUFFIXES", "SIDECAR_NAMES",
           "WSI_SOP_CLASS", "UNSUPPORTED"]

#: slide file suffixes (TIFF-based formats; DICOM WSI is found by its SOP Class)
SLIDE_SUFFIXES = (".svs", ".ndpi", ".tif", ".tiff", ".bif", ".scn", ".qptiff")
#: files that are not images (BIDS sidecars, notes): listed as skipped, never released
SIDECAR_SUFFIXES = (".json", ".tsv", ".bval", ".bvec", ".txt", ".md", ".csv")
#: text files of a BIDS dataset known by name (no suffix), handled like sidecars
SIDECAR_NAMES = ("readme", "changes", "license", ".bidsignore")
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
#: the reason of a file that is none of the kinds above
UNSUPPORTED = "unsupported input (not DICOM, NIfTI or a whole-slide image)"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: header elements kept in the identity table (kind, keywords)
IDENTITY_FIELDS = (
    ("name", ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
              "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
              "NameOfPhysiciansReadingStudy")),
    ("id", ("PatientID", "OtherPatientIDs", "MedicalRecordLocator")),
    ("birth_date", ("PatientBirthDate",)),
    ("accession", ("AccessionNumber",)),
    ("institution", ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName")),
    ("other", ("PatientAddress", "PatientTelephoneNumbers", "StudyID")),
)
_HEAD_WORDS = ("HEAD", "BRAIN", "SKULL", "CRANI", "NEURO")


@dataclass
class ScanRecord:
    """What the scan learned about one input file."""

    path: str
    kind: str = ""                 # dicom | nifti | slide | sidecar | '' (bad: see reason)
    reason: str = ""
    modality: str = ""
    patient_key: str = ""
    study_uid: str = ""
    series_uid: str = ""
    frame_of_reference: str = ""   # Frame of Reference UID (PET registered through CT/MR)
    sop_uid: str = ""
    sop_class: str = ""
    head: bool = False             # a head (body part or description says so)
    has_pixels: bool = False
    identity: list[tuple[str, str]] = field(default_factory=list)


def _magic(path: Path, n: int = 348) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _is_nifti_magic(path: Path) -> bool:
    head = _magic(path, 544)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(544)
        except (OSError, EOFError):
            return False
    nifti1 = len(head) >= 348 and head[344:347] in (b"n+1", b"ni1")
    nifti2 = len(head) >= 540 and head[4:7] in (b"n+2", b"ni2")
    return nifti1 or nifti2


def scan_file(path: str | os.PathLike) -> ScanRecord:
    """Classify one input file and read its header; never raises for a bad input."""
    p = Path(path)
    rec = ScanRecord(str(p))
    name = p.name.lower()
    try:
        head = _magic(p, 132)
        if len(head) == 0:
            rec.reason = "zero-byte file"
        elif head[128:132] == b"DICM" or name.endswith(".dcm"):
            _scan_dicom(p, rec)
        elif name.endswith((".nii", ".nii.gz")):
            if _is_nifti_magic(p):
                rec.kind = "nifti"
                rec.head = True
            else:
                rec.reason = "named like NIfTI but not a NIfTI-1/2 file (bad magic)"
        elif name.endswith(SLIDE_SUFFIXES):
            if head[:4] in _TIFF_MAGIC:
                rec.kind = "slide"
                rec.modality = "SM"
            else:
                rec.reason = "named like a slide but not a TIFF file (bad magic)"
        elif name.endswith(SIDECAR_SUFFIXES) or name in SIDECAR_NAMES:
            rec.kind = "sidecar"
            rec.reason = "not an image (sidecar or note): not released"
        else:
            rec.reason = UNSUPPORTED
    except OSError as exc:
        rec.kind, rec.reason = "", f"cannot read: {exc.strerror or exc}"
    except RecursionError:
        rec.kind, rec.reason = "", "hostile input: sequence nesting too deep to read"
    except MemoryError:
        rec.kind, rec.reason = "", "hostile input: out of memory while reading the header"
    return rec


def _text(ds, kw: str) -> list[str]:
    if kw not in ds:
        return []
    v = ds.data_element(kw).value
    if v is None:
        return []
    vals = list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v]
    return [str(x).strip() for x in vals if str(x).strip() and type(x).__name__ != "Sequence"]


def _scan_dicom(p: Path, rec: ScanRecord) -> None:
    import pydicom

    from ..api import patient_key

    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, defer_size=4096)
    except RecursionError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on hostile files
        rec.reason = f"unreadable DICOM header: {type(exc).__name__}: {exc}".splitlines()[0]
        return
    try:
        meta = getattr(ds, "file_meta", None)
        if meta is None or "TransferSyntaxUID" not in meta:
            raise InputError("no File Meta Information / Transfer Syntax UID", str(p))
        if "SOPInstanceUID" not in ds:
            raise InputError("missing SOP Instance UID", str(p))
        rec.sop_class = str(ds.get("SOPClassUID", "") or meta.get("MediaStorageSOPClassUID", ""))
        rec.kind = "dicom"
        rec.modality = str(ds.get("Modality", "") or "").strip().upper()
        rec.patient_key = patient_key(ds)
        rec.study_uid = str(ds.get("StudyInstanceUID", "") or "")
        rec.series_uid = str(ds.get("SeriesInstanceUID", "") or "")
        rec.sop_uid = str(ds.SOPInstanceUID).strip()
        rec.frame_of_reference = str(ds.get("FrameOfReferenceUID", "") or "").strip()
        rec.has_pixels = "Rows" in ds and "Columns" in ds
        words = " ".join(_text(ds, kw)[0] if _text(ds, kw) else "" for kw in (
            "BodyPartExamined", "StudyDescription", "SeriesDescription", "ProtocolName")).upper()
        rec.head = any(w in words for w in _HEAD_WORDS)
        if rec.sop_class == WSI_SOP_CLASS:
            rec.kind, rec.modality = "slide", "SM"
        for kind, kws in IDENTITY_FIELDS:
            for kw in kws:
                for v in _text(ds, kw):
                    rec.identity.append((kind, v))
        other = ds.get("OtherPatientIDsSequence", None)  # IDs of the patient's other records
        for item in other if type(other).__name__ == "Sequence" else []:  # not UN bytes
            rec.identity += [("id", v) for v in _text(item, "PatientID")]
    except InputError as exc:
        rec.kind, rec.reason = "", exc.reason
    except RecursionError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged element must not stop the scan
        rec.kind = ""
        rec.reason = f"unreadable DICOM header: {type(exc).__name__}: {exc}".splitlines()[0]
