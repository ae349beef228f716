"""Public API of the DICOM header core.

Examples
--------
>>> from pixeldeid.api import DeidConfig, Deidentifier
>>> deid = Deidentifier(DeidConfig(profile="tcia-like", key=b"project key"))  # doctest: +SKIP
>>> ds = deid.deidentify_dataset(pydicom.dcmread("in.dcm"))                    # doctest: +SKIP
>>> deid.write(ds, "out/new.dcm")                                              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import struct
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.charset import convert_encodings, decode_bytes, default_encoding
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID
from pydicom.valuerep import PN_DELIMS, TEXT_VR_DELIMS

from . import __version__
from . import dates as _dates
from .atomic import atomic_output
from .dsvalues import (
    dictionary_vr,
    garbled_text,
    keyword_of,
    new_item,
    new_sequence,
    peek,
    set_meta,
    set_text,
    supplied_value_problem,
    tag_of,
)
from .dummy import DUMMY_VALUES
from .engine import WalkContext, Walker, cleans_text, removed_text_values
from .errors import DeidError, InputError, ProfileError
from .overlays import overlay_planes, remove_planes
from .profiles import Profile, load_profile
from .pseudonyms import PseudonymMap, check_prefix
from .rawds import FileSlice
from .rawwrite import BULK_TAGS, encode_part10
from .standard import DEID_METHOD_CODES, creator_key, release
from .textclean import (
    dicom_vocabulary,
    distinctive,
    find_folded,
    find_tokens,
    identity_tokens,
    institution_words,
    token_matches,
    words_of,
)
from .uids import STRUCTURAL_UID_KEYWORDS, UIDMapper, is_structural

if TYPE_CHECKING:
    from .burnedin.stage import PixelSettings

logger = logging.getLogger(__name__)

#: Implementation Class UID of pixeldeid (a 2.25 UID derived from the project name).
IMPLEMENTATION_CLASS_UID = "2.25.201913775849326370402316823442906584619"
IMPLEMENTATION_VERSION_NAME = "PIXELDEID_" + __version__.replace(".", "")[:6]

MEDIA_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"
JPEG_TRANSFER_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
    # JPEG 2000 Part 2 (multi-component), and the retired T.81 processes (extended,
    # spectral selection, full progression, hierarchical): the same marker syntax
    "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93",
    *(f"1.2.840.10008.1.2.4.{n}" for n in (*range(52, 57), *range(58, 67))),
})
#: Header values of the patient that must not survive anywhere outside the pixel data.
IDENTITY_KEYWORDS = ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthName",
                     "PatientMotherBirthName", "AccessionNumber", "PatientAddress",
                     "PatientTelephoneNumbers", "MedicalRecordLocator", "OtherPatientNames")
#: The person names among :data:`IDENTITY_KEYWORDS` (their parts and full forms are tokens,
#: :func:`pixeldeid.textclean.name_forms`).
NAME_KEYWORDS = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
_IDENTITY_TAGS = tuple(tag_of(kw) for kw in IDENTITY_KEYWORDS)
_NAME_TAGS = tuple(tag_of(kw) for kw in NAME_KEYWORDS)
_OTHER_IDS_TAG = tag_of("OtherPatientIDsSequence")
_PATIENT_ID_TAG, _BIRTH_DATE_TAG = tag_of("PatientID"), tag_of("PatientBirthDate")
#: VRs whose values are no text (PS3.5 6.2): numbers, tags, bytes and sequences.
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "US", "SS", "UL", "SL", "FL",
                         "FD", "AT", "SV", "UV", "SQ", "OB or OW", "US or SS", "US or OW"})


def _check_text_vr(ds, tag: int) -> None:
    """Raise DeidError when the identity attribute ``tag`` of ``ds`` is stored with a VR
    whose value is no text (a damaged VR: Patient's Name as OB, US, FD...): its value
    gives the searches for the patient's identity no token, so the name would stay in
    cleaned free text. Refused rather than guessed at (fail closed)."""
    vr = getattr(ds._dict[tag], "VR", None)
    if vr in _BINARY_VRS:
        raise DeidError(f"{keyword_of(tag)} is stored with VR {vr}, not as text: it cannot "
                        f"be read for the identity search (damaged header?)")


#: Shortest token the residual check searches compressed Pixel Data for (see _residual).
PIXEL_TOKEN_MIN = 5

#: The words of pixeldeid's own dummy values: a name that is one of them ("ANONYMIZED", an
#: input de-identified before) cannot be told apart from the dummies written in its place.
_DUMMY_WORDS = frozenset(str(v).lower() for v in DUMMY_VALUES.values()
                         if isinstance(v, str) and v.isalpha())

@dataclass(frozen=True)
class SiteInfo:
    """Clinical trial and site fields written when the user supplies them.

    The site, sponsor and protocol fields make the Clinical Trial Subject Module, whose
    Clinical Trial Sponsor Name and Protocol ID are Type 1: one of those fields without
    both of these is refused. The time point fields (Clinical Trial Study Module) may come
    alone.
    """

    site_id: str | None = None
    site_name: str | None = None
    sponsor: str | None = None
    protocol_id: str | None = None
    protocol_name: str | None = None
    time_point_id: str | None = None
    time_point_description: str | None = None

    def __post_init__(self) -> None:
        for name, kw in _SITE_FIELDS.items():
            value = getattr(self, name)
            if value is not None:
                limit = 1024 if kw == "ClinicalTrialTimePointDescription" else 64  # ST, else LO
                why = supplied_value_problem(value, limit)
                if why:
                    raise ProfileError(f"{kw}: {why}")
        subject = [_SITE_FIELDS[n] for n in _SUBJECT_FIELDS if getattr(self, n)]
        missing = [_SITE_FIELDS[n] for n in ("sponsor", "protocol_id") if not getattr(self, n)]
        if subject and missing:
            raise ProfileError(
                f"{', '.join(subject)} given without {' and '.join(missing)}: the Clinical "
                f"Trial Subject Module needs both (Type 1; --trial-sponsor, --trial-protocol-id)")


#: SiteInfo field -> the attribute it is written to (site_name to Institution Name too).
_SITE_FIELDS = {"site_id": "ClinicalTrialSiteID", "site_name": "ClinicalTrialSiteName",
                "sponsor": "ClinicalTrialSponsorName", "protocol_id": "ClinicalTrialProtocolID",
                "protocol_name": "ClinicalTrialProtocolName",
                "time_point_id": "ClinicalTrialTimePointID",
                "time_point_description": "ClinicalTrialTimePointDescription"}
#: the SiteInfo fields of the Clinical Trial Subject Module
_SUBJECT_FIELDS = ("site_id", "site_name", "sponsor", "protocol_id", "protocol_name")


@dataclass
class DeidConfig:
    """Settings of a header de-identification run.

    Parameters
    ----------
    profile : str or Profile
        A shipped profile name (``basic``, ``tcia-like``, ``limited-dataset``) or a path.
    options : sequence of str
        Extra PS3.15 option names (``retain-longitudinal-modified-dates`` ...).
    key : bytes
        The project key for UIDs, date offsets and pseudonym hashing.
    pseudonym_prefix : str
        Patient pseudonyms are ``PREFIX_001``... unless a subject map supplies them.
    subject_map, uid_map : dict
        Exact original -> new values (``--map-csv``).
    uid_map_by_key : dict
        UID overrides of earlier batches into the same output folder, by the UID the key
        would give (:mod:`pixeldeid.uidstate`; set by the batch).
    pseudonym_db : path, optional
        SQLite file remembering pseudonyms across batches (memory only when None).
    date_offset_days, date_offset_seconds : int, optional
        A fixed offset for every patient instead of the keyed per-patient one.
    pixels : PixelSettings, optional
        The burned-in text stage (:mod:`pixeldeid.burnedin.stage`); None: pixels untouched.
    """

    profile: str | Profile = "basic"
    options: tuple[str, ...] = ()
    key: bytes = b""
    pseudonym_prefix: str | None = None
    subject_map: dict[str, str] = field(default_factory=dict)
    uid_map: dict[str, str] = field(default_factory=dict)
    uid_map_by_key: dict[str, str] = field(default_factory=dict)
    pseudonym_db: str | os.PathLike | None = None
    date_offset_days: int | None = None
    date_offset_seconds: int | None = None
    site: SiteInfo = field(default_factory=SiteInfo)
    strip_jpeg_metadata: bool = True
    residual_check: bool = True
    pixels: PixelSettings | None = None

    def __post_init__(self) -> None:
        if self.pseudonym_prefix is not None:
            check_prefix(self.pseudonym_prefix)
        days = self.date_offset_days
        if days is not None and abs(days) > _dates.MAX_FIXED_SHIFT_DAYS:
            raise ProfileError(f"date offset {days} days: give at most "
                               f"{_dates.MAX_FIXED_SHIFT_DAYS} days (200 years) either way")
        if days == 0 and not self.date_offset_seconds:
            raise ProfileError("date offset 0 days would release the real dates marked as "
                               "modified: give a non-zero offset, or leave it out for a keyed "
                               "offset per patient")


@dataclass
class InstanceResult:
    """What happened to one instance (no identity in it: new values only)."""

    sop_instance_uid: str
    sop_class_uid: str
    patient_pseudonym: str
    modality: str
    removed_jpeg_segments: list[str] = field(default_factory=list)


def read_dicom(path: str | os.PathLike) -> Dataset:
    """Read a DICOM Part 10 file fully, raising :class:`InputError` with a clear reason."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(p)) from None
    if size == 0:
        raise InputError("zero-byte file", str(p))
    try:
        ds = pydicom.dcmread(p, force=False)
    except InvalidDicomError:
        raise InputError("not a DICOM Part 10 file (no DICM preamble)", str(p)) from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, IndexError, struct.error,
            BytesLengthException) as exc:
        raise InputError(f"unreadable or truncated DICOM: {exc}".splitlines()[0], str(p)) from None
    reason = _tail_problem(ds, p, size) or instance_problem(ds)
    if reason:
        raise InputError(reason, str(p))
    return ds


#: VRs written with a 4-byte length in explicit VR (PS3.5 Table 7.1-1)
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT",
                       "UV"})


def _tail_problem(ds: Dataset, path: Path, size: int) -> str | None:
    """Why the bytes after the last element of ``ds`` (read from ``path``, ``size`` bytes)
    say the file was cut, or None when the data set ends where the file does.

    pydicom stops without a word where fewer bytes than an element header remain, and a
    sequence or encapsulated Pixel Data cut in its last delimiter reads whole: the file
    then ends inside an element header, or without the 8-byte Sequence Delimitation Item.
    (A file cut exactly between two elements cannot be told from a whole one.)
    """
    ts = UID(str(peek(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""))
    if not ds._dict or not ts.is_transfer_syntax or ts.is_deflated:
        return None  # (no transfer syntax: instance_problem says so)
    elem = ds._dict[max(ds._dict)]
    tell = elem.value_tell if isinstance(elem, RawDataElement) else elem.file_tell
    if tell is None:
        return None
    implicit, little = getattr(ds, "original_encoding", (ts.is_implicit_VR, ts.is_little_endian))
    width = 4 if implicit or elem.VR in _LONG_VRS else 2
    with open(path, "rb") as fh:
        fh.seek(tell - width)
        length = int.from_bytes(fh.read(width), "little" if little else "big")
        if length == 0xFFFFFFFF:
            fh.seek(max(size - 8, 0))
            last = fh.read(8)
            delimiter = b"\xfe\xff\xdd\xe0" if little else b"\xff\xfe\xe0\xdd"
            if last != delimiter + bytes(4):
                return (f"truncated: {Tag(elem.tag)} of undefined length does not end with "
                        f"its Sequence Delimitation Item")
            return None
    if tell + length < size:
        return (f"truncated: the file ends with {size - tell - length} byte(s) after its last "
                f"element {Tag(elem.tag)} (an element header cut short?)")
    return None


#: The institution attributes that Retain Institution Identity keeps (Table E.1-1).
INSTITUTION_KEYWORDS = ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName")


def _institution_words(ds) -> frozenset[str]:
    """Lower-case words of the institution values of ``ds`` (top level)."""
    words: set[str] = set()
    for kw in INSTITUTION_KEYWORDS:
        v = peek(ds, kw)
        for x in (v if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue"
                  else [v]):
            words |= _word_set(x)
    return frozenset(words)


def _lists_references(ds) -> bool:
    """Whether ``ds`` has the Common Instance Reference Module: Referenced Series Sequence
    or Studies Containing Other Referenced Instances Sequence (PS3.3 C.12.2)."""
    return 0x00081115 in ds._dict or 0x00081200 in ds._dict


def _word_set(text) -> set[str]:
    """Lower-case words (letters and digits) of ``text``."""
    return {w.lower() for w in re.findall(r"[^\W_]+", str(text or ""))}


def instance_problem(ds: Dataset) -> str | None:
    """Why ``ds``, as read from a file, is not an instance to de-identify, or None.

    No File Meta, a DICOMDIR, no SOP UIDs, a value shorter than its declared length, an
    image whose pixel data is short or missing (a file cut at an element boundary reads
    without error: an image without its pixels is the sign, PS3.3 Image Pixel Module).
    """
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        return "no File Meta Information / Transfer Syntax UID"
    try:
        _encapsulated(str(meta.TransferSyntaxUID))
    except DeidError as exc:
        return exc.reason
    sop_class = str(peek(meta, "MediaStorageSOPClassUID", "") or "") or \
        str(peek(ds, "SOPClassUID", "") or "")
    if sop_class == MEDIA_DIRECTORY_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return ("DICOMDIR (media directory) is not an instance; use --layout dicomdir to "
                "write a new one")
    if isinstance(ds, Dataset) and len(ds) == 0:  # (the fast path declines these itself)
        # pydicom gives an empty data set when the file ends inside an element of undefined
        # length (encapsulated pixel data cut by an interrupted copy)
        return "unreadable or truncated DICOM: the data set cannot be read to its end"
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        return "missing SOP Class UID or SOP Instance UID"
    # (the fast path's parser declines all that _damaged looks for)
    reason = (None if getattr(ds, "parsed_strictly", False)
              else _damaged(ds, filename=getattr(ds, "filename", None))) \
        or _incomplete(ds)
    if reason:
        return reason
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")) and (
            ("Rows" in ds and "Columns" in ds)
            or "Image Storage" in UID(str(peek(ds, "SOPClassUID"))).name):
        return "image without Pixel Data (truncated?)"
    return _ends_early(ds)


def _ends_early(ds: Dataset) -> str | None:
    """Why ``ds`` looks cut between two elements (a copy that stopped there reads without
    error), or None: it ends before its Study or Series Instance UID, which every
    composite instance has (Type 1). A cut after them is not seen here (images: see
    :func:`instance_problem`)."""
    last = max(ds._dict)
    missing = [t for t in (_STUDY_UID, _SERIES_UID) if t not in ds._dict and t > last]
    if not missing:
        return None
    return (f"truncated? the file ends at {Tag(last)}, before its "
            f"{'Study' if missing[0] == _STUDY_UID else 'Series'} Instance UID")


_STUDY_UID, _SERIES_UID = 0x0020000D, 0x0020000E


def patient_key(ds: Dataset) -> str:
    """The original patient of ``ds`` as pseudonyms and date offsets know it: the Patient ID,
    or the name and birth date when there is no ID."""
    pid = str(peek(ds, "PatientID", "") or "").strip()
    if pid:
        return pid
    return "NAME:" + str(peek(ds, "PatientName", "") or "") + ":" + str(
        peek(ds, "PatientBirthDate", "") or "")


def _birth_date_forms(ds: Dataset) -> list[str]:
    """Patient's Birth Date as written in free text (:func:`pixeldeid.dates.written_forms`).
    The placeholder 19000101 ("not known") is no identity, and it is the dummy date that
    D writes."""
    bd = str(peek(ds, "PatientBirthDate", "") or "").strip()
    if len(bd) == 8 and bd.isdigit() and bd != DUMMY_VALUES["DA"]:
        return _dates.written_forms(bd)
    return []


def _stored_as_un(ds: Dataset, elem, filename) -> bool:
    """Whether the sequence ``elem`` of ``ds`` (explicit VR) is stored as UN of undefined
    length in ``filename``: its items are then implicit VR (PS3.5 6.2.2), not damaged.
    Read from the file (pydicom keeps no trace of the VR it replaced): the 12 bytes before
    its value must be its tag, ``UN``, two zero bytes and the undefined length."""
    if not isinstance(filename, (str, os.PathLike)) or not elem.is_undefined_length \
            or elem.file_tell is None or elem.file_tell < 12:
        return False
    little = getattr(ds, "original_encoding", (None, True))[1] is not False
    order = "<" if little else ">"
    want = struct.pack(f"{order}HH", elem.tag >> 16, elem.tag & 0xFFFF) + b"UN\0\0" + \
        b"\xff" * 4
    try:
        with open(filename, "rb") as fh:
            fh.seek(elem.file_tell - 12)
            return fh.read(12) == want
    except OSError:
        return False


def _damaged(ds: Dataset, depth: int = 0, filename=None) -> str | None:
    """Why ``ds``, as read, looks damaged at some depth (None: it does not).

    A raw value shorter than its declared length marks a truncated file. Elements out of
    increasing tag order (PS3.5 7.1) mark a damaged tag, whose value then
    sits under another attribute's name. Control bytes in a text value mark a damaged
    length: the value swallowed the element headers after it. A sequence item of an
    explicit VR data set read as implicit VR is one where an element's VR bytes were no VR:
    pydicom then takes them for a length, and the value swallows the elements after it
    (cut short at the item's end, so it also shows as a short value). All are refused
    rather than guessed at.
    """
    prev = -1
    for tag, elem in ds._dict.items():
        if tag <= prev:
            return (f"elements out of order: {Tag(tag)} after {Tag(prev)}; damaged header?")
        prev = tag
        vr = getattr(elem, "VR", None)
        if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
            if len(elem.value) < elem.length != 0xFFFFFFFF:
                return (f"truncated: element {Tag(tag)}{' in a sequence item' if depth else ''}"
                        f" has {len(elem.value)} of {elem.length} bytes")
            if garbled_text(vr or dictionary_vr(tag), elem.value):
                return (f"element {Tag(tag)} holds control bytes in its text value (a damaged "
                        f"length that swallowed the elements after it?)")
        if depth >= 64 or not (vr == "SQ" or (vr is None and dictionary_vr(tag) == "SQ")):
            continue
        try:
            items = ds[tag].value or []
        except Exception as exc:  # noqa: BLE001 - pydicom parses sequences on access
            return f"unreadable sequence {Tag(tag)}: {exc}"
        implicit = getattr(ds, "original_encoding", (None, None))[0]
        for item in items:
            # (an empty item has no element whose VR could be misread: pydicom's guess of
            # its encoding, from the bytes of the item delimiter, means nothing)
            if item._dict and getattr(item, "original_encoding", (implicit,))[0] != implicit \
                    and not (implicit is False and _stored_as_un(ds, ds[tag], filename)):
                return (f"sequence {Tag(tag)} switches to "
                        f"{'explicit' if implicit else 'implicit'} VR (an element without a "
                        f"valid VR?); damaged header?")
            reason = _damaged(item, depth + 1, filename)
            if reason:
                return reason
    return None


def _incomplete(ds: Dataset) -> str | None:
    """Why the pixel data of ``ds`` is not what its attributes say: encapsulated (undefined
    length) under a native transfer syntax or native under an encapsulated one (what no
    stage would read right: a JPEG's COM segment under an Explicit VR label is copied as
    samples), or native pixel data shorter (truncated) or longer (frames no stage examines)
    than the image attributes say, beyond the pad byte to even length. None: it matches
    (values shorter than their declared length are :func:`_damaged`'s)."""
    if "PixelData" not in ds:
        return None
    ts = str(peek(ds.file_meta, "TransferSyntaxUID"))
    raw = ds._dict[0x7FE00010]
    undefined = _undefined_length(raw)
    if undefined != _encapsulated(ts):
        return (f"pixel data does not match its transfer syntax: "
                f"{'encapsulated' if undefined else 'native'} pixel data under "
                f"{'a native' if undefined else 'an encapsulated'} transfer syntax label "
                f"(damaged or relabelled file)")
    if undefined or "Rows" not in ds or "Columns" not in ds:
        return None
    try:
        rows, cols = int(peek(ds, "Rows")), int(peek(ds, "Columns"))
        spp = int(peek(ds, "SamplesPerPixel", 1))
        bits = int(peek(ds, "BitsAllocated", 16))
        frames = int(peek(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        return f"invalid image attributes: {exc}"
    samples = rows * cols * spp * frames
    if spp == 3 and str(peek(ds, "PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        samples = samples // 3 * 2  # Cb, Cr at half the horizontal rate (PS3.3 C.7.6.3.1.2)
    expected = (samples * bits + 7) // 8  # (Bits Allocated 1: frames packed, PS3.5 8.1.1)
    held = len(raw.value) if raw.value is not None else 0  # (a FileSlice has its length)
    if held < expected:
        return f"truncated pixel data: {held} of {expected} bytes"
    if held > expected + expected % 2 and not _zero_tail(raw.value, expected):
        # bytes past the declared frames are released unexamined (a burned-in frame more);
        # NUL padding (pydicom's MR_small_padded) holds no picture
        return f"pixel data holds {held - expected} bytes more than its {frames} frame(s)"
    return None


def _zero_tail(value, start: int) -> bool:
    """Whether the bytes of the pixel data ``value`` (bytes, or a FileSlice of the fast
    path) from ``start`` on are all NUL; more than ``start`` of them is taken as frames
    (not read)."""
    if len(value) - start > start:
        return False
    if isinstance(value, FileSlice):
        try:
            value = value.at(value.offset + start, len(value) - start).read()
        except OSError:
            return False
        start = 0
    return not bytes(value[start:]).strip(b"\0")


def _undefined_length(elem) -> bool:
    """Whether the element ``elem`` (raw as read, or converted) has undefined length."""
    length = getattr(elem, "length", None)
    if length is not None:
        return length == 0xFFFFFFFF
    return bool(getattr(elem, "is_undefined_length", False))


class Deidentifier:
    """Apply a profile to datasets with consistent UIDs, dates and pseudonyms."""

    def __init__(self, config: DeidConfig) -> None:
        if not config.key:
            raise DeidError("a project key is required (--key-file)")
        self.config = config
        profile = config.profile if isinstance(config.profile, Profile) else load_profile(config.profile)
        self.profile = profile.with_options(config.options)
        self.options = self.profile.options
        self.uids = UIDMapper(config.key, config.uid_map, config.uid_map_by_key)
        prefix = config.pseudonym_prefix or self.profile.pseudonym_prefix or "SUBJ"
        self.pseudonyms = PseudonymMap(config.pseudonym_db, config.key, prefix, config.subject_map)
        self._allow = frozenset((creator_key(a.creator), a.group, a.element)
                                for a in self.profile.private_allowlist)
        self._offsets: dict[str, _dates.DateOffset] = {}

    # -- per instance ----------------------------------------------------------------
    def offset_for(self, patient_id: str) -> _dates.DateOffset:
        off = self._offsets.get(patient_id)
        if off is None:
            seconds = self.config.date_offset_seconds
            if seconds is None and self.config.date_offset_days is not None:
                seconds = 0  # a supplied offset in days moves dates by whole days only
            off = _dates.offset_for(self.config.key, patient_id, days=self.config.date_offset_days,
                                    seconds=seconds)
            self._offsets[patient_id] = off
        return off

    def identity_values(self, ds: Dataset) -> list[str]:
        """The patient's identifying values of ``ds`` (for cleaning and residual checks):
        those of :data:`IDENTITY_KEYWORDS` (each value of a multi-valued one), the Patient
        ID of each Other Patient IDs Sequence item (not its issuer: no identity of the
        patient) and the birth date's written forms."""
        return self._identity(ds)[0]

    @staticmethod
    def _identity(ds: Dataset) -> tuple[list[str], list[str]]:
        """(:meth:`identity_values`, the person names among them (:data:`NAME_KEYWORDS`))
        of ``ds``, read once."""
        vals: list[str] = []
        names: list[str] = []
        for tag in _IDENTITY_TAGS:
            if tag in ds._dict:
                _check_text_vr(ds, tag)
                got = _values_of(ds, tag)
                vals.extend(got)
                if tag in _NAME_TAGS:
                    names.extend(got)
        if _OTHER_IDS_TAG in ds._dict:
            for item in _items_of(ds, "OtherPatientIDsSequence"):
                if _PATIENT_ID_TAG in item._dict:
                    _check_text_vr(item, _PATIENT_ID_TAG)
                vals.extend(_values_of(item, "PatientID"))
        if _BIRTH_DATE_TAG in ds._dict:
            _check_text_vr(ds, _BIRTH_DATE_TAG)
        return vals + _birth_date_forms(ds), names

    def deidentify_dataset(self, ds: Dataset, source: str | None = None) -> Dataset:
        """De-identify ``ds`` in place and return it.

        Raises
        ------
        DeidError
            When a value that must be transformed is invalid for its VR, or identity is
            still present after de-identification (the caller quarantines the file).
        """
        try:
            return self._deidentify(ds)
        except DeidError as exc:
            if source and not exc.path:
                raise type(exc)(exc.reason, source) from None
            raise

    def _deidentify(self, ds: Dataset) -> Dataset:
        opts = self.options
        original_pid = patient_key(ds)
        pseudonym = self.pseudonyms(original_pid)
        offset = self.offset_for(original_pid)
        id_values, names = self._identity(ds)
        # With full dates retained, a kept date equal to the birth date (imaging on the day
        # of birth) is allowed by the profile: the birth date is not a residual-check token.
        birth_forms = (set(_birth_date_forms(ds)) if "retain-longitudinal-full-dates" in opts
                       else set())
        # With the institution retained, a word of its kept name or address is allowed too
        # (a patient living in the hospital's town: the town is in the kept address)
        kept_words = (_institution_words(ds) if "retain-institution-identity" in opts
                      else frozenset())
        tokens = identity_tokens(id_values, names=names)
        clean_tokens = tokens
        if cleans_text(opts):
            words = words_of(removed_text_values(ds, opts)) - {pseudonym}
            clean_tokens = sorted(set(tokens) | words, key=len, reverse=True)
        sop_class = str(peek(ds, "SOPClassUID"))

        age = self._age(ds)
        overlays = overlay_planes(ds)
        had_responsible = [kw for kw in ("ResponsiblePerson", "ResponsibleOrganization") if kw in ds]

        # what the residual check of encode() searches for (it travels with the dataset):
        # the patient's identity and every other person's name in the file. The free text
        # of attributes the table does not list loses the other people's names in the walk
        # ("Annotated by Dr <name>"); the patient's own identity there quarantines the
        # file (free text holding it is a sign of more that no search knows of)
        ours = _word_set(pseudonym) | {pseudonym.lower()}  # written by us: no finding
        chosen = self.pseudonyms.chosen_words(pseudonym)
        if pseudonym != str(peek(ds, "PatientID", "") or "") and any(
                t.lower() in chosen for t in tokens):
            # (a supplied pseudonym or a prefix that is the patient's surname, or holds the
            # ID: its words would be exempt from the search below. Mapping an ID to itself
            # keeps it on purpose.)
            raise DeidError("the pseudonym given to this patient holds the patient's own "
                            "name, ID or birth date (--map-csv, --subject-map or --prefix); "
                            "not released")

        def allowed(t: str) -> bool:  # kept by the options, or written by us
            return t.lower() not in kept_words and t.lower() not in ours

        residual = [t for t in tokens if allowed(t) and t not in birth_forms]
        others = _other_person_names(ds)
        other_tokens = [t for t in _name_tokens(tuple(others)) if allowed(t)
                        and t.lower() not in _NAME_PLACEHOLDERS and _searchable(t)]
        residual += other_tokens
        uid_map = _RecordingUIDs(self.uids)
        ctx = WalkContext(options=opts, sop_class_uid=sop_class, uid_map=uid_map,
                          offset=offset, tokens=clean_tokens, private_allow=self._allow,
                          kept_text_tokens=tuple(other_tokens) + _site_tokens(ds, opts),
                          lists_references=_lists_references(ds))
        Walker(ctx).walk(ds)

        # Planes whose data was removed go whole (none dangling); planes kept in the pixel
        # data's unused bits are cleared and go too.
        if overlays[0] or overlays[1]:
            remove_planes(ds, *overlays)

        # Conditional companions of attributes the profile emptied (PS3.3 Patient Module).
        if not ds.get("ResponsiblePerson") and "ResponsiblePersonRole" in ds:
            del ds.ResponsiblePersonRole
        if "PatientSpeciesDescription" in ds or "PatientSpeciesCodeSequence" in ds:
            for kw in had_responsible:  # Type 2C for an animal: emptied, not removed
                if kw not in ds:
                    setattr(ds, kw, "")
        set_text(ds, "PatientID", pseudonym)
        set_text(ds, "PatientName", pseudonym)
        if age is not None:
            set_text(ds, "PatientAge", age)
        self._record(ds)
        self._site(ds, pseudonym)
        ds.file_meta = self._file_meta(ds)
        ds.preamble = b"\x00" * 128
        ds._pixeldeid_residual_tokens = residual
        ds._pixeldeid_ctx = ctx  # (pixeldeid.derive walks the next instances in it)
        # and the instance UIDs this file's walk replaced (an original kept elsewhere, a
        # WADO URL in Retrieve URL, links the output to the source)
        ds._pixeldeid_residual_uids = sorted(uid_map.replaced)
        return ds

    def _age(self, ds: Dataset) -> str | None:
        if "retain-patient-characteristics" not in self.options:
            return None
        age = str(peek(ds, "PatientAge", "") or "").strip()
        if not age:
            at = str(peek(ds, "StudyDate", "") or peek(ds, "SeriesDate", "") or "")
            birth = str(peek(ds, "PatientBirthDate", "") or "")
            age = _dates.age_string(birth, at) or ""
        return _dates.clip_age(age) if age else None

    def _record(self, ds: Dataset) -> None:
        opts = sorted(self.options)
        set_text(ds, "PatientIdentityRemoved", "YES")
        methods = [f"pixeldeid {__version__}", f"DICOM PS3.15 {release()} Basic Profile"]
        methods += opts
        old = peek(ds, "DeidentificationMethod")
        if old:
            prev = [str(v) for v in (old if not isinstance(old, str) else [old])]
            methods = prev + [m for m in methods if m not in prev]
        set_text(ds, "DeidentificationMethod", [m[:64] for m in methods])
        self.add_method_code(ds, "basic")
        for o in opts:
            self.add_method_code(ds, o)
        if "retain-longitudinal-full-dates" in self.options:
            set_text(ds, "LongitudinalTemporalInformationModified", "UNMODIFIED")
        elif "retain-longitudinal-modified-dates" in self.options:
            set_text(ds, "LongitudinalTemporalInformationModified", "MODIFIED")
        else:
            set_text(ds, "LongitudinalTemporalInformationModified", "REMOVED")

    @staticmethod
    def add_method_code(ds: Dataset, name: str) -> None:
        """Add the CID 7050 code of ``name`` to De-identification Method Code Sequence."""
        value, meaning = DEID_METHOD_CODES[name]
        seq = peek(ds, "DeidentificationMethodCodeSequence")
        if seq is None:
            seq = new_sequence(ds, "DeidentificationMethodCodeSequence")
        if any(str(it.get("CodeValue", "")) == value for it in seq):
            return
        item = new_item(ds)
        set_text(item, "CodeValue", value)
        set_text(item, "CodingSchemeDesignator", "DCM")
        set_text(item, "CodeMeaning", meaning)
        seq.append(item)

    def _site(self, ds: Dataset, pseudonym: str) -> None:
        s = self.config.site
        if s.site_name:
            ds.InstitutionName = s.site_name
        for name, kw in _SITE_FIELDS.items():
            if getattr(s, name):
                setattr(ds, kw, getattr(s, name))  # checked by SiteInfo: one value of its VR
        if s.sponsor:  # (and the protocol ID: SiteInfo takes both or neither)
            for kw in ("ClinicalTrialProtocolName", "ClinicalTrialSiteID", "ClinicalTrialSiteName"):
                if kw not in ds:
                    setattr(ds, kw, "")  # Type 2 in the Clinical Trial Subject Module
            ds.ClinicalTrialSubjectID = pseudonym
        if s.time_point_description and "ClinicalTrialTimePointID" not in ds:
            ds.ClinicalTrialTimePointID = ""  # Type 2 in the Clinical Trial Study Module

    def _file_meta(self, ds: Dataset) -> FileMetaDataset:
        old = getattr(ds, "file_meta", None)
        ts = str(peek(old, "TransferSyntaxUID", "")) if old is not None else ""
        meta = FileMetaDataset()
        for keyword, value in (
                ("FileMetaInformationVersion", b"\x00\x01"),
                ("MediaStorageSOPClassUID", str(peek(ds, "SOPClassUID"))),
                ("MediaStorageSOPInstanceUID", str(peek(ds, "SOPInstanceUID"))),
                ("TransferSyntaxUID", ts or pydicom.uid.ExplicitVRLittleEndian),
                ("ImplementationClassUID", IMPLEMENTATION_CLASS_UID),
                ("ImplementationVersionName", IMPLEMENTATION_VERSION_NAME)):
            set_meta(meta, keyword, value)
        return meta

    # -- encoding --------------------------------------------------------------------
    def encode(self, ds: Dataset, source: str | None = None) -> tuple[bytes, list[str]]:
        """Serialize a de-identified dataset; strip compressed pixel data metadata (JPEG
        segments, video SEI/user data); check for residual identity.

        Returns the file bytes and the names of the removed segments and units.
        """
        removed: list[str] = []
        ts = str(peek(ds.file_meta, "TransferSyntaxUID"))
        if self.config.strip_jpeg_metadata and "PixelData" in ds:
            removed = self._strip_pixel_data(ds, ts, source)
        data, header = encode_part10(ds)
        if self.config.residual_check:
            self._residual(ds, header, source)
        return data, removed

    @staticmethod
    def _strip_pixel_data(ds: Dataset, ts: str, source: str | None) -> list[str]:
        """Strip JPEG/J2K frames or a video stream; make the Extended Offset Table match
        the fragments written (recomputed, or removed where a frame spans fragments)."""
        from .jpegmarkers import extended_offset_table, strip_encapsulated
        from .videostreams import VIDEO_TRANSFER_SYNTAXES, strip_video

        removed: list[str] = []
        if not _encapsulated(ts) and _EOT_TAG not in ds._dict and _EOT_LENGTHS_TAG not in ds._dict:
            return removed  # native pixel data: nothing to strip or to match
        frames = int(peek(ds, "NumberOfFrames", 1) or 1)
        try:
            new = None
            if ts in JPEG_TRANSFER_SYNTAXES:
                new, removed = strip_encapsulated(ds.PixelData, frames)
            elif ts in VIDEO_TRANSFER_SYNTAXES:
                new, removed = strip_video(ds.PixelData, ts)
            if new is not None and removed:
                ds.PixelData = new
            eot = [kw for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths") if kw in ds]
            if eot:
                table = None
                if _encapsulated(ts) and ts not in VIDEO_TRANSFER_SYNTAXES:
                    table = extended_offset_table(ds.PixelData, frames)
                if table is None:
                    for kw in eot:
                        delattr(ds, kw)
                elif (peek(ds, "ExtendedOffsetTable"),
                      peek(ds, "ExtendedOffsetTableLengths")) != table:
                    ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = table
        except DeidError as exc:
            raise DeidError(f"pixel data: {exc.reason}", source) from None
        return removed

    def _residual(self, ds: Dataset, header: bytes, source: str | None) -> None:
        """Raise DeidError when ``header`` (the encoded output without its bulk pixel data)
        still holds one of the patient's identity tokens or an original instance UID that
        this file's de-identification replaced. The reason names kinds and counts, never
        a value."""
        uids = find_uids(header, getattr(ds, "_pixeldeid_residual_uids", ()))
        if uids:  # (rare: only then are the UIDs kept by design looked up)
            uids = sorted(set(uids) - _structural_uids(ds))
        if uids:
            raise DeidError(f"original UID still present after de-identification "
                            f"({len(uids)} UID(s) that were replaced)", source)
        tokens = [t for t in getattr(ds, "_pixeldeid_residual_tokens", []) if _searchable(t)]
        if not tokens:
            return
        encodings, extensions = _charsets(ds, header)
        tokens, legacy = _residual_search(tuple(tokens), tuple(encodings))
        hits, occurs = token_matches(header, tokens, legacy)
        if not hits and (extensions or occurs):
            # each value on its own: a token at the end of a value runs into the next
            # element's tag ("...for Quixbury" then group 0070, a 'p'), and ISO 2022
            # escapes split a value's bytes by character set (山田 in 山田太郎様): neither
            # is a whole word in the byte stream
            hits = find_tokens(_value_texts(ds), tokens, encodings)
        if not hits and (extensions or any(not t.isascii() for t in tokens)
                         or any(_multibyte(e) for e in encodings)):
            # where text may hold what no fixed spelling is: a zero-width space or soft
            # hyphen in the name, another accent, digits of another script (any Unicode
            # character set, or a name that is not ASCII), the decoded text is folded
            hits = find_folded(_decoded_texts(ds), tokens)
        if hits:
            raise DeidError(f"identity still present after de-identification "
                            f"({len(hits)} value(s), e.g. length {len(hits[0])})", source)
        # compressed pixel data (JPEG, JPEG 2000, video...) can carry text the stripping
        # does not know of; native pixel values are numbers and are not searched. Only
        # tokens of PIXEL_TOKEN_MIN+ characters: compressed bytes hold a given 3-letter
        # word as a whole word about 0.3 times per MB, a 5-letter one once in ~60 GB
        # (estimates from the byte odds, not measured)
        if not _encapsulated(str(peek(ds.file_meta, "TransferSyntaxUID", ""))) \
                or "PixelData" not in ds:
            return
        long_tokens = [t for t in tokens if distinctive(t, PIXEL_TOKEN_MIN)]
        if long_tokens:  # (metadata in a codestream may be UTF-16: EXIF XP*, ICC mluc)
            hits = find_tokens(bytes(ds.PixelData), long_tokens,
                               (*encodings, "utf-16-le", "utf-16-be"))
            if hits:
                raise DeidError(f"identity still present in the compressed pixel data after "
                                f"its metadata was removed ({len(hits)} value(s), e.g. length "
                                f"{len(hits[0])})", source)

    def write(self, ds: Dataset, path: str | os.PathLike, source: str | None = None) -> InstanceResult:
        """Encode ``ds`` and write it atomically to ``path``."""
        data, removed = self.encode(ds, source)
        with atomic_output(path) as fh:
            fh.write(data)
        return InstanceResult(str(peek(ds, "SOPInstanceUID")), str(peek(ds, "SOPClassUID")),
                              str(peek(ds, "PatientID")), str(peek(ds, "Modality", "")), removed)

    def close(self) -> None:
        self.pseudonyms.close()


_EOT_TAG, _EOT_LENGTHS_TAG = 0x7FE00001, 0x7FE00002


@lru_cache(maxsize=64)
def _encapsulated(transfer_syntax: str) -> bool:
    """Whether ``transfer_syntax`` encapsulates its pixel data; DeidError for one pydicom
    does not know (JPEG XL of 2024, a private one): its pixel data cannot be checked."""
    try:
        return UID(transfer_syntax).is_encapsulated
    except ValueError:
        shown = transfer_syntax if re.fullmatch(r"[0-9.]{1,64}", transfer_syntax) else \
            "that is no UID"
        raise DeidError(f"unsupported transfer syntax {shown}: its pixel data cannot be "
                        "checked") from None


class _RecordingUIDs:
    """A UID mapper that remembers the originals it replaced (for one file's walk)."""

    def __init__(self, uids: UIDMapper) -> None:
        self.uids = uids
        self.replaced: set[str] = set()

    def __call__(self, uid: str) -> str:
        new = self.uids(uid)
        old = uid.strip().rstrip("\x00").strip()
        if new != old and not is_structural(old):
            self.replaced.add(old)
        return new


def find_uids(data: bytes, uids) -> list[str]:
    """The UIDs of ``uids`` that occur in ``data`` as whole UIDs: not inside a longer UID
    (a study UID is often the root of its series UIDs) nor a longer number. Values too
    short or with too few components to be told from other numbers (``0``, ``1.2``: junk
    in a UID element) are not searched for."""
    uids = [u for u in uids if len(u) >= 8 and u.count(".") >= 2 and u.isascii()]
    hits = [u for u in uids if u.encode("ascii") in data]
    if not hits:
        return []
    alt = b"|".join(re.escape(u.encode("ascii")) for u in sorted(hits, key=len, reverse=True))
    pat = re.compile(rb"(?<![0-9.])(?:" + alt + rb")(?![0-9]|\.[0-9])")
    return sorted({m.group(0).decode("ascii") for m in pat.finditer(data)})


def _structural_uids(ds) -> set[str]:
    """The values of the class and definition UID elements of ``ds`` at any depth
    (:data:`pixeldeid.uids.STRUCTURAL_UID_KEYWORDS`): kept by design, so a value that the
    walk also replaced elsewhere (a private SOP class UID in an instance UID element, junk)
    is no residual."""
    out: set[str] = set()
    tags = [tag_of(kw) for kw in sorted(STRUCTURAL_UID_KEYWORDS)]
    for item in _walk_items(ds):
        for tag in tags:
            if tag in item._dict:
                out.update(s.strip("\x00 ") for s in _values_of(item, tag))
    return out


def _values_of(ds: Dataset, kw: str | int) -> list[str]:
    """The text values of ``kw`` in ``ds`` (each of a multi-valued one), empty ones left out."""
    if kw not in ds:
        return []
    v = peek(ds, kw)
    if v is None or isinstance(v, (Sequence, bytes)) or _is_items(v):
        return []
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return [str(x) for x in v if x is not None and str(x).strip()]
    return [str(v)] if str(v).strip() else []


def _is_items(v) -> bool:
    """Whether ``v`` is the value of a sequence (pydicom's or the fast path's items)."""
    return isinstance(v, list) and any(hasattr(x, "_dict") for x in v)


def _items_of(ds: Dataset, kw: str) -> list:
    """The items of the sequence ``kw`` of ``ds`` (none when absent or not a sequence)."""
    if kw not in ds:
        return []
    v = peek(ds, kw)
    return [x for x in v if hasattr(x, "_dict")] if isinstance(v, (list, Sequence)) else []


#: Element tag bytes of Specific Character Set (little and big endian).
_SCS_TAGS = (b"\x08\x00\x05\x00", b"\x00\x08\x00\x05")
#: VRs of text that Specific Character Set applies to (PS3.5 6.1.2.3).
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "PN", "UT", "UC"})


def _charset_terms(ds) -> list[str]:
    value = peek(ds, "SpecificCharacterSet")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


@lru_cache(maxsize=8192)
def _searchable(token: str) -> bool:
    """Whether the residual check (and the cleaning of kept free text) searches for
    ``token``: distinctive, and neither a DICOM word nor a word of pixeldeid's dummies."""
    return (distinctive(token) and token.lower() not in dicom_vocabulary()
            and token.lower() not in _DUMMY_WORDS)


#: Words written in person name attributes for no person ("ANONYMOUS", "ADMIN", "DOCTOR").
_NAME_PLACEHOLDERS = frozenset({"anonymous", "anon", "admin", "doctor", "tech", "staff",
                                "radiologist", "outpatient", "inpatient", "null", "nil",
                                "unk", "n/a", "dr.", "md", "phd"})
#: Person name attributes of the data dictionary other than the patient's own.
_OTHER_PN_TAGS = frozenset(t for t, entry in DicomDictionary.items() if entry[0] == "PN") \
    - frozenset(_NAME_TAGS)


@lru_cache(maxsize=256)
def _name_tokens(names: tuple[str, ...]) -> tuple[str, ...]:
    """:func:`identity_tokens` of person names (the same names recur through a series)."""
    return tuple(identity_tokens([], names=names))


def _site_tokens(ds, options: frozenset[str]) -> tuple[str, ...]:
    """What names the site and the study in ``ds`` when the profile removes it: the
    distinctive words of the institution's name, address and department (not under Retain
    Institution Identity; not those the device's own Manufacturer or Model Name holds:
    a vendor's site) and the Study ID. Taken out of kept free text the table does not list
    (a presentation state's Content Description "Read at <institution>, <Study ID>"), as
    other people's names are; not searched for afterwards (kept device values such as a
    Station Name may hold them by design)."""
    words: set[str] = set()
    if "retain-institution-identity" not in options:
        for kw in INSTITUTION_KEYWORDS:
            for v in _values_of(ds, kw):
                words |= institution_words(v)
        words -= {w for kw in ("Manufacturer", "ManufacturerModelName")
                  for v in _values_of(ds, kw) for w in _word_set(v)}
    study_id = str(peek(ds, "StudyID", "") or "").strip()
    if len(study_id) >= 5 and not study_id.isalpha():  # (not "1": a word of any text)
        words.add(study_id)
    return tuple(sorted(words))


def _other_person_names(ds) -> list[str]:
    """The values of every person name attribute of ``ds`` at any depth other than the
    patient's names (physicians, operators, observers...)."""
    out: list[str] = []
    for item in _walk_items(ds):
        for tag in item._dict.keys() & _OTHER_PN_TAGS:
            _check_text_vr(item, tag)
            raw = getattr(item._dict[tag], "value", None)
            if isinstance(raw, bytes) and raw.isascii() and b"\x1b" not in raw:
                # (undecoded ASCII: the values as pydicom would give them)
                out.extend(v for v in raw.decode("ascii").rstrip("\x00 ").split("\\")
                           if v.strip())
            else:
                out.extend(_values_of(item, tag))
    return out


def _walk_items(ds, depth: int = 0):
    """``ds`` and every sequence item in it, at any depth (64 at most)."""
    yield ds
    if depth >= 64:
        return
    for tag, elem in list(ds._dict.items()):
        vr = getattr(elem, "VR", None)
        if vr == "SQ" or (vr is None and dictionary_vr(tag) == "SQ"):
            try:
                items = peek(ds, tag) or []
            except Exception:  # noqa: BLE001 - encoded already: read as pydicom can
                continue
            for item in items:
                if hasattr(item, "_dict"):
                    yield from _walk_items(item, depth + 1)


def _other_values(value, out: list[str]) -> None:
    """Append ``value`` (not of a character-set VR) to ``out`` as text."""
    if isinstance(value, (bytes, bytearray)):
        out.append(bytes(value).decode("latin-1"))
    elif isinstance(value, (str, int, float)):
        out.append(str(value))
    elif isinstance(value, (list, tuple, MultiValue)):
        out.extend(str(v) for v in value if v is not None)
    elif value is not None and not isinstance(value, FileSlice):
        out.append(str(value))


@lru_cache(maxsize=64)
def _multibyte(codec: str) -> bool:
    """Whether the Python ``codec`` is a multi-byte one (UTF-8, GB18030, the CJK sets):
    full-width letters fit in it, as they fit in no single-byte set (Latin-1 and the other
    ISO 8859 parts, the default)."""
    try:
        "\uff21".encode(codec)
    except (UnicodeError, LookupError):
        return False
    return True


def _charsets(ds, header: bytes) -> tuple[list[str], bool]:
    """The Python codecs of every character set of ``ds`` (its own and any sequence item's)
    and whether one of them uses ISO 2022 code extensions (or ``header`` holds an escape)."""
    terms = _charset_terms(ds)
    nested = sum(header.count(t) for t in _SCS_TAGS) > (1 if terms else 0)
    if nested and isinstance(ds, Dataset):  # (the fast path takes no item charsets)
        terms = [t for item in _walk_items(ds) for t in _charset_terms(item)]
    declared = getattr(ds, "_character_set", None) or ()
    # (pydicom gives one codec as a str: "iso8859" is no list of its letters)
    encodings: list[str] = [declared] if isinstance(declared, str) else list(declared)
    for term in dict.fromkeys(terms):
        try:
            for enc in convert_encodings(term or None):
                if enc not in encodings:
                    encodings.append(enc)
        except Exception:  # noqa: BLE001 - an unknown term: pydicom wrote it as it could
            continue
    # (every code extension term is "ISO 2022 ..."; a multi-valued one is one of them)
    extensions = any(t.strip().startswith("ISO 2022") for t in terms) or b"\x1b" in header
    return encodings, extensions


_JAPANESE = ("shift_jis", "euc_jp", "iso2022_jp")
_CJK = (*_JAPANESE, "gb18030", "big5", "euc_kr")
#: The common legacy encodings of each script (the first word of a letter's Unicode name)
#: besides UTF-8: other systems' encodings that a value may hold whatever the data set
#: declares (a vendor's Windows code page, Shift-JIS or EUC-JP in an ISO 2022 file). A
#: Han ideograph may be Japanese, Chinese or Korean; full-width letters are CJK text's.
SCRIPT_ENCODINGS: dict[str, tuple[str, ...]] = {
    "LATIN": ("cp1252", "latin-1", "iso8859-2"),
    "CYRILLIC": ("cp1251", "koi8_r", "iso8859-5"),
    "GREEK": ("iso8859-7", "cp1253"),
    "ARABIC": ("cp1256", "iso8859-6"),
    "HEBREW": ("cp1255", "iso8859-8"),
    "HIRAGANA": _JAPANESE, "KATAKANA": _JAPANESE, "HALFWIDTH": _JAPANESE,
    "HANGUL": ("euc_kr",), "CJK": _CJK, "FULLWIDTH": _CJK,
}


@lru_cache(maxsize=4096)
def _script_encodings(ch: str) -> tuple[str, ...]:
    return SCRIPT_ENCODINGS.get(unicodedata.name(ch, "").split(" ", 1)[0], ())


def legacy_encodings(text: str) -> tuple[str, ...]:
    """The legacy encodings of the scripts that ``text`` is written in
    (:data:`SCRIPT_ENCODINGS`); none for ASCII text."""
    if text.isascii():
        return ()
    return tuple(dict.fromkeys(e for ch in text if not ch.isascii()
                               for e in _script_encodings(ch)))


@lru_cache(maxsize=256)
def _residual_search(tokens: tuple[str, ...], declared: tuple[str, ...]
                     ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tokens and the encodings the residual check searches the header for, given the
    identity ``tokens`` and the ``declared`` character sets (:func:`_charsets`): also the
    :func:`legacy_encodings` of the tokens, and a token that is UTF-8 read in a single-byte
    set (no Specific Character Set: MÃ¼ller for the bytes of Müller) also as the text it
    is (its Latin-1 bytes are another form). ASCII tokens add nothing (a series gives the
    same tokens each time: cached)."""
    single_byte = [e for e in declared if not _multibyte(e)]
    repaired: list[str] = []
    for t in (t for t in tokens if not t.isascii()):
        for enc in single_byte:
            try:
                text = t.encode(enc).decode("utf-8")
            except (UnicodeError, LookupError):
                continue
            if text != t and _searchable(text):
                repaired.append(text)
    tokens = tuple(dict.fromkeys((*tokens, *repaired)))
    return tokens, tuple(dict.fromkeys((*declared, *(e for t in tokens
                                                      for e in legacy_encodings(t)))))


def _value_texts(ds) -> bytes:
    """Every value of ``ds`` at any depth on a line of its own (UTF-8): text decoded in its
    character set (:func:`_decoded_texts`), other values as written; not the bulk pixel
    data."""
    return "\n".join(_decoded_texts(ds, every=True)).encode("utf-8", "replace")


def _decoded_texts(ds, every: bool = False) -> list[str]:
    """The text of every element of ``ds`` that its character set applies to, at any depth,
    decoded (ISO 2022 escapes resolved) as pydicom decodes it; ``every``: the values of
    the other elements too (bytes as Latin-1), except the top level's bulk pixel data."""
    out: list[str] = []

    def walk(item, encodings, depth):
        terms = _charset_terms(item)
        if terms:
            try:
                encodings = convert_encodings(terms if len(terms) > 1 else terms[0])
            except Exception:  # noqa: BLE001
                pass
        for tag, elem in list(item._dict.items()):
            vr = getattr(elem, "VR", None) or dictionary_vr(tag)
            if vr == "SQ":
                if depth < 64:
                    try:
                        items = peek(item, tag) or []
                    except Exception:  # noqa: BLE001
                        continue
                    for sub in items:
                        if hasattr(sub, "_dict"):
                            walk(sub, encodings, depth + 1)
                continue
            value = getattr(elem, "value", None)
            if vr not in _CHARSET_VRS:
                if every and not (depth == 0 and tag in BULK_TAGS):
                    _other_values(value, out)
                continue
            if isinstance(value, bytes):
                try:
                    out.append(decode_bytes(value, encodings,
                                            PN_DELIMS if vr == "PN" else TEXT_VR_DELIMS))
                except Exception:  # noqa: BLE001 - undecodable: its bytes were searched
                    continue
            elif value is not None:
                vals = value if isinstance(value, (list, tuple)) else [value]
                out.extend(str(v) for v in vals if v is not None)

    top = getattr(ds, "_character_set", None) or [default_encoding]
    walk(ds, [top] if isinstance(top, str) else list(top), 0)
    return out
