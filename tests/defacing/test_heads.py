"""Defacing real heads from ../shared/data/heads (skipped when absent)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import resample_from_to
from PIL import Image

from defacing.nifti import deface_nifti, read_nifti
from tests.defacing.conftest import heads

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def t1_case(tmp_path_factory):
    src = heads("T1_head_ext2.nii.gz")
    out = tmp_path_factory.mktemp("t1")
    res = deface_nifti(src, out / "t1.nii.gz", qc_dir=out / "qc")
    return src, out, res


def test_t1_output_written_with_same_grid_and_dtype(t1_case):
    src, out, res = t1_case
    a, b = nib.load(str(src)), nib.load(str(out / "t1.nii.gz"))
    assert a.shape == b.shape and np.allclose(a.affine, b.affine)
    assert a.get_data_dtype() == b.get_data_dtype()
    da, db = np.asarray(a.dataobj), np.asarray(b.dataobj)
    changed = da != db
    assert changed.sum() > 10000
    assert not changed[res.protected].any()
    assert np.all(db[res.removed] == 0)
    assert b.header["descrip"].tobytes().startswith(b"defaced by pixeldeid")


def test_t1_metrics_and_qc_files(t1_case):
    _, out, res = t1_case
    m = json.loads((out / "qc" / "t1_metrics.json").read_text())
    assert m["brain_voxels_changed"] == 0
    assert m["face_fraction_removed"] > 0.9
    assert m["registration"]["head_dice"] > 0.85
    assert m["runtime_s"] > 0
    for name in ("front", "side", "slices"):
        im = Image.open(out / "qc" / f"t1_{name}.png")
        assert im.width > 100 and im.height > 60


def test_t1_front_render_differs_in_face_not_above_brows(t1_case):
    from defacing.nifti import qc_arrays
    from defacing.qc import surface_render

    src, _, res = t1_case
    data, affine, *_ = read_nifti(src)
    before, after, removed, _ = qc_arrays(data, affine, res)
    thr = 0.12 * np.percentile(before, 99)
    a = surface_render(before, thr, axis=1).astype(int)
    b = surface_render(after, thr, axis=1).astype(int)
    rows = np.nonzero((a > 0).any(axis=1))[0]
    top, bottom = rows.min(), rows.max()
    height = bottom - top
    # this scan runs from the crown to the neck: the brows lie about half way down
    crown = slice(top, top + int(0.40 * height))
    face = slice(top + int(0.55 * height), top + int(0.85 * height))
    assert np.abs(a[crown] - b[crown]).mean() < 0.5
    on_head = a[face] > 0
    assert (np.abs(a[face] - b[face]) > 10)[on_head].mean() > 0.4


@pytest.fixture(scope="module")
def colin():
    src = heads("ch2.nii.gz")
    data, affine, slope, inter, img = read_nifti(src)
    from defacing.deface import deface_array

    return img, data, deface_array(data, affine)


def test_colin_brain_extracted_twin_untouched(colin):
    img, data, res = colin
    bet = nib.load(str(heads("ch2bet.nii.gz")))
    assert np.allclose(bet.affine, img.affine)
    brain = np.asarray(bet.dataobj) > 0
    assert brain.sum() > 500000
    assert not (res.data != data)[brain].any()
    assert res.metrics["brain_voxels_changed"] == 0


def _independent_face(img, data):
    """Face from niimath's MNI keep-mask: not kept, inside the head, in front and low."""
    keep = resample_from_to(nib.load(str(heads("mniMask.nii.gz"))), img, order=0).get_fdata() > 0.5
    ijk = np.indices(data.shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(img.affine, ijk).reshape(data.shape + (3,))
    head = data > 0.15 * np.percentile(data, 99)
    return head & ~keep & (xyz[..., 1] > 40) & (xyz[..., 2] < 20)


def test_colin_face_removed(colin):
    img, data, res = colin
    face = _independent_face(img, data)
    assert face.sum() > 10000
    assert (res.removed & face).sum() / face.sum() > 0.5


def test_mni152_keep_mask_face_removed_brain_kept():
    from defacing.deface import deface_array

    src = heads("MNI152_T1_2mm.nii.gz")
    data, affine, _, _, img = read_nifti(src)
    res = deface_array(data, affine)
    face = _independent_face(img, data)
    assert (res.removed & face).sum() / face.sum() > 0.65
    # nothing removed that niimath's keep-mask keeps above the face (forehead, brows);
    # the ear boxes (|x| > 60 mm) reach up to ear-top level and are left out here
    keep = np.asarray(nib.load(str(heads("mniMask.nii.gz"))).dataobj) > 0.5
    ijk = np.indices(data.shape).reshape(3, -1).T
    xyz = nib.affines.apply_affine(affine, ijk).reshape(data.shape + (3,))
    above = (xyz[..., 2] > 0) & (np.abs(xyz[..., 0]) < 60)
    assert not (res.removed & keep & above).any()
    assert res.metrics["ear_fraction_removed"] > 0.3


def test_t2w_partial_face(tmp_path):
    src = heads("T2w.nii.gz")
    res = deface_nifti(src, tmp_path / "t2.nii.gz")
    assert res.metrics["brain_voxels_changed"] == 0
    assert res.metrics["registration"]["head_dice"] > 0.8
    assert res.removed.sum() > 20000
    # removed voxels lie in front of the head centre and below the top of the head
    data, affine, *_ = read_nifti(src)
    ijk = np.argwhere(res.removed)
    xyz = nib.affines.apply_affine(affine, ijk)
    head = np.argwhere(data > 0.15 * np.percentile(data, 99))
    hxyz = nib.affines.apply_affine(affine, head[:: max(1, len(head) // 50000)])
    assert np.median(xyz[:, 1]) > np.median(hxyz[:, 1]) + 30
    assert np.median(xyz[:, 2]) < np.percentile(hxyz[:, 2], 50)

