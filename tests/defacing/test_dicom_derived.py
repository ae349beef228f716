"""A defaced DICOM series beside the rest of its study (audit of the deface command,
findings 5, 6 and 9): under one project key, ``pixeldeid dicom`` de-identifies a study
(another patient first, then the head series without defacing) and ``pixeldeid deface``
the head series. The defaced objects are new objects (own Series and SOP Instance UIDs,
DERIVED, referencing their source) of the same study, patient and frame of reference."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from pixeldeid.cli import main
from tests.defacing.conftest import run_cli, write_mr_series

KEY = b"0123456789abcdef0123456789abcdef"
DERIVATION = "Face removed by pixeldeid defacing (affine template registration)"


def _by_instance(folder: Path) -> dict[int, pydicom.Dataset]:
    """The MR instances below ``folder`` by Instance Number (quarantine left out)."""
    out = {}
    for f in folder.rglob("*.dcm"):
        if "quarantine" not in f.parts:
            ds = pydicom.dcmread(f)
            if ds.Modality == "MR":
                out[int(ds.InstanceNumber)] = ds
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    base = tmp_path_factory.mktemp("study")
    key = base / "project.key"
    key.write_bytes(KEY + b"\n")
    other = base / "a_other"
    other.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = "Alpha^Al", "MRN1"
    ds.save_as(other / "1.dcm")
    head = base / "b_head"
    write_mr_series(head)
    plain, defaced = base / "plain", base / "defaced"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["dicom", str(other), str(head), "-o", str(plain), "--key-file", str(key),
                     "-j", "1", "--pixels", "off", "--no-progress"]) == 0
        status = run_cli([head, "-o", defaced, "--key-file", key, "--device", "cpu",
                          "--modality", "mr"])
    return _by_instance(plain), _by_instance(defaced), status, (head, plain, key)


def test_defaced_series_takes_the_pseudonym_of_the_study(study, tmp_path):
    """Finding 6: the same patient was SUBJ_002 in the dicom output and SUBJ_001 in the
    deface output; --subject-db shares pixeldeid dicom's numbering."""
    plain, _, _, (head, plain_out, key) = study
    out = tmp_path / "defaced"
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_cli([head, "-o", out, "--key-file", key, "--device", "cpu", "--modality",
                        "mr", "--subject-db", plain_out / ".pixeldeid" / "subjects.sqlite"]) == 0
    defaced = _by_instance(out)
    assert {str(d.PatientID) for d in plain.values()} == {"SUBJ_002"}
    assert {str(d.PatientID) for d in defaced.values()} == {"SUBJ_002"}
    assert {str(d.PatientName) for d in defaced.values()} == {"SUBJ_002"}


def test_defaced_objects_get_uids_of_their_own(study):
    """Finding 5: the defaced series had the Series and SOP Instance UIDs of the
    non-defaced series (an archive keeps one of two objects: maybe the face)."""
    plain, defaced, status, _ = study
    assert status == 0 and len(defaced) == len(plain) == 92
    assert not {str(d.SOPInstanceUID) for d in defaced.values()} & {
        str(d.SOPInstanceUID) for d in plain.values()}
    from defacing.dicom_series import derived_uid

    for n, d in defaced.items():
        p = plain[n]
        assert d.SeriesInstanceUID != p.SeriesInstanceUID
        # keyed and deterministic: a rerun under the key gives the same UIDs
        assert d.SeriesInstanceUID == derived_uid(KEY, str(p.SeriesInstanceUID))
        assert d.SOPInstanceUID == derived_uid(KEY, str(p.SOPInstanceUID))
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.StudyInstanceUID == p.StudyInstanceUID
        assert d.FrameOfReferenceUID == p.FrameOfReferenceUID
        assert list(d.ImageType)[0] == "DERIVED" and list(p.ImageType)[0] == "ORIGINAL"
        (src,) = d.SourceImageSequence
        assert src.ReferencedSOPInstanceUID == p.SOPInstanceUID
        assert src.ReferencedSOPClassUID == p.SOPClassUID
        assert src.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    assert len({str(d.SeriesInstanceUID) for d in defaced.values()}) == 1


def test_defaced_series_keeps_its_derivation_description(study):
    """Finding 9: the profile removed the Derivation Description that the defacing set."""
    _, defaced, _, _ = study
    for d in defaced.values():
        assert d.get("DerivationDescription") == DERIVATION
        codes = {str(it.CodeValue) for it in d.DeidentificationMethodCodeSequence}
        assert {"113100", "113102"} <= codes


@pytest.mark.parametrize("flag, value, words", [
    ("--prefix", "BAD PREFIX", "prefix"),
    ("--map-csv", "inside", "inside the output folder"),
    ("--subject-db", "inside", "inside the output folder"),
])
def test_pseudonym_options_are_checked_before_any_work(tmp_path, capsys, flag, value, words):
    """The new options are validated like pixeldeid dicom's, nothing written on error."""
    out = tmp_path / "out"
    out.mkdir()
    if value == "inside":
        value = out / ("subjects.sqlite" if flag == "--subject-db" else "map.csv")
        if flag == "--map-csv":
            value.write_text("id_old,id_new\nMRN12345,TRIAL7\n")
    write_mr_series(tmp_path / "in")
    assert run_cli([tmp_path / "in", "-o", out, flag, value]) == 2
    assert words in capsys.readouterr().err
    assert not (out / "dicom").exists() and not (out / ".pixeldeid").exists()
