"""Wrong header orientation (voxels mirrored, upside down or axis-swapped under the
original affine) is quarantined, not defaced at the back of the head."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from defacing.deface import RegistrationQualityError, deface_array
from defacing.nifti import read_nifti
from tests.defacing.conftest import heads

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def t1():
    data, affine, *_ = read_nifti(heads("T1_head_ext2.nii.gz"))
    assert "".join(nib.aff2axcodes(affine)) == "RAS"
    return np.asarray(data), affine


WRONG = {
    "front-back mirror": lambda d: d[:, ::-1, :],
    "upside down": lambda d: d[:, :, ::-1],
    "upside down, rotated": lambda d: d[:, ::-1, ::-1],
    "axis swap A-P/S-I": lambda d: np.swapaxes(d, 1, 2),
    "axis swap L-R/A-P": lambda d: np.swapaxes(d, 0, 1),
}


@pytest.mark.parametrize("name", list(WRONG))
def test_wrong_orientation_under_original_affine_is_quarantined(t1, name):
    data, affine = t1
    wrong = np.ascontiguousarray(WRONG[name](data))
    if name == "front-back mirror":  # without the check: passes its head-shape test
        unchecked = deface_array(wrong, affine, check_orientation=False)
        assert unchecked.metrics["registration"]["head_dice"] > 0.8
    with pytest.raises(RegistrationQualityError, match="orientation"):
        deface_array(wrong, affine)


def test_correct_t1_and_left_right_mirror_pass_the_check(t1):
    data, affine = t1
    for d in (data, np.ascontiguousarray(data[::-1])):
        res = deface_array(d, affine)
        oc = res.metrics["registration"]["orientation_check"]
        assert oc["worse_than_flip"] == ""
        others = [v for k, v in oc.items() if k not in ("as-stored", "worse_than_flip")]
        assert oc["as-stored"] < min(others) - 0.1
        assert res.metrics["face_fraction_removed"] > 0.8


@pytest.mark.parametrize("name", ["T2w.nii.gz", "ch2.nii.gz", "MNI152_T1_2mm.nii.gz"])
def test_other_real_heads_pass_the_check(name):
    data, affine, *_ = read_nifti(heads(name))
    res = deface_array(data, affine)
    assert res.metrics["registration"]["orientation_check"]["worse_than_flip"] == ""


def test_all_48_orientations_pass_the_check():
    """The check is a deterministic function of the canonical registration image, which
    is the same for all 48 stored orientations (asserted here): each distinct image is
    checked once and all must pass."""
    from defacing.registration import orientation_check
    from defacing.template import load_template
    from defacing.volume import array_to_image, image_to_array, smooth_downsample

    tpl = load_template()
    files = sorted(heads("orientations").glob("*.nii.gz"))
    assert len(files) == 48
    verdicts: list[tuple[np.ndarray, dict]] = []
    for f in files:
        data, affine, *_ = read_nifti(f)
        fixed = smooth_downsample(array_to_image(np.asarray(data, np.float32), affine), 3.0)
        arr = image_to_array(fixed)
        same = [v for seen, v in verdicts
                if seen.shape == arr.shape and np.allclose(seen, arr, atol=1e-3 * arr.max())]
        if not same:
            same = [orientation_check(fixed, tpl.head, tpl.head_mask)]
            verdicts.append((arr, same[0]))
        assert same[0]["worse_than_flip"] == "", f.name
    assert len(verdicts) <= 2
