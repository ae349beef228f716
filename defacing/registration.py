"""Affine registration of the head template to a subject (SimpleITK, CPU).

The subject is first resampled to a canonical isotropic grid (see
:func:`defacing.volume.smooth_downsample`), so the result does not depend on the axis
order of the input. Registration is multi-resolution: a similarity stage (rotation,
translation, one scale) then a full affine stage, both on Mattes mutual information,
which copes with T1/T2/FLAIR/PD/CT/PET contrast against the T1 template.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

logger = logging.getLogger(__name__)

#: Depth (mm) below the top of the head used to place the initial alignment.
CRANIUM_DEPTH_MM = 110.0
#: Pyramid (shrink factors, smoothing sigmas in mm, iterations) of the two stages.
SIM_SHRINK, SIM_SIGMAS, SIM_ITERATIONS = (2, 1), (4.0, 2.0), 120
AFF_SHRINK, AFF_SIGMAS, AFF_ITERATIONS = (1,), (1.0,), 60


@dataclass
class Registration:
    """Result of registering the template to a subject.

    Attributes
    ----------
    transform : sitk.Transform
        Maps subject (fixed) physical points to template (moving) points.
    metric : float
        Final Mattes mutual information (negative; lower is better).
    engine : str
        ``"sitk"`` or ``"torch"``.
    """

    transform: sitk.Transform
    metric: float
    engine: str = "sitk"


def head_mask(image: sitk.Image) -> np.ndarray:
    """Binary head mask (``[z, y, x]`` array) of a float image: Otsu, largest blob, holes filled."""
    a = sitk.GetArrayViewFromImage(image)
    finite = a[np.isfinite(a)]
    if finite.size == 0 or float(finite.max()) <= float(finite.min()):
        return np.zeros(a.shape, bool)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    clipped = sitk.Clamp(image, sitk.sitkFloat32, float(lo), float(hi))
    thr = sitk.OtsuThreshold(clipped, 0, 1, 128)
    m = sitk.GetArrayFromImage(thr).astype(bool)
    # Otsu on heads with much air sits low enough; open to drop thin noise bridges.
    m = ndimage.binary_opening(m, iterations=1)
    lab, n = ndimage.label(m)
    if n == 0:
        return m
    sizes = ndimage.sum(m, lab, index=np.arange(1, n + 1))
    m = lab == (int(np.argmax(sizes)) + 1)
    m = ndimage.binary_closing(m, iterations=2)
    return ndimage.binary_fill_holes(m)


def cranium_centroid(image: sitk.Image, mask: np.ndarray) -> np.ndarray | None:
    """World (LPS) centroid of the head mask within ``CRANIUM_DEPTH_MM`` of its top."""
    idx = np.argwhere(mask)  # z, y, x
    if idx.shape[0] < 100:
        return None
    # physical points of mask voxels (sub-sample for speed)
    step = max(1, idx.shape[0] // 200000)
    idx = idx[::step]
    d = np.array(image.GetDirection()).reshape(3, 3)
    sp = np.array(image.GetSpacing())
    org = np.array(image.GetOrigin())
    pts = org + (idx[:, ::-1] * sp) @ d.T
    top = np.percentile(pts[:, 2], 99.8)
    sel = pts[pts[:, 2] > top - CRANIUM_DEPTH_MM]
    return sel.mean(axis=0)


def initial_transform(fixed: sitk.Image, moving: sitk.Image,
                      fixed_mask: np.ndarray, moving_mask: np.ndarray) -> sitk.Similarity3DTransform:
    """Translation that aligns the crania (top ``CRANIUM_DEPTH_MM`` of each head)."""
    tx = sitk.Similarity3DTransform()
    cf = cranium_centroid(fixed, fixed_mask)
    cm = cranium_centroid(moving, moving_mask)
    if cf is None or cm is None:
        init = sitk.CenteredTransformInitializer(
            fixed, moving, sitk.Similarity3DTransform(),
            sitk.CenteredTransformInitializerFilter.GEOMETRY)
        return sitk.Similarity3DTransform(init)
    tx.SetCenter(tuple(float(v) for v in cf))
    tx.SetTranslation(tuple(float(v) for v in cm - cf))
    return tx


def _method(shrink, sigmas, iterations: int, sampling: float, seed: int) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=2e-3, numberOfIterations=iterations,
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def register_affine(fixed: sitk.Image, moving: sitk.Image, *, fixed_mask: np.ndarray | None = None,
                    moving_mask: np.ndarray | None = None,
                    initial: sitk.Transform | None = None, seed: int = 1234,
                    sampling: float = 0.08, metric_mask: sitk.Image | None = None) -> Registration:
    """Register ``moving`` (template) to ``fixed`` (subject) with an affine transform.

    Parameters
    ----------
    fixed, moving : sitk.Image
        Float images (the subject on a canonical ~2-3 mm grid, the template).
    fixed_mask, moving_mask : ndarray, optional
        Head masks (``[z, y, x]``) used for the initial alignment; computed when absent.
    initial : sitk.Transform, optional
        Starting transform (skips the cranium alignment).
    seed : int
        Seed of the metric's random sampling, for reproducible results.
    sampling : float
        Fraction of fixed voxels sampled by the metric.
    metric_mask : sitk.Image, optional
        Binary image on the fixed grid restricting where the metric is evaluated.
    """
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    if initial is None:
        fm = head_mask(fixed) if fixed_mask is None else fixed_mask
        mm = head_mask(moving) if moving_mask is None else moving_mask
        initial = initial_transform(fixed, moving, fm, mm)
    sim = sitk.Similarity3DTransform(initial) if isinstance(initial, sitk.Similarity3DTransform) \
        else initial
    reg = _method(SIM_SHRINK, SIM_SIGMAS, SIM_ITERATIONS, sampling, seed)
    reg.SetInitialTransform(sim, inPlace=True)
    if metric_mask is not None:
        reg.SetMetricFixedMask(metric_mask)
    reg.Execute(fixed, moving)
    logger.debug("similarity stage: metric %.4f after %d its",
                 reg.GetMetricValue(), reg.GetOptimizerIteration())
    aff = sitk.AffineTransform(3)
    if isinstance(sim, sitk.Similarity3DTransform):
        aff.SetMatrix(sim.GetMatrix())
        aff.SetTranslation(sim.GetTranslation())
        aff.SetCenter(sim.GetCenter())
    else:
        aff = sitk.AffineTransform(sim)
    reg = _method(AFF_SHRINK, AFF_SIGMAS, AFF_ITERATIONS, sampling, seed)
    reg.SetInitialTransform(aff, inPlace=True)
    if metric_mask is not None:
        reg.SetMetricFixedMask(metric_mask)
    reg.Execute(fixed, moving)
    metric = float(reg.GetMetricValue())
    logger.debug("affine stage: metric %.4f after %d its (%s)", metric,
                 reg.GetOptimizerIteration(), reg.GetOptimizerStopConditionDescription())
    return Registration(aff, metric, "sitk")


def affine_plausibility(transform: sitk.Transform) -> tuple[float, float]:
    """Return (volume scale, anisotropy) of an affine's linear part.

    Volume scale is ``det(A)``; anisotropy is the ratio of the largest to smallest
    singular value. A head template fits adult and child heads within roughly
    0.5-1.8 of volume and anisotropy below ~1.5.
    """
    if hasattr(transform, "GetMatrix"):
        a = np.array(transform.GetMatrix()).reshape(3, 3)
    else:
        a = np.eye(3)
    s = np.linalg.svd(a, compute_uv=False)
    return float(abs(np.linalg.det(a))), float(s.max() / max(s.min(), 1e-9))


#: Header errors tried by :func:`orientation_check`: each maps the canonical (LPS-aligned)
#: registration grid, indexed ``[z, y, x]``, to a candidate "true" anatomy. A left-right
#: mirror is not among them: it cannot be told apart on a near-symmetric head and moves
#: the face mask onto the face all the same.
CANDIDATES = {
    "front-back mirror": lambda a: a[:, ::-1, :],
    "upside-down mirror": lambda a: a[::-1, :, :],
    "upside-down rotation": lambda a: a[::-1, ::-1, :],
    "axis swap A-P/S-I": lambda a: np.transpose(a, (1, 0, 2)),
    "axis swap A-P/S-I, rotated": lambda a: np.transpose(a, (1, 0, 2))[::-1],
    "axis swap A-P/S-I, rotated back": lambda a: np.transpose(a, (1, 0, 2))[:, ::-1],
    "axis swap A-P/S-I, both flipped": lambda a: np.transpose(a, (1, 0, 2))[::-1, ::-1],
    "axis swap L-R/A-P": lambda a: np.transpose(a, (0, 2, 1)),
    "axis swap L-R/A-P, flipped": lambda a: np.transpose(a, (0, 2, 1))[:, ::-1],
    "axis swap L-R/S-I": lambda a: np.transpose(a, (2, 1, 0)),
    "axis swap L-R/S-I, flipped": lambda a: np.transpose(a, (2, 1, 0))[::-1],
}
#: Grid (mm), smoothing (mm) and iterations of the short registrations of the check.
CHECK_SPACING_MM, CHECK_SIGMA_MM, CHECK_ITERATIONS = 10.0, 5.0, 15
#: The check fails when a candidate scores better (Mattes MI, lower is better) than the
#: header's own orientation by more than this.
ORIENTATION_MARGIN = 0.0


def _coarse_metric(arr: np.ndarray, like: sitk.Image, moving: sitk.Image, moving_mask: np.ndarray,
                   seed: int) -> float:
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing(like.GetSpacing())
    img.SetOrigin(like.GetOrigin())
    fm = head_mask(img)
    if fm.sum() < 50:
        return 0.0
    init = initial_transform(img, moving, fm, moving_mask)
    reg = _method((1,), (CHECK_SIGMA_MM,), CHECK_ITERATIONS, 0.15, seed)
    reg.SetInitialTransform(init, inPlace=True)
    reg.Execute(img, moving)
    return float(reg.GetMetricValue())


def orientation_check(fixed: sitk.Image, moving: sitk.Image, moving_mask: np.ndarray,
                      seed: int = 1234) -> dict:
    """Score the header's orientation against the commonest header errors.

    The subject (on its canonical grid) is re-registered coarsely as stored and as
    each of :data:`CANDIDATES` (mirrors, upside down, axis swaps of the voxel data under
    an unchanged affine). A correct header fits the template best as stored; the check
    fails when a candidate beats the stored orientation by more than
    :data:`ORIENTATION_MARGIN`.

    Returns
    -------
    dict
        ``{"as-stored": m, <candidate>: m, ..., "worse_than_flip": name or ""}``
        (Mattes MI, lower is better); ``worse_than_flip`` names the best candidate when
        it beats the stored orientation.
    """
    from .volume import smooth_downsample

    coarse = smooth_downsample(fixed, max(CHECK_SPACING_MM, float(min(fixed.GetSpacing()))))
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    mov = smooth_downsample(moving, CHECK_SPACING_MM / 2)
    mm = sitk.GetArrayFromImage(resample_to_mask(moving_mask, moving, mov))
    a = sitk.GetArrayFromImage(coarse)
    out = {"as-stored": round(_coarse_metric(a, coarse, mov, mm, seed), 4)}
    for name, fn in CANDIDATES.items():
        out[name] = round(_coarse_metric(fn(a), coarse, mov, mm, seed), 4)
    best = min(CANDIDATES, key=lambda k: out[k])
    lost = out[best] < out["as-stored"] - ORIENTATION_MARGIN or out["as-stored"] >= 0.0
    out["worse_than_flip"] = best if lost else ""
    return out


def resample_to_mask(mask: np.ndarray, like: sitk.Image, grid: sitk.Image) -> sitk.Image:
    """Nearest-neighbour copy of a ``[z, y, x]`` mask on ``like``'s grid onto ``grid``."""
    img = sitk.GetImageFromArray(mask.astype(np.uint8))
    img.CopyInformation(like)
    return sitk.Resample(img, grid, sitk.Transform(3, sitk.sitkIdentity), sitk.sitkNearestNeighbor,
                         0, sitk.sitkUInt8)
