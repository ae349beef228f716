"""Deface one head volume held in memory (3D or 4D array with a NIfTI affine).

The template's face and ear masks are warped to the subject with an affine registration
and their voxels are set to background, except inside the warped template brain mask dilated by
a safety margin: those voxels are never written (the brain guarantee). A registration
that fails its quality check raises :class:`RegistrationQualityError`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from pixeldeid.errors import DeidError, InputError

from .registration import Registration, affine_plausibility, head_mask, orientation_check
from .template import Template, load_template
from .volume import (
    array_to_image,
    image_to_array,
    reference_image,
    resample_to,
    smooth_downsample,
)

logger = logging.getLogger(__name__)

MODALITIES = ("mr", "ct", "pet")
#: Safety margin (mm) added around the warped template brain mask.
BRAIN_MARGIN_MM = 6.0
#: Minimum Dice between subject and warped template head masks near the face and cranium.
MIN_HEAD_DICE = 0.80
#: Plausible range of the template-to-subject volume scale and anisotropy.
SCALE_RANGE = (0.45, 2.2)
MAX_ANISOTROPY = 1.6
#: Smallest spatial size accepted (voxels per axis) and smallest extent (mm).
MIN_VOXELS = 8
MIN_EXTENT_MM = 60.0
#: Largest voxel size accepted (mm): beyond it the header's geometry is not an image's.
MAX_VOXEL_MM = 100.0
AIR_HU = -1000.0
#: Percentile of the volume's outer shell taken as the MR/PET background.
BACKGROUND_PERCENTILE = 5.0
#: Grid spacing (mm) of the subject image used for registration.
REGISTRATION_SPACING_MM = 3.0
#: Smallest share of the warped face region that must hold tissue: below it the input is a
#: skull-stripped brain (or a head already defaced) and is quarantined, never cut. Real heads
#: measured 0.10-0.23; brain-only images 0.0 and a defaced head 0.007.
MIN_FACE_TISSUE = 0.03


class RegistrationQualityError(DeidError):
    """The template could not be registered to the image with confidence."""


@dataclass
class DefaceResult:
    """Output of :func:`deface_array`.

    Attributes
    ----------
    data : ndarray
        Defaced voxels, same shape and dtype as the input (stored units).
    removed : ndarray of bool
        Spatial mask of voxels set to the fill value.
    protected : ndarray of bool
        Spatial mask that was never written (warped brain mask plus margin).
    fill : float
        Stored value written into ``removed``.
    metrics : dict
        Per-volume metrics (see :func:`deface_array`).
    """

    data: np.ndarray
    removed: np.ndarray
    protected: np.ndarray
    fill: float
    metrics: dict = field(default_factory=dict)


def guess_modality(data: np.ndarray, slope: float = 1.0, inter: float = 0.0,
                   hint: str = "") -> str:
    """Guess ``mr``, ``ct`` or ``pet`` from a name hint (BIDS suffix, DICOM Modality) or values.

    CT is recognised by a large share of voxels near -1000 HU; anything else without a
    hint is treated as MR (the fill is background either way for MR and PET).
    """
    h = hint.lower()
    if h in ("ct",) or h.endswith("_ct"):
        return "ct"
    if h in ("pt", "pet") or h.endswith("_pet"):
        return "pet"
    if h in ("mr",) or h.endswith(("_t1w", "_t2w", "_flair", "_pd", "_pdw", "_t2starw")):
        return "mr"
    sample = np.asarray(data).ravel()[:: max(1, data.size // 200000)].astype(np.float64)
    sample = sample * slope + inter
    if sample.size and np.mean(np.abs(sample - AIR_HU) < 100) > 0.15 and np.min(sample) < -900:
        return "ct"
    return "mr"


def _background(data: np.ndarray) -> float:
    """Stored background value: a low percentile of the array's outer shell (the air).

    The faces of the volume (edges of a slice) lie in the air around the head; a low
    percentile keeps clear of the head where it touches the edge of the field of view,
    and ``lower`` makes it a value the image holds.
    """
    faces = [np.take(data, i, axis=ax).ravel() for ax in range(min(data.ndim, 3)) for i in (0, -1)]
    return float(np.percentile(np.concatenate(faces), BACKGROUND_PERCENTILE, method="lower"))


def fill_value(modality: str, data: np.ndarray, slope: float, inter: float) -> float:
    """Stored value to write into removed voxels.

    CT: air, -1000 HU converted to stored units (clipped to the data type). MR and PET:
    the image's own background: 0 where the air reaches down to it, else the air's value
    (an offset image whose air is -50 keeps -50; air above 0 gets the minimum).
    """
    if modality == "ct":
        v = (AIR_HU - inter) / (slope if slope else 1.0)
    else:
        v = float(np.clip(0.0, float(np.min(data)), _background(data)))
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        v = float(np.clip(np.round(v), info.min, info.max))
    return float(v)


def _registration_image(ref: np.ndarray, modality: str) -> np.ndarray:
    """Intensity-windowed float copy used only for registration."""
    a = ref.astype(np.float32, copy=True)
    a[~np.isfinite(a)] = 0.0
    if modality == "ct":
        return np.clip(a, -1000.0, 1500.0)
    lo, hi = np.percentile(a[:: max(1, a.size // 500000)], [0.5, 99.5])
    return np.clip(a, lo, hi)


def _check_input(data: np.ndarray, affine: np.ndarray, path: str | None) -> None:
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise InputError(f"voxels of type {data.dtype} are not supported (colour or complex "
                         "images cannot be defaced)", path)
    if data.ndim < 3 or data.ndim > 4:
        raise InputError(f"expected a 3D or 4D volume, got {data.ndim}D shape {data.shape}", path)
    if min(data.shape[:3]) < MIN_VOXELS:
        raise InputError(f"volume too small for defacing: spatial shape {data.shape[:3]}", path)
    zooms = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    if not np.all(np.isfinite(zooms)) or np.max(zooms) > MAX_VOXEL_MM:
        raise InputError(f"implausible voxel size {np.round(zooms, 3).tolist()} mm (more than "
                         f"{MAX_VOXEL_MM:g} mm)", path)
    extent = np.array(data.shape[:3]) * zooms
    if np.sort(extent)[1] < MIN_EXTENT_MM:
        raise InputError(f"field of view {np.round(extent, 1).tolist()} mm is too small for a head",
                         path)


def deface_array(data: np.ndarray, affine: np.ndarray, *, modality: str = "auto",
                 slope: float = 1.0, inter: float = 0.0, device: str = "cpu",
                 template: Template | None = None, reference: np.ndarray | None = None,
                 reference_affine: np.ndarray | None = None,
                 margin_mm: float = BRAIN_MARGIN_MM, path: str | None = None,
                 hint: str = "", check_orientation: bool = True) -> DefaceResult:
    """Deface a 3D or 4D head volume.

    Parameters
    ----------
    data : ndarray
        Stored voxel values indexed ``[i, j, k(, t)]``; not modified.
    affine : ndarray
        4x4 NIfTI (RAS) voxel-to-world affine.
    modality : {"auto", "mr", "ct", "pet"}
        Sets registration windowing and the fill (CT: -1000 HU; MR/PET: background).
    slope, inter : float
        Scaling from stored values to real values (HU for CT).
    device : {"cpu", "cuda", "auto", "torch-cpu"}
        ``cpu`` registers with SimpleITK; ``cuda`` with MONAI/torch (``auto``: CUDA if
        present); ``torch-cpu`` runs the torch engine on the CPU.
    template : Template, optional
        Defaults to the packaged template.
    reference, reference_affine : ndarray, optional
        Image used for registration instead of ``data`` (e.g. the CT or MR of the same
        study for a PET), in the same world frame.
    margin_mm : float
        Safety margin around the warped brain mask.
    path : str, optional
        Source name for messages.
    hint : str
        Modality hint for ``auto`` (BIDS suffix or DICOM Modality).
    check_orientation : bool
        Re-register coarsely from mirrored, upside-down and axis-swapped copies (about
        25 % extra time; on by default) and quarantine a head that fits the template
        better in one of them: the header's orientation is then wrong and the face mask
        would land elsewhere (see :func:`defacing.registration.orientation_check`).

    Returns
    -------
    DefaceResult
        Metrics hold ``brain_voxels_changed`` (voxels changed inside the warped brain mask
        plus margin: 0 by construction; it vouches for the brain only where that mask fits
        the input's brain, which is why a skull-stripped brain, whose mask shrinks with the
        template head, is refused before the cut), ``face_fraction_removed``
        (removed share of the warped face region inside the field of view),
        ``face_in_fov`` (share of the template face region inside the field of view),
        ``registration`` (metric, head Dice, scale, anisotropy, ``face_tissue``, engine) and
        ``runtime_s``.

    Raises
    ------
    InputError
        Not a 3D/4D head-sized volume, or non-finite data.
    RegistrationQualityError
        The registration failed its quality check, or the face region holds no tissue
        (skull-stripped brain).
    """
    t0 = time.perf_counter()
    data = np.asarray(data)
    _check_input(data, affine, path)
    if modality not in ("auto",) + MODALITIES:
        raise InputError(f"unknown modality {modality!r}", path)
    if modality == "auto":
        modality = guess_modality(data, slope, inter, hint)
    tpl = template or load_template()
    spatial = data.shape[:3]

    if reference is None:
        ref = data if data.ndim == 3 else np.mean(data, axis=3, dtype=np.float32)
        ref = ref.astype(np.float32) * np.float32(slope) + np.float32(inter)
        ref_affine = affine
        ref_mod = modality
    else:
        ref = np.asarray(reference, dtype=np.float32)
        ref = ref if ref.ndim == 3 else ref.mean(axis=3)
        ref_affine = affine if reference_affine is None else reference_affine
        ref_mod = guess_modality(ref)
    if not np.isfinite(ref).all():
        raise InputError("volume contains NaN or infinite values", path)
    if float(ref.max()) <= float(ref.min()):
        raise InputError("volume is constant", path)

    fixed_native = array_to_image(_registration_image(ref, ref_mod), ref_affine, path)
    spacing = max(REGISTRATION_SPACING_MM, float(min(fixed_native.GetSpacing())))
    fixed = smooth_downsample(fixed_native, spacing)
    oc = None
    if check_orientation:  # first: a wrong header fails fast, before the full registration
        oc = orientation_check(fixed, tpl.head, tpl.head_mask)
        if oc["worse_than_flip"]:
            raise RegistrationQualityError(
                f"registration failed its quality check (orientation): the head fits the "
                f"template better after a {oc['worse_than_flip']} of the stored voxels "
                f"(header orientation wrong, or not a head; the face mask would miss the "
                f"face)", path)
    reg = _register(fixed, tpl, device)
    quality = registration_quality(fixed, tpl, reg)
    quality["face_tissue"] = face_tissue(fixed, tpl, reg)
    quality["runtime_registration_s"] = round(time.perf_counter() - t0, 3)
    quality["registered_on"] = "self" if reference is None else "reference"
    if oc is not None:
        quality["orientation_check"] = oc
    _check_quality(quality, path)

    # warp masks to the native voxel grid of the data
    native = reference_image(spatial, affine, path)
    face = image_to_array(resample_to(tpl.face, native, reg.transform)) >= 0.5
    protected = image_to_array(resample_to(tpl.protected(margin_mm), native, reg.transform)) > 0.0
    ears = image_to_array(resample_to(tpl.ears, native, reg.transform)) >= 0.5
    removed = (face | ears) & ~protected

    fill = fill_value(modality, data, slope, inter)
    out = data.copy()
    if data.ndim == 3:
        out[removed] = fill
    else:
        out[removed, :] = fill
    changed_brain = int(np.count_nonzero((out != data)[protected] if data.ndim == 3
                                         else (out != data)[protected, :]))
    vox = float(abs(np.linalg.det(np.asarray(affine)[:3, :3])))
    det_a = abs(np.linalg.det(np.array(reg.transform.GetMatrix()).reshape(3, 3)))
    face_in_fov = float(face.sum()) * vox * det_a / max(tpl.face_volume_mm3, 1e-6)
    metrics = {
        "modality": modality,
        "shape": [int(s) for s in data.shape],
        "fill_stored": fill,
        "brain_voxels_changed": changed_brain,
        "protected_voxels": int(protected.sum()),
        "face_region_voxels": int(face.sum()),
        "removed_voxels": int(removed.sum()),
        "face_fraction_removed": float((removed & face).sum() / face.sum()) if face.any() else 0.0,
        "ear_region_voxels": int(ears.sum()),
        "ear_fraction_removed": float((removed & ears).sum() / ears.sum()) if ears.any() else 0.0,
        "face_in_fov": round(min(face_in_fov, 1.0), 4),
        "brain_margin_mm": margin_mm,
        "registration": quality,
        "runtime_s": round(time.perf_counter() - t0, 3),
    }
    logger.info("%s: removed %d voxels (%.0f%% of face region), brain changes %d, Dice %.3f",
                path or "volume", metrics["removed_voxels"],
                100 * metrics["face_fraction_removed"], changed_brain, quality["head_dice"])
    if changed_brain:  # impossible by construction; fail closed if it ever happens
        raise DeidError(f"{changed_brain} protected brain voxels changed", path)
    return DefaceResult(out, removed, protected, fill, metrics)


def _register(fixed: sitk.Image, tpl: Template, device: str) -> Registration:
    from .engines import ENGINES, resolve_device

    engine, dev = resolve_device(device)
    fn = ENGINES[engine].load()
    if engine == "sitk":
        return fn(fixed, tpl.head, moving_mask=tpl.head_mask)
    return fn(fixed, tpl, device=dev)


def registration_quality(fixed: sitk.Image, tpl: Template, reg: Registration) -> dict:
    """Dice of subject and warped template head masks over the template's cranium and face.

    The comparison is restricted to the subject's field of view and to the template
    above the bottom of its face mask (the neck is excluded).
    """
    subj = head_mask(fixed)
    tmask = sitk.GetImageFromArray(tpl.head_mask.astype(np.float32))
    tmask.CopyInformation(tpl.head)
    face_arr = sitk.GetArrayViewFromImage(tpl.face) >= 0.5
    zs = np.nonzero(face_arr.any(axis=(1, 2)))[0]
    region = np.zeros(tpl.head_mask.shape, np.float32)
    region[int(zs.min()) if zs.size else 0:] = 1.0
    rimg = sitk.GetImageFromArray(region)
    rimg.CopyInformation(tpl.head)
    tw = sitk.GetArrayFromImage(resample_to(tmask, fixed, reg.transform)) >= 0.5
    rw = sitk.GetArrayFromImage(resample_to(rimg, fixed, reg.transform)) >= 0.5
    s, t = subj & rw, tw & rw
    denom = int(s.sum()) + int(t.sum())
    dice = 2.0 * float((s & t).sum()) / denom if denom else 0.0
    scale, aniso = affine_plausibility(reg.transform)
    return {"engine": reg.engine, "metric": round(reg.metric, 5), "head_dice": round(dice, 4),
            "volume_scale": round(scale, 4), "anisotropy": round(aniso, 4)}


def face_tissue(fixed: sitk.Image, tpl: Template, reg: Registration) -> float:
    """Share of the warped template face region (inside the field of view) holding tissue.

    Measured on the subject's own tissue: a skull-stripped brain fits the template head well
    enough (the head is shrunk onto the brain), so the fit cannot tell it from a head, but
    its face region is empty, and its warped brain mask is smaller than the real brain
    (the ear boxes would cut cortex).
    """
    face = sitk.GetArrayFromImage(resample_to(tpl.face, fixed, reg.transform)) >= 0.5
    n_face = int(face.sum())
    return round(float((head_mask(fixed) & face).sum()) / n_face, 4) if n_face else 0.0


def _check_quality(q: dict, path: str | None) -> None:
    if q["face_tissue"] < MIN_FACE_TISSUE:
        # fail closed: the masks would land on brain, and there is no face to remove
        raise RegistrationQualityError(
            f"skull-stripped brain: no face to remove; not defaced (tissue fills "
            f"{q['face_tissue']:.3f} of the face region, < {MIN_FACE_TISSUE}; a skull-stripped "
            f"or already defaced image)", path)
    if q["head_dice"] < MIN_HEAD_DICE:
        raise RegistrationQualityError(
            f"registration failed its quality check: head Dice {q['head_dice']:.3f} "
            f"< {MIN_HEAD_DICE} (not a head, or orientation/affine wrong)", path)
    if not SCALE_RANGE[0] <= q["volume_scale"] <= SCALE_RANGE[1] or q["anisotropy"] > MAX_ANISOTROPY:
        raise RegistrationQualityError(
            f"registration failed its quality check: implausible affine (volume scale "
            f"{q['volume_scale']:.2f}, anisotropy {q['anisotropy']:.2f})", path)
