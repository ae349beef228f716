"""BIDS mode: defaced copy of a small BIDS dataset built from the synthetic head."""

from __future__ import annotations

import argparse
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from defacing import cli
from tests.defacing.conftest import save_nifti

pytestmark = pytest.mark.slow


def _run(args):
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return cli.run(p.parse_args([str(a) for a in args]))


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
    save_nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz", t1.astype(np.int16), affine)
    (root / "sub-01" / "anat" / "sub-01_T1w.json").write_text(json.dumps({"RepetitionTime": 2.3}))
    pet = (ndimage.gaussian_filter(t1, 2.0) / 50.0).astype(np.float32)
    save_nifti(root / "sub-01" / "pet" / "sub-01_pet.nii.gz", pet, affine)
    (root / "sub-01" / "pet" / "sub-01_pet.json").write_text(json.dumps({"TracerName": "FDG"}))
    bold = np.random.default_rng(1).random((10, 10, 8, 3)).astype(np.float32)
    save_nifti(root / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz", bold,
               np.diag([3.0, 3.0, 3.0, 1.0]))
    out = tmp_path_factory.mktemp("bidsout")
    status = _run([root, "-o", out, "--bids", "--device", "cpu"])
    return root, out / "study", status


def test_bids_copy_has_same_files(bids):
    root, out, status = bids
    assert status == 0
    src_files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    out_files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert src_files == out_files
    for rel in src_files:
        if rel.suffix in (".json", ".tsv") or "func" in rel.parts:
            assert (root / rel).read_bytes() == (out / rel).read_bytes()


@pytest.mark.parametrize("rel, fill", [("sub-01/anat/sub-01_T1w.nii.gz", 0),
                                       ("sub-01/pet/sub-01_pet.nii.gz", 0)])
def test_bids_images_defaced(bids, rel, fill):
    root, out, _ = bids
    a = np.asarray(nib.load(str(root / rel)).dataobj)
    b = np.asarray(nib.load(str(out / rel)).dataobj)
    changed = a != b
    assert changed.sum() > 1000
    assert np.all(b[changed] == fill)


def test_not_a_bids_root_is_usage_error(tmp_path):
    (tmp_path / "x").mkdir()
    assert _run([tmp_path / "x", "-o", tmp_path / "o", "--bids"]) == 2
