"""dciodvfy wrapper: parsing and normalization, and new errors between input and output."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian

from pixeldeid import dciodvfy
from pixeldeid.dciodvfy import Finding, new_errors, normalize, parse_output, run_dciodvfy
from pixeldeid.errors import MissingDependencyError
from tests.pixeldeid.corpus import ct_slice_dataset, write_dataset

needs_dciodvfy = pytest.mark.skipif(not dciodvfy.is_available(),
                                    reason="dciodvfy (dicom3tools) not installed")

SAMPLE = """\
CTImage
Error - Missing attribute Type 1 Required Element=<PatientID> Module=<Patient>
Warning - Unrecognized defined term <99QXM> for value 1 of attribute <Coding Scheme Designator>
(0x0033,0x1001)  ?  - Warning - Unrecognized tag - assuming explicit value representation OK
Error - Value invalid for this VR - (0x0008,0x1150) UI Referenced SOP Class UID  UI [1] = <0> - Nothing but zero components
Error - Illegal root for UID - "9.8.7.6" in (0x0008,0x1155) Referenced SOP Instance UID
Warning - Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  PN [1] = <QUIXMORE^Zebulon> - Retired Person Name form
(0x0008,0x0023) DA Content Date Error - Tag read failed - Implicit VR encoding even though supposed to be explicit
Error - Orientation vector is not unit vector for  vector of VelocityEncodingDirection - values are 0\\0\\0
Error - StudyInstanceUID has same value as FrameOfReferenceUID <1.2.333.4444.5.6.7.8.9>
dciodvfy: attrothr.cc:46: void Other::Proposal(): Assertion `bitsallocated <= 8' failed.
"""


def test_parse_output_severity_and_normalized_messages():
    f = parse_output(SAMPLE)
    assert [x.severity for x in f] == ["Error", "Warning", "Warning", "Error", "Error", "Warning",
                                       "Error", "Error", "Error", "Error"]
    msgs = [x.message for x in f]
    assert msgs[0] == "Missing attribute Type 1 Required Element=<PatientID> Module=<Patient>"
    assert msgs[1] == ("Unrecognized defined term <> for value 1 of attribute "
                       "<Coding Scheme Designator>")
    assert msgs[2] == ("(0x0033,0x1001) ? - Unrecognized tag - assuming explicit value "
                       "representation OK")
    assert "= <>" in msgs[3] and "<0>" not in msgs[3]
    assert "9.8.7.6" not in msgs[4]
    assert "QUIXMORE" not in msgs[5] and msgs[5].endswith("Retired Person Name form")
    assert msgs[6].startswith("(0x0008,0x0023) DA Content Date - Tag read failed")
    assert msgs[7].endswith("values are ...")
    assert "1.2.333" not in msgs[8]
    assert msgs[9].startswith("dciodvfy failed:")
    assert all("Quixmore" not in m.upper() for m in msgs)
    assert "QUIXMORE" in f[5].raw  # the raw line is kept, but not compared
    assert Finding("Error", "x", "a") == Finding("Error", "x", "b")


def test_normalize_removes_paths():
    p = "/data/in/Quixmore_Zebulon/IM00001.dcm"
    assert "Quixmore" not in normalize(f"Error - cannot open {p}", p)


@needs_dciodvfy
def test_synthetic_ct_has_no_iod_errors(tmp_path):
    path = write_dataset(ct_slice_dataset(0, 1, seed=2), tmp_path / "ct.dcm")
    findings = run_dciodvfy(path)
    assert findings, "dciodvfy reports at least the unknown private creator"
    assert [f.message for f in findings if f.severity == "Error"] == []


@needs_dciodvfy
@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_new_errors_sees_a_removed_type_1_attribute_and_a_bad_value(tmp_path):
    src = write_dataset(ct_slice_dataset(0, 1, seed=2), tmp_path / "in.dcm")
    ds = pydicom.dcmread(src)
    del ds.PatientID  # Type 2 in the Patient module
    del ds.Modality  # Type 1 in General Series
    ds.StudyDate = "2021.08.17"
    out = write_dataset(ds, tmp_path / "out.dcm")
    errs = new_errors(src, out)
    assert "Missing attribute Type 2 Required Element=<PatientID> Module=<Patient>" in errs
    assert any("Element=<Modality>" in e for e in errs)
    assert any("Study Date" in e and "2021" not in e for e in errs)
    assert new_errors(src, src) == []


@needs_dciodvfy
@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_changed_values_with_the_same_defect_are_not_new(tmp_path):
    a = ct_slice_dataset(0, 1, seed=2)
    a.StudyDate = "2021.08.17"
    a.PatientName = "QUIXMORE^Zebulon^^^^"
    b = ct_slice_dataset(0, 1, seed=3)  # other UIDs, same defects with other values
    b.StudyDate = "1999.01.02"
    b.PatientName = "ANONYMOUS^^^^^"
    pa, pb = write_dataset(a, tmp_path / "a.dcm"), write_dataset(b, tmp_path / "b.dcm")
    assert any(f.severity == "Error" for f in run_dciodvfy(pa))
    assert new_errors(pa, pb) == []


@needs_dciodvfy
def test_truncated_output_is_reported(tmp_path):
    src = write_dataset(ct_slice_dataset(0, 1, seed=2), tmp_path / "in.dcm")
    out = tmp_path / "out.dcm"
    out.write_bytes(src.read_bytes()[:2000])
    assert new_errors(src, out)


def test_timeout_is_an_error(monkeypatch, tmp_path):
    import subprocess

    def slow(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout"))

    monkeypatch.setattr(dciodvfy, "find_dciodvfy", lambda: "/bin/true")
    monkeypatch.setattr(dciodvfy.subprocess, "run", slow)
    (f,) = run_dciodvfy(tmp_path / "x.dcm", timeout=3)
    assert f.severity == "Error" and "3 s" in f.message


def test_missing_tool_raises(monkeypatch, tmp_path):
    monkeypatch.setattr(dciodvfy, "find_dciodvfy", lambda: None)
    assert not dciodvfy.is_available()
    with pytest.raises(MissingDependencyError, match="pixeldeid\\[test\\]"):
        run_dciodvfy(tmp_path / "x.dcm")


@needs_dciodvfy
def test_found_beside_the_interpreter_without_path(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert dciodvfy.find_dciodvfy() is not None


@needs_dciodvfy
@pytest.mark.parametrize("trial", [
    ["--time-point", "BASELINE"],
    ["--time-point-description", "first visit"],
    ["--site-id", "07", "--site-name", "Site 07", "--trial-sponsor", "ACME",
     "--trial-protocol-id", "ACME-01"],
], ids=["time-point", "time-point-description", "site-and-trial"])
def test_supplied_trial_fields_make_valid_modules(tmp_path, key_file, trial):
    """The site and trial values write the Clinical Trial Subject and Study Modules whole:
    Type 1 attributes with values, Type 2 present (an empty Sponsor Name and Protocol ID
    and no Protocol Name were written when only the site was given)."""
    from pixeldeid.cli import main

    src = write_dataset(ct_slice_dataset(0, 1, seed=2), tmp_path / "in" / "ct.dcm")
    out = tmp_path / "out"
    assert main(["-q", "dicom", str(src), "-o", str(out), "--key-file", str(key_file),
                 "--pixels", "off", "--no-progress", *trial]) == 0
    [written] = out.glob("*.dcm")
    assert new_errors(src, written) == []
    ds = pydicom.dcmread(written)
    assert ("ClinicalTrialTimePointID" in ds) == any(a.startswith("--time") for a in trial)
    assert ("ClinicalTrialSponsorName" in ds) == ("--trial-sponsor" in trial)


@needs_dciodvfy
@pytest.mark.parametrize("name", ["rtstruct.dcm", "rtplan.dcm"])
def test_a_type_1_label_cleaned_to_nothing_keeps_a_value(tmp_path, key_file, name):
    """Structure Set Label and RT Plan Label (Type 1, C under Clean Descriptors) holding only
    the patient's name were cleaned to an empty value: an error dciodvfy reports."""
    from pydicom.data import get_testdata_file

    from pixeldeid.cli import main

    ds = pydicom.dcmread(get_testdata_file(name), force=True)
    ds.file_meta = FileMetaDataset()  # (pydicom's copies have none)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    keyword = "StructureSetLabel" if "StructureSetLabel" in ds else "RTPlanLabel"
    setattr(ds, keyword, str(ds.PatientName).split("^")[0])
    src = write_dataset(ds, tmp_path / "in" / name)
    out = tmp_path / "out"
    assert main(["-q", "dicom", str(src), "-o", str(out), "--key-file", str(key_file),
                 "--pixels", "off", "--no-progress", "--profile", "tcia-like"]) == 0
    [written] = out.glob("*.dcm")
    assert getattr(pydicom.dcmread(written), keyword) == "REMOVED"
    assert not [e for e in new_errors(src, written) if keyword in e]
