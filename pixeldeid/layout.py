"""Output naming: flat, HIRO-style hierarchy, and per-study DICOMDIR file-sets.

Every name is computed from the **de-identified** dataset only (pseudonymous Patient
ID, shifted dates, cleaned descriptions, replaced UIDs); nothing of an input path or
input file name can reach an output name. Components are cleaned to letters, digits,
``-`` and ``_`` (ASCII), bounded in length, and ``NA`` stands for a missing value.

Layouts
-------
flat
    ``<SOPInstanceUID>.dcm`` (:func:`flat_name`).
hierarchy (HIRO type 1)
    ``<PatientID>/study_<YYYYMMDD>_<6 hex>_<StudyDescription>/``
    ``<Modality><SeriesNumber>_<SeriesDescription>_<3 hex>/<InstanceNumber:05d>_<16 hex>.dcm``
    where the hex digits are a SHA-256 prefix of the Study, Series and SOP Instance
    UIDs (:func:`hierarchy_path`); 64 bits of the SOP Instance UID keep distinct
    instances of one series apart even when they share an Instance Number.
DICOMDIR (HIRO type 2)
    ``<PatientID>/study_<6 hex>_<YYYYMMDD>/DICOMDIR`` and ``.../DICOM/IM_nnnnn``, one
    DICOM file-set per study, written with :class:`pydicom.fileset.FileSet`
    (:class:`DicomdirLayout`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import shutil
import threading
import unicodedata
from pathlib import Path, PurePosixPath

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomFileLike
from pydicom.fileset import FileInstance, FileSet
from pydicom.sequence import Sequence
from pydicom.valuerep import DT

from pixeldeid.atomic import atomic_output
from pixeldeid.dummy import dummy_value
from pixeldeid.errors import DeidError

__all__ = ["clean_component", "flat_name", "hierarchy_path", "uid_hash", "DicomdirLayout",
           "LAYOUTS", "NA"]

logger = logging.getLogger(__name__)

NA = "NA"
LAYOUTS = ("flat", "hierarchy", "dicomdir")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}
#: hex digits of the SOP Instance UID's hash in a hierarchy file name (64 bits)
INSTANCE_HASH_DIGITS = 16
MAX_INSTANCES_PER_STUDY = 99999  # IM_nnnnn: a File ID component has at most 8 characters


def clean_component(value: object, max_len: int = 64) -> str:
    """Return ``value`` as a file-system-safe name component.

    Accents are dropped (NFKD), every run of characters other than ASCII letters,
    digits, ``-`` and ``_`` becomes one ``_``; leading/trailing ``_``/``-`` are
    stripped; the result is cut to ``max_len``. Empty or missing gives ``"NA"``; a
    Windows device name (``CON``, ``NUL``, ``COM1``...) gets a leading ``_``.
    """
    if value is None:
        return NA
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    text = _UNSAFE.sub("_", text).strip("_-")[:max_len].rstrip("_-")
    if not text:
        return NA
    if text.upper() in _WINDOWS_RESERVED:
        text = "_" + text
    return text


#: Names of OUT's own folders (quarantine, QC report, packages, state): a subject folder
#: of that name would be left out of ``verify`` and of a release
RESERVED_FOLDERS = frozenset({"quarantine", "report", "packages", "pixeldeid", ".pixeldeid"})


def subject_component(value: object) -> str:
    """:func:`clean_component` of a Patient ID for the subject folder, with a leading ``_``
    where it would be one of :data:`RESERVED_FOLDERS` (also in another letter case: a
    case-insensitive file system), and with 4 hex digits of the ID's hash where cleaning
    changed it (``P.1`` and ``P/1`` would both be ``P_1``: two patients in one folder)."""
    text = clean_component(value, 64)
    if value is not None and text != str(value):
        text = f"{text[:59]}_{hashlib.sha256(str(value).encode()).hexdigest()[:4]}"
    return "_" + text if text.lower() in RESERVED_FOLDERS else text


def uid_hash(uid: object, n: int) -> str:
    """First ``n`` hex digits of SHA-256 of a UID (``"NA"``-hash when missing)."""
    return hashlib.sha256(str(uid or "").strip().encode()).hexdigest()[:n]


def _valid_uid(ds: Dataset, keyword: str) -> str:
    uid = str(ds.get(keyword, "") or "").strip()
    if not uid or len(uid) > 64 or not _UID.match(uid):
        raise DeidError(f"{keyword} missing or not a valid UID; cannot name the output file")
    return uid


def _date(ds: Dataset, keyword: str = "StudyDate") -> str:
    value = str(ds.get(keyword, "") or "").strip()
    return value if len(value) == 8 and value.isdigit() else NA


def _number(ds: Dataset, keyword: str, width: int = 0) -> str:
    value = ds.get(keyword)
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return NA
    return f"{n:0{width}d}" if width else str(n)


def flat_name(ds: Dataset) -> PurePosixPath:
    """``<SOPInstanceUID>.dcm`` of the de-identified dataset.

    Raises
    ------
    DeidError
        SOP Instance UID missing or not a valid UID (never used as a path then).
    """
    return PurePosixPath(f"{_valid_uid(ds, 'SOPInstanceUID')}.dcm")


def hierarchy_path(ds: Dataset) -> PurePosixPath:
    """HIRO type 1 relative path of a de-identified instance.

    ``<PatientID>/study_<StudyDate>_<6 hex>_<StudyDescription>/``
    ``<Modality><SeriesNumber>_<SeriesDescription>_<3 hex>/<InstanceNumber:05d>_<16 hex>.dcm``

    The instance name holds :data:`INSTANCE_HASH_DIGITS` hex digits of the SOP Instance
    UID's hash: many series repeat one Instance Number (or have none), and 20 bits let
    distinct instances collide by chance.

    Raises
    ------
    DeidError
        SOP Instance UID missing or invalid.
    """
    sop = _valid_uid(ds, "SOPInstanceUID")
    subject = subject_component(ds.get("PatientID") or None)
    study = "_".join([
        "study", _date(ds), uid_hash(ds.get("StudyInstanceUID"), 6),
        clean_component(ds.get("StudyDescription") or None, 48),
    ])
    modality = clean_component(ds.get("Modality") or None, 16)
    series = "_".join([
        f"{modality}{_number(ds, 'SeriesNumber')}",
        clean_component(ds.get("SeriesDescription") or None, 48),
        uid_hash(ds.get("SeriesInstanceUID"), 3),
    ])
    instance = f"{_number(ds, 'InstanceNumber', 5)}_{uid_hash(sop, INSTANCE_HASH_DIGITS)}.dcm"
    return PurePosixPath(subject, study, series, instance)


def _study_key(ds: Dataset) -> tuple[str, str]:
    return subject_component(ds.get("PatientID") or None), uid_hash(ds.get("StudyInstanceUID"), 6)


# Type 1 attributes of the PATIENT/STUDY/SERIES/IMAGE directory records that a
# de-identified dataset may have emptied; the record (not the instance) gets a dummy.
_RECORD_TYPE1 = {"PatientID": "LO", "StudyDate": "DA", "StudyTime": "TM", "StudyID": "SH",
                 "Modality": "CS", "SeriesNumber": "IS", "InstanceNumber": "IS"}


# Directory records whose Content Sequence holds only the root's HAS CONCEPT MOD items
# (PS3.3 F.5.26 SR Document, F.5.27 Key Object Document); pydicom copies the whole tree.
_CONCEPT_MOD_RECORDS = ("SR DOCUMENT", "KEY OBJECT DOC")


def _dt_sort_key(value: str) -> tuple[int, object]:
    """Sort key of a DT value: parsed and in UTC where possible, else the text itself."""
    try:
        dt = DT(value)
    except (ValueError, TypeError):
        return 0, value
    offset = dt.utcoffset()
    return 1, dt.replace(tzinfo=None) - offset if offset is not None else dt


def _latest_verification(ds: Dataset) -> str | None:
    """The latest Verification DateTime of the Verifying Observer Sequence, or None."""
    values = [str(item.get("VerificationDateTime", "") or "").strip()
              for item in ds.get("VerifyingObserverSequence") or []]
    values = [v for v in values if v]
    if not values:
        return None
    return max(values, key=_dt_sort_key)


def _conform_record(record: Dataset, ds: Dataset) -> None:
    """Make pydicom's leaf directory ``record`` of ``ds`` follow PS3.3 Annex F.

    * SR DOCUMENT / KEY OBJECT DOC: the Content Sequence keeps only the HAS CONCEPT
      MOD items of the root (pydicom copies the whole content tree: CONTAINS and HAS
      OBS CONTEXT items, references to instances the record has no evidence for); it
      is removed when none remain.
    * SR DOCUMENT of a VERIFIED report: Verification DateTime (Type 1C), the latest
      one of the Verifying Observer Sequence (a dummy if the instance has none).
    """
    kind = str(record.get("DirectoryRecordType", "")).strip()
    if kind in _CONCEPT_MOD_RECORDS and "ContentSequence" in record:
        keep = [item for item in record.ContentSequence
                if str(item.get("RelationshipType", "")).strip() == "HAS CONCEPT MOD"]
        if keep:
            record.ContentSequence = Sequence(keep)
        else:
            del record.ContentSequence
    if kind == "SR DOCUMENT":
        verified = str(record.get("VerificationFlag", "")).strip().upper() == "VERIFIED"
        if verified and not str(record.get("VerificationDateTime", "") or "").strip():
            record.VerificationDateTime = _latest_verification(ds) or dummy_value("DT")


class _Study:
    def __init__(self) -> None:
        self.fs = FileSet()
        self.instances: list[tuple[FileInstance, Path]] = []


class DicomdirLayout:
    """Write de-identified instances as one DICOM file-set (DICOMDIR) per study.

    Files go to ``root/<PatientID>/study_<6 hex>_<YYYYMMDD>/DICOM/IM_nnnnn`` as they
    are added; :meth:`close` writes each study's ``DICOMDIR`` (atomically) with
    :class:`pydicom.fileset.FileSet` records. Reserved files that were never written
    are left out of the DICOMDIR. SR DOCUMENT and KEY OBJECT DOC records are made to
    follow PS3.3 F.5.26/F.5.27 (pydicom copies the whole SR content tree into them).

    Parameters
    ----------
    root : path
        Output root folder.

    Examples
    --------
    >>> with DicomdirLayout(out) as layout:  # doctest: +SKIP
    ...     for ds in cleaned:
    ...         layout.add(ds)
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._studies: dict[PurePosixPath, _Study] = {}
        self._study_dirs: dict[tuple[str, str], PurePosixPath] = {}
        self._lock = threading.Lock()
        self._closed = False
        #: the study folders (relative to ``root``) whose DICOMDIR :meth:`close` wrote
        self.study_dirs: set[PurePosixPath] = set()

    def __enter__(self) -> DicomdirLayout:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __len__(self) -> int:
        return sum(len(s.instances) for s in self._studies.values())

    def reserve(self, ds: Dataset) -> Path:
        """Register a de-identified instance and return the path to write it to.

        The directory records are built now, so an instance pydicom cannot index
        (unknown SOP Class) fails here, before anything is written.

        Raises
        ------
        DeidError
            Layout closed, invalid SOP Instance UID, a study with more than 99999
            instances, a duplicate SOP Instance UID, or no directory record for the
            SOP Class.
        """
        if self._closed:
            raise DeidError("DicomdirLayout is closed")
        _valid_uid(ds, "SOPInstanceUID")
        header = Dataset()
        for elem in ds:
            if elem.tag < 0x7FE00000:
                header.add(copy.deepcopy(elem))
        header.file_meta = copy.deepcopy(getattr(ds, "file_meta", Dataset()))
        for keyword, vr in _RECORD_TYPE1.items():
            if not str(header.get(keyword, "") or "").strip():
                header.add_new(keyword, vr, dummy_value(vr) if vr != "SH" else NA)
        if "TransferSyntaxUID" not in header.file_meta:
            raise DeidError("dataset has no Transfer Syntax UID in its file meta")
        with self._lock:
            # the first instance of a study fixes its folder name (date included)
            key = _study_key(ds)
            rel = self._study_dirs.setdefault(
                key, PurePosixPath(key[0], f"study_{key[1]}_{_date(ds)}"))
            study = self._studies.setdefault(rel, _Study())
            n = len(study.instances) + 1
            if n > MAX_INSTANCES_PER_STUDY:
                raise DeidError(f"more than {MAX_INSTANCES_PER_STUDY} instances in one study")
            try:
                instance = study.fs.add(header)
            except (ValueError, KeyError) as exc:
                raise DeidError(f"cannot index the instance in a DICOMDIR: {exc}") from exc
            if any(i is instance for i, _ in study.instances):
                raise DeidError("duplicate SOP Instance UID in one study")
            _conform_record(instance.node._record, header)
            file_id = ["DICOM", f"IM_{n:05d}"]
            instance.node._record.ReferencedFileID = file_id
            path = self.root.joinpath(rel, *file_id)
            study.instances.append((instance, path))
        return path

    def add(self, ds_or_path: Dataset | str | os.PathLike, *, move: bool = False) -> Path:
        """Register one de-identified instance and put it in place; return its path.

        Parameters
        ----------
        ds_or_path : Dataset or path
            A dataset is written (atomically). A path names an already de-identified
            DICOM file (e.g. in a staging folder): it is copied atomically, or moved
            with ``move=True`` (``os.replace`` on the same file system).
        move : bool
            Move rather than copy a file given by path.
        """
        if isinstance(ds_or_path, Dataset):
            path = self.reserve(ds_or_path)
            with atomic_output(path) as fh:
                ds_or_path.save_as(fh, enforce_file_format=True)
            return path
        src = Path(ds_or_path)
        try:
            header = dcmread(src, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise DeidError(f"cannot read the instance to add: {exc}") from exc
        path = self.reserve(header)
        path.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.replace(src, path)
                return path
            except OSError:  # another file system: copy, then remove the source
                pass
        else:
            # a hard link costs no space; atomically replaces what a rerun put there before
            tmp = path.with_name(f".pixeldeid-tmp-link-{path.name}")
            try:
                if path.exists() and os.path.samefile(src, path):
                    return path  # a rerun: already in place
                tmp.unlink(missing_ok=True)
                os.link(src, tmp)
                os.replace(tmp, path)
                return path
            except OSError:  # no hard links here: copy
                tmp.unlink(missing_ok=True)
        with atomic_output(path) as fh, open(src, "rb") as fin:
            shutil.copyfileobj(fin, fh, 1 << 20)
        if move:
            src.unlink()
        return path

    def close(self) -> list[Path]:
        """Write the DICOMDIR of every study; return their paths. Idempotent."""
        if self._closed:
            return []
        self._closed = True
        written = []
        for rel, study in sorted(self._studies.items()):
            present = [(i, p) for i, p in study.instances if p.is_file()]
            missing = [i for i, p in study.instances if not p.is_file()]
            for instance in missing:
                study.fs.remove(instance)
            if missing:
                logger.warning("%d reserved instance(s) of %s were not written; left out of "
                               "its DICOMDIR", len(missing), rel)
            path = self.root / rel / "DICOMDIR"
            if not present:  # nothing of the study is left: neither is its DICOMDIR
                _remove_study(self.root / rel)
                continue
            # a fixed File-set UID (pydicom draws a random one), so a rerun writes the same bytes
            digest = hashlib.sha256(b"pixeldeid-dicomdir\x00" + str(rel).encode()).digest()
            study.fs.UID = "2.25." + str(int.from_bytes(digest[:16], "big"))
            with atomic_output(path) as fh:
                # FileSet.write() would impose its own PTxxxxxx/... File IDs; the records
                # already carry ours, so only the DICOMDIR itself is encoded here
                study.fs._write_dicomdir(DicomFileLike(fh))
            written.append(path)
            _prune_study(self.root / rel, {p.name for _, p in present})
            self.study_dirs.add(rel)
        self._studies.clear()
        return written


#: the folder of a study in the DICOMDIR layout, and the names of its instance files
_STUDY_DIR = re.compile(r"study_[0-9a-f]{6}_(\d{8}|NA)")
_INSTANCE_FILE = re.compile(r"IM_\d{5}")
_TMP_LINK = ".pixeldeid-tmp-link-"


def _prune_study(study: Path, keep: set[str]) -> list[Path]:
    """Remove the instance files of a study's ``DICOM/`` folder that its DICOMDIR no longer
    references (``keep``: the names it references): a withdrawn input's file, or the last
    numbers of a study that has fewer instances now. Return the files removed."""
    removed = []
    folder = study / "DICOM"
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return removed
    for name in names:
        f = folder / name
        ours = _INSTANCE_FILE.fullmatch(name) or name.startswith(_TMP_LINK)
        if name in keep or not ours or f.is_dir() and not f.is_symlink():
            continue
        f.unlink()
        removed.append(f)
        logger.info("removed from the release (no longer in its DICOMDIR): %s", f)
    return removed


def _remove_study(study: Path) -> None:
    """Remove a study folder of the DICOMDIR layout that no staged instance belongs to any
    more: its DICOMDIR, its instance files, then the folders left empty (its patient's too).
    Files pixeldeid did not write are left, with a warning."""
    dicomdir = study / "DICOMDIR"
    if dicomdir.is_file() or dicomdir.is_symlink():
        dicomdir.unlink()  # first: a DICOMDIR never names a file that is gone
        logger.info("removed from the release (its instances were withdrawn): %s", dicomdir)
    _prune_study(study, set())
    for folder in (study / "DICOM", study, study.parent):
        try:
            folder.rmdir()
        except OSError:
            if folder != study.parent and folder.is_dir():
                logger.warning("left in the release (not written by pixeldeid): %s", folder)
            return


def prune_studies(root: str | os.PathLike, keep: set[PurePosixPath]) -> None:
    """Remove every study folder of the DICOMDIR layout under ``root``
    (``<PatientID>/study_<6 hex>_<date>``) that is not in ``keep``: what a rebuild of the
    file-sets no longer produces (its inputs were withdrawn, or moved to another study)."""
    root = Path(root)
    for patient in sorted(root.iterdir()):
        if patient.name.startswith(".") or patient.is_symlink() or not patient.is_dir():
            continue
        for study in sorted(patient.iterdir()):
            rel = PurePosixPath(patient.name, study.name)
            if (_STUDY_DIR.fullmatch(study.name) and rel not in keep and study.is_dir()
                    and not study.is_symlink()):
                _remove_study(study)
