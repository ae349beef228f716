"""Defacing on heads built from the project's template: CT, PET, 4D, known motion."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from defacing.deface import AIR_HU, deface_array, fill_value, guess_modality
from defacing.volume import array_to_image, image_to_array, resample_to
from tests.defacing.conftest import moved_template_head


def pseudo_ct(t1: np.ndarray) -> np.ndarray:
    """CT-like head in HU from a T1-like head: air, skin/soft tissue, skull, brain."""
    hi = np.percentile(t1, 99)
    head = ndimage.binary_fill_holes(t1 > 0.12 * hi)
    hu = np.full(t1.shape, -1000.0, np.float32)
    hu[head] = 40.0
    inner = ndimage.binary_erosion(head, iterations=3)
    hu[inner & (t1 < 0.3 * hi)] = 900.0  # dark band inside the scalp: skull
    hu[inner & (t1 >= 0.5 * hi)] = 32.0
    return hu


@pytest.fixture(scope="module")
def ct_case(synthetic_head):
    t1, affine = synthetic_head
    hu = pseudo_ct(t1)
    stored = np.round(hu + 1024.0).astype(np.int16)  # slope 1, intercept -1024
    return stored, affine, deface_array(stored, affine, slope=1.0, inter=-1024.0)


@pytest.mark.slow
def test_ct_is_detected_and_filled_with_air_in_stored_units(ct_case):
    stored, affine, res = ct_case
    assert res.metrics["modality"] == "ct"
    assert res.fill == AIR_HU + 1024.0
    assert res.removed.sum() > 1000
    assert np.all(res.data[res.removed] == 24)
    # the nose and face soft tissue (> -500 HU) in the removed region is gone
    assert np.any(stored[res.removed] > 500)
    hu_after = res.data.astype(np.float32) - 1024.0
    assert hu_after[res.removed].max() == -1000.0


@pytest.mark.slow
def test_ct_never_changes_protected_voxels(ct_case):
    stored, _, res = ct_case
    assert res.metrics["brain_voxels_changed"] == 0
    assert np.array_equal(res.data[res.protected], stored[res.protected])
    assert np.array_equal(res.data[~res.removed], stored[~res.removed])


def test_fill_value_clips_to_dtype_and_scaling():
    data = np.zeros((4, 4, 4), np.uint8)
    assert fill_value("ct", data, 1.0, -1024.0) == 24.0
    assert fill_value("ct", data, 1.0, 0.0) == 0.0  # -1000 not representable: clipped
    assert fill_value("ct", np.zeros(3, np.int16), 2.0, 0.0) == -500.0
    assert fill_value("mr", np.array([5, 9], np.int16), 1.0, 0.0) == 5.0
    assert fill_value("pet", np.array([0.0, 3.5], np.float32), 1.0, 0.0) == 0.0


def test_guess_modality_from_hints_and_values(synthetic_head):
    t1, _ = synthetic_head
    assert guess_modality(t1, hint="_pet") == "pet"
    assert guess_modality(t1, hint="PT") == "pet"
    assert guess_modality(t1, hint="CT") == "ct"
    assert guess_modality(t1) == "mr"
    assert guess_modality(pseudo_ct(t1)) == "ct"


@pytest.mark.slow
def test_registration_recovers_known_motion(synthetic_head, template):
    """Face mask warped with the estimated transform matches the one warped with the truth."""
    t1, affine = synthetic_head
    res = deface_array(t1, affine)
    # ground truth: the same rigid motion that built the head (see moved_template_head)
    tx = sitk.Euler3DTransform()
    tx.SetCenter((0.0, -20.0, 10.0))
    tx.SetRotation(np.deg2rad(8.0), np.deg2rad(4.0), 0.0)
    tx.SetTranslation((4.0, -6.0, 3.0))
    ref = array_to_image(np.zeros(t1.shape, np.uint8), affine)
    truth = image_to_array(resample_to(template.face, ref, tx)) >= 0.5
    inter = (truth & res.removed).sum()
    assert truth.sum() > 1000
    assert inter / truth.sum() > 0.85
    assert res.metrics["registration"]["head_dice"] > 0.9
    assert abs(res.metrics["registration"]["volume_scale"] - 1.0) < 0.1


@pytest.mark.slow
def test_pet_fills_background_and_4d_uses_one_mask(synthetic_head):
    t1, affine = synthetic_head
    pet = ndimage.gaussian_filter(t1, 2.0).astype(np.float32) / 100.0 + 0.5  # background 0.5
    vols = np.stack([pet * f for f in (1.0, 1.5, 0.7)], axis=-1)
    res = deface_array(vols, affine, modality="pet")
    assert res.data.shape == vols.shape
    assert res.metrics["modality"] == "pet"
    assert res.fill == pytest.approx(0.0) or res.fill == pytest.approx(vols.min())
    for t in range(3):
        assert np.all(res.data[..., t][res.removed] == res.fill)
        assert np.array_equal(res.data[..., t][~res.removed], vols[..., t][~res.removed])
    assert res.metrics["brain_voxels_changed"] == 0


@pytest.mark.slow
def test_pet_registers_through_reference(synthetic_head):
    t1, affine = synthetic_head
    pet = np.full(t1.shape, 0.1, np.float32)  # flat PET: cannot be registered on its own
    pet[t1 > 300] = 2.0
    res = deface_array(pet, affine, modality="pet", reference=t1, reference_affine=affine)
    direct = deface_array(t1, affine)
    agree = (res.removed & direct.removed).sum() / direct.removed.sum()
    assert agree > 0.95


@pytest.mark.slow
@pytest.mark.parametrize("angle", [-20.0, 25.0])
def test_tilted_heads_are_defaced(angle):
    t1, affine = moved_template_head(angle_deg=angle, shift=(0.0, 5.0, -5.0))
    res = deface_array(t1, affine)
    assert res.metrics["registration"]["head_dice"] > 0.9
    assert res.metrics["face_fraction_removed"] > 0.9


def _crop(data, affine, axis, k):
    a2 = affine.copy()
    a2[:3, 3] = affine[:3, 3] + affine[:3, axis] * k
    sl = [slice(None)] * 3
    sl[axis] = slice(k, None)
    return data[tuple(sl)], a2, tuple(sl)


@pytest.mark.slow
@pytest.mark.parametrize("axis, frac", [(1, 0.2), (2, 0.35)])
def test_partial_coverage_removes_the_face_part_in_view(synthetic_head, axis, frac):
    """Face partly out of the field of view (front or chin cut): the part in view goes."""
    t1, affine = synthetic_head
    full = deface_array(t1, affine)
    k = int(t1.shape[axis] * frac)
    data, a2, sl = _crop(t1, affine, axis, k)
    res = deface_array(data, a2)
    expect = full.removed[sl]
    assert expect.sum() > 1000
    dice = 2 * (res.removed & expect).sum() / (res.removed.sum() + expect.sum())
    assert dice > 0.9
    assert 0 < res.metrics["face_in_fov"] < full.metrics["face_in_fov"]


def test_sheared_nan_and_tiny_inputs_rejected(synthetic_head):
    from pixeldeid.errors import InputError

    t1, affine = synthetic_head
    sheared = affine.copy()
    sheared[0, 1] = 0.8
    with pytest.raises(InputError, match="sheared"):
        deface_array(t1, sheared)
    bad = t1.copy()
    bad[10, 10, 10] = np.nan
    with pytest.raises(InputError, match="NaN"):
        deface_array(bad, affine)
    with pytest.raises(InputError, match="too small"):
        deface_array(t1[:30, :30, :30], np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="constant"):
        deface_array(np.ones_like(t1), affine)


@pytest.mark.slow
def test_thick_anisotropic_slices(synthetic_head, template):
    """5 mm axial slices with 1.25 mm in-plane voxels (a clinical thick-slice scan)."""
    t1, affine = synthetic_head
    img = array_to_image(t1, affine)
    ref = sitk.Image([160, 192, 36], sitk.sitkFloat32)
    ref.SetSpacing((1.25, 1.25, 5.0))
    ref.SetOrigin(img.GetOrigin())
    ref.SetDirection(img.GetDirection())
    thick = resample_to(img, ref)
    from defacing.volume import geometry_to_affine

    data, aff = image_to_array(thick), geometry_to_affine(thick)
    res = deface_array(data, aff)
    assert res.metrics["registration"]["head_dice"] > 0.9
    assert res.metrics["face_fraction_removed"] > 0.9
    assert res.metrics["brain_voxels_changed"] == 0


@pytest.mark.slow
def test_orientation_check_quarantines_upside_down_header(synthetic_head):
    """A head whose voxels are stored upside down under an unchanged affine (a header
    error) still passes the head-shape check; the orientation check (on by default) catches it."""
    from defacing.deface import RegistrationQualityError

    t1, affine = synthetic_head
    with pytest.raises(RegistrationQualityError, match="orientation"):
        deface_array(np.ascontiguousarray(t1[:, :, ::-1]), affine)
    ok = deface_array(t1, affine)
    oc = ok.metrics["registration"]["orientation_check"]
    assert oc["worse_than_flip"] == ""
    assert oc["as-stored"] < min(oc["upside-down mirror"], oc["front-back mirror"])


@pytest.mark.slow
def test_ct_nifti_file_keeps_hounsfield_units(tmp_path, ct_case):
    """Scaled int16 CT NIfTI (intercept -1024): output real values are HU, air = -1000."""
    import nibabel as nib

    from defacing.nifti import deface_nifti

    stored, affine, _ = ct_case
    img = nib.Nifti1Image(stored, affine)
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, str(tmp_path / "sub-01_ct.nii.gz"))
    res = deface_nifti(tmp_path / "sub-01_ct.nii.gz", tmp_path / "out.nii.gz")
    assert res.metrics["modality"] == "ct"
    before = nib.load(str(tmp_path / "sub-01_ct.nii.gz")).get_fdata()
    after_img = nib.load(str(tmp_path / "out.nii.gz"))
    after = after_img.get_fdata()
    assert after_img.get_data_dtype() == np.int16
    assert np.all(after[res.removed] == -1000.0)
    assert np.array_equal(after[~res.removed], before[~res.removed])
