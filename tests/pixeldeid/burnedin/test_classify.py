"""Burned-in text classification: identity in vendor spellings, safe vocabulary, policies."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pixeldeid.burnedin import classify
from pixeldeid.burnedin.boxes import TextBox
from pixeldeid.burnedin.classify import (
    IdentityValues,
    Vocabulary,
    boxes_to_redact,
    classify_boxes,
    classify_text,
    explain_text,
)
from pixeldeid.errors import ProfileError


def _header() -> Dataset:
    ds = Dataset()
    ds.PatientName = "SMITH^JOHN^Q"
    ds.PatientID = "0012345678"
    ds.AccessionNumber = "A998877"
    ds.PatientBirthDate = "19510829"
    ds.StudyDate = "20200414"
    ds.AcquisitionDateTime = "20161007130745"
    ds.InstitutionName = "CCHS CLEVELAND CLINIC CANADA"
    ds.OperatorsName = "LEAR^AARON"
    ds.ReferringPhysicianName = "KILLEEN^THOMAS^^DR"
    ds.PatientAddress = "123 S MAIN ST, AKRON"
    ds.PatientTelephoneNumbers = "330-555-0199"
    ds.Modality = "US"
    item = Dataset()
    item.PatientID = "MRN7654321"
    ds.OtherPatientIDsSequence = [item]
    return ds


@pytest.fixture(scope="module")
def identity() -> IdentityValues:
    return IdentityValues.from_dataset(_header())


@pytest.fixture(scope="module")
def us() -> Vocabulary:
    return Vocabulary.load("US")


def test_identity_values_from_header(identity):
    assert set(identity.names) == {"SMITH^JOHN^Q", "LEAR^AARON", "KILLEEN^THOMAS^^DR"}
    assert set(identity.ids) == {"0012345678", "A998877", "MRN7654321"}
    assert set(identity.dates) == {"19510829", "20200414", "20161007"}
    assert identity.institutions == ["CCHS CLEVELAND CLINIC CANADA"]
    assert set(identity.other) == {"123 S MAIN ST, AKRON", "330-555-0199"}
    assert not identity.is_empty() and IdentityValues().is_empty()
    assert "SMITH" not in repr(identity)


HEADER_SPELLINGS = [
    # person names: any order, carets, commas, initials, glued, OCR confusions, truncated
    "SMITH, JOHN", "JOHN SMITH", "SMITH^JOHN", "Smith John Q", "J. SMITH", "SMITHJOHN",
    "SMlTH", "5MITH", "SMITH,J", "JS", "J.Q.S.", "THOMAS KILLEEN", "KILLEE...", "KlLLEEN T",
    "AL", "A. Lear", "LEAR",
    # IDs with and without leading zeros, OCR confusions, nested IDs
    "0012345678", "12345678", "OO12345678", "I2345678", "ID 0012345678", "A998877",
    "MRN7654321", "7654321",
    # dates from the header in vendor spellings, with times, glued, OCR confusions
    "08/29/1951", "8/29/1951", "29-AUG-1951", "29 Aug 1951", "1951-08-29", "19510829",
    "29.08.1951", "AUG 29, 1951", "Aug 29 1951", "DOB:08/29/1951M", "O8/29/I95I",
    "4/14/2020", "14.04.2020", "04/14/2020 08:48:26 AM", "8:48:26 AM 4/14/2020", "2020-04-14",
    "7-OCT-2016", "07-Oct-16", "10/07/2016", "20161007",
    # institution (also truncated) and other header text
    "CCHS CLEVELAN...", "CCHSCLEVELAND", "Cleveland Clinic", "123 S MAIN ST", "330-555-0199",
]


@pytest.mark.parametrize("text", HEADER_SPELLINGS)
def test_header_identity_in_any_spelling(text, identity, us):
    label, reason = explain_text(text, identity, us)
    assert label == "identity", reason
    assert text not in reason  # reasons never quote the text


IDENTITY_SHAPES = [
    "03/02/2017", "3/2/17", "12-Jan-2019", "2019-01-12", "20190112", "Jan 12, 2019",
    "Aug-29-1951", "AUG.29.1951", "O7-0CT-2O16", "29. 08. 1951", "12JAN2019", "2 SEPT 2020",
    "10:42 AM", "05:24:57PM", "05.24.57PM", "14:03", "+2.09: 04", "11 : 24:20", "(216) 555-0100", "216.555.0100",
    "000794123", "Acc# 55", "MRN", "DOB", "D.O.B.", "Patient ID", "Name:", "PID",
    "DOE, JANE", "DOE,JANE", "DOE^JANE", "Dr. Who", "Jane Doe, MD", "ST JUDE HOSPITAL",
    "BAPTIST MED CTR", "AGMC Sports Medicine", "XHESThAy MEDICAL*", "Summa Health",
]


@pytest.mark.parametrize("text", IDENTITY_SHAPES)
def test_identity_shapes_without_header(text, us):
    assert classify_text(text, IdentityValues(), us) == "identity"


SAFE_US = [
    "MI 0.6", "TIS 0.4", "TIB:0.5", "TIC 1.2", "MI: 1.4", "TIS0.0MI0.6", "L12-5", "6C1", "C5-1",
    "15L4", "-15L4", "6C1 HD", "36Hz", "17 Hz", "2.5MHz", "PRF 2.5 kHz", "FR 27Hz", "Gn 45",
    "DR 63", "Gn55DR63", "Depth 4cm", "Depth 4 cm", "2.3 cm", "4.0cm-", "60%", "2D-- 100%",
    "75 bpm", "*** bpm", "19fps", "20dB/DR60", "Dyn R 58", "DynR58", "P Med", "Sag Liver L-M",
    "rt hip inj Right Supraspinatus Transverse", "Adv Breast", "Page 1/3", "x3", "+59.3",
    "cm/s", "CINE 0118", "Gen THI", "MBOff", "PLow", "HGen", "Shoulder", "2D", "M3 M4",
    "TIS<0.4 MI=0.8 A0=100%", "30 M", "SIEMENS", "-", "*", "Max 2.3 cm", "120 kV 250 mA",
    "Art 35 cm/s", "3850Hz.", "78DR78.", "TIS<0. 4 MI=0. 8 A0=100%",
]


@pytest.mark.parametrize("text", SAFE_US)
def test_safe_ultrasound_annotations(text, identity, us):
    label, reason = explain_text(text, identity, us)
    assert label == "safe", reason


UNKNOWN_US = ["AGMC Sports", "WESTWAY", "Jane", "B K", "J D", "RUTH",
              "3:PELUIS", "米", "Maple", "",
              # units that are names when alone: safe only beside a number
              "MA", "HU MIN", "Max", "MA MAX", "Art"]


@pytest.mark.parametrize("text", UNKNOWN_US)
def test_unknown_text(text, identity, us):
    assert classify_text(text, identity, us) == "unknown"


def test_vocabulary_is_per_modality(identity):
    ct = Vocabulary.load("CT")
    assert classify_text("2.3 cm", identity, ct) == "safe"       # common words
    assert classify_text("MI 0.6", identity, ct) == "unknown"    # ultrasound words only for US
    assert Vocabulary.load("us") is Vocabulary.load("US")         # cached, case-insensitive
    assert classify_text("TR 500 TE 15", identity, Vocabulary.load("MR")) == "safe"
    assert classify_text("TR 500 TE 15", identity, ct) == "unknown"
    assert classify_text("120 kV 250 mAs B30f", identity, ct) == "safe"
    assert classify_text("LAO 30 CRAN 20", identity, Vocabulary.load("XA")) == "safe"


def test_identity_wins_over_safe_words(us):
    gain = IdentityValues(names=["GAIN^MAX"], ids=["A12"])
    assert classify_text("Gain 45", gain, us) == "identity"
    assert classify_text("A12", gain, us) == "identity"
    # two-letter initials and two-letter IDs do not claim vocabulary words
    miller = IdentityValues(names=["MILLER^IAN"], ids=["US"])
    assert classify_text("MI 0.6", miller, us) == "safe"
    assert classify_text("US", miller, us) == "safe"
    assert classify_text("IM", miller, us) == "identity"
    assert classify_text("Ian", miller, us) == "identity"


def test_accented_names(us):
    values = IdentityValues(names=["MÜLLER^JOSÉ", "NÚÑEZ^ÅSA"])
    for text in ("MULLER, JOSE", "Müller José", "JOSE MUELLER", "NUNEZ", "Asa"):
        assert classify_text(text, values, us) == "identity"
    assert classify_text("AN", values, us) == "identity"  # initials of Åsa Núñez


def test_junk_header_values_are_ignored(us):
    ds = Dataset()
    ds.PatientName = "ANONYMOUS"
    ds.InstitutionName = "NO INFO"
    ds.PatientID = "7"
    empty = IdentityValues.from_dataset(ds)
    assert empty.is_empty()
    assert classify_text("7", empty, us) == "safe"


def test_undecodable_header_element_is_skipped(us):
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = _header()
    rows = Tag(0x00280010)
    ds._dict[rows] = RawDataElement(rows, "US", 3, b"\x01\x02\x03", 0, True, True)  # odd length
    values = IdentityValues.from_dataset(ds)
    assert "SMITH^JOHN^Q" in values.names
    assert classify_text("SMITH JOHN", values, us) == "identity"


def test_policies(identity, us):
    boxes = [TextBox(0, 0, 10, 10, "SMITH, JOHN"), TextBox(0, 20, 10, 30, "MI 0.6"),
             TextBox(0, 40, 10, 50, "Maple"),
             TextBox(50, 0, 90, 20, "", source="template", label="identity")]
    labelled = classify_boxes(boxes, identity, us)
    assert [b.label for b in labelled] == ["identity", "safe", "unknown", "identity"]
    assert boxes_to_redact(labelled, "all-text") == labelled
    for policy in ("phi-only", "auto"):  # unknown is redacted: fail closed
        assert boxes_to_redact(labelled, policy) == [labelled[0], labelled[2], labelled[3]]
    assert boxes_to_redact(labelled, "template") == [labelled[3]]
    assert boxes_to_redact(labelled, "off") == []
    with pytest.raises(ProfileError, match="did you mean 'phi-only'"):
        boxes_to_redact(labelled, "phi_only")


def test_vocabulary_files_are_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nwords: [ok]\ncolour: red\n")
    with pytest.raises(ProfileError, match="invalid vocabulary"):
        Vocabulary.from_files([bad])
    regex = tmp_path / "regex.yaml"
    regex.write_text("name: regex\nwords: []\npatterns: ['[a-z']\n")
    with pytest.raises(ProfileError, match="invalid regular expression"):
        Vocabulary.from_files([regex])
    good = tmp_path / "good.yaml"
    good.write_text("name: good\nwords: [Flux]\npatterns: ['Q\\d']\n")
    v = Vocabulary.from_files([good])
    assert v.is_safe("flux Q7") and not v.is_safe("flux Q77")


def test_shipped_vocabularies_load():
    for path in classify.vocabulary_files():
        Vocabulary.from_files([path])
    assert "mi" in Vocabulary.load("US").words


# -- real captures (PyPI deid-data): the header of the capture, the text OCR reads on it ----
@pytest.fixture(scope="module")
def philips():
    import pydicom

    deid_data = pytest.importorskip("deid_data")
    path = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "GREYSCALE_IMAGE.dcm"
    if not path.is_file():
        pytest.skip("deid-data ultrasound capture not installed")
    return pydicom.dcmread(path)


@pytest.mark.filterwarnings("ignore:The value length")  # the capture's own over-long LO
def test_real_capture_top_band_is_identity_and_settings_are_kept(philips, us):
    from pixeldeid.burnedin.ocr import RapidOcrEngine, get_engine

    if not RapidOcrEngine.is_available():
        pytest.skip("rapidocr not installed")
    identity = IdentityValues.from_dataset(philips)
    boxes = classify_boxes(get_engine("rapidocr", "cpu").read(philips.pixel_array), identity, us)
    top = [b for b in boxes if b.y1 <= 26]  # name, ID, DOB, institution, date and time
    assert len(top) >= 3 and all(b.label == "identity" for b in top)
    assert sum(b.x1 - b.x0 for b in top) > 600  # the band is covered, not one word of it
    settings = [b for b in boxes if b.x1 < 160 and 45 < b.y0 < 270]  # the left column
    kept = [b for b in settings if b not in boxes_to_redact(boxes, "phi-only")]
    assert len(settings) >= 6 and len(kept) >= len(settings) - 2
