"""What ``pixeldeid deface`` leaves in the release folder outside BIDS mode (audit of the
deface command, findings 2, 4, 7 and 8): no QC render of the face, no input name or path,
no free text in NIfTI headers, no input dropped, the shape of a one-volume 4D image kept.
One head is defaced (module fixture)."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from defacing.nifti import write_nifti_atomic
from tests.defacing.conftest import deface_report, moved_template_head, output_of, run_cli

FOLDER = "Harrowgate_Jane_MRN998877"
PLANTED = {"data_type": b"MRN998877", "db_name": b"DB_HARROW",
           "extents": int.from_bytes(b"JANE", "little", signed=True),
           "session_error": int.from_bytes(b"HG", "little", signed=True),
           "glmax": int.from_bytes(b"1961", "little", signed=True),
           "glmin": int.from_bytes(b"0203", "little", signed=True), "regular": b"Q"}


def _planted_header_image(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A one-volume 4D image (TR 2.3 s) with text in every free or unused header field."""
    img = nib.Nifti1Image(data, affine)
    h = img.header
    h.set_xyzt_units("mm", "sec")
    h["pixdim"][4] = 2.3
    for name, value in PLANTED.items():
        h[name] = value
    h["descrip"], h["aux_file"], h["intent_name"] = b"DESC_HARROW", b"AUX_HARROW", b"INT_HARROW"
    h["intent_p1"] = np.frombuffer(b"HARR", np.float32)[0]
    h.extensions.append(nib.nifti1.Nifti1Extension(6, b"COMMENT_HARROW"))
    return img


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    data, affine = moved_template_head()
    src = tmp_path_factory.mktemp("in") / FOLDER
    src.mkdir()
    vol = np.clip(data, 0, None).astype(np.int16)[..., None]
    nib.save(_planted_header_image(vol, affine), str(src / "Harrowgate_T1w.nii.gz"))
    (src / ".notes_Harrowgate.txt").write_text("Jane Harrowgate")
    (src / ".git" / "objects").mkdir(parents=True)
    (src / ".git" / "objects" / "ab12").write_bytes(b"x\x9c")
    out = tmp_path_factory.mktemp("release")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = run_cli([src, "-o", out, "--device", "cpu", "--qc"])
    return src, out, status, printed.getvalue()


def _release_files(out: Path) -> list[Path]:
    """The files of the release: everything but ``.pixeldeid/`` and ``quarantine/``."""
    return [p for p in out.rglob("*") if p.is_file()
            and not {".pixeldeid", "quarantine"} & set(p.relative_to(out).parts)]


def _nifti(out: Path) -> Path:
    """The one NIfTI output of the release."""
    (res,) = [p for p in _release_files(out) if p.name.endswith(".nii.gz")]
    return res


def test_qc_renders_and_report_are_kept_out_of_the_release(release):
    """Finding 2: ``--qc`` wrote renders of the face before defacing to OUT/qc, and the
    report with the input paths to OUT/deface_report.json."""
    src, out, _, _ = release
    assert not (out / "qc").exists() and not (out / "deface_report.json").exists()
    qc = sorted(p.name for p in (out / ".pixeldeid" / "qc").iterdir())
    assert [n.rsplit("_", 1)[-1] for n in qc] == ["front.png", "metrics.json", "side.png",
                                                  "slices.png"]
    assert [p.suffix for p in _release_files(out)] == [".gz"]
    report = deface_report(out)
    assert str(src / "Harrowgate_T1w.nii.gz") in {e["source"] for e in report["files"]}


def test_release_names_carry_no_input_folder_or_file_name(release):
    """Finding 8: the output was ``OUT/Harrowgate_Jane_MRN998877/Harrowgate_T1w.nii.gz``."""
    src, out, status, _ = release
    assert status == 1  # the hidden note is quarantined
    res = _nifti(out)
    assert [p.name for p in _release_files(out)] == [res.name]
    assert res.parent == out / "nifti" and res.name.endswith("_T1w.nii.gz")
    assert "Harrowgate" not in str(res.relative_to(out)) and "MRN" not in res.name
    assert output_of(out, src / "Harrowgate_T1w.nii.gz") == res  # the private map
    gz = res.read_bytes()
    assert b"Harrowgate" not in gz and b"Harrowgate" not in gzip.decompress(gz)


def test_free_and_unused_nifti_header_fields_are_cleared(release):
    """Finding 4: data_type, extents, session_error, glmax/glmin were copied from the input."""
    _, out, _, _ = release
    res = _nifti(out)
    raw = gzip.decompress(res.read_bytes())
    for token in (b"HARR", b"MRN998877", b"JANE", b"HG", b"1961", b"0203", b"DB_H"):
        assert token not in raw[:352]
    h = nib.load(str(res)).header
    for name in PLANTED:
        assert not h[name].item() if name != "regular" else h[name].item() in (b"", b"r")
    assert h["intent_p1"] == 0 and len(h.extensions) == 0


def test_one_volume_4d_image_keeps_its_shape_and_repetition_time(release):
    """Finding 7b: (80, 96, 92, 1) came back (80, 96, 92) with pixdim[4] 1.0."""
    src, out, _, _ = release
    res = _nifti(out)
    a, b = nib.load(str(src / "Harrowgate_T1w.nii.gz")), nib.load(str(res))
    assert b.shape == a.shape == (80, 96, 92, 1)
    assert int(b.header["dim"][0]) == 4 and b.header["pixdim"][4] == pytest.approx(2.3)
    assert b.header.get_xyzt_units() == ("mm", "sec")
    changed = np.asarray(a.dataobj) != np.asarray(b.dataobj)
    assert changed.sum() > 1000


def test_hidden_inputs_are_reported_not_dropped(release):
    """Finding 7a: a hidden file was neither defaced, nor quarantined, nor reported."""
    src, out, _, line = release
    by_source = {e["source"]: e for e in deface_report(out)["files"]}
    note = by_source[str(src / ".notes_Harrowgate.txt")]
    assert note["status"] == "quarantined"
    assert by_source[str(src / ".git")]["status"] == "skipped"
    assert "1 files skipped" in line and "1 defaced, 1 quarantined of 2 inputs" in line


def test_write_keeps_4d_shape_and_clears_nifti2_unused_bytes(tmp_path):
    """The writer on its own (also used for images copied without defacing): a NIfTI-2
    header's unused_str is cleared, the trailing axis of one volume kept."""
    img = nib.Nifti2Image(np.ones((4, 5, 6, 1), np.int16), np.eye(4))
    img.header["unused_str"] = b"MRN998877"
    img.header["pixdim"][4] = 1.5
    out = write_nifti_atomic(tmp_path / "x.nii", np.ones((4, 5, 6), np.int16), img, 1.0, 0.0)
    back = nib.load(str(out))
    assert isinstance(back, nib.Nifti2Image) and back.shape == (4, 5, 6, 1)
    assert back.header["pixdim"][4] == pytest.approx(1.5)
    assert b"MRN998877" not in out.read_bytes()


def test_report_lists_input_folder_only_under_state_folder(release):
    """No file of the release names the input folder (the report, the map and the QC
    metrics, which do, stay in OUT/.pixeldeid)."""
    _, out, _, _ = release
    for p in _release_files(out):
        assert FOLDER.encode() not in gzip.decompress(p.read_bytes())
    metrics = next((out / ".pixeldeid" / "qc").glob("*_metrics.json"))
    assert json.loads(metrics.read_text())["brain_voxels_changed"] == 0
