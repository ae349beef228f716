"""Audit s14 (defaceq): skull-stripped brains quarantined, ears cut alike on both sides with
the brain margin kept, removed voxels filled with the image's own background."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from defacing.deface import RegistrationQualityError, deface_array, fill_value
from defacing.nifti import read_nifti
from tests.defacing.conftest import heads

RAS = np.diag([-1.0, -1.0, 1.0])


def _world_ras(img) -> np.ndarray:
    """RAS world coordinates ``[x, y, z]`` of every voxel of a SimpleITK image (z, y, x order)."""
    idx = np.argwhere(np.ones(img.GetSize()[::-1], bool))[:, ::-1]
    d = np.array(img.GetDirection()).reshape(3, 3)
    lps = np.array(img.GetOrigin()) + (idx * np.array(img.GetSpacing())) @ d.T
    return (lps @ RAS).reshape(img.GetSize()[::-1] + (3,))


def test_template_ear_boxes_symmetric_about_the_head_and_brain_inside_it(template):
    import SimpleITK as sitk

    xyz = _world_ras(template.head)
    brain = sitk.GetArrayFromImage(template.brain) > 0
    ears = sitk.GetArrayFromImage(template.ears) >= 0.5
    head = template.head_mask
    mid = xyz[..., 0][brain].mean()
    hx = xyz[..., 0][head]
    assert abs(mid - (hx.min() + hx.max()) / 2) < 4.0  # the brain sits mid-head
    left = xyz[..., 0][ears & (xyz[..., 0] < mid)]
    right = xyz[..., 0][ears & (xyz[..., 0] > mid)]
    assert abs((mid - left.max()) - (right.min() - mid)) <= 2.0  # was 68 vs 58 mm
    # the brain lies inside the head, with skull and scalp around it (was 14 mm behind it)
    # (the head mask is open at the sinuses, which the frontal lobe borders)
    assert (brain & ~ndimage.binary_erosion(head, iterations=2)).sum() < 0.01 * brain.sum()
    for ax in (1, 2):
        assert xyz[..., ax][brain].max() < xyz[..., ax][head].max() - 4.0
    assert xyz[..., 1][brain].min() > xyz[..., 1][head].min() + 4.0


@pytest.mark.shared
@pytest.mark.slow
def test_skull_stripped_brain_is_quarantined_not_cut():
    data, affine, *_ = read_nifti(heads("ch2bet.nii.gz"))
    with pytest.raises(RegistrationQualityError, match="skull-stripped brain: no face"):
        deface_array(data, affine)


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("code", ["RAS", "LPS", "PIR", "ILP"])
def test_skull_stripped_brain_quarantined_in_any_orientation(code):
    data, affine, *_ = read_nifti(heads("orientations", f"{code}.nii.gz"))
    with pytest.raises(RegistrationQualityError, match="skull-stripped brain: no face"):
        deface_array(data, affine)


@pytest.mark.shared
@pytest.mark.slow
def test_colin_both_ears_cut_alike_and_6mm_from_the_real_brain():
    data, affine, *_ = read_nifti(heads("ch2.nii.gz"))
    res = deface_array(data, affine)
    assert res.metrics["registration"]["face_tissue"] > 0.1
    bet = np.asarray(nib.load(str(heads("ch2bet.nii.gz"))).dataobj) > 0
    zooms = np.linalg.norm(affine[:3, :3], axis=0)
    dist = ndimage.distance_transform_edt(~bet, sampling=zooms)
    assert dist[res.removed].min() >= 6.0  # was 1.4 mm (left ear box)
    # head voxels removed beside the brain (ear level), per side of the mid-plane
    ijk = np.argwhere(res.removed & (data > 0.12 * np.percentile(data, 99)))
    xyz = nib.affines.apply_affine(affine, ijk)
    ear = (xyz[:, 1] > -60) & (xyz[:, 1] < 10) & (xyz[:, 2] < 20)
    left, right = int((ear & (xyz[:, 0] < -40)).sum()), int((ear & (xyz[:, 0] > 40)).sum())
    assert min(left, right) > 0.7 * max(left, right)  # was 52860 vs 15740


def test_mr_fill_is_the_background_not_zero():
    rng = np.random.default_rng(0)
    vol = np.full((40, 40, 40), -50.0, np.float32) + rng.normal(0, 0.5, (40, 40, 40)).astype(
        np.float32)
    vol[10:30, 10:30, 10:30] = 600.0  # the head
    assert abs(fill_value("mr", vol, 1.0, 0.0) + 50.0) < 2.0  # was 0
    # a head touching the edge of the field of view does not move the background
    vol[:, :, :4] = 600.0
    assert abs(fill_value("mr", vol, 1.0, 0.0) + 50.0) < 2.0
    # ordinary MR (air 0, with noise above it) and CT keep their fills
    ints = rng.integers(0, 12, (20, 20, 20)).astype(np.int16)
    ints[5:15, 5:15, 5:15] = 900
    assert fill_value("mr", ints, 1.0, 0.0) == 0.0
    assert fill_value("ct", ints, 1.0, -1024.0) == 24.0
    # per-slice (2D) use by DICOM series
    assert fill_value("mr", vol[:, :, 20], 1.0, 0.0) < -48.0


def test_offset_mr_head_filled_with_its_air(synthetic_head):
    data, affine = synthetic_head
    shifted = data - 50.0  # MR whose air is stored as -50
    res = deface_array(shifted, affine, modality="mr")
    assert res.removed.any()
    assert res.fill == pytest.approx(-50.0, abs=1.0)
    air = np.isclose(shifted, -50.0)
    # air voxels of the removed region keep (about) their value
    assert np.abs(res.data[res.removed & air] + 50.0).max() < 1.0
