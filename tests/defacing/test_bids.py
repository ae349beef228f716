"""BIDS mode: defaced copy of a small BIDS dataset built from the synthetic head."""

from __future__ import annotations

import contextlib
import io
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tests.defacing.conftest import run_cli, save_nifti

pytestmark = pytest.mark.slow




@pytest.fixture(scope="module")
def bids(tmp_path_factory, synthetic_head):
    t1, affine = synthetic_head
    root = tmp_path_factory.mktemp("ds") / "study"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-01" / "pet").mkdir()
    (root / "sub-01" / "func").mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "synthetic", "BIDSVersion": "1.9.0"}))
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t42\n")
    (root / "sub-01" / "sub-01_sessions.tsv").write_text(
        "session_id\tbirth_date\tweight\nses-1\t19800512\t70\n")
    save_nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz", t1.astype(np.int16), affine)
    (root / "sub-01" / "anat" / "sub-01_T1w.json").write_text(json.dumps({"RepetitionTime": 2.3}))
    pet = (ndimage.gaussian_filter(t1, 2.0) / 50.0).astype(np.float32)
    save_nifti(root / "sub-01" / "pet" / "sub-01_pet.nii.gz", pet, affine)
    (root / "sub-01" / "pet" / "sub-01_pet.json").write_text(json.dumps({"TracerName": "FDG"}))
    bold = np.random.default_rng(1).random((10, 10, 8, 3)).astype(np.float32)
    bold_img = nib.Nifti1Image(bold, np.diag([3.0, 3.0, 3.0, 1.0]))
    bold_img.header["descrip"] = b"TE=30;Time=101112.500"
    bold_img.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"PatientName=DOE^JANE"))
    nib.save(bold_img, str(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz"))
    (root / "sub-01" / "func" / "sub-01_task-rest_bold.json").write_text(json.dumps(
        {"TaskName": "rest", "AcquisitionDateTime": "2021-03-04T10:11:12.5",
         "InstitutionName": "St Elsewhere Hospital", "InstitutionAddress": "1 Main St",
         "StationName": "MR7", "DeviceSerialNumber": "12345",
         "PatientName": "DOE^JANE", "PatientID": "MRN001", "RepetitionTime": 2.0}))
    # diffusion: two b0 volumes (the head) and two dim, noisy diffusion-weighted volumes
    (root / "sub-01" / "dwi").mkdir()
    rng = np.random.default_rng(2)
    dw = [t1 * 0.25 + rng.normal(0, 20, t1.shape) for _ in range(2)]
    dwi = np.stack([t1, dw[0], t1, dw[1]], axis=3).clip(0).astype(np.int16)
    save_nifti(root / "sub-01" / "dwi" / "sub-01_dwi.nii.gz", dwi, affine)
    (root / "sub-01" / "dwi" / "sub-01_dwi.bval").write_text("0 1000 5 1000\n")
    (root / "sub-01" / "fmap").mkdir()
    save_nifti(root / "sub-01" / "fmap" / "sub-01_magnitude1.nii.gz", t1.astype(np.int16),
               affine)
    save_nifti(root / "sub-01" / "fmap" / "sub-01_phasediff.nii.gz",
               (t1 > 100).astype(np.int16) * 500, affine)
    (root / "sub-01" / "sub-01_scans.tsv").write_text(
        "filename\tacq_time\nanat/sub-01_T1w.nii.gz\t2021-03-04T10:01:02\n")
    out = tmp_path_factory.mktemp("bidsout")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = run_cli([root, "-o", out, "--bids", "--device", "cpu"])
    return root, out / "study", status, printed.getvalue()


def test_bids_copy_has_same_files(bids):
    root, out, status, _ = bids
    assert status == 0
    src_files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    out_files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert src_files == out_files
    identifying = {"sub-01/func/sub-01_task-rest_bold.json", "sub-01/sub-01_scans.tsv",
                   "sub-01/sub-01_sessions.tsv"}
    for rel in src_files:
        if rel.suffix in (".json", ".tsv", ".bval") and str(rel) not in identifying:
            assert (root / rel).read_bytes() == (out / rel).read_bytes(), rel


def test_bids_image_not_defaced_keeps_voxels_loses_header_text(bids):
    root, out, *_ = bids
    rel = "sub-01/func/sub-01_task-rest_bold.nii.gz"
    a, b = nib.load(str(root / rel)), nib.load(str(out / rel))
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    assert np.array_equal(a.affine, b.affine) and a.get_data_dtype() == b.get_data_dtype()
    assert len(b.header.extensions) == 0
    assert b"Time" not in b.header["descrip"].tobytes()


def test_bids_sidecars_and_tables_scrubbed(bids):
    root, out, *_ = bids
    side = json.loads((out / "sub-01/func/sub-01_task-rest_bold.json").read_text())
    assert side == {"TaskName": "rest", "RepetitionTime": 2.0}
    text = " ".join(p.read_text() for p in out.rglob("*") if p.suffix in (".json", ".tsv"))
    for leak in ("2021", "Elsewhere", "Main St", "MR7", "12345", "DOE", "MRN001", "1980"):
        assert leak not in text
    assert (out / "sub-01/sub-01_scans.tsv").read_text().splitlines() == [
        "filename\tacq_time", "anat/sub-01_T1w.nii.gz\tn/a"]
    sessions = (out / "sub-01/sub-01_sessions.tsv").read_text().splitlines()
    assert sessions[1] == "ses-1\tn/a\t70"


def test_bids_images_not_defaced_are_reported(bids):
    root, out, *_ = bids
    report = json.loads((out.parent / ".pixeldeid" / "deface_report.json").read_text())
    not_defaced = sorted(p.split("study/", 1)[1] for p in report["images_not_defaced"])
    assert not_defaced == ["sub-01/fmap/sub-01_phasediff.nii.gz",
                           "sub-01/func/sub-01_task-rest_bold.nii.gz"]
    by_src = {e["source"].split("study/", 1)[1]: e for e in report["files"]}
    assert by_src["sub-01/func/sub-01_task-rest_bold.nii.gz"]["status"] == "copied-not-defaced"
    assert by_src["sub-01/dwi/sub-01_dwi.nii.gz"]["status"] == "defaced"
    assert by_src["sub-01/dwi/sub-01_dwi.nii.gz"]["brain_voxels_changed"] == 0
    assert set(by_src["sub-01/func/sub-01_task-rest_bold.json"]["removed_keys"]) == {
        "AcquisitionDateTime", "InstitutionName", "InstitutionAddress", "StationName",
        "DeviceSerialNumber", "PatientName", "PatientID"}


def test_bids_summary_line_names_images_not_defaced(bids):
    line = bids[3]
    assert "2 images NOT defaced" in line and "deface_report.json" in line


@pytest.mark.parametrize("rel, fill", [("sub-01/anat/sub-01_T1w.nii.gz", 0),
                                       ("sub-01/pet/sub-01_pet.nii.gz", 0),
                                       ("sub-01/dwi/sub-01_dwi.nii.gz", 0),
                                       ("sub-01/fmap/sub-01_magnitude1.nii.gz", 0)])
def test_bids_images_defaced(bids, rel, fill):
    root, out, *_ = bids
    a = np.asarray(nib.load(str(root / rel)).dataobj)
    b = np.asarray(nib.load(str(out / rel)).dataobj)
    changed = a != b
    assert changed.sum() > 1000
    assert np.all(b[changed] == fill)


def test_bids_dwi_one_mask_for_all_volumes_same_as_t1(bids):
    """The dwi is registered on its b0 volumes: the removed region of every volume is
    the one removed from the T1w of the same head."""
    root, out, *_ = bids
    t1_in = np.asarray(nib.load(str(root / "sub-01/anat/sub-01_T1w.nii.gz")).dataobj)
    t1_out = np.asarray(nib.load(str(out / "sub-01/anat/sub-01_T1w.nii.gz")).dataobj)
    removed_t1 = (t1_in != t1_out)
    d_in = np.asarray(nib.load(str(root / "sub-01/dwi/sub-01_dwi.nii.gz")).dataobj)
    d_out = np.asarray(nib.load(str(out / "sub-01/dwi/sub-01_dwi.nii.gz")).dataobj)
    removed_b0 = d_in[..., 0] != d_out[..., 0]
    assert 2 * (removed_b0 & removed_t1).sum() / (removed_b0.sum() + removed_t1.sum()) > 0.9
    zeroed = d_out[..., 0] == 0
    for v in range(4):  # the b0 mask applies to every volume
        assert np.all(d_out[..., v][removed_b0] == 0)
        assert np.array_equal(d_out[..., v][~zeroed], d_in[..., v][~zeroed])


def test_not_a_bids_root_is_usage_error(tmp_path):
    (tmp_path / "x").mkdir()
    assert run_cli([tmp_path / "x", "-o", tmp_path / "o", "--bids"]) == 2


def test_sidecar_free_text_keeps_protocol_names_and_loses_identity_shaped_text():
    """Series and protocol names are kept, cleaned; comments are removed whole."""
    from defacing.sidecars import scrub_json

    side = {"SeriesDescription": "T1_MPRAGE sag Dr Lockhart 03/04/2021",
            "ProtocolName": "ep2d_bold_rest MRN 00123456",
            "ImageComments": "call 216-555-0199 before 10:42",
            "StudyDescription": "BRAIN^ROUTINE", "RepetitionTime": 2.0,
            "Nested": {"ProtocolName": "AAHead_Scout_64ch-head-coil"}}
    clean, removed = scrub_json(side)
    assert clean["SeriesDescription"] == "T1_MPRAGE sag"
    assert "00123456" not in clean["ProtocolName"] and "ep2d_bold_rest" in clean["ProtocolName"]
    assert "ImageComments" not in clean
    assert clean["StudyDescription"] == "BRAIN^ROUTINE" and clean["RepetitionTime"] == 2.0
    assert clean["Nested"] == {"ProtocolName": "AAHead_Scout_64ch-head-coil"}
    assert sorted(removed) == ["ImageComments", "ProtocolName (cleaned)",
                               "SeriesDescription (cleaned)"]
