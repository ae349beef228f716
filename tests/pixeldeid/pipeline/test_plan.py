"""The plan: kinds and stages per input, patient numbering, hostile names, dry run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pixeldeid.cli import main
from pixeldeid.pipeline.job import DefaceJob, Job, PixelJob
from pixeldeid.pipeline.plan import build_plan
from pixeldeid.pseudonyms import PseudonymMap

from .conftest import KEY


def _nifti(path: Path, shape=(40, 48, 40)) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])), path)
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pixeldeid._synth import make_ct_series

    root = tmp_path_factory.mktemp("mixed") / "in"
    head = make_ct_series(root / "a_head", 8, seed=3)
    for p in head:  # a head CT series: BodyPartExamined HEAD
        ds = pydicom.dcmread(p)
        ds.BodyPartExamined = "HEAD"
        ds.save_as(p)
    make_ct_series(root / "b_chest", 2, seed=4)
    _nifti(root / "c_bids" / "sub-07" / "anat" / "sub-07_DOE-JOHN_T1w.nii.gz")
    (root / "c_bids" / "sub-07" / "anat" / "sub-07_T1w.json").write_text("{}")
    (root / "d_bad").mkdir()
    (root / "d_bad" / "fake.nii").write_bytes(b"\0" * 400)
    (root / "d_bad" / "fake.svs").write_bytes(b"not a tiff at all")
    return root


def _plan(src: Path, job: Job, tmp_path: Path, supplied: dict | None = None):
    names = PseudonymMap(None, KEY, "SUBJ", supplied)
    try:
        return build_plan([src], tmp_path / "out", job, KEY, names)
    finally:
        names.close()


def test_kinds_stages_and_numbering(mixed: Path, tmp_path: Path) -> None:
    plan = _plan(mixed, Job(pixels=PixelJob(policy="off")), tmp_path)
    by = {(Path(i.src).parent.name, i.kind): i for i in plan.items}
    series = by[("a_head", "dicom-series")]
    assert series.stages == ["deface", "header"] and len(series.members) == 8
    assert series.modality == "CT"
    chest = [i for i in plan.items if Path(i.src).parent.name == "b_chest"]
    assert [i.kind for i in chest] == ["dicom", "dicom"] and chest[0].stages == ["header"]
    nifti = by[("anat", "nifti")]
    assert nifti.stages == ["deface"]
    # the output name is the pseudonym, a keyed hash and the BIDS suffix: no input name part
    assert nifti.target.startswith(f"nifti/{nifti.patient}/") and "DOE" not in nifti.target
    assert nifti.target.endswith("_T1w.nii.gz")
    # DICOM patients first, in input order, then the others
    assert (series.patient, chest[0].patient, nifti.patient) == ("SUBJ_001", "SUBJ_002",
                                                                 "SUBJ_003")
    other = {Path(i.src).name: i for i in plan.items if i.kind == "other"}
    assert other["sub-07_T1w.json"].status == "skipped"
    assert "bad magic" in other["fake.nii"].reason and other["fake.nii"].status == "quarantined"
    assert "not a TIFF" in other["fake.svs"].reason
    # identity values of the header, per patient
    values = {v for _, v in plan.identity["SUBJ_001"]}
    ds = pydicom.dcmread(series.src, stop_before_pixels=True)
    assert {str(ds.PatientID), str(ds.PatientName), str(ds.AccessionNumber)} <= values


def test_without_defacing_head_series_are_files_and_heads_not_released(mixed, tmp_path) -> None:
    plan = _plan(mixed, Job(deface=DefaceJob(enabled=False), pixels=PixelJob(policy="off")),
                 tmp_path)
    kinds = {i.kind for i in plan.items if Path(i.src).parent.name == "a_head"}
    assert kinds == {"dicom"}
    nifti = next(i for i in plan.items if i.kind == "nifti")
    assert nifti.status == "skipped" and "defacing disabled" in nifti.reason


def test_hostile_pseudonym_from_a_subject_map_stays_inside_out(mixed, tmp_path) -> None:
    supplied = {f"BIDS:{mixed / 'c_bids' / 'sub-07'}": "../../evil"}
    plan = _plan(mixed, Job(pixels=PixelJob(policy="off")), tmp_path, supplied)
    nifti = next(i for i in plan.items if i.kind == "nifti")
    assert nifti.patient == "../../evil"
    assert ".." not in Path(nifti.target).parts and nifti.target.startswith("nifti/evil/")


def test_dry_run_prints_the_plan_and_writes_nothing(mixed, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    status = main(["run", str(mixed), "-o", str(out), "--dry-run", "--pixels", "off"])
    text = capsys.readouterr().out
    assert status == 0
    assert "dicom-series" in text and "deface+header" in text and "nifti" in text
    assert "dry run" in text
    assert not out.exists()


def test_nifti_that_is_not_a_head_is_quarantined_and_the_run_goes_on(mixed, tmp_path) -> None:
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    status = main(["run", str(mixed / "c_bids"), str(mixed / "b_chest"), "-o", str(out),
                   "--key-file", str(key), "--no-progress", "--pixels", "off"])
    assert status == 1
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    rows = dict(con.execute("SELECT kind || ':' || status, COUNT(*) FROM items GROUP BY 1"))
    reason = con.execute("SELECT reason FROM items WHERE kind='nifti'").fetchone()[0]
    con.close()
    assert rows == {"nifti:quarantined": 1, "dicom:done": 2, "other:skipped": 1}
    assert "registration" in reason or "head" in reason
    assert len(list((out / "quarantine").glob("*.nii.gz"))) == 1
    assert not (out / "nifti").exists()
