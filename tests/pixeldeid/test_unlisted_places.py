"""Identity in places a first version missed: AE titles under Retain Device Identity, code
meanings in SR content, a sequence written as bytes, instance UIDs under the DICOM root,
URLs and alternative-calendar dates the table does not list, and quarantine reasons that
repeated a bad value."""

from __future__ import annotations

import io
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


# -- red team round 2 (session 9) -----------------------------------------------------
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"


def _gsps(**values) -> Dataset:
    ds = _ct(sop=GSPS)
    for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
               "SamplesPerPixel", "PhotometricInterpretation", "PixelData"):
        delattr(ds, kw)
    ds.Modality, ds.ContentLabel = "PR", "LABEL"
    ds.PresentationCreationDate, ds.PresentationCreationTime = "20200102", "101010"
    for k, v in values.items():
        setattr(ds, k, v)
    return ds


def test_the_residual_check_finds_a_name_that_runs_into_the_next_tag():
    """A kept value of even length that ends in the name is followed by the next tag's
    group, whose low byte is a letter for group 0070 ('p'): the name was no whole word in
    the byte stream and the file was released."""
    from pixeldeid.api import DeidConfig, Deidentifier
    from pixeldeid.errors import DeidError

    deid = Deidentifier(DeidConfig(key=b"k" * 32))
    ds = deid.deidentify_dataset(_gsps())
    ds.ContentDescription = "Annotations for ZQXLEAKNAME1"  # even length: no pad byte
    ds.ContentCreatorName = ""  # (0070,0084) follows
    with pytest.raises(DeidError, match="identity still present"):
        deid.encode(ds)
    ds.ContentDescription = "Annotations for ZQXLEAKNAME1X"  # another word: no finding
    deid.encode(ds)


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "pydicom"])
def test_names_of_other_people_leave_the_free_text_that_is_kept(tmp_path, run, fast,
                                                                monkeypatch):
    """Referring Physician's and Operators' Name were removed, but the same names stayed
    in Content Description and Graphic Layer Description (attributes Table E.1-1 does not
    list). They are taken out; the patient's name there quarantines the file."""
    if not fast:
        monkeypatch.setattr(batch, "_fast_path_allowed", lambda *a: False)
    layer = Dataset()
    layer.GraphicLayer, layer.GraphicLayerOrder = "L1", 1
    layer.GraphicLayerDescription = "Zqxvexley measurements"
    ds = _gsps(ReferringPhysicianName="ZQXDRUMWELL^Hortensia", OperatorsName="Zqxvexley^Otto",
               ContentDescription="Annotated by Dr ZQXDRUMWELL for review",
               GraphicLayerSequence=[layer])
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None
    low = data.lower()
    assert b"zqxdrumwell" not in low and b"zqxvexley" not in low
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert out.ContentDescription == "Annotated by Dr for review"
    assert out.GraphicLayerSequence[0].GraphicLayerDescription == "measurements"
    assert out.ContentLabel == "LABEL"
    ds.ContentDescription = "Annotated for ZQXLEAKNAME1"
    status, out_dir, data = _deid(tmp_path / "patient", run, ds)
    assert status == 1 and data is None


def test_a_persons_name_left_where_text_is_not_cleaned_quarantines(tmp_path, run):
    """An operator's name in a kept code value (codes are not cleaned) is a residual."""
    ds = _ct(OperatorsName="Zqxvexley^Otto")
    ds.AnatomicRegionSequence = [_code("ZQXVEXLEY", "99LOCAL", "Chest")]
    status, out, data = _deid(tmp_path, run, ds)
    assert status == 1 and data is None
    (reason,) = (out / "quarantine").glob("*.reason.txt")
    assert "identity still present" in reason.read_text()


@pytest.mark.parametrize("keyword,tag", [
    ("IssuerOfPatientIDQualifiersSequence", 0x00100024),
    ("IssuerOfAccessionNumberSequence", 0x00080051),
    ("OrderPlacerIdentifierSequence", 0x00400026),
    ("OrderFillerIdentifierSequence", 0x00400027)])
def test_issuer_and_order_sequences_go(tmp_path, run, keyword, tag):
    """The hospital's namespace and OID in the issuer sequences the table does not list
    were kept under Basic (Issuer of Patient ID, naming the same issuer, goes)."""
    item = Dataset()
    item.LocalNamespaceEntityID, item.UniversalEntityID = "ZQXGRIMSBY", "zqx-grimsby.example.org"
    item.UniversalEntityIDType = "DNS"
    ds = _ct(**{keyword: [item]})
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None
    assert b"ZQXGRIMSBY" not in data and b"zqx-grimsby" not in data
    assert Tag(tag) not in pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))


def test_retired_order_numbers_and_trial_text_go(tmp_path, run):
    ds = _ct()
    for tag, vr in ((0x00401006, "SH"), (0x00401007, "SH"), (0x00402006, "SH"),
                    (0x00402007, "SH"), (0x0040A992, "ST"), (0x0040A33A, "ST")):
        ds.add_new(tag, vr, f"ZQX{tag & 0xFFFF:04X}")
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None
    assert b"ZQX" not in data


def _item_bytes(inner: Dataset, implicit: bool) -> bytes:
    from pydicom.filewriter import write_dataset

    buf = pydicom.filebase.DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    write_dataset(buf, inner)
    item = buf.getvalue()
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item


def test_a_safe_private_sequence_written_as_bytes_is_removed(tmp_path, run):
    """Philips' Presentation State Sequence (safe, SQ) written with VR OB was copied unread
    under Retain Safe Private: a name and an original UID in its item were released. A VR
    of another kind than the table's: the element goes, the file is released."""
    inner = Dataset()
    inner.PersonName = "ZQXDRUMWELL^Hortensia"
    ds = _ct()
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 129")
    ds.add_new(0x20011000, "OB", _item_bytes(inner, False))
    status, out, data = _deid(tmp_path, run, ds, "--option", "retain-safe-private")
    assert status == 0 and b"ZQXDRUMWELL" not in data
    assert 0x20011000 not in pydicom.dcmread(io.BytesIO(data))


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "pydicom"])
def test_a_safe_private_sequence_stored_as_un_is_read_and_walked(tmp_path, run, fast,
                                                                 monkeypatch):
    """Philips' View Geometry (safe, SQ) stored as UN with defined lengths was iterated as
    bytes: the file was quarantined with an internal AttributeError."""
    if not fast:
        monkeypatch.setattr(batch, "_fast_path_allowed", lambda *a: False)
    inner = Dataset()
    inner.ReferringPhysicianName = "ZQXDRUMWELL^Hortensia"
    inner.SliceThickness = "1.5"
    ds = _ct()
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 097")
    ds.add_new(0x20011001, "UN", _item_bytes(inner, True))
    status, _, data = _deid(tmp_path, run, ds, "--option", "retain-safe-private")
    assert status == 0 and data is not None
    assert b"ZQXDRUMWELL" not in data
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    (item,) = out[0x20011001].value
    assert item.SliceThickness == 1.5 and "ReferringPhysicianName" in item  # walked, kept
    assert str(item.ReferringPhysicianName) != "ZQXDRUMWELL^Hortensia"


def test_an_encapsulated_pdf_is_not_released_as_nul_bytes(tmp_path, run):
    """Table E.1-1's D for Encapsulated Document gave a 'PDF' of NUL bytes, released with
    exit 0: the document cannot be de-identified, so the file is quarantined."""
    ds = _ct(sop="1.2.840.10008.5.1.4.1.1.104.1")
    for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
               "SamplesPerPixel", "PhotometricInterpretation", "PixelData"):
        delattr(ds, kw)
    ds.Modality, ds.MIMETypeOfEncapsulatedDocument = "DOC", "application/pdf"
    ds.DocumentTitle = "Report"
    ds.EncapsulatedDocument = b"%PDF-1.4 (ZQXLEAKNAME1) %%EOF\n"
    status, out, data = _deid(tmp_path, run, ds)
    assert status == 1 and data is None
    (reason,) = (out / "quarantine").glob("*.reason.txt")
    assert "encapsulated document" in reason.read_text()


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "pydicom"])
@pytest.mark.parametrize("vr", ["CS", "DS", "UR", "IS"])
def test_a_descriptor_written_with_another_vr_is_cleaned(tmp_path, run, fast, monkeypatch, vr):
    """Study Description (LO, C under Clean Descriptors) written as CS, DS, UR or IS by a
    damaged or foreign file: it was kept as it was, with the removed institution's name
    and address in it. It is cleaned as the text it is, and written as LO."""
    if not fast:
        monkeypatch.setattr(batch, "_fast_path_allowed", lambda *a: False)
    ds = _ct(InstitutionName="Zqxinstitute", InstitutionAddress="Zqxstreet 5")
    value = b"Zqxinstitute Zqxstreet head"
    tag = Tag(0x00081030)
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    status, _, data = _deid(tmp_path, run, ds, "--profile", "tcia-like")
    assert status == 0 and data is not None
    assert b"zqxinstitute" not in data.lower() and b"zqxstreet" not in data.lower()
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert (out["StudyDescription"].VR, out.StudyDescription) == ("LO", "head")


@pytest.mark.parametrize("fast", [True, False], ids=["raw", "pydicom"])
@pytest.mark.parametrize(("keyword", "vr", "value", "kept"), [
    ("SeriesNumber", "IS", b"DRJONES-ONCALL", False),        # kept by the table (untabled)
    ("SliceThickness", "DS", b"ZQXHOSP 2", False),
    ("PatientWeight", "DS", b"Zqxtechname", False),          # K under patient characteristics
    ("SliceThickness", "DS", b"1,25", True),                 # a decimal comma: a number
    ("SliceLocation", "DS", b"-12.5E+01\\NaN ", True),
])
def test_text_in_a_kept_number_is_not_released(tmp_path, run, fast, monkeypatch, keyword, vr,
                                                value, kept):
    """A name typed into a number (Series Number "DRJONES-ONCALL") was released as it was:
    the residual check knows only the names in the file. Text that is no number is not
    released; numbers written loosely (a decimal comma, NaN) are kept."""
    if not fast:
        monkeypatch.setattr(batch, "_fast_path_allowed", lambda *a: False)
    ds = _ct()
    tag = Tag(keyword)
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    status, out, data = _deid(tmp_path, run, ds, "--profile", "tcia-like")
    if kept:
        assert status == 0 and value in data
        return
    assert status == 1 and data is None
    [reason] = (out / "quarantine").glob("*.reason.txt")
    text = reason.read_text()
    assert f"{keyword} " in text and "text in a number" in text
    assert value.decode()[:6] not in text  # the value's shape only, never the value


@pytest.mark.parametrize("written", ["ZQX-88231", "zqx 88231", "ZQX_88231", "ZQX.88231"])
def test_an_id_written_with_a_separator_is_the_id(tmp_path, run, written):
    """Patient ID ZQX88231 written ZQX-88231 or ZQX 88231 (where its letters meet its
    digits) in a descriptor is cleaned under Clean Descriptors, and in kept text the table
    does not list it quarantines the file, as the ID written plainly does."""
    ds = _ct(PatientID="ZQX88231", StudyDescription=f"CT ref {written} head",
             ImageComments=f"{written}")
    status, _, data = _deid(tmp_path, run, ds, "--profile", "tcia-like")
    assert status == 0 and data is not None
    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert out.StudyDescription == "CT ref head"
    assert b"88231" not in data
    ds = _ct(PatientID="ZQX88231", ContentDescription=f"ref {written}")
    status, _, data = _deid(tmp_path / "kept", run, ds)
    assert status == 1 and data is None


@pytest.mark.parametrize("latin1", [False, True])
def test_a_text_too_long_for_its_vr_is_cleaned_as_text(tmp_path, run, latin1):
    """Image Comments of 64 KB or more, which explicit VR writes as UN: under Clean
    Descriptors it was released as the Python repr of its bytes (b'...'), or, holding a
    Latin-1 letter, quarantined with a TypeError."""
    from pydicom.dataelem import DataElement

    lead = "Nachkontrolle Größe, Dr Quixmore. " if latin1 else "Follow-up, Dr Quixmore. "
    text = lead + "Findings unremarkable. " * 3000
    ds = _ct(ReferringPhysicianName="Quixmore^Hans")
    ds[0x00204000] = DataElement(0x00204000, "UN", text.encode("latin-1"))
    status, _, data = _deid(tmp_path, run, ds, "--profile", "tcia-like")
    assert status == 0
    value = pydicom.dcmread(io.BytesIO(data))[0x00204000].value
    value = value.decode("latin-1") if isinstance(value, bytes) else value
    assert not value.startswith("b'") and "Quixmore" not in value
    assert value.startswith(lead.split(",")[0]) and value.rstrip().endswith("unremarkable.")


def test_a_uid_in_kept_text_is_replaced_as_the_uid_elements_are(tmp_path, run):
    """A Content Description "see <UID of an image>" kept the original UID when the file
    did not reference that image itself (the same text in a file that did was
    quarantined): the UID in text is replaced by the one the image gets."""
    image, note = _ct(), _ct(ContentDescription="")
    note.ContentDescription = f"see {image.SOPInstanceUID} v 2.0.1.5"
    src = tmp_path / "in"
    src.mkdir()
    image.save_as(src / "image.dcm", enforce_file_format=True)
    note.save_as(src / "note.dcm", enforce_file_format=True)
    status, out = run(src)
    assert status == 0
    released = {(d := pydicom.dcmread(p)).get("ContentDescription", ""): d
                for p in out.rglob("*.dcm") if "quarantine" not in p.parts}
    new_uid = released[""].SOPInstanceUID
    assert f"see {new_uid} v 2.0.1.5" in released
    assert all(image.SOPInstanceUID.encode() not in p.read_bytes() for p in out.rglob("*.dcm"))


def test_uids_in_kept_text_in_every_writing_and_values_stay_valid(tmp_path, run):
    """A UID ending a sentence, with a "_suffix" or with a leading-zero arc (Toshiba/Canon)
    was released; a coding scheme's OID in Coding Scheme External ID became a 2.25 UID;
    a UID replaced in an SH value made it longer than SH allows."""
    a, b = "1.2.826.0.1.3680043.8.498.1111111", "1.2.392.200036.9116.2.6.1.48.12148.09547"
    scheme = Dataset()
    scheme.CodingSchemeDesignator = "SCT"
    scheme.CodingSchemeUID = scheme.CodingSchemeExternalID = "2.16.840.1.113883.6.96"
    ds = _ct(ContentDescription=f"compare with {a}.", ReconstructionMethod=f"prior {b} x",
             ConvolutionKernel=f"{a}_r")
    ds.CodingSchemeIdentificationSequence = [scheme]
    status, _, data = _deid(tmp_path, run, ds)
    assert status == 0 and a.encode() not in data and b.encode() not in data
    out = pydicom.dcmread(io.BytesIO(data))
    assert out.ContentDescription.startswith("compare with 2.25.")
    assert out.ContentDescription.endswith(".")
    assert out.ReconstructionMethod.startswith("prior 2.25.")
    assert len(out.ConvolutionKernel) <= 16 and "1111111" not in out.ConvolutionKernel
    assert out.CodingSchemeIdentificationSequence[0].CodingSchemeExternalID == \
        "2.16.840.1.113883.6.96"
