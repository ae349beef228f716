"""NIfTI / SimpleITK conversion and grid helpers.

SimpleITK works in LPS world coordinates with orthonormal direction cosines; NIfTI
affines are RAS. These helpers convert between the two without touching voxel order,
so any of the 48 axis orientations and oblique affines are handled by the geometry
alone.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from pixeldeid.errors import InputError

RAS2LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Largest tolerated departure of the affine's axes from orthogonality (cosine).
SHEAR_TOLERANCE = 1e-3


def affine_to_geometry(affine: np.ndarray, path: str | None = None):
    """Split a NIfTI RAS affine into SimpleITK spacing, direction and origin (LPS).

    Raises
    ------
    InputError
        When the affine is singular or sheared (axes not orthogonal).
    """
    lps = RAS2LPS @ np.asarray(affine, dtype=float)
    m = lps[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    if not np.all(np.isfinite(lps)) or np.any(spacing < 1e-6):
        raise InputError("singular or non-finite affine", path)
    direction = m / spacing
    gram = direction.T @ direction
    if np.max(np.abs(gram - np.eye(3))) > SHEAR_TOLERANCE:
        raise InputError("sheared affine (voxel axes not orthogonal) is not supported", path)
    return spacing, direction, lps[:3, 3]


def geometry_to_affine(image: sitk.Image) -> np.ndarray:
    """Return the NIfTI RAS affine of a SimpleITK image."""
    d = np.array(image.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = d * np.array(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return RAS2LPS @ lps


def array_to_image(data: np.ndarray, affine: np.ndarray, path: str | None = None) -> sitk.Image:
    """Wrap a 3D array indexed ``[i, j, k]`` (NIfTI order) as a SimpleITK image."""
    spacing, direction, origin = affine_to_geometry(affine, path)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, (2, 1, 0))))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(v) for v in direction.ravel()))
    img.SetOrigin(tuple(float(v) for v in origin))
    return img


def image_to_array(image: sitk.Image) -> np.ndarray:
    """Return the voxels of a SimpleITK image indexed ``[i, j, k]``."""
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))


def world_corners(image: sitk.Image) -> np.ndarray:
    """Return the 8 corner points (LPS, mm) of an image's voxel-centre box."""
    size = np.array(image.GetSize()) - 1
    pts = []
    for c in np.ndindex(2, 2, 2):
        idx = tuple(float(v) for v in np.array(c) * size)
        pts.append(image.TransformContinuousIndexToPhysicalPoint(idx))
    return np.array(pts)


def canonical_grid(image: sitk.Image, spacing: float) -> sitk.Image:
    """Return an empty float image on an LPS-aligned isotropic grid covering ``image``.

    The grid depends only on the world box of the input, so the same head stored in
    any axis orientation gets the same grid.
    """
    pts = world_corners(image)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = np.maximum(np.ceil((hi - lo) / spacing).astype(int) + 1, 1)
    ref = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    ref.SetSpacing((spacing,) * 3)
    ref.SetOrigin(tuple(float(v) for v in lo))
    return ref


def resample_to(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None = None,
                interpolator=sitk.sitkLinear, default: float = 0.0,
                pixel_type=sitk.sitkFloat32) -> sitk.Image:
    """Resample ``image`` onto ``reference``'s grid (``transform`` maps reference to image)."""
    tx = transform if transform is not None else sitk.Transform(3, sitk.sitkIdentity)
    return sitk.Resample(image, reference, tx, interpolator, float(default), pixel_type)


def smooth_downsample(image: sitk.Image, spacing: float) -> sitk.Image:
    """Anti-aliased resample of ``image`` to a canonical isotropic grid of ``spacing`` mm."""
    img = sitk.Cast(image, sitk.sitkFloat32)
    in_sp = np.array(image.GetSpacing())
    shrink = np.maximum(np.floor(spacing / in_sp / 1.5), 1).astype(int)
    if np.any(shrink > 1):  # block-average first: cheap anti-aliasing for fine grids
        img = sitk.BinShrink(img, [int(f) for f in shrink])
        in_sp = np.array(img.GetSpacing())
    sigma = np.sqrt(np.maximum((spacing / 2.0) ** 2 - (in_sp / 2.0) ** 2, 0.0))
    if np.any(sigma > 0):
        img = sitk.SmoothingRecursiveGaussian(img, [float(max(s, 1e-3)) for s in sigma])
    return resample_to(img, canonical_grid(image, spacing))


def reference_image(shape, affine: np.ndarray, path: str | None = None) -> sitk.Image:
    """Empty uint8 SimpleITK image with the voxel grid of a NIfTI ``shape`` and ``affine``."""
    spacing, direction, origin = affine_to_geometry(affine, path)
    img = sitk.Image([int(s) for s in shape[:3]], sitk.sitkUInt8)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(v) for v in direction.ravel()))
    img.SetOrigin(tuple(float(v) for v in origin))
    return img
