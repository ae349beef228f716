"""The residual identity check finds the patient's own identifiers in the forms free text
writes them in: parts of double-barrelled and apostrophe names, the name in full when its
parts are DICOM words, Other Patient IDs, written birth dates, names in ISO 2022 text and in
a sequence item's own character set, and the original instance UIDs the profile replaced.

Each case puts the identifier in an attribute the Basic Profile keeps (Document Title
(0042,0010), Image ID (0054,0400), Retrieve URL (0008,1190)): the file must be quarantined,
and the reason must not repeat the value.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from conftest import outputs
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from pixeldeid._synth import ct_slice_dataset, write_dataset


def _slice(**attrs) -> Dataset:
    """A CT slice of the synthetic corpus with ``attrs`` set (keyword -> value)."""
    ds = ct_slice_dataset(0, 1, seed=11)
    for kw, value in attrs.items():
        setattr(ds, kw, value)
    return ds


def _quarantined(tmp_path: Path, run, ds: Dataset, *secrets: str | bytes,
                 extra: tuple[str, ...] = ()) -> str:
    """Run ``ds`` through ``pixeldeid dicom``; assert it is quarantined, and that neither
    the reason nor any released file holds ``secrets``; return the reason text."""
    src = write_dataset(ds, tmp_path / "in" / "a.dcm")
    rc, out = run(src, *extra)
    released = outputs(out)
    for f in released:
        data = f.read_bytes()
        for s in secrets:
            assert (s if isinstance(s, bytes) else s.encode()) not in data, s
    assert rc == 1 and released == []
    [reason] = (out / "quarantine").rglob("*.reason.txt")
    text = reason.read_text()
    for s in secrets:
        if isinstance(s, str):
            assert s.lower() not in text.lower(), s
    return text


def _released(tmp_path: Path, run, ds: Dataset, *extra: str) -> Dataset:
    src = write_dataset(ds, tmp_path / "in" / "a.dcm")
    rc, out = run(src, *extra)
    assert rc == 0, [p.read_text() for p in (out / "quarantine").rglob("*.reason.txt")]
    [written] = outputs(out)
    return pydicom.dcmread(written)


# -- 1. parts of double-barrelled and apostrophe names ------------------------------------
@pytest.mark.parametrize(("name", "text", "part"), [
    ("Lopez-Zqxbeta^Maria", "Report Zqxbeta", "Zqxbeta"),
    ("Zqxalpha-Lopez^Maria", "ZQXALPHA report", "Zqxalpha"),
    ("O'Zqxmalley^Sean", "Report for zqxmalley", "Zqxmalley"),
    ("D\u2019Zqxangelo^Luca", "Zqxangelo, L", "Zqxangelo"),
])
def test_part_of_a_hyphenated_or_apostrophe_name_is_found(tmp_path: Path, run, name, text,
                                                           part) -> None:
    ds = _slice(SpecificCharacterSet="ISO_IR 192", PatientName=name, DocumentTitle=text)
    assert "identity still present" in _quarantined(tmp_path, run, ds, part)


# -- 2. the name in full when its parts are DICOM words -----------------------------------
@pytest.mark.parametrize(("name", "text"), [
    ("Taylor^Robert", "CT report for Robert Taylor"),
    ("Taylor^Robert", "TAYLOR, ROBERT"),
    ("Taylor^Robert^J", "Prior: TAYLOR^ROBERT"),
    ("Taylor^Robert", "taylor robert"),
    ("Brown^Gray", "Gray Brown follow-up"),
    ("Moore^Long^White", "Long White Moore"),
    ("Green^Miller^White", "Green, Miller White"),
])
def test_full_name_of_dictionary_words_is_found(tmp_path: Path, run, name, text) -> None:
    ds = _slice(PatientName=name, DocumentTitle=text)
    assert "identity still present" in _quarantined(tmp_path, run, ds, text)


def test_one_dictionary_word_of_the_name_alone_is_no_finding(tmp_path: Path, run) -> None:
    """A name part that is a DICOM word alone ("Long" in a kept description) cannot be told
    from DICOM vocabulary: no quarantine for it (the name in full is a finding above)."""
    ds = _slice(PatientName="Taylor^Robert", DocumentTitle="Long axis Taylor series",
                ImageID="Robert")
    o = _released(tmp_path, run, ds)
    assert o.DocumentTitle == "Long axis Taylor series"


# -- 3. Other Patient IDs and other names -------------------------------------------------
def test_patient_id_of_other_patient_ids_sequence_is_found(tmp_path: Path, run) -> None:
    it = Dataset()
    it.PatientID = "OTH77123X"
    it.IssuerOfPatientID = "ZQXHOSP"
    it.TypeOfPatientID = "TEXT"
    ds = _slice(OtherPatientIDsSequence=[it], ImageID="OTH77123X")
    assert "identity still present" in _quarantined(tmp_path, run, ds, "OTH77123X")


def test_each_value_of_retired_other_patient_ids_is_found(tmp_path: Path, run) -> None:
    ds = _slice(OtherPatientIDs=["ZQX5550101", "ZQX5550202"], ImageID="ZQX5550202")
    assert "identity still present" in _quarantined(tmp_path, run, ds, "ZQX5550202")


def test_issuer_of_other_patient_id_is_no_identity(tmp_path: Path, run) -> None:
    """The issuer names the assigning authority, not the patient: it is no token."""
    it = Dataset()
    it.PatientID = "OTH77123X"
    it.IssuerOfPatientID = "ZQXHOSP"
    ds = _slice(OtherPatientIDsSequence=[it], ImageID="ZQXHOSP")
    assert _released(tmp_path, run, ds).ImageID == "ZQXHOSP"


@pytest.mark.parametrize("keyword", ["PatientBirthName", "PatientMotherBirthName",
                                     "OtherPatientNames"])
def test_other_names_of_the_patient_are_found_in_full(tmp_path: Path, run, keyword) -> None:
    ds = _slice(DocumentTitle="Letter to Robert White")
    setattr(ds, keyword, "White^Robert")
    assert "identity still present" in _quarantined(tmp_path, run, ds, "Robert White")


# -- 4. the birth date as written -----------------------------------------------------------
@pytest.mark.parametrize("form", ["11.03.1947", "11/03/1947", "03/11/1947", "1947-03-11",
                                  "1947/03/11", "11-03-1947"])
def test_birth_date_in_a_written_form_is_found(tmp_path: Path, run, form) -> None:
    ds = _slice(PatientBirthDate="19470311", ImageID=f"DOB {form}")
    assert "identity still present" in _quarantined(tmp_path, run, ds, form)


def test_birth_date_with_a_two_digit_year_is_no_finding(tmp_path: Path, run) -> None:
    """Only 4-digit-year forms are searched for: 11.03.47 looks like too much else."""
    ds = _slice(PatientBirthDate="19470311", ImageID="v 11.03.47")
    assert _released(tmp_path, run, ds).ImageID == "v 11.03.47"


# -- 5. character sets --------------------------------------------------------------------
@pytest.mark.parametrize(("keyword", "text"), [("DocumentTitle", "山田太郎様検査報告"),
                                               ("ImageID", "山田様"),
                                               ("ImageID", "Yamada-sama")])
def test_name_in_iso_2022_text_is_found(tmp_path: Path, run, keyword, text) -> None:
    """ISO 2022 IR 87: a name followed by more kanji is no escape-wrapped byte string of
    its own; the check searches the decoded text."""
    ds = _slice(SpecificCharacterSet=["", "ISO 2022 IR 87"],
                PatientName="Yamada^Tarou=山田^太郎=やまだ^たろう")
    setattr(ds, keyword, text)
    _quarantined(tmp_path, run, ds, text.encode("iso2022_jp"))


def test_name_in_a_sequence_items_own_character_set_is_found(tmp_path: Path, run) -> None:
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 100"
    item.CodeValue = "1"
    item.CodingSchemeDesignator = "99LOCAL"
    item.CodeMeaning = "Größmann Befund"
    ds = _slice(SpecificCharacterSet="ISO_IR 192", PatientName="Größmann^Jürgen",
                ViewCodeSequence=[item])
    _quarantined(tmp_path, run, ds, "Größmann".encode("latin-1"), "Größmann")


# -- 6. original instance UIDs ------------------------------------------------------------
def test_original_series_uid_in_a_kept_element_is_replaced(tmp_path: Path, run) -> None:
    """An element the table does not list (kept) holding a UID the profile replaced
    (a converter's note; a URL the engine now removes was the first such case): the UID
    in the text is replaced as the element is (it was quarantined as a residual)."""
    series = "1.2.826.0.1.3680043.2.1125.55"
    ds = _slice(SeriesInstanceUID=series, SoftwareVersions=f"conv from {series}")
    o = _released(tmp_path, run, ds)
    assert o.SoftwareVersions == f"conv from {o.SeriesInstanceUID}" != f"conv from {series}"


def test_longer_uid_under_the_original_is_no_finding(tmp_path: Path, run) -> None:
    """A study UID is often the root of others: a UID that only begins with a replaced
    original (a URL to some other object) is no residual of it."""
    study = generate_uid(prefix="1.2.826.0.1.3680043.8.498.")
    ds = _slice(StudyInstanceUID=study, SoftwareVersions=f"{study}.7")
    o = _released(tmp_path, run, ds)
    assert str(o.StudyInstanceUID) != study


def test_a_patient_in_the_hospitals_town_is_no_finding_when_the_institution_is_kept(
        tmp_path: Path, run) -> None:
    """Under Retain Institution Identity the kept Institution Address names the town the
    patient's own address names too: every such file was quarantined (and the fast path
    declined it)."""
    ds = _slice(PatientAddress="4 Mill Lane, Middlemarch MM2 7QX",
                InstitutionAddress="1 Infirmary Square, Middlemarch MM1 4QX")
    o = _released(tmp_path, run, ds, "--option", "retain-institution-identity")
    assert "Middlemarch" in str(o.InstitutionAddress)
    assert "PatientAddress" not in o


def test_an_id_used_as_the_name_is_no_finding_in_the_pseudonym(tmp_path: Path, run) -> None:
    """A collection (TCIA's Vestibular-Schwannoma-SEG) names its patients by ID:
    "VS-SEG-001". Split at its hyphens, the name gave the token "001", which the written
    pseudonym SUBJ_001 holds as a word: every file of the series was quarantined."""
    ds = _slice(PatientName="VS-SEG-001", PatientID="VS-SEG-001")
    o = _released(tmp_path, run, ds, "--prefix", "SUBJ")
    assert str(o.PatientID) == "SUBJ_001"
