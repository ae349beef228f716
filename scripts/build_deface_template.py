"""Build the defacing template, face mask and brain mask in ``models/deface/``.

Sources (both installed from PyPI, nothing downloaded):

* pydeface (MIT): ``mean_reg2mean.nii.gz`` average head and ``facemask.nii.gz``
  (1 = keep, 0 = face), both on the same 1 mm grid.
* nilearn (BSD-3) ships the ICBM 2009a symmetric MNI152 brain-extracted T1
  (``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``; ICBM licence, permissive with
  attribution), thresholded at 20 % into a brain mask and resampled in world
  coordinates onto the template grid (both are in MNI152 space).

Outputs (2 mm canonical grid, LPS-aligned): ``head_template.nii.gz`` (int16),
``face_mask.nii.gz``, ``brain_mask.nii.gz`` and ``ear_mask.nii.gz`` (uint8 percent
coverage 0-100; the ear boxes are drawn by this script around the template's ears), and
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


#: Box (MNI world mm, RAS) around each ear of the pydeface average head: lateral to the
#: skull, from behind the ear canal to the front of the tragus, lobe to helix top. Read off
#: the template's side surface render (QC render of this script's output).
EAR_LATERAL_MM = 62.0
EAR_Y_MM = (-55.0, 16.0)
EAR_Z_MM = (-80.0, 8.0)


def _ear_mask(grid: sitk.Image) -> sitk.Image:
    """Ear boxes (1 inside, 0 outside) on the template grid."""
    size = np.array(grid.GetSize())
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3)
    d = np.array(grid.GetDirection()).reshape(3, 3)
    pts = np.array(grid.GetOrigin()) + (idx * np.array(grid.GetSpacing())) @ d.T
    x, y, z = -pts[:, 0], -pts[:, 1], pts[:, 2]  # LPS -> RAS
    m = ((np.abs(x) >= EAR_LATERAL_MM) & (y >= EAR_Y_MM[0]) & (y <= EAR_Y_MM[1])
         & (z >= EAR_Z_MM[0]) & (z <= EAR_Z_MM[1]))
    arr = m.reshape(tuple(size)).astype(np.float32)  # x, y, z
    img = sitk.GetImageFromArray(np.transpose(arr, (2, 1, 0)))
    img.CopyInformation(grid)
    return img


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
    mni_arr = sitk.GetArrayFromImage(mni)
    brain = ndimage.binary_fill_holes(mni_arr > 0.2 * mni_arr.max())
    lab, n = ndimage.label(brain)
    brain = lab == (1 + int(np.argmax(ndimage.sum(brain, lab, range(1, n + 1)))))
    brain_img = sitk.GetImageFromArray(brain.astype(np.float32))
    brain_img.CopyInformation(mni)
    # The pydeface average head lies in MNI152 world coordinates (checked visually with
    # the QC slice render: the ICBM brain sits inside the skull, touching its inner
    # table at the vertex, so the mask errs on the protective side). An intensity
    # registration of a brain-only image to a whole head drifts (it scales the brain
    # onto the scalp), so the world placement is kept.
    brain2 = resample_to(sitk.SmoothingRecursiveGaussian(brain_img, [0.85] * 3), grid)

    ears2 = _ear_mask(head2)

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
