"""The same head stored in all 48 axis orientations gives the same defaced anatomy.

The head is FSL's MNI152 2 mm head (face and scalp) reoriented here into each of the 48
axis orientations; the shared ``orientations/`` set is a skull-stripped brain, which
defacing refuses (``tests/defacing/test_deface_s14.py``)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from defacing.deface import deface_array
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


def _codes() -> list[str]:
    """The 48 axis orientation codes (LPS, PIR...)."""
    from itertools import permutations, product

    pairs = (("R", "L"), ("A", "P"), ("S", "I"))
    codes = ["".join(pairs[a][f] for a, f in zip(order, flips, strict=True))
             for order in permutations(range(3)) for flips in product((0, 1), repeat=3)]
    assert len(set(codes)) == 48
    return codes


def _oriented(code: str) -> tuple[np.ndarray, np.ndarray]:
    """The MNI152 head stored in orientation ``code``: (data, affine)."""
    img = nib.as_closest_canonical(nib.load(heads("MNI152_T1_2mm.nii.gz")))
    xform = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"),
                                            nib.orientations.axcodes2ornt(tuple(code)))
    out = img.as_reoriented(xform)
    assert "".join(nib.aff2axcodes(out.affine)) == code
    return np.asarray(out.dataobj), out.affine


def _to_ras(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    img = nib.as_closest_canonical(nib.Nifti1Image(mask.astype(np.uint8), affine))
    return np.asarray(img.dataobj) > 0


@pytest.fixture(scope="module")
def reference_case(template):
    data, affine = _oriented("RAS")
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
    for code in _codes():
        data, affine = _oriented(code)
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
        assert np.array_equal(face, face_ras), code


@pytest.mark.slow
@pytest.mark.parametrize("code", ["LPS", "PIR", "SAL", "ILP", "RIA"])
def test_defaced_anatomy_matches_across_orientations(reference_case, code):
    data_r, affine_r, res_r, _, _ = reference_case
    data, affine = _oriented(code)
    res = deface_array(data, affine)
    a = _to_ras(res.removed, affine)
    b = _to_ras(res_r.removed, affine_r)
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert dice > 0.97, f"{code}: Dice {dice:.3f}"
    out_ras = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(res.data, affine)).dataobj)
    ref_ras = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(res_r.data, affine_r)).dataobj)
    assert np.mean(out_ras != ref_ras) < 0.003
    assert res.metrics["brain_voxels_changed"] == 0
