"""Build the defacing template, face mask and brain mask in ``models/deface/``.

Sources (both installed from PyPI, nothing downloaded):

* pydeface (MIT): ``mean_reg2mean.nii.gz`` average head and ``facemask.nii.gz``
  (1 = keep, 0 = face), both on the same 1 mm grid.
* nilearn (BSD-3) ships the ICBM 2009a symmetric MNI152 brain-extracted T1
  (``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``; ICBM licence, permissive with
  attribution), thresholded at 20 % into a brain mask and carried onto the template
  grid by an affine registration of that brain to the template head's interior (the
  pydeface head is NOT in MNI152 world space: it lies ~30 mm forward and ~20 mm lower).

Outputs (2 mm canonical grid, LPS-aligned): ``head_template.nii.gz`` (int16),
``face_mask.nii.gz``, ``brain_mask.nii.gz`` and ``ear_mask.nii.gz`` (uint8 percent
coverage 0-100; the ear boxes are drawn by this script around the template's ears,
symmetric about the mid-sagittal plane of the registered brain), and
``SHA256SUMS``. Run: ``python scripts/build_deface_template.py [--out models/deface]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from defacing.registration import head_mask, register_affine
from defacing.volume import (
    array_to_image,
    canonical_grid,
    geometry_to_affine,
    image_to_array,
    resample_to,
    smooth_downsample,
)

SPACING = 2.0


def _load(path: Path) -> sitk.Image:
    im = nib.load(str(path))
    return array_to_image(np.asarray(im.get_fdata(dtype=np.float32)), im.affine, str(path))


def _save(img: sitk.Image, data: np.ndarray, path: Path) -> None:
    out = nib.Nifti1Image(data, geometry_to_affine(img))
    out.set_qform(out.affine, code=2)
    out.set_sform(out.affine, code=2)
    nib.save(out, str(path))


#: Box around each ear of the pydeface average head, in template world mm (RAS): lateral
#: to the skull (distance from the mid-sagittal plane), from behind the pinna to the front of
#: the tragus, lobe to helix top. Read off the template's side surface render (QC render of
#: this script's output). The head is ~6 mm left of world x = 0, so the lateral limit is
#: measured from its own mid-plane, else one ear is cut far deeper than the other.
EAR_LATERAL_MM = 62.0
EAR_Y_MM = (-62.0, 16.0)
EAR_Z_MM = (-80.0, 8.0)
#: Erosion of the template head mask (mm) that leaves the scalp out of the brain
#: registration's metric: with the scalp in, the bright brain is pulled onto it.
SCALP_MM = 10.0
#: The registered brain mask is grown by this much (mm): an affine fit leaves a real brain
#: up to a few mm outside it (Colin27: 1.5 % of its brain, in the temporal lobes), which
#: the run-time margin must not have to absorb.
BRAIN_TOLERANCE_MM = 2.0


def _world_ras(grid: sitk.Image) -> np.ndarray:
    """RAS world coordinates (N x 3) of every voxel, voxels in ``[x, y, z]`` index order."""
    size = np.array(grid.GetSize())
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3)
    d = np.array(grid.GetDirection()).reshape(3, 3)
    pts = np.array(grid.GetOrigin()) + (idx * np.array(grid.GetSpacing())) @ d.T
    return pts * np.array([-1.0, -1.0, 1.0])  # LPS -> RAS


def mid_sagittal_x(brain: sitk.Image) -> float:
    """World x (RAS mm) of the mid-sagittal plane: centroid of the (symmetric ICBM) brain."""
    arr = np.transpose(sitk.GetArrayFromImage(brain), (2, 1, 0)).reshape(-1)  # x, y, z order
    return float(_world_ras(brain)[arr >= 0.5, 0].mean())


def _ear_mask(grid: sitk.Image, mid_x: float) -> sitk.Image:
    """Ear boxes (1 inside, 0 outside) on the template grid, symmetric about ``mid_x``."""
    pts = _world_ras(grid)
    x, y, z = pts[:, 0] - mid_x, pts[:, 1], pts[:, 2]
    m = ((np.abs(x) >= EAR_LATERAL_MM) & (y >= EAR_Y_MM[0]) & (y <= EAR_Y_MM[1])
         & (z >= EAR_Z_MM[0]) & (z <= EAR_Z_MM[1]))
    arr = m.reshape(tuple(grid.GetSize())).astype(np.float32)  # x, y, z
    img = sitk.GetImageFromArray(np.transpose(arr, (2, 1, 0)))
    img.CopyInformation(grid)
    return img


def _brain_mask(img: sitk.Image) -> sitk.Image:
    """ICBM T1 brain thresholded at 20 %, holes filled, largest component (0/1 float)."""
    arr = sitk.GetArrayFromImage(img)
    brain = ndimage.binary_fill_holes(arr > 0.2 * arr.max())
    lab, n = ndimage.label(brain)
    brain = lab == (1 + int(np.argmax(ndimage.sum(brain, lab, range(1, n + 1)))))
    out = sitk.GetImageFromArray(brain.astype(np.float32))
    out.CopyInformation(img)
    return out


def _brain_on_template(head2: sitk.Image, mni: sitk.Image) -> sitk.Image:
    """ICBM brain mask (0-1 coverage) registered onto the template head's grid.

    The ICBM T1 brain is registered (similarity then affine, Mattes MI) to the template
    head with the metric restricted to the head mask eroded by ``SCALP_MM``, starting
    from aligned crania. The 1 mm mask, smoothed like the face mask, is then resampled
    and grown by ``BRAIN_TOLERANCE_MM``.
    """
    mni2 = smooth_downsample(mni, SPACING)
    hm = head_mask(head2)
    inner = ndimage.binary_erosion(hm, iterations=round(SCALP_MM / SPACING))
    metric_mask = sitk.GetImageFromArray(inner.astype(np.uint8))
    metric_mask.CopyInformation(head2)
    brain_mask2 = sitk.GetArrayFromImage(_brain_mask(mni2)) > 0.5
    reg = register_affine(head2, mni2, fixed_mask=hm, moving_mask=brain_mask2,
                          metric_mask=metric_mask)
    brain = sitk.SmoothingRecursiveGaussian(_brain_mask(mni), [0.85] * 3)
    return sitk.GrayscaleDilate(resample_to(brain, head2, reg.transform),
                                [round(BRAIN_TOLERANCE_MM / SPACING)] * 3, sitk.sitkBall)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "models" / "deface"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import nilearn
    import pydeface

    pd_dir = Path(pydeface.__file__).parent / "data"
    nl_dir = Path(nilearn.__file__).parent / "datasets" / "data"

    head = _load(pd_dir / "mean_reg2mean.nii.gz")
    keep = _load(pd_dir / "facemask.nii.gz")
    face = sitk.Cast(1.0 - keep, sitk.sitkFloat32)

    grid = canonical_grid(head, SPACING)
    head2 = smooth_downsample(head, SPACING)
    # face mask as percent coverage of each 2 mm voxel (box average of the 1 mm mask)
    face_sm = sitk.SmoothingRecursiveGaussian(face, [0.85] * 3)
    face2 = resample_to(face_sm, grid)

    mni = _load(nl_dir / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    brain2 = _brain_on_template(head2, mni)
    mid_x = mid_sagittal_x(brain2)
    print(f"mid-sagittal plane x = {mid_x:.1f} mm")
    ears2 = _ear_mask(head2, mid_x)

    h = image_to_array(head2)
    h = np.clip(np.round(h / max(h.max(), 1e-6) * 1000.0), 0, 1000).astype(np.int16)
    _save(head2, h, out / "head_template.nii.gz")
    for img, name in ((face2, "face_mask.nii.gz"), (brain2, "brain_mask.nii.gz"),
                      (ears2, "ear_mask.nii.gz")):
        a = np.clip(np.round(image_to_array(img) * 100.0), 0, 100).astype(np.uint8)
        _save(img, a, out / name)
    lines = []
    for name in ("head_template.nii.gz", "face_mask.nii.gz", "brain_mask.nii.gz",
                 "ear_mask.nii.gz"):
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        lines.append(f"{digest}  {name}\n")
        print(f"{name}: {os.path.getsize(out / name)} bytes")
    (out / "SHA256SUMS").write_text("".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
