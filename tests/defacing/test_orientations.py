"""The same head stored in all 48 axis orientations gives the same defaced anatomy."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from defacing.deface import deface_array
from defacing.nifti import read_nifti
from defacing.registration import register_affine
from defacing.volume import (
    array_to_image,
    image_to_array,
    reference_image,
    resample_to,
    smooth_downsample,
)
from tests.defacing.conftest import heads

pytestmark = [pytest.mark.shared]


def _codes():
    files = sorted(heads("orientations").glob("*.nii.gz"))
    assert len(files) == 48
    return files


def _to_ras(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    img = nib.as_closest_canonical(nib.Nifti1Image(mask.astype(np.uint8), affine))
    return np.asarray(img.dataobj) > 0


@pytest.fixture(scope="module")
def reference_case(template):
    data, affine, *_ = read_nifti(heads("orientations", "RAS.nii.gz"))
    res = deface_array(data, affine)
    fixed = smooth_downsample(array_to_image(data.astype(np.float32), affine), 3.0)
    reg = register_affine(fixed, template.head, moving_mask=template.head_mask)
    return data, affine, res, fixed, reg


@pytest.mark.slow
def test_all_48_give_same_registration_image_and_mask_geometry(reference_case, template):
    """Registration input is orientation independent; a transform maps to the same voxels."""
    _, ras_affine, _, fixed_ras, reg = reference_case
    ref_arr = image_to_array(fixed_ras)
    face_ras = None
    for f in _codes():
        data, affine, *_ = read_nifti(f)
        fixed = smooth_downsample(array_to_image(data.astype(np.float32), affine), 3.0)
        assert fixed.GetSize() == fixed_ras.GetSize()
        assert np.allclose(fixed.GetOrigin(), fixed_ras.GetOrigin(), atol=1e-3)
        assert np.allclose(image_to_array(fixed), ref_arr, atol=1e-3 * ref_arr.max())
        face = image_to_array(resample_to(template.face, reference_image(data.shape, affine),
                                          reg.transform)) >= 0.5
        face = _to_ras(face, affine)
        if face_ras is None:
            face_ras = face
        assert face.sum() > 1000
        assert np.array_equal(face, face_ras), f.name


@pytest.mark.slow
@pytest.mark.parametrize("code", ["LPS", "PIR", "SAL", "ILP", "RIA"])
def test_defaced_anatomy_matches_across_orientations(reference_case, code):
    data_r, affine_r, res_r, _, _ = reference_case
    data, affine, *_ = read_nifti(heads("orientations", f"{code}.nii.gz"))
    res = deface_array(data, affine)
    a = _to_ras(res.removed, affine)
    b = _to_ras(res_r.removed, affine_r)
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice > 0.97, f"{code}: Dice {dice:.3f}"
    out_ras = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(res.data, affine)).dataobj)
    ref_ras = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(res_r.data, affine_r)).dataobj)
    assert np.mean(out_ras != ref_ras) < 0.003
    assert res.metrics["brain_voxels_changed"] == 0
