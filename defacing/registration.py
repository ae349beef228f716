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


#: Rotations (Euler angles, radians) that mimic the commonest header errors: a head
#: stored upside down (180 deg about left-right) or face-to-back (180 deg about S-I).
FLIPS = {"upside-down": (np.pi, 0.0, 0.0), "front-back": (0.0, 0.0, np.pi)}
#: How much better (Mattes MI, lower is better) a flipped start must score to fail.
FLIP_MARGIN = 0.02


def _centroid(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)[:, ::-1].mean(axis=0)
    return np.array(image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in idx)))


def _similarity_metric(fixed, moving, init, seed: int) -> float:
    reg = _method(SIM_SHRINK, SIM_SIGMAS, 60, 0.08, seed)
    reg.SetInitialTransform(init, inPlace=True)
    reg.Execute(fixed, moving)
    return float(reg.GetMetricValue())


def orientation_check(fixed: sitk.Image, moving: sitk.Image, moving_mask: np.ndarray,
                      seed: int = 1234) -> dict:
    """Register from the header's orientation and from flipped starts; return the metrics.

    A head whose header orientation is wrong (stored upside down or face-to-back) fits
    the template better from a flipped start. Returns ``{"as-stored": m, "upside-down":
    m, "front-back": m, "worse_than_flip": name or ""}``.
    """
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    fm = head_mask(fixed)
    if fm.sum() < 100:
        return {"as-stored": 0.0, "worse_than_flip": ""}
    cf, cm = _centroid(fixed, fm), _centroid(moving, moving_mask)
    out = {}
    for name, angles in (("as-stored", (0.0, 0.0, 0.0)),) + tuple(FLIPS.items()):
        e = sitk.Euler3DTransform()
        e.SetRotation(*angles)
        tx = sitk.Similarity3DTransform()
        tx.SetCenter(tuple(float(v) for v in cf))
        tx.SetMatrix(e.GetMatrix())
        tx.SetTranslation(tuple(float(v) for v in cm - cf))
        out[name] = round(_similarity_metric(fixed, moving, tx, seed), 4)
    best = min(FLIPS, key=lambda k: out[k])
    out["worse_than_flip"] = best if out[best] < out["as-stored"] - FLIP_MARGIN else ""
    return out
