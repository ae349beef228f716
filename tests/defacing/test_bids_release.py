"""``pixeldeid deface --bids`` releases nothing it has not checked (audit of the deface
command, findings 1, 3 and 7a): DICOM, other image formats and unknown files are
quarantined, text files are scrubbed or refused, dated session labels are renamed
everywhere and the tables still point at the released files, hidden folders are
reported. The dataset holds no image to deface (no registration: fast)."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.defacing.conftest import run_cli

NAME, MRN, BIRTH = "Harrowgate^Jane", "MRN998877", "19610203"
SES = "ses-20190304"


def _put(root: Path, rel: str, data: str | bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        p.write_text(data, encoding="utf-8")
    else:
        p.write_bytes(data)
    return p


def _dicom(path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, MRN, BIRTH
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)


def _images(root: Path) -> None:
    """An ANALYZE pair with a name in its header, a FreeSurfer volume, a BOLD series."""
    vol = np.zeros((12, 12, 10), np.int16)
    vol[3:9, 3:9, 2:8] = 500
    an = nib.AnalyzeImage(vol, np.eye(4))
    an.header["descrip"] = b"Harrowgate Jane MRN998877"
    (root / "sub-01" / SES / "anat").mkdir(parents=True, exist_ok=True)
    nib.save(an, str(root / "sub-01" / SES / "anat" / f"sub-01_{SES}_acq-old_T1w.img"))
    mgz = root / "derivatives" / "freesurfer" / "sub-01" / "mri" / "orig.mgz"
    mgz.parent.mkdir(parents=True)
    nib.save(nib.MGHImage(vol.astype(np.uint8), np.eye(4)), str(mgz))
    (root / "sub-01" / SES / "func").mkdir(parents=True, exist_ok=True)
    bold = nib.Nifti1Image(np.ones((6, 6, 4, 3), np.float32), np.eye(4))
    nib.save(bold, str(root / "sub-01" / SES / "func" / f"sub-01_{SES}_task-rest_bold.nii.gz"))


def _text(root: Path) -> None:
    _put(root, "dataset_description.json", json.dumps({"Name": "x", "BIDSVersion": "1.8.0"}))
    _put(root, "README", "Resting-state data of one volunteer.\n")
    _put(root, "CHANGES", "1.0.0 2021-05-01\n  - first release\n")
    _put(root, ".bidsignore", "extra/\n")
    _put(root, "participants.tsv",
         "participant_id\tage\tbirth_date\tsex\nsub-01\t97\t03/02/1961\tF\n")
    _put(root, "notes/subject_list.txt", "sub-01 is Jane Harrowgate, MRN998877\n")
    _put(root, "code/convert.sh", "#!/bin/sh\ndcm2niix -o . /data/Harrowgate_Jane\n")
    _put(root, "extra/blob.bin", bytes(range(256)) * 4)
    _put(root, "sub-01/sub-01_sessions.tsv",
         f"session_id\tacq_date\n{SES}\t2019-03-04\nses-20200105\t05.01.2020\n")
    _put(root, f"sub-01/{SES}/sub-01_{SES}_scans.tsv",
         f"filename\tacq_time\nfunc/sub-01_{SES}_task-rest_bold.nii.gz\t2019-03-04T10:23:45\n"
         f"anat/sub-01_{SES}_acq-old_T1w.img\t2019-03-04T10:01:02\n")
    _put(root, f"sub-01/{SES}/func/sub-01_{SES}_task-rest_bold.json", json.dumps({
        "TaskName": "rest", "RepetitionTime": 2.0, "SeriesDescription": "ep2d_bold",
        "PatientName": NAME, "PatientID": MRN, "PatientBirthDate": BIRTH,
        "InstitutionName": "Harrowgate General",
        "ProcedureStepDescription": "Research^Dr. Quixbury 1961-02-03",
        "ConversionComments": "Jane Harrowgate MRN998877",
        "ScanNotes": "rescanned 4 Mar 2019", "ConversionSoftwareVersion": "v1.0.20190410"}))
    _put(root, f"sub-01/{SES}/fmap/sub-01_{SES}_epi.json", json.dumps({
        "IntendedFor": [f"{SES}/func/sub-01_{SES}_task-rest_bold.nii.gz",
                        f"bids::sub-01/{SES}/func/sub-01_{SES}_task-rest_bold.nii.gz"]}))
    _put(root, "T1w.JSON", json.dumps({"InstitutionName": "Harrowgate General",
                                       "PatientName": NAME, "EchoTime": 0.003}))
    _put(root, ".git/objects/ab/cdef", b"x\x9c+J-\x01\x00")
    _put(root, ".git/HEAD", "ref: refs/heads/main\n")
    _put(root, ".DS_Store", b"\x00\x00\x00\x01Bud1")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "study"
    root.mkdir()
    _text(root)
    _images(root)
    _dicom(root / "sourcedata" / "sub-01" / "IM0001.dcm")
    _put(root, "sourcedata/sub-01/IM0002", (root / "sourcedata/sub-01/IM0001.dcm").read_bytes())
    out = tmp_path_factory.mktemp("out")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = run_cli([root, "-o", out, "--bids", "--device", "cpu"])
    report_file = out / ".pixeldeid" / "deface_report.json"
    if not report_file.exists():  # (where it was before: in the release)
        report_file = out / "deface_report.json"
    report = json.loads(report_file.read_text())
    by_source = {str(Path(e["source"]).relative_to(root)): e for e in report["files"]}
    return root, out, out / "study", status, by_source, printed.getvalue()


def _released(ds: Path) -> list[str]:
    return sorted(p.relative_to(ds).as_posix() for p in ds.rglob("*") if p.is_file())


def test_dicom_and_other_image_formats_are_quarantined_not_copied(released):
    """Finding 1: sourcedata DICOM (with and without a .dcm suffix), an ANALYZE pair and a
    FreeSurfer volume were copied byte for byte (names, IDs, faces)."""
    root, out, ds, status, by_source, _ = released
    assert status == 1
    files = _released(ds)
    assert not [f for f in files if f.startswith(("sourcedata/", "derivatives/"))]
    assert not [f for f in files if f.endswith((".dcm", ".hdr", ".img", ".mgz"))]
    blob = b"".join((ds / f).read_bytes() for f in files)
    for planted in (b"Harrowgate", b"MRN998877", b"19610203", b"Quixbury"):
        assert planted not in blob
    for rel in ("sourcedata/sub-01/IM0001.dcm", "sourcedata/sub-01/IM0002"):
        assert by_source[rel]["status"] == "quarantined"
        assert "DICOM in a BIDS dataset" in by_source[rel]["reason"]
    hdr = f"sub-01/{SES}/anat/sub-01_{SES}_acq-old_T1w"
    for rel, words in ((f"{hdr}.hdr", "ANALYZE"), (f"{hdr}.img", "ANALYZE"),
                       ("derivatives/freesurfer/sub-01/mri/orig.mgz", "FreeSurfer")):
        assert by_source[rel]["status"] == "quarantined"
        assert words in by_source[rel]["reason"] and "not copied" in by_source[rel]["reason"]
    for rel in ("extra/blob.bin", "code/convert.sh"):  # unknown files: fail closed
        assert by_source[rel]["status"] == "quarantined"
        assert "not an image or a known text file" in by_source[rel]["reason"]
    copies = {p.name for p in (out / "quarantine").iterdir()}
    assert sum(n.endswith(".reason.txt") for n in copies) == 8


def test_text_files_are_copied_only_without_identity(released):
    """Finding 1: README, CHANGES and .bidsignore are released; a note naming the patient
    of a sidecar is quarantined."""
    root, _, ds, _, by_source, _ = released
    for rel in ("README", "CHANGES", ".bidsignore"):
        assert (ds / rel).read_bytes() == (root / rel).read_bytes()
        assert by_source[rel]["status"] == "copied"
    note = by_source["notes/subject_list.txt"]
    assert note["status"] == "quarantined" and "identity value" in note["reason"]
    assert not (ds / "notes").exists()


def test_free_text_sidecar_keys_are_removed(released):
    """Finding 3a: dcm2niix's ProcedureStepDescription and ConversionComments were kept."""
    _, _, ds, _, by_source, _ = released
    (path,) = ds.glob("sub-01/*/func/*_bold.json")
    side = json.loads(path.read_text())
    assert side == {"TaskName": "rest", "RepetitionTime": 2.0, "SeriesDescription": "ep2d_bold",
                    "ConversionSoftwareVersion": "v1.0.20190410"}
    removed = by_source[f"sub-01/{SES}/func/sub-01_{SES}_task-rest_bold.json"]["removed_keys"]
    assert {"ProcedureStepDescription", "ConversionComments", "ScanNotes (date)"} <= set(removed)


def test_upper_case_json_is_scrubbed(released):
    """Finding 3b: ``T1w.JSON`` was copied unscrubbed."""
    _, _, ds, _, _, _ = released
    assert json.loads((ds / "T1w.JSON").read_text()) == {"EchoTime": 0.003}


def test_participants_ages_capped_and_birth_dates_removed(released):
    """Finding 3c: age 97 and a birth date written 03/02/1961 were kept."""
    _, _, ds, _, _, _ = released
    assert (ds / "participants.tsv").read_text().splitlines() == [
        "participant_id\tage\tbirth_date\tsex", "sub-01\t89+\tn/a\tF"]


def test_dated_session_labels_are_renamed_everywhere(released):
    """Finding 3d: ``ses-20190304`` stayed in every name, and scans.tsv lost its filename
    cells (they held the date): the table pointed at no file."""
    root, _, ds, _, by_source, _ = released
    files = _released(ds)
    assert not [f for f in files if "2019" in f or "2020" in f]
    assert "sub-01/ses-01/func/sub-01_ses-01_task-rest_bold.nii.gz" in files
    scans = (ds / "sub-01/ses-01/sub-01_ses-01_scans.tsv").read_text().splitlines()
    assert scans == ["filename\tacq_time", "func/sub-01_ses-01_task-rest_bold.nii.gz\tn/a"]
    for line in scans[1:]:
        assert (ds / "sub-01/ses-01" / line.split("\t")[0]).is_file()
    entry = by_source[f"sub-01/{SES}/sub-01_{SES}_scans.tsv"]
    assert entry["rows_removed"] == 1  # the ANALYZE image, quarantined
    fmap = json.loads((ds / "sub-01/ses-01/fmap/sub-01_ses-01_epi.json").read_text())
    assert fmap["IntendedFor"] == ["ses-01/func/sub-01_ses-01_task-rest_bold.nii.gz",
                                   "bids::sub-01/ses-01/func/sub-01_ses-01_task-rest_bold.nii.gz"]
    assert (ds / fmap["IntendedFor"][1][len("bids::"):]).is_file()
    sessions = (ds / "sub-01/sub-01_sessions.tsv").read_text().splitlines()
    assert sessions == ["session_id\tacq_date", "ses-01\tn/a", "ses-02\tn/a"]
    text = " ".join((ds / f).read_text() for f in files if f.endswith((".json", ".tsv")))
    assert "20190304" not in text and "2019-03-04" not in text


def test_hidden_folders_and_system_files_are_reported_not_dropped(released):
    """Finding 7a: dot-paths (.bidsignore, .git) were skipped without a word."""
    _, _, ds, _, by_source, line = released
    assert (ds / ".bidsignore").is_file()
    assert by_source[".git"]["status"] == "skipped"
    assert "hidden folder (2 files" in by_source[".git"]["reason"]
    assert by_source[".DS_Store"]["status"] == "skipped"
    assert not (ds / ".git").exists() and not (ds / ".DS_Store").exists()
    assert "3 files skipped" in line


def test_every_input_file_is_accounted_for(released):
    """Nothing dropped silently: each input file is released, quarantined or skipped."""
    root, out, _, _, by_source, _ = released
    inputs = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    hidden = {f for f in inputs if f.startswith(".git/")}
    assert inputs - hidden == set(by_source) - {".git"}
    rows = (out / ".pixeldeid" / "deface_map.csv").read_text().splitlines()
    assert rows[0] == "source,output,status" and len(rows) == 1 + len(by_source)


def test_physiological_tsv_gz_is_scrubbed_and_compressed_anew(tmp_path):
    root = tmp_path / "ds"
    _put(root, "dataset_description.json", '{"Name": "x", "BIDSVersion": "1.8.0"}')
    physio = gzip.compress(b"0.5\t12\n0.6\t2019-03-04\n", mtime=1234567)
    physio = physio[:3] + b"\x08" + physio[4:10] + b"Harrowgate.tsv\x00" + physio[10:]
    _put(root, "sub-01/func/sub-01_task-rest_physio.tsv.gz", physio)
    out = tmp_path / "out"
    assert run_cli([root, "-o", out, "--bids", "--device", "cpu"]) == 0
    got = (out / "ds/sub-01/func/sub-01_task-rest_physio.tsv.gz").read_bytes()
    assert b"Harrowgate" not in got and got[4:8] == b"\0\0\0\0"  # no name, no time
    assert gzip.decompress(got) == b"0.5\t12\n0.6\tn/a\n"


def test_dated_names_that_cannot_be_renamed_are_not_released(tmp_path, capsys):
    """A date in another entity or a subject label: the file is quarantined; a dataset
    folder named with a date is refused before any work (it would name the output)."""
    root = tmp_path / "ds"
    _put(root, "dataset_description.json", '{"Name": "x", "BIDSVersion": "1.8.0"}')
    _put(root, "sub-19610203/anat/sub-19610203_T1w.json", '{"EchoTime": 0.003}')
    _put(root, "sub-01/anat/sub-01_acq-20190304_T1w.json", '{"EchoTime": 0.003}')
    out = tmp_path / "out"
    assert run_cli([root, "-o", out, "--bids", "--device", "cpu"]) == 1
    assert _released(out / "ds") == ["dataset_description.json"]
    reasons = [p.read_text() for p in (out / "quarantine").glob("*.reason.txt")]
    assert len(reasons) == 2 and all("name holds a date" in r for r in reasons)
    dated = tmp_path / "study_2019-03-04"
    _put(dated, "dataset_description.json", '{"Name": "x", "BIDSVersion": "1.8.0"}')
    assert run_cli([dated, "-o", tmp_path / "out2", "--bids"]) == 2
    assert "name holds a date" in capsys.readouterr().err
    assert not (tmp_path / "out2" / "study_2019-03-04").exists()
