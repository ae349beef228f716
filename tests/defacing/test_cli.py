"""The ``deface`` command: outputs, summary, exit status, bad inputs quarantined."""

from __future__ import annotations

import gzip
import hashlib
import json

import nibabel as nib
import numpy as np
import pytest

from tests.defacing.conftest import output_of, run_cli, save_nifti

pytestmark = pytest.mark.slow




@pytest.fixture(scope="module")
def batch(tmp_path_factory, synthetic_head):
    t1, affine = synthetic_head
    src = tmp_path_factory.mktemp("src")
    save_nifti(src / "sub-01_T1w.nii.gz", t1.astype(np.int16), affine)
    save_nifti(src / "flat2d.nii.gz", t1[:, :, 40].astype(np.int16), affine)
    rng = np.random.default_rng(0)
    save_nifti(src / "noise.nii.gz", rng.random((60, 60, 60)).astype(np.float32) * 100,
               np.diag([3.0, 3.0, 3.0, 1.0]))
    blob = gzip.compress((src / "sub-01_T1w.nii.gz").read_bytes())[:3000]
    (src / "corrupt.nii.gz").write_bytes(blob)
    (src / "notes.txt").write_text("hello")
    out = tmp_path_factory.mktemp("out")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    status = run_cli([src, "-o", out, "--qc", "--device", "cpu"])
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    assert before == after  # inputs never modified, nothing added beside them
    return src, out, status


def test_good_input_defaced_with_qc(batch):
    src, out, status = batch
    assert status == 1  # some inputs quarantined
    res = output_of(out, src / "sub-01_T1w.nii.gz")
    assert res.exists() and res.parent == out / "nifti" and res.name.endswith("_T1w.nii.gz")
    a = np.asarray(nib.load(str(src / "sub-01_T1w.nii.gz")).dataobj)
    b = np.asarray(nib.load(str(res)).dataobj)
    assert (a != b).sum() > 1000
    stem = res.name[: -len(".nii.gz")]
    m = json.loads((out / ".pixeldeid" / "qc" / f"{stem}_metrics.json").read_text())
    assert m["brain_voxels_changed"] == 0


@pytest.mark.parametrize("name, words", [
    ("flat2d.nii.gz", "3D or 4D"),
    ("noise.nii.gz", "quality check"),
    ("corrupt.nii.gz", "unreadable NIfTI"),
    ("notes.txt", "unsupported input"),
])
def test_bad_inputs_quarantined_with_reason(batch, name, words):
    src, out, _ = batch
    assert not (out / src.name / name).exists()
    reasons = {}
    for p in (out / "quarantine").glob("*.reason.txt"):
        text = p.read_text()
        source = text.splitlines()[0].split(": ", 1)[1]
        reasons[source.rsplit("/", 1)[-1]] = text
    assert name in reasons
    assert words in reasons[name]


def test_summary_line_and_usage_error(batch, capsys, tmp_path):
    src, out, _ = batch
    assert run_cli([tmp_path, "-o", tmp_path]) == 2
    status = run_cli([src / "notes.txt", "-o", tmp_path / "o2"])
    assert status == 1
    captured = capsys.readouterr()
    assert "0 defaced, 1 quarantined of 1 inputs" in captured.out


def test_no_temporaries_left_and_outputs_readable(batch):
    _, out, _ = batch
    assert not [p for p in out.rglob("*") if p.name.startswith(".pixeldeid-tmp-")]
    outputs = [p for p in out.rglob("*.nii.gz") if "quarantine" not in p.parts]
    assert len(outputs) == 1
    for p in outputs:
        nib.load(str(p)).get_fdata()


def test_cuda_without_device_is_usage_error(tmp_path, monkeypatch):
    import defacing.engines as eng

    monkeypatch.setattr(eng, "cuda_available", lambda: False)
    assert run_cli([tmp_path, "-o", tmp_path / "o", "--device", "cuda"]) == 2
