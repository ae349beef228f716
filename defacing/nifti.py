"""Deface NIfTI files: read, deface, strip identifying header text, write atomically, QC."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from pixeldeid.atomic import TMP_PREFIX
from pixeldeid.errors import InputError

from .deface import DefaceResult, deface_array
from .qc import write_qc
from .volume import array_to_image, image_to_array, reference_image, resample_to, smooth_downsample

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | os.PathLike) -> bool:
    """True when ``path`` is named like a NIfTI file."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    for suf in (".nii.gz", ".nii"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def read_nifti(path: str | os.PathLike):
    """Return ``(stored_data, affine, slope, inter, image)``; raise InputError when unreadable."""
    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(f"not a NIfTI image ({type(img).__name__})", str(path))
        data = np.asarray(img.dataobj.get_unscaled())
        slope, inter = img.dataobj.slope, img.dataobj.inter
    except InputError:
        raise
    except Exception as exc:  # nibabel raises many kinds on corrupt files
        raise InputError(f"unreadable NIfTI: {type(exc).__name__}: {exc}", str(path)) from exc
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    while data.ndim > 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, img.affine, slope, inter, img


#: Header fields that hold free text or are unused (ANALYZE leftovers): reset to the
#: defaults of a fresh header. ``data_type`` (char[10]) and ``db_name`` (char[18]) take text
#: from some tools; ``extents``, ``session_error``, ``regular``, ``glmax``, ``glmin`` and
#: NIfTI-2's ``unused_str`` are raw bytes nothing reads.
FREE_FIELDS = ("descrip", "aux_file", "intent_name", "data_type", "db_name", "extents",
               "session_error", "regular", "glmax", "glmin", "unused_str")
#: Intent parameters: numbers of a statistical intent, 12 free bytes without one.
INTENT_PARAMS = ("intent_p1", "intent_p2", "intent_p3")


def clean_header(img, descrip: bytes = b"defaced by pixeldeid") -> nib.Nifti1Header:
    """Copy of the header without free text, unused fields and extensions (may embed DICOM).

    What is needed to read the image is kept: dimensions, voxel sizes and units, data
    type, scaling, qform/sform, slice timing, intent code (and its parameters when it has
    one), calibration range, magic.
    """
    hdr = img.header.copy()
    hdr.extensions.clear()
    fresh = type(hdr)()
    names = hdr.structarr.dtype.names
    for name in FREE_FIELDS:
        if name in names:
            hdr[name] = fresh[name]
    if int(hdr["intent_code"]) == 0:
        for name in INTENT_PARAMS:
            hdr[name] = 0
    hdr["descrip"] = descrip
    return hdr


def original_shape(data: np.ndarray, like) -> tuple[int, ...]:
    """The shape to write ``data`` with: that of the image ``like`` when ``data`` is it
    without trailing single-size axes (a 4D image of one volume stays 4D, keeping its
    repetition time), else ``data.shape``."""
    shape = tuple(int(n) for n in like.header.get_data_shape())
    trimmed = list(shape)
    while len(trimmed) > 3 and trimmed[-1] == 1:
        trimmed.pop()
    if tuple(data.shape) != shape and tuple(data.shape) == tuple(trimmed):
        return shape
    return tuple(data.shape)


def write_nifti_atomic(path: str | os.PathLike, data: np.ndarray, like, slope: float,
                       inter: float, descrip: bytes = b"defaced by pixeldeid") -> Path:
    """Write stored values ``data`` to ``path`` atomically with the header of ``like``.

    The on-disk dtype, slope and intercept of the source are kept exactly (nibabel would
    rescale float data to a new slope), so unchanged voxels keep their exact values; so is
    its shape where ``data`` is it without trailing single-size axes (:func:`original_shape`).
    """
    from nibabel.openers import ImageOpener
    from nibabel.volumeutils import array_to_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdr = clean_header(like, descrip)
    dtype = like.get_data_dtype()
    data = np.asarray(data).reshape(original_shape(np.asarray(data), like))
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(dtype)
    hdr.set_slope_inter(slope, inter)
    hdr.set_data_offset(hdr.single_vox_offset)
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with ImageOpener(tmp, "wb") as fh:
            hdr.write_to(fh)
            array_to_file(np.asarray(data, dtype=dtype), fh, dtype,
                          offset=hdr.get_data_offset())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def qc_arrays(data: np.ndarray, affine: np.ndarray, result: DefaceResult, spacing: float = 1.5):
    """Before/after/removed/protected on an isotropic RAS grid for the QC renders."""
    ref = data if data.ndim == 3 else data[..., 0]
    after = result.data if result.data.ndim == 3 else result.data[..., 0]
    sp = max(spacing, float(min(np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))))
    before_i = smooth_downsample(array_to_image(ref.astype(np.float32), affine), sp)
    grid = before_i
    after_i = resample_to(array_to_image(after.astype(np.float32), affine), grid,
                          interpolator=sitk.sitkLinear)
    masks = []
    for m in (result.removed, result.protected):
        mi = array_to_image(m.astype(np.uint8), affine)
        masks.append(image_to_array(resample_to(mi, grid, interpolator=sitk.sitkNearestNeighbor,
                                                pixel_type=sitk.sitkUInt8)) > 0)
    flip = (slice(None, None, -1), slice(None, None, -1))  # LPS grid -> RAS array
    return (image_to_array(before_i)[flip], image_to_array(after_i)[flip],
            masks[0][flip], masks[1][flip])


def surface_threshold(before: np.ndarray, modality: str, slope: float, inter: float) -> float:
    """Stored-unit threshold separating skin from air for the surface renders."""
    if modality == "ct":
        return (-400.0 - inter) / slope
    hi = float(np.percentile(before, 99.0))
    return 0.12 * hi


def deface_nifti(src: str | os.PathLike, dst: str | os.PathLike, *, modality: str = "auto",
                 device: str = "cpu", qc_dir: str | os.PathLike | None = None,
                 hint: str = "", reference: str | os.PathLike | None = None,
                 check_orientation: bool = True,
                 reference_volumes: list[int] | None = None) -> DefaceResult:
    """Deface one NIfTI file into ``dst`` (the input is never modified).

    Parameters
    ----------
    src, dst : path
        Input and output NIfTI (``.nii`` or ``.nii.gz``); ``dst`` is written atomically.
    modality, device : str
        See :func:`defacing.deface.deface_array`.
    qc_dir : path, optional
        Folder for ``<stem>_front.png``, ``_side.png``, ``_slices.png``, ``_metrics.json``.
    hint : str
        Modality hint (defaults to the BIDS suffix of the file name).
    reference : path, optional
        NIfTI of the same study and world frame to register instead (PET through its CT/MR).
    check_orientation : bool
        See :func:`defacing.deface.deface_array`.
    reference_volumes : list of int, optional
        Volumes of a 4D image whose mean is registered (e.g. the b0 volumes of a
        diffusion series); one mask is applied to all volumes.
    """
    data, affine, slope, inter, img = read_nifti(src)
    if not (src_hint := hint):
        src_hint = nifti_stem(src).rsplit("_", 1)[-1] if "_" in nifti_stem(src) else ""
        src_hint = f"_{src_hint}" if src_hint else ""
    ref_data = ref_aff = None
    if reference is not None:
        rd, ref_aff, rs, ri, _ = read_nifti(reference)
        ref_data = rd.astype(np.float32) * rs + ri
    elif reference_volumes and data.ndim == 4:
        idx = [i for i in reference_volumes if 0 <= i < data.shape[3]]
        if idx:
            ref_data = data[..., idx].astype(np.float32).mean(axis=3) * slope + inter
            ref_aff = affine
    result = deface_array(data, affine, modality=modality, slope=slope, inter=inter,
                          device=device, path=str(src), hint=src_hint,
                          reference=ref_data, reference_affine=ref_aff,
                          check_orientation=check_orientation)
    write_nifti_atomic(dst, result.data, img, slope, inter)
    if qc_dir is not None:
        before, after, removed, protected = qc_arrays(data, affine, result)
        thr = surface_threshold(before, result.metrics["modality"], slope, inter)
        result.metrics["source"] = Path(src).name
        write_qc(Path(qc_dir) / nifti_stem(dst), before, after, removed, protected, thr,
                 result.metrics)
    return result


__all__ = ["deface_nifti", "read_nifti", "write_nifti_atomic", "is_nifti", "nifti_stem",
           "reference_image"]
