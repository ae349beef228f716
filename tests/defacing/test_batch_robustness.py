"""``pixeldeid deface`` batches: every input accounted for, one bad input never ends the
batch, no output overwritten by another input, reruns into the same OUT behave like the
first run (found by a red-team run)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from defacing.batch import refuse_collisions
from pixeldeid.atomic import TMP_PREFIX
from tests.defacing.conftest import (
    deface_report,
    moved_template_head,
    output_of,
    run_cli,
    save_nifti,
    write_mr_series,
)

pytestmark = pytest.mark.slow


def reasons(out: Path) -> dict[str, str]:
    """Quarantine reasons by source path."""
    found = {}
    for p in (out / "quarantine").glob("*.reason.txt"):
        lines = dict(line.split(": ", 1) for line in p.read_text().splitlines())
        found[lines["source"]] = lines["reason"]
    return found


def report(out: Path) -> dict[str, str]:
    """Status by source in ``OUT/.pixeldeid/deface_report.json``."""
    return {e["source"]: e["status"] for e in deface_report(out)["files"]}


def assert_clean_run(capsys, line: str) -> str:
    """The summary line is printed, no traceback; returns stderr."""
    captured = capsys.readouterr()
    assert line in captured.out
    assert "Traceback" not in captured.err
    return captured.err


def assert_defaced(src: Path, dst: Path) -> None:
    a = np.asarray(nib.load(str(src)).dataobj)
    b = np.asarray(nib.load(str(dst)).dataobj)
    assert a.shape == b.shape and (a != b).sum() > 1000


def test_same_file_name_from_two_folders_never_overwrites(tmp_path, capsys):
    """Outputs are named by a keyed hash of the input path: two inputs of one file name
    get two outputs (they were quarantined as a name collision before)."""
    for sub, kw in (("a", {}), ("b", {"angle_deg": -5.0, "shift": (0.0, 3.0, -2.0)})):
        (tmp_path / sub).mkdir()
        save_nifti(tmp_path / sub / "sub-01_T1w.nii", *moved_template_head(**kw))
    a, b = tmp_path / "a" / "sub-01_T1w.nii", tmp_path / "b" / "sub-01_T1w.nii"
    out = tmp_path / "out"
    assert run_cli([a, b, "-o", out, "--device", "cpu"]) == 0
    assert_clean_run(capsys, "2 defaced, 0 quarantined of 2 inputs")
    outs = [output_of(out, a), output_of(out, b)]
    assert outs[0] != outs[1] and all(o.parent == out / "nifti" for o in outs)
    for src, dst in zip((a, b), outs, strict=True):
        assert_defaced(src, dst)
        res = np.asarray(nib.load(str(dst)).dataobj)
        same_as = [(res == np.asarray(nib.load(str(p)).dataobj)).mean() for p in (a, b)]
        assert max(same_as) == same_as[(a, b).index(src)]
    assert report(out) == {str(a): "defaced", str(b): "defaced"}


def test_two_inputs_with_one_output_are_refused():
    from defacing.batch import Job

    jobs = refuse_collisions([Job("nifti", Path("/x/a.nii"), Path("/o/n.nii")),
                              Job("nifti", Path("/y/a.nii"), Path("/o/n.nii"))])
    assert [j.kind for j in jobs] == ["nifti", "unsupported"]
    assert "same name" in jobs[1].reason


def test_unexpected_errors_are_quarantined_and_the_batch_goes_on(tmp_path, capsys,
                                                                 monkeypatch):
    data, affine = moved_template_head()
    src = tmp_path / "in"
    src.mkdir()
    huge = affine.copy()
    huge[:3, :3] = np.diag([1e9, 1e9, 1e9])
    save_nifti(src / "a_huge_voxels.nii", data, huge)
    rgb = np.zeros(data.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = rgb["G"] = rgb["B"] = (np.clip(data, 0, None) / data.max() * 255).astype("u1")
    nib.save(nib.Nifti1Image(rgb, affine), str(src / "b_rgb.nii"))
    save_nifti(src / "c_bug.nii", data, affine)
    save_nifti(src / "d_good_T1w.nii", data, affine)
    import defacing.batch as batch

    real = batch.deface_nifti

    def buggy(path, *args, **kwargs):  # an error no one foresaw, e.g. deep in a library
        if Path(path).name == "c_bug.nii":
            raise ZeroDivisionError("float division by zero\nsecond line")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(batch, "deface_nifti", buggy)
    out = tmp_path / "out"
    assert run_cli([src, "-o", out, "--device", "cpu"]) == 1
    assert_clean_run(capsys, "1 defaced, 3 quarantined of 4 inputs")
    assert_defaced(src / "d_good_T1w.nii", output_of(out, src / "d_good_T1w.nii"))
    why = reasons(out)
    assert "voxel size" in why[str(src / "a_huge_voxels.nii")]
    assert "not supported" in why[str(src / "b_rgb.nii")]
    assert why[str(src / "c_bug.nii")] == "ZeroDivisionError: float division by zero"
    assert len(list((out / "quarantine").glob("*.nii"))) == 3  # copies beside the reasons


def _iop5(k, ds):
    if k == 0:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1]


def _no_rows(k, ds):
    if k == 5:
        del ds.Rows


def _slope_text(k, ds):
    if k == 5:
        ds.RescaleSlope, ds.RescaleIntercept = "9.99", "0"


def test_damaged_dicom_headers_quarantine_their_series_only(tmp_path, capsys):
    src = tmp_path / "in"
    bad = {}
    for name, tweak in (("a_iop5", _iop5), ("b_no_rows", _no_rows), ("c_slope", _slope_text)):
        bad[name] = write_mr_series(src / name, tweak=tweak)
    p = bad["c_slope"][5]
    p.write_bytes(p.read_bytes().replace(b"9.99", b"abcd"))  # a decimal string, no number
    good = write_mr_series(src / "d_good")
    out = tmp_path / "out"
    assert run_cli([src, "-o", out, "--device", "cpu"]) == 1
    assert_clean_run(capsys, "1 defaced, 3 quarantined of 4 inputs")
    series = list((out / "dicom").iterdir())
    assert len(series) == 1 and len(list(series[0].glob("*.dcm"))) == len(good)
    why = reasons(out)
    assert len(why) == sum(len(v) for v in bad.values())  # every file of a bad series
    expected = {"a_iop5": "ImageOrientationPatient has 5 values, not 6 (IM0001.dcm)",
                "b_no_rows": "Rows is missing (IM0006.dcm)",
                "c_slope": "RescaleSlope is not a number (IM0006.dcm)"}
    for name, files in bad.items():
        assert {why[str(f)] for f in files} == {expected[name]}


def test_deeply_nested_bids_sidecar_is_quarantined(tmp_path, capsys):
    root = tmp_path / "bids"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-02" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    deep = root / "sub-01" / "anat" / "sub-01_T1w.json"
    deep.write_text('{"a": ' + "[" * 100000 + "]" * 100000 + "}")
    save_nifti(root / "sub-02" / "anat" / "sub-02_T1w.nii", *moved_template_head())
    out = tmp_path / "out"
    assert run_cli([root, "-o", out, "--bids", "--device", "cpu"]) == 1
    assert_clean_run(capsys, "1 defaced, 1 quarantined of 2 inputs, 1 other files copied")
    assert_defaced(root / "sub-02" / "anat" / "sub-02_T1w.nii",
                   out / "bids" / "sub-02" / "anat" / "sub-02_T1w.nii")
    assert reasons(out)[str(deep)] == "unreadable JSON sidecar: nested too deeply"
    assert not (out / "bids" / "sub-01" / "anat" / "sub-01_T1w.json").exists()


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path, capsys):
    out = tmp_path / "out"
    left = out / "dicom" / f"{TMP_PREFIX}abc"  # a series folder being written
    left.mkdir(parents=True)
    (left / "00001.dcm").write_bytes(b"partial")
    (out / "in").mkdir()
    (out / "in" / f"{TMP_PREFIX}x.nii").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("hello")
    assert run_cli([tmp_path / "notes.txt", "-o", out, "--device", "cpu"]) == 1
    assert_clean_run(capsys, "0 defaced, 1 quarantined of 1 inputs")
    assert not [p for p in out.rglob("*") if p.name.startswith(TMP_PREFIX)]
    assert (out / "dicom").is_dir()  # only the temporaries go


def test_entries_that_are_not_regular_files_are_reported(tmp_path, capsys):
    src = tmp_path / "heads"
    src.mkdir()
    save_nifti(src / "sub-01_T1w.nii", *moved_template_head())
    os.mkfifo(src / "fifo.nii")
    (src / "zero.nii").symlink_to("/dev/zero")
    (src / "dangling.nii").symlink_to(tmp_path / "nonexistent.nii")
    out = tmp_path / "out"
    assert run_cli([src, "-o", out, "--device", "cpu"]) == 1
    assert_clean_run(capsys, "1 defaced, 3 quarantined of 4 inputs")
    assert_defaced(src / "sub-01_T1w.nii", output_of(out, src / "sub-01_T1w.nii"))
    why = reasons(out)
    assert why[str(src / "fifo.nii")] == "not a regular file (FIFO)"
    assert why[str(src / "zero.nii")] == "not a regular file (link to a device)"
    assert why[str(src / "dangling.nii")] == "not a regular file (dangling link)"
    assert sorted(report(out).values()) == ["defaced"] + ["quarantined"] * 3


def test_out_inside_src_spelled_differently_is_not_scanned(tmp_path, capsys, monkeypatch):
    src = tmp_path / "nest"
    src.mkdir()
    save_nifti(src / "sub-01_T1w.nii", *moved_template_head())
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert run_cli([src, "-o", "nest/out", "--device", "cpu"]) == 0
        assert_clean_run(capsys, "1 defaced, 0 quarantined of 1 inputs")
    files = sorted(str(p.relative_to(src)) for p in src.rglob("*")
                   if p.is_file() and ".pixeldeid" not in p.parts)
    assert files == [str(output_of(src / "out", src / "sub-01_T1w.nii").relative_to(src)),
                     "sub-01_T1w.nii"]


def test_dicom_rerun_into_the_same_out_is_not_quarantined(tmp_path, capsys):
    files = write_mr_series(tmp_path / "series")
    out = tmp_path / "out"
    names = []
    for _ in range(2):
        assert run_cli([tmp_path / "series", "-o", out, "--device", "cpu"]) == 0
        assert_clean_run(capsys, "1 defaced, 0 quarantined of 1 inputs")
        names.append(sorted(str(p.relative_to(out)) for p in (out / "dicom").rglob("*")))
    assert names[0] == names[1]  # the same series folder, complete, nothing beside it
    assert len([n for n in names[1] if n.endswith(".dcm")]) == len(files)
    assert not (out / "quarantine").exists()


def test_src_inside_out_never_overwrites_its_inputs(tmp_path):
    from defacing.bids import plan_bids

    root = tmp_path / "ds"  # OUT/ds/... would be the input itself
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    (root / "sub-01" / "anat" / "sub-01_T1w.nii").write_bytes(b"")
    jobs = refuse_collisions(plan_bids(root, tmp_path))
    assert [j.kind for j in jobs] == ["unsupported", "unsupported"]
    assert all("would overwrite an input" in j.reason for j in jobs)
