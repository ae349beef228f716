"""Identity in places a first version missed: AE titles under Retain Device Identity, code
meanings in SR content, a sequence written as bytes, instance UIDs under the DICOM root,
URLs and alternative-calendar dates the table does not list, and quarantine reasons that
repeated a bad value."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pixeldeid import batch

NAME = "ZQXLEAKNAME1^ZQXGIVEN"


def _ct(**values) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = values.pop("sop", CTImageStorage)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = NAME, "MRN88231", "19470311", "M"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyTime, ds.Modality, ds.StudyID = "20200101", "101010", "CT", "1"
    ds.SeriesNumber, ds.InstanceNumber, ds.AccessionNumber = 1, 1, "ACC55120"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


def _deid(tmp_path: Path, run, ds: Dataset, *extra: str) -> tuple[int, Path, bytes | None]:
    src = tmp_path / "in" / "a.dcm"
    src.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(src, enforce_file_format=True)
    status, out = run(src, *extra)
    files = [p for p in out.rglob("*.dcm") if p.parts[len(out.parts)] not in
             ("quarantine", ".pixeldeid")]
    return status, out, files[0].read_bytes() if files else None


def test_ae_titles_holding_a_removed_name_are_replaced(tmp_path, run):
    """Table E.1-1 gives C to Station AE Title and ten other AE attributes under Retain
    Device Identity; the engine cleaned no AE value, so an operator's name in one stayed."""
    ds = _ct(OperatorsName="ZQXOPER^Bob", PerformingPhysicianName="ZQXPERFDOC^Ann",
             StationAETitle="ZQXOPER_WS", RetrieveAETitle="ZQXPERFDOC",
             ScheduledStudyLocationAETitle="CT_ROOM_07")
    status, _, data = _deid(tmp_path, run, ds, "--option", "retain-device-identity")
    assert status == 0 and data is not None
    assert b"ZQXOPER" not in data and b"ZQXPERFDOC" not in data
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert out.StationAETitle and out.RetrieveAETitle  # replaced, not removed
    assert out.ScheduledStudyLocationAETitle == "CT_ROOM_07"  # a device's title stays


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _sr() -> Dataset:
    ds = _ct(sop="1.2.840.10008.5.1.4.1.1.88.11")
    for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
               "SamplesPerPixel", "PhotometricInterpretation", "PixelData"):
        delattr(ds, kw)
    ds.Modality, ds.ValueType, ds.ContinuityOfContent = "SR", "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic Imaging Report")]
    ds.ReferringPhysicianName = "ZQXREFDOC^Alan"
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", "CODE"
    item.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
    item.ConceptCodeSequence = [_code("L99", "99LOCAL", "Referred by ZQXREFDOC for review")]
    ds.ContentSequence = [item]
    return ds


def test_code_meanings_in_cleaned_sr_content_lose_the_names(tmp_path, run):
    """Under Clean Structured Content a TEXT item lost the referring physician's name, but
    the same words in a CODE item's Code Meaning were released; the code itself stays."""
    status, _, data = _deid(tmp_path, run, _sr(), "--option", "clean-structured-content")
    assert status == 0 and data is not None
    assert b"ZQXREFDOC" not in data
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    code = out.ContentSequence[0].ConceptCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("L99", "99LOCAL")
    assert code.CodeMeaning == "Referred by for review"
    finding = out.ContentSequence[0].ConceptNameCodeSequence[0]
    assert finding.CodeMeaning == "Finding"  # no identity: untouched


def test_the_patients_name_in_a_code_meaning_is_removed_under_basic(tmp_path, run):
    ds = _sr()
    ds.ContentSequence[0].ConceptCodeSequence[0].CodeMeaning = "Seen ZQXLEAKNAME1 today"
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None
    assert b"ZQXLEAKNAME1" not in data


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "pydicom"])
def test_under_basic_code_meanings_keep_only_the_standards_words(tmp_path, run, fast,
                                                                 monkeypatch):
    """Under Basic the Content Sequence is dummied: a physician's name (not one of the
    patient's identity words) in the meaning of a private code was released. A private
    code's meaning is now replaced; a standard code gets the standard's meaning back."""
    ds = _sr()
    ds.ContentSequence[0].ConceptNameCodeSequence = [
        _code("121071", "DCM", "Finding by ZQXOTHERDOC^Maya")]
    if not fast:
        monkeypatch.setattr(batch, "_fast_path_allowed", lambda *a: False)
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None
    assert b"ZQXREFDOC" not in data and b"ZQXOTHERDOC" not in data
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    item = out.ContentSequence[0]
    assert item.ConceptNameCodeSequence[0].CodeMeaning == "Finding"
    code = item.ConceptCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("L99", "99LOCAL")
    assert code.CodeMeaning == "REMOVED"
    assert out.ConceptNameCodeSequence[0].CodeMeaning == "Diagnostic Imaging Report"


def test_cleaned_content_gives_standard_codes_their_meaning(tmp_path, run):
    """SRT (retired SNOMED form) and SCT codes are looked up; a standard meaning written
    in other case stays as written."""
    ds = _sr()
    ds.ContentSequence[0].ConceptNameCodeSequence = [_code("T-62000", "SRT", "Liver of Dr X")]
    extra = Dataset()
    extra.RelationshipType, extra.ValueType = "CONTAINS", "CODE"
    extra.ConceptNameCodeSequence = [_code("121071", "DCM", "FINDING")]
    extra.ConceptCodeSequence = [_code("10200004", "SCT", "Liver")]
    ds.ContentSequence.append(extra)
    status, _, data = _deid(tmp_path, run, ds, "--option", "clean-structured-content")
    assert status == 0 and data is not None
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert out.ContentSequence[0].ConceptNameCodeSequence[0].CodeMeaning == "Liver"
    assert out.ContentSequence[1].ConceptNameCodeSequence[0].CodeMeaning == "FINDING"
    assert out.ContentSequence[1].ConceptCodeSequence[0].CodeMeaning == "Liver"


def _implicit_item(elements: list[tuple[int, bytes]]) -> bytes:
    body = b""
    for tag, val in elements:
        val += b" " * (len(val) % 2)
        body += struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(val)) + val
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def test_a_sequence_written_as_bytes_is_quarantined(tmp_path, run):
    """View Code Sequence written with VR OB (some converters do) was copied unread, and
    a name and another ID in its item were released."""
    item = _implicit_item([(0x00080090, b"ZQXREFDOC^Alan"), (0x00101000, b"OTH77123X")])
    ds = _ct()
    tag = Tag(0x00540220)
    ds._dict[tag] = RawDataElement(tag, "OB", len(item), item, 0, False, True)
    status, out, data = _deid(tmp_path, run, ds)
    assert status == 1 and data is None
    (reason,) = (out / "quarantine").glob("*.reason.txt")
    assert "ViewCodeSequence: a sequence encoded with VR OB" in reason.read_text()


def test_instance_uids_under_the_dicom_root_are_replaced(tmp_path, run):
    """Every UID under 1.2.840.10008. was taken for one the standard defines and kept, so
    a Study Instance UID allocated there was released."""
    ds = _ct(StudyInstanceUID="1.2.840.10008.99.88231.4",
             FrameOfReferenceUID="1.2.840.10008.1.4.1.1")  # well-known (Talairach)
    ds.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
    ds.ConceptNameCodeSequence[0].ContextUID = "1.2.840.10008.6.1.2"  # a context group
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None
    assert b"1.2.840.10008.99.88231.4" not in data
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert out.StudyInstanceUID.startswith("2.25.")
    assert out.FrameOfReferenceUID == "1.2.840.10008.1.4.1.1"
    assert out.ConceptNameCodeSequence[0].ContextUID == "1.2.840.10008.6.1.2"
    assert out.SOPClassUID == CTImageStorage


def test_urls_and_alternative_calendar_dates_are_removed(tmp_path, run):
    """Table E.1-1 (2024c) lists neither Retrieve URL (a server and the original UIDs) nor
    the alternative-calendar birth date; both were kept. Coding scheme URLs stay."""
    ds = _ct()
    ds.RetrieveURL = f"https://pacs.zqxhospital.org/wado/series/{ds.SeriesInstanceUID}"
    ds.PatientBirthDateInAlternativeCalendar = "1326/05/12"
    ds.PatientDeathDateInAlternativeCalendar = "1399/01/02"
    ds.PatientAlternativeCalendar = "I"
    scheme = Dataset()
    scheme.CodingSchemeDesignator, scheme.CodingSchemeURL = "99ZQX", "https://codes.example.org/"
    ds.CodingSchemeIdentificationSequence = [scheme]
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None
    for planted in (b"zqxhospital", str(ds.SeriesInstanceUID).encode(), b"1326/05/12",
                    b"1399/01/02"):
        assert planted not in data
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert out.CodingSchemeIdentificationSequence[0].CodingSchemeURL == "https://codes.example.org/"


def test_a_bad_value_is_described_not_repeated(tmp_path, run, capsys):
    """A Study Time holding the birth date (a data-entry slip) could not be shifted; the
    reason repeated the value on the terminal, in the reason file and in the ledger."""
    status, out, data = _deid(tmp_path, run, _ct(StudyTime="19470311"),
                              "--option", "retain-longitudinal-modified-dates")
    assert status == 1 and data is None
    err = capsys.readouterr().err
    assert "invalid TM value of the form '99999999'" in err and "19470311" not in err
    (reason,) = (out / "quarantine").glob("*.reason.txt")
    assert "19470311" not in reason.read_text()
    con = sqlite3.connect(out / ".pixeldeid" / "ledger.sqlite")
    rows = [str(r) for r in con.execute("SELECT * FROM files")]
    con.close()
    assert rows and not any("19470311" in r for r in rows)
