"""BIDS datasets and PET through CT inside ``pixeldeid run``.

A small synthetic BIDS dataset (the project's template head, moved) goes in; a BIDS tree
with subjects renamed after their pseudonyms comes out, sidecars scrubbed, and nothing of
the original subject labels in any path or file. A PET series sharing the Frame of
Reference of a CT series is registered through the CT.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from pixeldeid.cli import main

from .conftest import KEY, inputs_digest, tree

LEAKS = ("DOEJOHN", "sub-02", "sub-03", "Quixmore", "2021-03-04", "1980-05-12")


def _run(src: Path, out: Path, key: Path, *extra: str) -> int:
    return main(["run", str(src), "-o", str(out), "--key-file", str(key), "--no-progress",
                 "--pixels", "off", "-j", "1", *extra])


def _items(out: Path) -> list[dict]:
    con = sqlite3.connect(f"file:{out / '.pixeldeid' / 'run.sqlite'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM items ORDER BY id")]
    finally:
        con.close()


def _bids_dataset(root: Path) -> Path:
    """Two subjects (one with an identifying label), a participant with no files, an
    anatomical image and a diffusion series to deface, BOLD and a phase map to copy."""
    from tests.defacing.conftest import moved_template_head, save_nifti

    t1, aff = moved_template_head()
    a = root / "sub-DOEJOHN"
    for d in ("anat", "func", "fmap", "dwi"):
        (a / d).mkdir(parents=True)
    (root / "sub-02" / "func").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "synthetic", "BIDSVersion": "1.9.0", "AcquisitionDate": "2021-03-04"}))
    (root / "README").write_text("Scans of sub-DOEJOHN and sub-02 (sub-03 withdrew).\n")
    (root / "participants.tsv").write_text(
        "participant_id\tage\tbirth_date\nsub-DOEJOHN\t42\t1980-05-12\nsub-02\t37\tn/a\n"
        "sub-03\t51\tn/a\n")
    save_nifti(a / "anat" / "sub-DOEJOHN_T1w.nii.gz", t1.astype(np.int16), aff)
    (a / "anat" / "sub-DOEJOHN_T1w.json").write_text(json.dumps(
        {"RepetitionTime": 2.3, "AcquisitionDateTime": "2021-03-04T10:11:12",
         "InstitutionName": "St Quixmore Infirmary", "EchoTime": 0.003}))
    bold = np.random.default_rng(1).random((10, 10, 8, 3)).astype(np.float32)
    for s in ("sub-DOEJOHN", "sub-02"):
        img = nib.Nifti1Image(bold, np.diag([3.0, 3.0, 3.0, 1.0]))
        img.header["descrip"] = b"Time=101112.5"
        nib.save(img, str(root / s / "func" / f"{s}_task-rest_bold.nii.gz"))
        (root / s / "func" / f"{s}_task-rest_bold.json").write_text(json.dumps(
            {"TaskName": "rest", "InstitutionName": "St Quixmore Infirmary"}))
    save_nifti(a / "fmap" / "sub-DOEJOHN_phasediff.nii.gz",
               (t1[::2, ::2, ::2] > 100).astype(np.int16) * 500, aff)
    (a / "fmap" / "sub-DOEJOHN_phasediff.json").write_text(json.dumps(
        {"IntendedFor": ["bids::sub-DOEJOHN/func/sub-DOEJOHN_task-rest_bold.nii.gz"],
         "EchoTime1": 0.004}))
    dwi = np.stack([t1, t1 * 0.25, t1], axis=3).astype(np.int16)
    save_nifti(a / "dwi" / "sub-DOEJOHN_dwi.nii.gz", dwi, aff)
    (a / "dwi" / "sub-DOEJOHN_dwi.bval").write_text("0 1000 5\n")
    (a / "dwi" / "sub-DOEJOHN_dwi.bvec").write_text("0 1 0\n0 0 1\n0 0 0\n")
    (a / "sub-DOEJOHN_scans.tsv").write_text(
        "filename\tacq_time\nanat/sub-DOEJOHN_T1w.nii.gz\t2021-03-04T10:01:02\n")
    (root / "code").mkdir()
    (root / "code" / "convert.sh").write_bytes(b"#!/bin/sh\ndcm2niix sub-DOEJOHN\n")
    (root / ".datalad").mkdir()
    (root / ".datalad" / "config").write_text("[datalad] id = sub-DOEJOHN\n")
    return root


@pytest.fixture(scope="module")
def bids_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("bidsrun")
    src = _bids_dataset(base / "in" / "mystudy")
    key = base / "project.key"
    key.write_bytes(KEY)
    before = inputs_digest(src)
    out = base / "out"
    status = _run(src, out, key)
    (ds,) = (out / "bids").iterdir()  # one dataset, named by a keyed hash (not "mystudy")
    return {"src": src, "out": out, "key": key, "status": status, "before": before,
            "ds": ds, "items": _items(out)}


def test_bids_tree_with_relabelled_subjects(bids_run) -> None:
    ds, items = bids_run["ds"], bids_run["items"]
    by_name = {Path(i["src"]).name: i for i in items}
    # not released: the script (not an image, not a known text file) and hidden files
    assert by_name["convert.sh"]["status"] == by_name["config"]["status"] == "skipped"
    assert "not an image or a known text file" in by_name["convert.sh"]["reason"]
    assert "hidden" in by_name["config"]["reason"]
    assert bids_run["status"] == 0
    assert all(i["status"] == "done" for n, i in by_name.items()
               if n not in ("convert.sh", "config"))
    t1 = by_name["sub-DOEJOHN_T1w.nii.gz"]
    new = "sub-" + t1["patient"].replace("_", "")
    bold2 = by_name["sub-02_task-rest_bold.nii.gz"]
    new2 = "sub-" + bold2["patient"].replace("_", "")
    assert new != new2 and new.isascii() and new[4:].isalnum()
    rels = sorted(p.relative_to(ds).as_posix() for p in ds.rglob("*") if p.is_file())
    assert rels == sorted([
        "README", "dataset_description.json", "participants.tsv",
        f"{new}/{new}_scans.tsv",
        f"{new}/anat/{new}_T1w.json", f"{new}/anat/{new}_T1w.nii.gz",
        f"{new}/dwi/{new}_dwi.bval", f"{new}/dwi/{new}_dwi.bvec", f"{new}/dwi/{new}_dwi.nii.gz",
        f"{new}/fmap/{new}_phasediff.json", f"{new}/fmap/{new}_phasediff.nii.gz",
        f"{new}/func/{new}_task-rest_bold.json", f"{new}/func/{new}_task-rest_bold.nii.gz",
        f"{new2}/func/{new2}_task-rest_bold.json", f"{new2}/func/{new2}_task-rest_bold.nii.gz"])
    assert ds.name.startswith("dataset-") and "mystudy" not in ds.name
    assert t1["output"] == f"bids/{ds.name}/{new}/anat/{new}_T1w.nii.gz"
    assert json.loads(t1["stages"]) == ["deface"] and t1["kind"] == "nifti"
    participants = (ds / "participants.tsv").read_text().splitlines()
    ids = [row.split("\t")[0] for row in participants[1:]]
    assert ids[:2] == [new, new2] and ids[2].startswith("sub-SUBJ") and len(set(ids)) == 3
    assert participants[1].split("\t")[1:] == ["42", "n/a"]  # age kept, birth date removed
    fmap = json.loads((ds / new / "fmap" / f"{new}_phasediff.json").read_text())
    assert fmap == {"IntendedFor": [f"bids::{new}/func/{new}_task-rest_bold.nii.gz"],
                    "EchoTime1": 0.004}


def test_images_defaced_or_copied_and_named(bids_run) -> None:
    src = bids_run["src"]
    by_name = {Path(i["src"]).name: i for i in bids_run["items"]}
    for name in ("sub-DOEJOHN_T1w.nii.gz", "sub-DOEJOHN_dwi.nii.gz"):
        it = by_name[name]
        metrics = json.loads(it["details"])["deface"]["metrics"]
        assert metrics["face_fraction_removed"] > 0.5 and metrics["brain_voxels_changed"] == 0
    dwi_in = nib.load(str(src / "sub-DOEJOHN" / "dwi" / "sub-DOEJOHN_dwi.nii.gz"))
    dwi_out = nib.load(str(bids_run["out"] / by_name["sub-DOEJOHN_dwi.nii.gz"]["output"]))
    a, b = np.asarray(dwi_in.dataobj), np.asarray(dwi_out.dataobj)
    assert a.shape == b.shape and (a != b).any()
    changed = a != b  # one mask for every volume
    assert np.array_equal(changed[..., 0], changed[..., 2])
    for name in ("sub-DOEJOHN_task-rest_bold.nii.gz", "sub-DOEJOHN_phasediff.nii.gz"):
        it = by_name[name]
        assert json.loads(it["stages"]) == ["bids"]
        assert json.loads(it["details"])["bids"]["note"] == "not defaced, may show a face"
    bold_in = nib.load(str(src / "sub-02" / "func" / "sub-02_task-rest_bold.nii.gz"))
    bold_out = nib.load(str(bids_run["out"] / by_name["sub-02_task-rest_bold.nii.gz"]["output"]))
    assert np.array_equal(np.asarray(bold_in.dataobj), np.asarray(bold_out.dataobj))
    assert b"Time" not in bold_out.header["descrip"].tobytes()


def test_sidecars_scrubbed_bval_bvec_copied(bids_run) -> None:
    src, ds = bids_run["src"], bids_run["ds"]
    new = next(p.name for p in ds.iterdir() if (p / "anat").is_dir())
    side = json.loads((ds / new / "anat" / f"{new}_T1w.json").read_text())
    assert side == {"RepetitionTime": 2.3, "EchoTime": 0.003}
    assert json.loads((ds / "dataset_description.json").read_text()) == {
        "Name": "synthetic", "BIDSVersion": "1.9.0"}
    for ext in ("bval", "bvec"):
        assert ((ds / new / "dwi" / f"{new}_dwi.{ext}").read_bytes()
                == (src / "sub-DOEJOHN" / "dwi" / f"sub-DOEJOHN_dwi.{ext}").read_bytes())
    assert (ds / new / f"{new}_scans.tsv").read_text().splitlines() == [
        "filename\tacq_time", f"anat/{new}_T1w.nii.gz\tn/a"]


def test_no_original_label_in_any_path_or_content(bids_run) -> None:
    out = bids_run["out"]
    released = [p for p in out.rglob("*") if p.is_file()
                and p.relative_to(out).parts[0] not in (".pixeldeid", "quarantine")]
    assert released
    for p in released:
        rel = p.relative_to(out).as_posix()
        assert not any(leak.lower() in rel.lower() for leak in LEAKS), rel
        data = p.read_bytes()
        if p.name.endswith(".gz"):
            import gzip

            data = gzip.decompress(data)
        for leak in LEAKS:
            assert leak.encode() not in data, (rel, leak)
    # the original labels are identity that verify searches for
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    values = {v for (v,) in con.execute("SELECT value FROM identity WHERE kind='other'")}
    con.close()
    assert {"sub-DOEJOHN", "DOEJOHN", "sub-02", "sub-03"} <= values and "02" not in values


def test_second_run_does_no_work_inputs_unchanged_verify_clean(bids_run, capsys) -> None:
    out, src = bids_run["out"], bids_run["src"]
    first = tree(out)
    assert _run(src, out, bids_run["key"]) == 0
    assert "0 done" in capsys.readouterr().out
    assert tree(out) == first
    assert inputs_digest(src) == bids_run["before"]
    assert main(["verify", str(out), "--no-progress"]) == 0


def test_verify_finds_an_original_label_left_in_a_copy(bids_run, tmp_path) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(bids_run["out"], out)
    readme = out / "bids" / bids_run["ds"].name / "README"
    readme.write_text(readme.read_text() + "Formerly sub-DOEJOHN.\n")
    assert main(["verify", str(out), "--no-progress"]) == 1


# -- PET through CT ------------------------------------------------------------------------
def _series(folder: Path, vol: np.ndarray, *, modality: str, seed: int, series_uid: str,
            for_uid: str, body: str = "HEAD") -> None:
    """Axial slices of ``vol`` (indexed [i, j, k] on a 2.5 mm LPS grid) as a DICOM series."""
    from pixeldeid._synth import ct_slice_dataset, write_dataset

    folder.mkdir(parents=True)
    n = vol.shape[2]
    for k in range(n):
        pixels = np.ascontiguousarray(vol[:, :, k].T).astype(np.int16)
        ds = ct_slice_dataset(k, n, seed=seed, pixels=pixels)
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelSpacing = ["2.5", "2.5"]
        ds.SliceThickness = "2.5"
        ds.ImagePositionPatient = ["-100", "-130", f"{-120 + 2.5 * k:g}"]
        ds.SliceLocation = f"{-120 + 2.5 * k:g}"
        ds.FrameOfReferenceUID = for_uid
        ds.SeriesInstanceUID = series_uid
        ds.BodyPartExamined = body
        ds.Modality = modality
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if modality == "PT":
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.128"
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.RescaleIntercept, ds.RescaleType = "0", "BQML"
            ds.SeriesDescription = "PET BRAIN"
        write_dataset(ds, folder / f"{modality}{k:03d}.dcm")


def test_pet_registered_through_ct_of_the_same_frame_of_reference(tmp_path: Path) -> None:
    from scipy import ndimage

    from tests.defacing.conftest import moved_template_head

    head, _ = moved_template_head()
    for_uid = pydicom.uid.generate_uid()
    ct = head * 1.1 - 1000.0 + 1024.0  # stored values, rescale intercept -1024: HU
    _series(tmp_path / "in" / "ct", ct, modality="CT", seed=11,
            series_uid=pydicom.uid.generate_uid(), for_uid=for_uid)
    pet = ndimage.gaussian_filter(np.where(head > 60, 1000.0, 20.0), 1.5)
    _series(tmp_path / "in" / "pet", pet, modality="PT", seed=11,
            series_uid=pydicom.uid.generate_uid(), for_uid=for_uid)
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    status = _run(tmp_path / "in", out, key)
    items = {i["modality"]: i for i in _items(out)}
    pt, ctit = items["PT"], items["CT"]
    assert pt["kind"] == ctit["kind"] == "dicom-series", (pt["reason"], ctit["reason"])
    assert status == 0, (pt["reason"], ctit["reason"])
    deface = json.loads(pt["details"])["deface"]
    assert deface["reference"] == {"series": ctit["series"], "files": 92, "used": True}
    assert for_uid not in json.dumps(deface)
    assert deface["metrics"]["registration"]["registered_on"] == "reference"
    assert "reference" not in json.loads(ctit["details"])["deface"]
    files = sorted((out / pt["output"]).glob("*.dcm"))
    assert len(files) == 92
    assert str(pydicom.dcmread(files[0], stop_before_pixels=True).Modality) == "PT"


# -- the plan alone --------------------------------------------------------------------------
def test_plan_derivatives_same_subject_and_unknown_label_quarantined(tmp_path: Path) -> None:
    from pixeldeid.pipeline.job import Job, PixelJob
    from pixeldeid.pipeline.plan import build_plan
    from pixeldeid.pseudonyms import PseudonymMap

    root = tmp_path / "in" / "ds"
    (root / "sub-ab" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text("{}")
    (root / "sub-ab" / "anat" / "sub-ab_T1w.json").write_text("{}")
    der = root / "derivatives" / "pipe"
    for sub in ("sub-ab", "sub-zz"):
        (der / sub).mkdir(parents=True)
        (der / sub / f"{sub}_desc-x_stats.tsv").write_text("a\tb\n1\t2\n")
    (root / "sub-77_notes.txt").write_text("notes\n")
    ses = root / "sub-ab" / "ses-20210304" / "anat"
    ses.mkdir(parents=True)
    (ses / "sub-ab_ses-20210304_T1w.json").write_text("{}")
    names = PseudonymMap(None, KEY, "SUBJ", None)
    try:
        plan = build_plan([root], tmp_path / "out", Job(pixels=PixelJob(policy="off")), KEY,
                          names)
    finally:
        names.close()
    by = {Path(i.src).name: i for i in plan.items}
    raw, der_ab, der_zz = (by["sub-ab_T1w.json"], by["sub-ab_desc-x_stats.tsv"],
                           by["sub-zz_desc-x_stats.tsv"])
    assert raw.kind == "sidecar" and raw.patient == der_ab.patient != der_zz.patient
    label = raw.patient.replace("_", "")
    ds = raw.target.split("/")[1]
    assert ds.startswith("dataset-") and der_ab.target.split("/")[1] == ds
    assert der_ab.target == (f"bids/{ds}/derivatives/pipe/sub-{label}/"
                             f"sub-{label}_desc-x_stats.tsv")
    assert "zz" not in der_zz.target and "sub-ab" not in raw.target
    notes = by["sub-77_notes.txt"]
    assert notes.status == "quarantined" and "subject label" in notes.reason
    assert not notes.stages
    # a session label that is a date is kept, but named in a note and searched by verify
    dated = by["sub-ab_ses-20210304_T1w.json"]
    assert dated.target == (f"bids/{ds}/sub-{label}/ses-20210304/anat/"
                            f"sub-{label}_ses-20210304_T1w.json")
    assert any("look like dates" in n for n in plan.notes)
    assert ("other", "20210304") in plan.identity[raw.patient]


def test_zip_packages_dataset_files_apart_from_the_subjects(bids_run, tmp_path) -> None:
    """With --zip every released file is in exactly one package: a subject's files in its
    zip, the dataset-level files (no patient) in packages/dataset-files.zip."""
    import shutil
    import zipfile

    out = tmp_path / "out"
    shutil.copytree(bids_run["out"], out)
    assert _run(bids_run["src"], out, bids_run["key"], "--zip") == 0
    ds = f"bids/{bids_run['ds'].name}"
    zips = {z.stem: set(zipfile.ZipFile(z).namelist()) for z in (out / "packages").glob("*.zip")}
    shared = zips.pop("dataset-files")
    assert {f"{ds}/participants.tsv", f"{ds}/dataset_description.json", f"{ds}/README"} <= shared
    assert not any("/sub-" in n for n in shared)
    released = {p.relative_to(out).as_posix() for p in (out / "bids").rglob("*") if p.is_file()}
    members = [n for names in zips.values() for n in names] + sorted(shared)
    assert sorted(members) == sorted(released)  # each file once, none left out
    by_patient = {i["patient"] for i in bids_run["items"] if i["patient"]}
    assert set(zips) == {p for p in by_patient if any(  # one zip per subject released
        i["patient"] == p and i["status"] == "done" for i in bids_run["items"])}


def test_identity_values_of_sidecars_leave_every_released_text(tmp_path: Path) -> None:
    """The sidecar's PatientName was removed but its ImageComments kept the name; a name
    column of participants.tsv and a README naming the patient were released, and verify
    knew none of these values."""
    src = _bids_dataset(tmp_path / "bids")
    side = src / "sub-DOEJOHN" / "anat" / "sub-DOEJOHN_T1w.json"
    meta = json.loads(side.read_text())
    meta.update(PatientName="Blackwood^Zephyrine", PatientID="99887766",
                ImageComments="Blackwood Zephyrine")
    side.write_text(json.dumps(meta))
    (src / "participants.tsv").write_text(
        "participant_id\tname\tage\nsub-DOEJOHN\tZephyrine Blackwood\t97\nsub-02\tn/a\t37\n")
    (src / "README").write_text("Scans of Zephyrine Blackwood, MRN 99887766.\n")
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    assert _run(src, out, key) == 1  # the README is quarantined
    released = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()
                and not {".pixeldeid", "quarantine"} & set(p.relative_to(out).parts)}
    for data in released.values():
        for leak in (b"Blackwood", b"Zephyrine", b"99887766"):
            assert leak not in data
    by_src = {Path(i["src"]).name: i for i in _items(out)}
    assert by_src["README"]["status"] == "quarantined"
    assert "identity value" in by_src["README"]["reason"]
    tsv = next(p for p in released if p.name == "participants.tsv")
    assert tsv.read_text().splitlines()[1].split("\t")[1:] == ["n/a", "89+"]
    assert main(["verify", str(out), "--no-ocr", "--no-dciodvfy", "--no-progress"]) == 0
