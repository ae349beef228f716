"""Synthetic test DICOM: realistic CT series and datasets with planted identity.

These generators build data for tests and benchmarks only; nothing here is used
when de-identifying. Everything is deterministic for a given ``seed``.

``make_ct_series`` writes 512 x 512 16-bit CT Image Storage slices with a full,
realistic header (patient, study, series, equipment, frame of reference, image
plane, VOI LUT, referenced/source image sequences, request attributes, GE private
blocks whose creators appear in PS3.15 Table E.3.10-1, and an unknown private
creator carrying identity).

``make_planted_dataset`` returns a dataset with identity planted in every place a
de-identifier must look (standard attributes of Table E.1-1, nested sequences,
relocated private blocks, UN private elements, preamble, file meta, trailing
padding, JPEG APPn/COM segments, overlays and curves, UTF-8 names) together with
the list of planted strings; none of them may survive de-identification.
"""

from __future__ import annotations

import hashlib
import io
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
)

__all__ = [
    "SynthPatient",
    "PlantedStrings",
    "make_patient",
    "ct_slice_dataset",
    "make_ct_series",
    "make_planted_dataset",
    "write_dataset",
    "jpeg_with_identity",
    "SAFE_PRIVATE_CT",
]

IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"  # pydicom's root; only for synthetic data
CT_MANUFACTURER = "GE MEDICAL SYSTEMS"

_GIVEN = ["Zebulon", "Ottilie", "Ambrose", "Wilhelmina", "Thaddeus", "Philippa", "Barnaby",
          "Clementine", "Ignatius", "Rosalind", "Leopold", "Henrietta", "Octavian", "Marguerite"]
_FAMILY = ["Quixmore", "Pettigrew", "Abernathy", "Fairweather", "Huxtable", "Montgomery",
           "Wolstenholme", "Blackwood", "Featherstone", "Lockhart", "Ravensworth", "Thistlewood"]
_STREETS = ["Larkspur Lane", "Wheatfield Road", "Cobblestone Way", "Hawthorn Crescent"]
_TOWNS = ["Little Whinging", "Ambridge", "Middlemarch", "Casterbridge"]

# Private elements of the synthetic CT whose creators are in PS3.15 Table E.3.10-1
# (safe private attributes): (group, element offset, creator, VR, value).
SAFE_PRIVATE_CT: tuple[tuple[int, int, str, str, object], ...] = (
    (0x0019, 0x23, "GEMS_ACQU_01", "DS", "39.375"),   # Table Speed [mm/rotation]
    (0x0019, 0x24, "GEMS_ACQU_01", "DS", "4.5"),      # Mid Scan Time [sec]
    (0x0019, 0x27, "GEMS_ACQU_01", "DS", "0.5"),      # Rotation Speed (Gantry Period)
    (0x0043, 0x27, "GEMS_PARM_01", "SH", "0.984:1"),  # Scan Pitch Ratio
    (0x0045, 0x01, "GEMS_HELIOS_01", "SS", 64),       # Number of Macro Rows in Detector
    (0x0045, 0x02, "GEMS_HELIOS_01", "FL", 0.625),    # Macro width at ISO Center
)


@dataclass
class SynthPatient:
    """A fictitious patient; every field is identity a de-identifier must remove."""

    family: str
    given: str
    patient_id: str
    birth_date: str
    sex: str
    address: str
    telephone: str
    other_id: str
    institution: str = "St Quixmore Infirmary"
    referring: str = "Pettigrew^Ambrose^^Dr"
    operator: str = "Lockhart^Henrietta"
    accession: str = "ACC70411923"

    @property
    def name(self) -> str:
        """The DICOM PN value ``FAMILY^Given``."""
        return f"{self.family.upper()}^{self.given}"

    def identity_strings(self) -> list[str]:
        """Strings from this patient that must not survive de-identification."""
        return [self.family.upper(), self.given, self.patient_id, self.birth_date,
                self.address.split(",")[0], self.telephone, self.other_id, self.institution,
                self.referring.split("^")[0], self.operator.split("^")[0], self.accession]


class PlantedStrings(list):
    """List of planted strings; ``where`` maps each to a description of its location."""

    def __init__(self) -> None:
        super().__init__()
        self.where: dict[str, str] = {}

    def plant(self, value: str, where: str) -> str:
        """Record ``value`` as planted at ``where`` and return it."""
        if value not in self.where:
            self.append(value)
            self.where[value] = where
        return value


def make_patient(seed: int = 0) -> SynthPatient:
    """Return a deterministic fictitious patient for ``seed``."""
    rng = np.random.default_rng(seed)
    fam = _FAMILY[int(rng.integers(len(_FAMILY)))]
    giv = _GIVEN[int(rng.integers(len(_GIVEN)))]
    year, month, day = int(rng.integers(1930, 2000)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    num = int(rng.integers(10, 99))
    return SynthPatient(
        family=fam,
        given=giv,
        patient_id=f"MRN{int(rng.integers(10**6, 10**7))}",
        birth_date=f"{year:04d}{month:02d}{day:02d}",
        sex=str(rng.choice(["F", "M"])),
        address=f"{num} {_STREETS[int(rng.integers(len(_STREETS)))]}, "
                f"{_TOWNS[int(rng.integers(len(_TOWNS)))]}",
        telephone=f"+44 1632 {int(rng.integers(100000, 999999))}",
        other_id=f"NHS{int(rng.integers(10**8, 10**9))}",
        accession=f"ACC{int(rng.integers(10**7, 10**8))}",
    )


def _uid(*parts: object) -> str:
    """Deterministic 2.25 UID (UUID-derived) from ``parts``."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"


def _phantom(rng: np.random.Generator, z: float, size: int = 512) -> np.ndarray:
    """Stored values (HU + 1024) of an axial chest-like slice at position ``z`` (0..1)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2, size / 2
    hu = np.full((size, size), -1000.0, dtype=np.float32)
    body = ((xx - cx) / (0.42 * size)) ** 2 + ((yy - cy) / (0.30 * size)) ** 2 <= 1
    hu[body] = 40.0
    lung_r = 0.10 + 0.05 * np.sin(np.pi * z)
    for sx in (-1, 1):
        lung = ((xx - cx - sx * 0.18 * size) / (lung_r * size)) ** 2 + (
            (yy - cy + 0.02 * size) / (0.17 * size)) ** 2 <= 1
        hu[lung] = -850.0
    spine = ((xx - cx) / (0.04 * size)) ** 2 + ((yy - cy - 0.2 * size) / (0.04 * size)) ** 2 <= 1
    hu[spine] = 700.0
    # table under the patient
    hu[int(cy + 0.33 * size):int(cy + 0.35 * size), int(0.1 * size):int(0.9 * size)] = 300.0
    hu += rng.normal(0.0, 12.0, hu.shape).astype(np.float32)
    return np.clip(np.rint(hu + 1024.0), -2000, 4095).astype(np.int16)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def ct_slice_dataset(
    index: int,
    n: int,
    *,
    patient: SynthPatient | None = None,
    seed: int = 0,
    pixels: np.ndarray | None = None,
) -> FileDataset:
    """Return one CT Image Storage slice (``index`` of ``n``) with a full header.

    Parameters
    ----------
    index, n : int
        Slice number (0-based) and number of slices in the series.
    patient : SynthPatient, optional
        Patient; default ``make_patient(seed)``.
    seed : int
        Seeds the UIDs, dates and noise; the same seed gives the same study.
    pixels : ndarray, optional
        int16 stored values (512 x 512); default a synthetic chest phantom.
    """
    patient = patient or make_patient(seed)
    rng = np.random.default_rng([seed, index])
    study_uid = _uid("study", seed)
    series_uid = _uid("series", seed)
    sop_uid = _uid("sop", seed, index)
    for_uid = _uid("for", seed)
    scout_uid = _uid("scout", seed)
    day = 1 + seed % 28
    study_date = f"2023{1 + seed % 12:02d}{day:02d}"
    thickness = 1.25
    z = -200.0 + index * thickness

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    meta.ImplementationVersionName = "PIXELDEID_SYN"
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = study_date
    ds.InstanceCreationTime = "101542"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = "100311"
    ds.SeriesTime = "100602"
    ds.AcquisitionTime = f"1006{2 + index // 60 % 50:02d}.{index % 1000:03d}"
    ds.ContentTime = "101542"
    ds.AccessionNumber = patient.accession
    ds.Modality = "CT"
    ds.Manufacturer = CT_MANUFACTURER
    ds.InstitutionName = patient.institution
    ds.InstitutionAddress = "1 Infirmary Square, Middlemarch MM1 4QX"
    ds.ReferringPhysicianName = patient.referring
    ds.StationName = "CTQXM01"
    ds.StudyDescription = "CT CHEST WITH CONTRAST"
    ds.ProcedureCodeSequence = DicomSequence([_code("ZCTCHC", "99QXM", "CT CHEST W CONTRAST")])
    ds.SeriesDescription = "Chest 1.25mm STD"
    ds.InstitutionalDepartmentName = "Radiology"
    ds.OperatorsName = patient.operator
    ds.ManufacturerModelName = "Revolution CT"
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = scout_uid
    ds.ReferencedImageSequence = DicomSequence([ref])
    src = Dataset()
    src.ReferencedSOPClassUID = CTImageStorage
    src.ReferencedSOPInstanceUID = _uid("raw", seed, index)
    ds.SourceImageSequence = DicomSequence([src])

    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "QXM"
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    other = Dataset()
    other.PatientID = patient.other_id
    other.IssuerOfPatientID = "NHS"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = DicomSequence([other])
    ds.PatientAge = f"{max(1, 2023 - int(patient.birth_date[:4])):03d}Y"
    ds.PatientSize = "1.72"
    ds.PatientWeight = "74"
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = patient.telephone

    ds.BodyPartExamined = "CHEST"
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = f"{thickness}"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.DeviceSerialNumber = f"QXM{seed % 1000:03d}CT7731"
    ds.SoftwareVersions = "revo_ct_22mw.40"
    ds.ProtocolName = "5.1 CHEST ROUTINE"
    ds.ReconstructionDiameter = "360"
    ds.DistanceSourceToDetector = "1097.6"
    ds.DistanceSourceToPatient = "625.6"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "164.5"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "500"
    ds.XRayTubeCurrent = str(180 + int(rng.integers(0, 40)))
    ds.Exposure = "99"
    ds.FilterType = "BODY FILTER"
    ds.GeneratorPower = "24000"
    ds.FocalSpots = "0.7"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "FFS"
    ds.RevolutionTime = 0.5
    ds.SingleCollimationWidth = 0.625
    ds.TotalCollimationWidth = 40.0
    ds.TableSpeed = 78.75
    ds.TableFeedPerRotation = 39.375
    ds.SpiralPitchFactor = 0.984375
    ds.CTDIvol = 8.42
    ds.CTDIPhantomTypeCodeSequence = DicomSequence(
        [_code("113691", "DCM", "IEC Body Dosimetry Phantom")])

    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"{40000 + seed % 10000}"
    ds.SeriesNumber = "3"
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = str(index + 1)
    ds.ImagePositionPatient = ["-180", "-180", f"{z:g}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = "SN"
    ds.SliceLocation = f"{z:g}"

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 512
    ds.Columns = 512
    ds.PixelSpacing = ["0.703125", "0.703125"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"

    req = Dataset()
    req.RequestedProcedureID = f"RP{patient.accession[3:]}"
    req.RequestedProcedureDescription = "CT CHEST W CONTRAST"
    req.ScheduledProcedureStepID = f"SPS{patient.accession[3:]}"
    req.ScheduledProcedureStepDescription = "CT CHEST W CONTRAST"
    req.ReasonForTheRequestedProcedure = "Staging"
    ds.RequestAttributesSequence = DicomSequence([req])
    ds.PerformedProcedureStepStartDate = study_date
    ds.PerformedProcedureStepStartTime = "100311"
    ds.PerformedProcedureStepID = f"PPS{patient.accession[3:]}"
    ds.PerformedProcedureStepDescription = "CT CHEST W CONTRAST"

    # private blocks: GE creators of Table E.3.10-1, one unsafe GE element, one unknown creator
    creators: dict[tuple[int, str], int] = {}
    for group, elem, creator, vr, value in SAFE_PRIVATE_CT:
        block = creators.setdefault((group, creator), 0x10)
        ds.add_new((group << 16) | block, "LO", creator)
        ds.add_new((group << 16) | (block << 8) | elem, vr, value)
    ds.add_new(0x00191002, "SL", 912)  # GEMS_ACQU_01 Detector Channel: not on the safe list
    ds.add_new(0x00330010, "LO", "ACME RIS BRIDGE 2.1")
    ds.add_new(0x00331001, "LO", patient.name)
    ds.add_new(0x00331002, "LO", patient.patient_id)

    if pixels is None:
        pixels = _phantom(rng, index / max(1, n - 1))
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return ds


def write_dataset(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` as a DICOM file with its preamble and file meta; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_ct_series(
    out_dir: str | Path,
    n: int,
    *,
    patient: SynthPatient | None = None,
    seed: int = 0,
    filename: str = "IM{index:05d}.dcm",
) -> list[Path]:
    """Write an ``n``-slice CT series to ``out_dir`` and return the file paths.

    Parameters
    ----------
    out_dir : path
        Folder to write to (created).
    n : int
        Number of 512 x 512 slices.
    patient : SynthPatient, optional
        Default ``make_patient(seed)``.
    seed : int
        Same seed, same study and series UIDs.
    filename : str
        ``str.format`` pattern with fields ``index`` (1-based), ``patient_id``,
        ``family`` and ``sop`` -- put identity in input names to test that it does
        not reach output names.
    """
    patient = patient or make_patient(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        ds = ct_slice_dataset(i, n, patient=patient, seed=seed)
        name = filename.format(index=i + 1, patient_id=patient.patient_id,
                               family=patient.family, sop=ds.SOPInstanceUID)
        paths.append(write_dataset(ds, out / name))
    return paths


# --- planted identity ---------------------------------------------------------------


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">HH", marker, len(payload) + 2) + payload


def jpeg_with_identity(
    image: np.ndarray, texts: Sequence[str], *, quality: int = 90
) -> bytes:
    """Encode an 8-bit image as baseline JPEG (pillow) carrying ``texts`` in metadata.

    ``texts[0]`` goes into an EXIF APP1 (Artist), ``texts[1]`` into an XMP APP1,
    ``texts[2]`` into a COM segment, ``texts[3]`` into an APP13 (IPTC) segment;
    missing entries are skipped. The JFIF APP0 stays first.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    assert data[:4] == b"\xff\xd8\xff\xe0"
    app0_end = 4 + struct.unpack(">H", data[4:6])[0]
    extra = b""
    if len(texts) > 0:
        exif = Image.Exif()
        exif[0x013B] = texts[0]  # Artist
        raw = exif.tobytes()
        extra += _segment(0xFFE1, raw if raw.startswith(b"Exif\0\0") else b"Exif\0\0" + raw)
    if len(texts) > 1:
        xmp = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/'
               f'02/22-rdf-syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"'
               f' dc:creator="{texts[1]}"/></rdf:RDF></x:xmpmeta>')
        extra += _segment(0xFFE1, b"http://ns.adobe.com/xap/1.0/\0" + xmp.encode())
    if len(texts) > 2:
        extra += _segment(0xFFFE, texts[2].encode())
    if len(texts) > 3:
        extra += _segment(0xFFED, b"Photoshop 3.0\0" + texts[3].encode())
    return data[:app0_end] + extra + data[app0_end:]


def _sc_image(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = 60 + 120 * (((xx - cols / 2) / (cols * 0.4)) ** 2 + ((yy - rows / 2) / (rows * 0.35)) ** 2 <= 1)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@dataclass
class _Planter:
    ps: PlantedStrings = field(default_factory=PlantedStrings)

    def __call__(self, value: str, where: str) -> str:
        return self.ps.plant(value, where)


def make_planted_dataset(
    *, seed: int = 0, pixels: str = "jpeg", frames: int = 1, implicit: bool = False
) -> tuple[FileDataset, PlantedStrings]:
    """Return a dataset with identity planted everywhere, and the planted strings.

    Parameters
    ----------
    seed : int
        Seeds UIDs and image noise.
    pixels : {"jpeg", "native"}
        ``"jpeg"``: Secondary Capture, 8-bit, JPEG Baseline with identity in EXIF/XMP
        APP1, COM and APP13 of every frame (Basic Offset Table present).
        ``"native"``: the 16-bit CT slice of ``ct_slice_dataset``, Explicit VR Little Endian.
    frames : int
        Number of JPEG frames (``"jpeg"`` only).
    implicit : bool
        Implicit VR Little Endian (``"native"`` only): a reader without the private
        dictionaries sees every private element as UN.

    Returns
    -------
    ds : FileDataset
        With ``preamble`` and ``file_meta`` set; write it with ``write_dataset``.
    planted : PlantedStrings
        Every planted string (search raw bytes with ``s.encode("utf-8")``);
        ``planted.where[s]`` says where it was put.

    Notes
    -----
    Places: names, IDs, dates, addresses, telephone, institution, physicians, accession,
    descriptions, comments, requesting service (PS3.15 Table E.1-1); a person name 3
    sequence levels deep; instance UIDs; a private block of an unknown creator at
    block 0x10 whose element offset equals a safe GE element; a GE block relocated to
    (0019,0042); an unknown creator relocated to (0029,0042) -> (0029,4210); a UN
    private element; a private sequence inside a standard sequence item; a person name
    that Table E.1-1 does not list (Evaluator Name); even-group
    elements no data dictionary defines (top level and 3 levels deep); the 128-byte
    preamble; file meta Source/Sending AE titles and Private Information; Data Set
    Trailing Padding; overlay description/label; curve description/label; a UTF-8 name
    (Specific Character Set ISO_IR 192).
    """
    p = _Planter()
    rng = np.random.default_rng(seed + 7919)
    pat = SynthPatient(
        family="Größmann", given="Jürgen", patient_id="QX-88213-PID", birth_date="19570923",
        sex="M", address="42 Larkspur Lane, Ambridge AM3 9ZZ", telephone="+44 1632 960417",
        other_id="NHS4857731190", institution="Ravensworth Memorial Hospital",
        referring="Pettigrew^Barnaby^^Dr", operator="Wolstenholme^Philippa",
        accession="ACC55120987",
    )
    ds = ct_slice_dataset(0, 1, patient=pat, seed=seed)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Größmann^Jürgen"
    p("Größmann", "PatientName (0010,0010), UTF-8; also OtherPatientNames")
    p("Jürgen", "PatientName given name, UTF-8")
    p(pat.patient_id, "PatientID (0010,0020)")
    p(pat.other_id, "OtherPatientIDsSequence > PatientID")
    p(pat.birth_date, "PatientBirthDate (0010,0030)")
    p("Larkspur Lane", "PatientAddress (0010,1040)")
    p("1632 960417", "PatientTelephoneNumbers (0010,2154)")
    p("Ravensworth Memorial", "InstitutionName (0008,0080)")
    p("Middlemarch MM1", "InstitutionAddress (0008,0081)")
    p("Pettigrew", "ReferringPhysicianName (0008,0090)")
    p("Wolstenholme", "OperatorsName (0008,1070)")
    p(pat.accession, "AccessionNumber (0008,0050)")
    p(ds.StudyInstanceUID, "StudyInstanceUID")
    p(ds.SeriesInstanceUID, "SeriesInstanceUID")
    p(ds.SOPInstanceUID, "SOPInstanceUID and MediaStorageSOPInstanceUID")
    p(ds.FrameOfReferenceUID, "FrameOfReferenceUID")
    p(ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID, "ReferencedImageSequence UID")
    p(ds.SourceImageSequence[0].ReferencedSOPInstanceUID, "SourceImageSequence UID")
    p(ds.DeviceSerialNumber, "DeviceSerialNumber (0018,1000)")
    p(ds.StationName, "StationName (0008,1010)")
    p(ds.RequestAttributesSequence[0].RequestedProcedureID, "RequestedProcedureID in SQ")
    p(ds.PerformedProcedureStepID, "PerformedProcedureStepID (0040,0253)")
    ds.StudyID = p("QXS-40417", "StudyID (0020,0010)")

    study_date = "20210817"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.InstanceCreationDate = ds.PerformedProcedureStepStartDate = study_date
    p(study_date, "StudyDate/SeriesDate/AcquisitionDate/ContentDate")
    ds.StudyTime = "134717.250"
    p("134717.250", "StudyTime (0008,0030)")
    ds.OtherPatientNames = "Größmann^Jürgen^^^"
    ds.PatientBirthName = p("Thistlewood^Clementine", "PatientBirthName (0010,1005)")
    ds.PatientMotherBirthName = p("Featherstone^Marguerite", "PatientMotherBirthName (0010,1060)")
    ds.MedicalRecordLocator = p("Shelf QX-17 Ravenscroft", "MedicalRecordLocator (0010,1090)")
    ds.MilitaryRank = p("Wing Commander Quixley", "MilitaryRank (0010,1080)")
    ds.Occupation = p("Lamplighter QX", "Occupation (0010,2180)")
    ds.AdditionalPatientHistory = p("Fell from Quarrington ladder", "AdditionalPatientHistory")
    ds.PatientComments = p("Daughter Octavia Größmann", "PatientComments (0010,4000)")
    ds.ResponsiblePerson = p("Blackwood^Ignatius", "ResponsiblePerson (0010,2297)")
    ds.ResponsiblePersonRole = "PARENT"
    ds.RegionOfResidence = p("Borsetshire Vale", "RegionOfResidence (0010,2152)")
    ds.CountryOfResidence = p("Ruritania", "CountryOfResidence (0010,2150)")
    ds.AdmissionID = p("ADM-77310042", "AdmissionID (0038,0010)")
    ds.PatientState = p("Sedated by Dr Montgomery", "PatientState (0038,0500)")
    ds.StudyDescription = p("Follow-up Größmann ref Huxtable", "StudyDescription (0008,1030)")
    ds.SeriesDescription = p("Chest for Dr Lockhart", "SeriesDescription (0008,103E)")
    ds.ImageComments = p("Patient Ravenswood consented", "ImageComments (0020,4000)")
    ds.AcquisitionComments = p("Scanned by tech Fairweather", "AcquisitionComments")
    ds.DerivationDescription = p("Derived for Abernathy study", "DerivationDescription")
    ds.AdmittingDiagnosesDescription = p("Quixmore syndrome", "AdmittingDiagnosesDescription")
    ds.StudyComments = p("Call Mrs Huxley on 07700 900461", "StudyComments (0032,4000)")
    ds.RequestingService = p("Featherstone Ward 7", "RequestingService (0032,1033)")
    ds.RequestingPhysician = p("Montgomery^Octavian", "RequestingPhysician (0032,1032)")
    ds.PhysiciansOfRecord = p("Abernathy^Rosalind", "PhysiciansOfRecord (0008,1048)")
    ds.PerformingPhysicianName = p("Huxtable^Leopold", "PerformingPhysicianName (0008,1050)")
    ds.NameOfPhysiciansReadingStudy = p("Fairweather^Henrietta", "NameOfPhysiciansReadingStudy")
    ds.ConsultingPhysicianName = p("Pemberton^Thaddeus", "ConsultingPhysicianName (0008,009C)")
    ds.InstitutionalDepartmentName = p("Lockhart Wing Radiology", "InstitutionalDepartmentName")
    ds.ProtocolName = p("Protocol for Blackwood trial", "ProtocolName (0018,1030)")
    ds.PlacerOrderNumberImagingServiceRequest = p("PLC-5531907", "PlacerOrderNumber (0040,2016)")
    ds.FillerOrderNumberImagingServiceRequest = p("FIL-8830214", "FillerOrderNumber (0040,2017)")
    ds.ContentCreatorName = p("Ravensworth^Ambrose", "ContentCreatorName (0070,0084)")

    # three sequence levels: RequestAttributes > ScheduledProtocolCode > ProtocolContext
    ctx = Dataset()
    ctx.ValueType = "PNAME"
    ctx.ConceptNameCodeSequence = DicomSequence([_code("121008", "DCM", "Person Observer Name")])
    ctx.PersonName = p("Wolstenholme^Barnaby", "RequestAttributes>ScheduledProtocolCode>"
                       "ProtocolContext>PersonName (3 levels)")
    ctx2 = Dataset()
    ctx2.ValueType = "TEXT"
    ctx2.ConceptNameCodeSequence = DicomSequence([_code("121106", "DCM", "Comment")])
    ctx2.TextValue = p("Discussed with Mr Quarrington", "3 levels deep > TextValue")
    proto = _code("ZCT01", "99QXM", "CT protocol")
    proto.ProtocolContextSequence = DicomSequence([ctx, ctx2])
    # an even-group element no data dictionary defines, 3 levels deep
    ctx2.add_new(0x0040FF01, "LO", p("Ashcombe-Trevelyan", "3 levels deep > (0040,FF01) "
                                     "not in the data dictionary"))
    req = ds.RequestAttributesSequence[0]
    req.ScheduledProtocolCodeSequence = DicomSequence([proto])
    req.RequestedProcedureComments = p("Ring Dr Pemberton", "RequestAttributes>Comments")
    # private sequence inside a standard item, with a name in its item
    req.add_new(0x00430010, "LO", "ACME RIS BRIDGE 2.1")
    inner = Dataset()
    inner.add_new(0x00090010, "LO", "ACME RIS BRIDGE 2.1")
    inner.add_new(0x00091001, "LO", p("Ottilie Pettifer", "private SQ in standard SQ item"))
    req.add_new(0x00431001, "SQ", DicomSequence([inner]))

    ds.OperatorIdentificationSequence = DicomSequence([Dataset()])
    op = ds.OperatorIdentificationSequence[0]
    op.PersonAddress = p("9 Hawthorn Crescent", "OperatorIdentificationSequence>PersonAddress")
    op.PersonTelephoneNumbers = p("01632 960881", "OperatorIdentificationSequence>Telephone")
    op.InstitutionName = "Ravensworth Memorial Hospital"
    op.PersonIdentificationCodeSequence = DicomSequence(
        [_code(p("QXOP5521", "OperatorIdentification>PersonIdentificationCode"), "L", "Operator")])

    # private blocks: the unknown creator from ct_slice_dataset (0033,1001) already has the name
    ds[0x00331001].value = p("Grossmann Juergen", "unknown creator (0033,1001)")
    ds[0x00331002].value = p("QX-88213-ALT", "unknown creator (0033,1002)")
    # GE creator relocated to block 0x42 (safe element, not identity) ...
    ds.add_new(0x00190042, "LO", "GEMS_ACQU_01")
    ds.add_new(0x00194223, "DS", "39.375")
    # ... and an unknown creator in group 0x0019 block 0x11 using the same offset 0x23
    ds.add_new(0x00190011, "LO", "QXM LOCAL NOTES")
    ds.add_new(0x00191123, "LO", p("Nurse Thistlewood", "(0019,1123) same offset as safe GE"))
    # unknown creator relocated to (0029,0042) -> (0029,4210)
    ds.add_new(0x00290042, "LO", "QXM PRIVATE PATIENT")
    ds.add_new(0x00294210, "LO", p("Pemberton-Quarrington", "(0029,4210) under (0029,0042)"))
    ds.add_new(0x00294211, "DA", p("19570924", "(0029,4211) private DA"))
    # UN private element (as read from an implicit-VR source)
    ds.add_new(0x00710010, "LO", "QXM IMPLICIT DATA")
    ds.add_new(0x00711001, "UN", p("Huxley^Wilhelmina", "UN private (0071,1001)").encode() + b" ")

    # a person name that Table E.1-1 does not list (DICONDE)
    ds.EvaluatorName = p("Kettleborough^Isolde", "EvaluatorName (0014,2006): a PN not in "
                         "Table E.1-1")
    # even-group elements no data dictionary defines (a vendor's misuse, or a damaged tag)
    ds.add_new(0x00101011, "PN", p("Fotheringay^Cuthbert", "(0010,1011) PN not in the "
                                   "data dictionary"))
    ds.add_new(0x0008FF00, "LO", p("Quenby Lodge Clinic", "(0008,FF00) LO not in the "
                                   "data dictionary"))

    # overlay and curve
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60000022, "LO", p("Marked by Dr Featherstone", "Overlay Description (6000,0022)"))
    ds.add_new(0x60001500, "LO", p("Lockwood annotation", "Overlay Label (6000,1500)"))
    ds.add_new(0x60003000, "OW", b"\0" * 8)
    ds.add_new(0x50000005, "US", 1)
    ds.add_new(0x50000010, "US", 2)
    ds.add_new(0x50000020, "CS", "TAC")
    ds.add_new(0x50000022, "LO", p("ECG of Mr Blackmore", "Curve Description (5000,0022)"))
    ds.add_new(0x50002500, "LO", p("Blackmore lead II", "Curve Label (5000,2500)"))
    ds.add_new(0x50003000, "OW", struct.pack("<4H", 1, 2, 3, 4))

    # file level
    pre = p("PREAMBLE Quixmore-Pettigrew", "128-byte preamble")
    ds.preamble = pre.encode().ljust(128, b"\0")
    ds.file_meta.SourceApplicationEntityTitle = p("QXMWS_HUXTABLE", "file meta Source AE Title")
    ds.file_meta.SendingApplicationEntityTitle = p("QXM_SEND_RAVEN", "file meta Sending AE Title")
    ds.file_meta.PrivateInformationCreatorUID = "1.2.826.0.1.3680043.8.498.77"
    ds.file_meta.PrivateInformation = (
        p("meta private Thistlewood", "file meta Private Information (0002,0102)").encode() + b"\0")
    ds.DataSetTrailingPadding = (
        p("TRAILING Montgomery-Huxley", "Data Set Trailing Padding (FFFC,FFFC)").encode())

    if pixels == "jpeg":
        texts = [p("Exif Artist Wolstenholme", "JPEG EXIF APP1 Artist"),
                 p("XMP creator Pettifer", "JPEG XMP APP1"),
                 p("COM tech Blackwood", "JPEG COM segment"),
                 p("IPTC byline Quarrington", "JPEG APP13")]
        rows = cols = 256
        jpegs = [jpeg_with_identity(_sc_image(rng, rows, cols), texts) for _ in range(frames)]
        for name in ("RescaleIntercept", "RescaleSlope", "RescaleType", "WindowCenter",
                     "WindowWidth", "WindowCenterWidthExplanation", "KVP"):
            delattr(ds, name)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.ConversionType = "WSD"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.Modality = "OT"
        ds.PatientOrientation = ["L", "P"]
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.LossyImageCompressionRatio = f"{rows * cols * frames / sum(map(len, jpegs)):.2f}"
        if frames > 1:
            ds.NumberOfFrames = frames
            ds.SOPClassUID = MultiFrameGrayscaleByteSecondaryCaptureImageStorage
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.BurnedInAnnotation = "NO"
            ds.PresentationLUTShape = "IDENTITY"
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
            ds.FrameIncrementPointer = 0x00181063
            ds.FrameTime = "40"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate(jpegs, has_bot=True)
        ds["PixelData"].VR = "OB"
    elif pixels != "native":
        raise ValueError(f"pixels must be 'jpeg' or 'native', not {pixels!r}")
    if implicit:
        if pixels != "native":
            raise ValueError("implicit VR needs pixels='native'")
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds, p.ps
