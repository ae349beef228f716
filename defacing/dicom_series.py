"""DICOM series in, DICOM series out.

Files are grouped by Series Instance UID; single-frame slices are ordered by Image
Position (Patient) along the slice normal, enhanced multi-frame objects by their
per-frame positions. The defaced series keeps each instance's header, passes it through
the pixeldeid header core (PS3.15 profile, keyed new UIDs), marks Image Type DERIVED,
records Clean Recognizable Visual Features (113102) and a Derivation Description. A
defaced object is a new object: its Series and SOP Instance UIDs are keyed on the UIDs
the header core gives the non-defaced object (:func:`derived_uid`), so ``pixeldeid dicom``
and ``pixeldeid deface`` under one project key never give two different objects one UID,
while Study Instance UID and Frame of Reference UID stay those of the study; a
single-frame image references its non-defaced source (Source Image Sequence). Compressed
pixel data is
re-encoded in the same transfer syntax when pydicom can; otherwise the series is
written Explicit VR Little Endian and the change is logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from pixeldeid.atomic import TMP_PREFIX
from pixeldeid.dsvalues import set_meta
from pixeldeid.errors import DeidError, InputError
from pixeldeid.paths import printable
from pixeldeid.quarantine import quarantine
from pixeldeid.uids import keyed_uid

from .deface import deface_array, fill_value
from .volume import RAS2LPS

logger = logging.getLogger(__name__)

#: Relative tolerance on slice spacing regularity.
SPACING_TOLERANCE = 0.05
DICOM_OUT_DIRNAME = "dicom"
#: What the UIDs of a defaced object are keyed on, before the UID the header core gives the
#: non-defaced object (no UID holds a letter: no keyed UID of a real one is ever equal).
DERIVED_UID_SALT = "pixeldeid-defaced:"
DERIVATION_DESCRIPTION = "Face removed by pixeldeid defacing (affine template registration)"
#: CID 7202 Source Image Purposes of Reference
SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


def group_series(files: list[Path]) -> tuple[dict[str, list[Path]], list[tuple[Path, str]]]:
    """Group readable image files by Series Instance UID; return (groups, unreadable)."""
    groups: dict[str, list[Path]] = defaultdict(list)
    bad: list[tuple[Path, str]] = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            uid = str(ds.SeriesInstanceUID)
        except Exception as exc:
            bad.append((f, f"unreadable DICOM: {type(exc).__name__}: {exc}"))
            continue
        groups[uid].append(f)
    return dict(groups), bad


def _floats(value, n: int, keyword: str) -> np.ndarray:
    """``n`` finite numbers of the header element ``keyword``; InputError otherwise."""
    try:
        values = [float(v) for v in (value if n > 1 else [value])]
    except (TypeError, ValueError):
        values = []
    if value is None:
        raise InputError(f"{keyword} is missing")
    if not values:
        raise InputError(f"{keyword} is not {f'{n} numbers' if n > 1 else 'a number'}")
    if len(values) != n:
        raise InputError(f"{keyword} has {len(values)} values, not {n}")
    if not np.all(np.isfinite(values)):
        raise InputError(f"{keyword} is not finite")
    return np.array(values)


def _element(ds, keyword: str):
    """The value of ``keyword`` in ``ds`` (None when absent); InputError when pydicom
    cannot convert it (a decimal string that is no number...)."""
    try:
        return ds.get(keyword)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"{keyword} is not valid: {type(exc).__name__}") from None


def _instance_header(ds, name: str, source: str):
    """Geometry and scaling of one instance: (frames, (rows, columns), pixel spacing,
    rescale), every element checked.

    Raises
    ------
    InputError
        Naming the file (``name``) and the element that is missing or not numbers.
    """
    try:
        frames = _frame_geometry(ds)
        shape = tuple(int(_floats(_element(ds, k), 1, k)[0]) for k in ("Rows", "Columns"))
        return frames, shape, _pixel_spacing(ds), _rescale(ds)
    except InputError as exc:
        raise InputError(f"{exc.reason} ({name})", source) from None
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise InputError(f"damaged header ({name}): {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}", source) from None


def _frame_geometry(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    """(orientation, position) of each frame of a (multi-frame) instance."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if n == 1 and "ImagePositionPatient" in ds:
        return [(_floats(_element(ds, "ImageOrientationPatient"), 6, "ImageOrientationPatient"),
                 _floats(_element(ds, "ImagePositionPatient"), 3, "ImagePositionPatient"))]
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is None or len(per) != n:
        raise InputError("multi-frame object without per-frame positions")
    out = []
    for item in per:
        ori = None
        for grp in (item, shared):
            if grp is not None and "PlaneOrientationSequence" in grp:
                ori = grp.PlaneOrientationSequence[0].ImageOrientationPatient
                break
        if ori is None or "PlanePositionSequence" not in item:
            raise InputError("multi-frame object without plane orientation/position")
        pos = item.PlanePositionSequence[0].ImagePositionPatient
        out.append((_floats(ori, 6, "ImageOrientationPatient"),
                    _floats(pos, 3, "ImagePositionPatient")))
    return out


def _pixel_spacing(ds) -> tuple[float, float]:
    if "PixelSpacing" in ds:
        ps = ds.PixelSpacing
    else:
        shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
        ps = shared.PixelMeasuresSequence[0].PixelSpacing if shared is not None else None
        if ps is None:
            raise InputError("no Pixel Spacing")
    row, col = _floats(ps, 2, "PixelSpacing")
    if row <= 0 or col <= 0:
        raise InputError("PixelSpacing must be positive")
    return float(row), float(col)


def _rescale(ds) -> tuple[float, float]:
    slope, inter = (_element(ds, k) for k in ("RescaleSlope", "RescaleIntercept"))
    slope = 1.0 if slope in (None, "") else float(_floats(slope, 1, "RescaleSlope")[0])
    inter = 0.0 if inter in (None, "") else float(_floats(inter, 1, "RescaleIntercept")[0])
    return slope or 1.0, inter


def load_series(files: list[Path], source: str = ""):
    """Read one series into a volume.

    Returns
    -------
    data : ndarray
        Stored values indexed ``[column, row, slice]``.
    affine : ndarray
        NIfTI-style RAS affine.
    slices : list of (dataset, frame index)
        Where each slice came from, in volume order.
    slope, inter : float or ndarray
        Rescale to real units; arrays with one value per slice when it varies.
    """
    items = []
    headers = {}
    for f in files:
        ds = pydicom.dcmread(f)
        if "PixelData" not in ds:
            raise InputError(f"instance without pixel data in series ({f.name})", source)
        frames, shape, spacing, rescale = _instance_header(ds, f.name, source)
        headers[id(ds)] = (shape, spacing, rescale)
        for fi, (ori, pos) in enumerate(frames):
            items.append((ds, fi, ori, pos))
    if not items:
        raise InputError("empty series", source)
    ds0 = items[0][0]
    ori0 = items[0][2]
    shape0, ps0, resc0 = headers[id(ds0)]
    for ds, _, ori, _ in items:
        shape, ps, _ = headers[id(ds)]
        if shape != shape0:
            raise InputError("mixed series: slices differ in size", source)
        if np.max(np.abs(ori - ori0)) > 1e-3:
            raise InputError("mixed series: slices differ in orientation", source)
        if np.max(np.abs(np.array(ps) - ps0)) > 1e-4:
            raise InputError("mixed series: slices differ in pixel spacing", source)
    normal = np.cross(ori0[:3], ori0[3:])
    items.sort(key=lambda it: float(np.dot(it[3], normal)))
    d = np.array([float(np.dot(it[3], normal)) for it in items])
    if len(items) < 2:
        raise InputError("a single slice is not a volume", source)
    steps = np.diff(d)
    if np.any(steps < 1e-3):
        raise InputError("mixed series: duplicate slice positions (several volumes or echoes?)",
                         source)
    if np.max(np.abs(steps - np.median(steps))) > SPACING_TOLERANCE * np.median(steps):
        raise InputError("irregular slice spacing (missing slices or mixed series)", source)
    rows, cols = shape0
    first = items[0][3]
    last = items[-1][3]
    lps = np.eye(4)
    lps[:3, 0] = ori0[:3] * ps0[1]  # i: along a row (column index)
    lps[:3, 1] = ori0[3:] * ps0[0]  # j: down a column (row index)
    lps[:3, 2] = (last - first) / (len(items) - 1)
    lps[:3, 3] = first
    affine = RAS2LPS @ lps
    vol = None
    cache: dict[int, np.ndarray] = {}
    for k, (ds, fi, _, _) in enumerate(items):
        arr = cache.get(id(ds))
        if arr is None:
            try:
                arr = ds.pixel_array
            except Exception as exc:
                raise InputError(f"cannot decode pixel data: {exc}", source) from exc
            if arr.ndim == 2:
                arr = arr[None]
            elif arr.ndim != 3:
                raise InputError(f"unsupported pixel array shape {arr.shape} (colour?)", source)
            cache[id(ds)] = arr
        if vol is None:
            vol = np.empty((cols, rows, len(items)), dtype=arr.dtype)
        vol[:, :, k] = arr[fi].T
    rescales = np.array([headers[id(it[0])][2] for it in items])
    if np.all(rescales == rescales[0]):
        return vol, affine, [(it[0], it[1]) for it in items], resc0[0], resc0[1]
    # per-slice scaling (common in PET): slope and intercept per slice (last axis)
    return vol, affine, [(it[0], it[1]) for it in items], rescales[:, 0], rescales[:, 1]


def derived_uid(key: bytes, uid: str) -> str:
    """The UID of the defaced object whose non-defaced output has ``uid`` (under ``key``):
    deterministic, and never ``uid`` itself."""
    return keyed_uid(key, DERIVED_UID_SALT + uid)


def _derived(ds) -> None:
    """Image Type (and Frame Type) DERIVED, and the Derivation Description of the defacing.

    Called after the header profile (which removes the input's Derivation Description):
    the input's one is kept before ours when the profile keeps it.
    """
    it = list(ds.get("ImageType", []) or ["DERIVED", "SECONDARY"])
    it[0] = "DERIVED"
    if len(it) == 1:
        it.append("SECONDARY")
    ds.ImageType = it
    for grp_name in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for grp in ds.get(grp_name, []) or []:
            for elem in grp:
                if elem.VR == "SQ" and elem.keyword.endswith("FrameTypeSequence"):
                    for item in elem.value:
                        ft = list(item.get("FrameType", []) or [])
                        if ft:
                            ft[0] = "DERIVED"
                            item.FrameType = ft
    old = str(ds.get("DerivationDescription", "") or "")
    if DERIVATION_DESCRIPTION not in old:
        desc = DERIVATION_DESCRIPTION if not old else f"{old}; {DERIVATION_DESCRIPTION}"
        ds.DerivationDescription = desc[:1024]


def _new_instance(ds, key: bytes) -> None:
    """Give the de-identified ``ds`` the Series and SOP Instance UIDs of a defaced object
    (:func:`derived_uid` of those the header core gave it) and, for a single-frame image
    (General Reference Module), a Source Image Sequence item naming the non-defaced object.
    Study Instance UID and Frame of Reference UID are left as the header core set them."""
    source_sop, source_class = str(ds.SOPInstanceUID), str(ds.SOPClassUID)
    ds.SeriesInstanceUID = derived_uid(key, str(ds.SeriesInstanceUID))
    ds.SOPInstanceUID = derived_uid(key, source_sop)
    set_meta(ds.file_meta, "MediaStorageSOPInstanceUID", str(ds.SOPInstanceUID))
    if "PerFrameFunctionalGroupsSequence" in ds or int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return  # (enhanced objects reference sources per frame: not written)
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = SOURCE_PURPOSE
    item = Dataset()
    item.ReferencedSOPClassUID = source_class
    item.ReferencedSOPInstanceUID = source_sop
    item.PurposeOfReferenceCodeSequence = Sequence([purpose])
    items = list(ds.get("SourceImageSequence", []) or [])
    ds.SourceImageSequence = Sequence([*items, item])


def _set_pixels(ds, frames: dict[int, np.ndarray]) -> None:
    """Replace pixel data of ``ds`` (all frames) keeping the transfer syntax if possible."""
    ts = ds.file_meta.TransferSyntaxUID
    n = int(ds.get("NumberOfFrames", 1) or 1)
    arr = ds.pixel_array
    arr = arr[None] if arr.ndim == 2 else arr.copy()
    for fi, sl in frames.items():
        arr[fi] = sl
    arr = arr[0] if n == 1 else arr
    if not ts.is_little_endian:  # native bytes below are little endian
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ts = ds.file_meta.TransferSyntaxUID
    if ts.is_compressed:
        try:
            ds.compress(ts, arr, generate_instance_uid=False)
            return
        except Exception as exc:  # encoder missing or lossy syntax: fall back, say so
            logger.warning("cannot re-encode %s (%s); writing Explicit VR Little Endian",
                           ts.name, exc)
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = np.ascontiguousarray(arr).astype(arr.dtype, copy=False).tobytes()
    if "PixelData" in ds:
        ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"


def deface_series(files: list[Path], out: Path, deidentifier, *, modality: str = "auto",
                  device: str = "cpu", qc_dir: Path | None = None, source: str = "",
                  reference=None, check_orientation: bool = True):
    """Deface one series and write it to ``OUT/dicom/<new SeriesInstanceUID>/`` (the UID of
    the defaced series, :func:`derived_uid`).

    Returns ``(output folder, metrics)``. Raises DeidError/InputError on failure; nothing
    is left in ``out`` then.
    """
    data, affine, slices, slope, inter = load_series(files, source)
    ds0 = slices[0][0]
    hint = str(ds0.get("Modality", "") or "")
    ref_data = ref_aff = None
    if reference is not None:
        ref_data, ref_aff = reference
    per_slice = np.ndim(slope) > 0
    if per_slice:  # register and mask on real values, fill each slice in its own units
        real = data.astype(np.float32) * slope.astype(np.float32) + inter.astype(np.float32)
        result = deface_array(real, affine, modality=modality, device=device, path=source,
                              hint=hint, reference=ref_data, reference_affine=ref_aff,
                              check_orientation=check_orientation)
        filled = data.copy()
        mod = result.metrics["modality"]
        for k in range(data.shape[2]):
            filled[:, :, k][result.removed[:, :, k]] = fill_value(
                mod, data[:, :, k], float(slope[k]), float(inter[k]))
        result.data = filled
        result.metrics["fill_stored"] = "per slice"
    else:
        result = deface_array(data, affine, modality=modality, slope=slope, inter=inter,
                              device=device, path=source, hint=hint,
                              reference=ref_data, reference_affine=ref_aff,
                              check_orientation=check_orientation)
    # group changed frames per dataset
    per_ds: dict[int, tuple] = {}
    for k, (ds, fi) in enumerate(slices):
        entry = per_ds.setdefault(id(ds), (ds, {}))
        entry[1][fi] = result.data[:, :, k].T
    base = out / DICOM_OUT_DIRNAME
    base.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=base))
    try:
        series_uid = None
        for n, (ds, frames) in enumerate(per_ds.values(), start=1):
            _set_pixels(ds, frames)
            deidentifier.deidentify_dataset(ds, source=source)
            _derived(ds)  # after the profile, which removes Derivation Description
            _new_instance(ds, deidentifier.config.key)
            deidentifier.add_method_code(ds, "clean-recognizable-visual-features")
            series_uid = str(ds.SeriesInstanceUID)
            deidentifier.write(ds, tmpdir / f"{n:05d}.dcm", source=source)
        final = base / series_uid
        _move_into_place(tmpdir, final, source)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    if qc_dir is not None:
        from .nifti import qc_arrays, surface_threshold
        from .qc import write_qc

        if per_slice:  # render real values
            after_real = result.data.astype(np.float32) * slope + inter
            qc_res = dataclasses.replace(result, data=after_real)
            before, after, removed, protected = qc_arrays(real, affine, qc_res)
            thr = surface_threshold(before, result.metrics["modality"], 1.0, 0.0)
        else:
            before, after, removed, protected = qc_arrays(data, affine, result)
            thr = surface_threshold(before, result.metrics["modality"], slope, inter)
        write_qc(Path(qc_dir) / f"dicom_{series_uid}", before, after, removed, protected, thr,
                 result.metrics)
    return final, result.metrics


def _move_into_place(new: Path, final: Path, source: str) -> None:
    """Rename the complete series folder ``new`` to ``final``.

    The output series UID is keyed on the input's, so a rerun (same key, same series)
    meets its own earlier output at ``final``: that folder is set aside under a
    temporary name, replaced by ``new`` and only then removed. A killed run leaves
    either folder complete (a set-aside one is removed as a stale temporary).

    Raises
    ------
    DeidError
        When something else than a folder is in the way at ``final``.
    """
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise DeidError(f"output series path is not a folder: {final}", source)
    if not final.exists():
        os.replace(new, final)
        return
    aside = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=final.parent))
    os.replace(final, aside)  # an empty folder is replaced
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(aside, final)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    logger.info("%s: replaced the series written by an earlier run at %s", source, final)


def load_reference(files: list[Path], source: str) -> tuple[np.ndarray, np.ndarray]:
    """A CT/MR series to register a PET series through: (rescaled float32 volume, affine)."""
    rdata, raff, _, rs, ri = load_series(files, source)
    return rdata.astype(np.float32) * rs + ri, raff


def deface_dicom_files(files: list[Path], out: Path, *, modality: str = "auto",
                       device: str = "cpu", qc_dir: Path | None = None, deidentifier=None,
                       check_orientation: bool = True):
    """Group ``files`` into series and deface each; failures are quarantined per file.

    PET series are registered through a CT or MR series of the batch sharing their
    Frame of Reference UID when there is one.
    """
    from .batch import Outcome, failure_reason

    outcomes = []
    groups, bad = group_series(files)
    for f, reason in bad:
        rec = quarantine(f, out, reason, stage="deface")
        outcomes.append(Outcome(str(f), reason=rec.reason))
    if groups and deidentifier is None:
        raise DeidError("DICOM output needs a header de-identifier (project key)")
    info = {}
    for uid, fs in groups.items():
        try:
            ds = pydicom.dcmread(fs[0], stop_before_pixels=True)
            info[uid] = (str(ds.get("Modality", "")), str(ds.get("FrameOfReferenceUID", "")))
        except Exception:  # noqa: BLE001 - the series fails (and is quarantined) below
            info[uid] = ("", "")
    anat_by_for = {}
    for uid, (mod, f_o_r) in info.items():
        if mod in ("CT", "MR") and f_o_r:
            anat_by_for.setdefault(f_o_r, uid)
    for n, (uid, fs) in enumerate(groups.items(), start=1):
        source = f"{fs[0].parent} (series {n}, {len(fs)} files)"
        try:
            ref = None
            mod, f_o_r = info[uid]
            if mod == "PT" and f_o_r in anat_by_for:
                ref = load_reference(groups[anat_by_for[f_o_r]], source)
            folder, metrics = deface_series(fs, out, deidentifier, modality=modality,
                                            device=device, qc_dir=qc_dir, source=source,
                                            reference=ref, check_orientation=check_orientation)
            outcomes.append(Outcome(source, str(folder), metrics=metrics))
        except Exception as exc:  # noqa: BLE001 - one bad series never ends the batch
            reason = failure_reason(exc)
            logger.error("%s: %s", printable(source), printable(reason))
            for f in fs:
                with contextlib.suppress(OSError):
                    quarantine(f, out, reason, stage="deface")
            outcomes.append(Outcome(source, reason=reason))
    return outcomes
