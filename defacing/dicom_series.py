"""DICOM series in, DICOM series out.

Files are grouped by Series Instance UID; single-frame slices are ordered by Image
Position (Patient) along the slice normal, enhanced multi-frame objects by their
per-frame positions. The defaced series keeps each instance's header, passes it through
the pixeldeid header core (PS3.15 profile, keyed new UIDs), marks Image Type DERIVED
and records Clean Recognizable Visual Features (113102). Compressed pixel data is
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
from pydicom.uid import ExplicitVRLittleEndian

from pixeldeid.errors import DeidError, InputError
from pixeldeid.paths import printable
from pixeldeid.quarantine import quarantine

from .deface import deface_array, fill_value
from .volume import RAS2LPS

logger = logging.getLogger(__name__)

#: Relative tolerance on slice spacing regularity.
SPACING_TOLERANCE = 0.05
DICOM_OUT_DIRNAME = "dicom"


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


def _normal(ds) -> np.ndarray:
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(iop[:3], iop[3:])


def _frame_geometry(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    """(orientation, position) of each frame of a (multi-frame) instance."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if n == 1 and "ImagePositionPatient" in ds:
        return [(np.array([float(v) for v in ds.ImageOrientationPatient]),
                 np.array([float(v) for v in ds.ImagePositionPatient]))]
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
        out.append((np.array([float(v) for v in ori]), np.array([float(v) for v in pos])))
    return out


def _pixel_spacing(ds) -> tuple[float, float]:
    if "PixelSpacing" in ds:
        ps = ds.PixelSpacing
    else:
        shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
        ps = shared.PixelMeasuresSequence[0].PixelSpacing if shared is not None else None
        if ps is None:
            raise InputError("no Pixel Spacing")
    return float(ps[0]), float(ps[1])


def _rescale(ds) -> tuple[float, float]:
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    inter = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return slope, inter


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
    for f in files:
        ds = pydicom.dcmread(f)
        if "PixelData" not in ds:
            raise InputError(f"instance without pixel data in series ({f.name})", source)
        for fi, (ori, pos) in enumerate(_frame_geometry(ds)):
            items.append((ds, fi, ori, pos))
    if not items:
        raise InputError("empty series", source)
    ds0 = items[0][0]
    ori0 = items[0][2]
    shape0 = (int(ds0.Rows), int(ds0.Columns))
    ps0 = _pixel_spacing(ds0)
    resc0 = _rescale(ds0)
    for ds, _, ori, _ in items:
        if (int(ds.Rows), int(ds.Columns)) != shape0:
            raise InputError("mixed series: slices differ in size", source)
        if np.max(np.abs(ori - ori0)) > 1e-3:
            raise InputError("mixed series: slices differ in orientation", source)
        if np.max(np.abs(np.array(_pixel_spacing(ds)) - ps0)) > 1e-4:
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
    rescales = np.array([_rescale(it[0]) for it in items])
    if np.all(rescales == rescales[0]):
        return vol, affine, [(it[0], it[1]) for it in items], resc0[0], resc0[1]
    # per-slice scaling (common in PET): slope and intercept per slice (last axis)
    return vol, affine, [(it[0], it[1]) for it in items], rescales[:, 0], rescales[:, 1]


def _derived(ds) -> None:
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
    desc = "Face removed by pixeldeid defacing (affine template registration)"
    old = str(ds.get("DerivationDescription", "") or "")
    ds.DerivationDescription = (desc if not old else f"{old}; {desc}")[:1024]


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
    """Deface one series and write it to ``OUT/dicom/<new SeriesInstanceUID>/``.

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
    tmpdir = Path(tempfile.mkdtemp(prefix=".pixeldeid-tmp-", dir=base))
    try:
        series_uid = None
        for n, (ds, frames) in enumerate(per_ds.values(), start=1):
            _set_pixels(ds, frames)
            _derived(ds)
            deidentifier.deidentify_dataset(ds, source=source)
            deidentifier.add_method_code(ds, "clean-recognizable-visual-features")
            series_uid = str(ds.SeriesInstanceUID)
            deidentifier.write(ds, tmpdir / f"{n:05d}.dcm", source=source)
        final = base / series_uid
        if final.exists():
            raise DeidError(f"output series folder already exists: {final}", source)
        os.replace(tmpdir, final)
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
    from .batch import Outcome

    outcomes = []
    groups, bad = group_series(files)
    for f, reason in bad:
        rec = quarantine(f, out, reason, stage="deface")
        outcomes.append(Outcome(str(f), reason=rec.reason))
    if groups and deidentifier is None:
        raise DeidError("DICOM output needs a header de-identifier (project key)")
    info = {}
    for uid, fs in groups.items():
        ds = pydicom.dcmread(fs[0], stop_before_pixels=True)
        info[uid] = (str(ds.get("Modality", "")), str(ds.get("FrameOfReferenceUID", "")))
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
        except (DeidError, OSError, MemoryError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            logger.error("%s: %s", printable(source), printable(reason))
            for f in fs:
                with contextlib.suppress(OSError):
                    quarantine(f, out, reason, stage="deface")
            outcomes.append(Outcome(source, reason=reason))
    return outcomes
