"""DICOM series in, DICOM series out (real 120-slice MR series from ../shared)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from defacing.dicom_series import load_series
from tests.defacing.conftest import heads, run_cli

pytestmark = [pytest.mark.shared, pytest.mark.slow]




@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    src = heads("dicom-mr-series")
    out = tmp_path_factory.mktemp("dcmout")
    status = run_cli([src, "-o", out, "--device", "cpu", "--qc"])
    series = sorted((out / "dicom").iterdir())
    return src, out, status, series


def test_one_series_out_with_all_slices(dicom_case):
    src, out, status, series = dicom_case
    assert status == 0
    assert len(series) == 1
    files = sorted(series[0].glob("*.dcm"))
    assert len(files) == len(list(src.glob("*.dcm"))) == 120
    assert not (out / "quarantine").exists()
    assert list((out / ".pixeldeid" / "qc").glob("*_front.png"))
    assert not (out / "qc").exists()


def test_headers_derived_deidentified_new_uids(dicom_case):
    src, _, _, series = dicom_case
    orig = pydicom.dcmread(sorted(src.glob("*.dcm"))[0], stop_before_pixels=True)
    orig_uids = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                 for f in src.glob("*.dcm")}
    series_uids = set()
    for f in sorted(series[0].glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert ds.ImageType[0] == "DERIVED"
        codes = [str(it.CodeValue) for it in ds.DeidentificationMethodCodeSequence]
        assert "113102" in codes
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.SOPInstanceUID) not in orig_uids
        assert ds.file_meta.TransferSyntaxUID == orig.file_meta.TransferSyntaxUID
        assert str(ds.get("PatientName", "")) != str(orig.PatientName) or not str(orig.PatientName)
        series_uids.add(str(ds.SeriesInstanceUID))
    assert series_uids and str(orig.SeriesInstanceUID) not in series_uids
    assert len(series_uids) == 1


def test_pixels_changed_only_in_face_and_readable(dicom_case):
    src, _, _, series = dicom_case
    before, aff_b, *_ = load_series(sorted(src.glob("*.dcm")))
    after, aff_a, *_ = load_series(sorted(series[0].glob("*.dcm")))
    assert np.allclose(aff_a, aff_b)
    changed = before != after
    assert changed.sum() > 50000
    assert np.all(after[changed] == 0)
    # changed voxels lie in the anterior, lower part of the head (LPS->RAS affine)
    idx = np.argwhere(changed)[::50]
    xyz = idx @ aff_a[:3, :3].T + aff_a[:3, 3]
    ctr = np.array(before.shape) / 2 @ aff_a[:3, :3].T + aff_a[:3, 3]
    assert np.median(xyz[:, 1]) > ctr[1] + 30  # anterior
    assert np.median(xyz[:, 2]) < ctr[2]  # inferior half
    # SimpleITK reads it as one volume
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(series[0]))
    reader.SetFileNames(names)
    img = reader.Execute()
    assert img.GetSize() == (before.shape[0], before.shape[1], before.shape[2])


def test_dciodvfy_finds_no_errors(dicom_case):
    _, _, _, series = dicom_case
    exe = shutil.which("dciodvfy") or str(Path(sys.executable).parent / "dciodvfy")
    if not Path(exe).exists():
        pytest.skip("dciodvfy not installed")
    f = sorted(series[0].glob("*.dcm"))[60]
    src_f = sorted(heads("dicom-mr-series").glob("*.dcm"))[60]
    out = subprocess.run([exe, str(f)], capture_output=True, text=True, timeout=120)
    ref = subprocess.run([exe, str(src_f)], capture_output=True, text=True, timeout=120)
    errs = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
    ref_errs = [ln for ln in (ref.stdout + ref.stderr).splitlines() if ln.startswith("Error")]
    # no error that the source did not already have
    new = [e for e in errs if e not in ref_errs]
    assert not new, new


def test_mixed_series_is_quarantined(tmp_path):
    src = heads("dicom-mr-series")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    files = sorted(src.glob("*.dcm"))[:40]
    for f in files:
        shutil.copy(f, mixed / f.name)
    # an instance of another size claiming the same series
    ds = pydicom.dcmread(files[5])
    ds.Rows, ds.Columns = 256, 256
    ds.PixelData = np.zeros((256, 256), np.uint16).tobytes()
    ds.ImagePositionPatient = [float(v) + 0.5 for v in ds.ImagePositionPatient]
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(mixed / "x-odd.dcm")
    out = tmp_path / "out"
    assert run_cli([mixed, "-o", out, "--device", "cpu"]) == 1
    assert not (out / "dicom").exists() or not any((out / "dicom").iterdir())
    reasons = list((out / "quarantine").glob("*.reason.txt"))
    assert len(reasons) == 41
    assert "mixed series" in reasons[0].read_text()


def test_compressed_series_keeps_transfer_syntax(tmp_path):
    from pydicom.uid import JPEG2000Lossless

    src = heads("dicom-mr-series")
    comp = tmp_path / "j2k"
    comp.mkdir()
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.compress(JPEG2000Lossless)
        ds.save_as(comp / f.name)
    out = tmp_path / "out"
    assert run_cli([comp, "-o", out, "--device", "cpu"]) == 0
    series = sorted((out / "dicom").iterdir())
    assert len(series) == 1
    files = sorted(series[0].glob("*.dcm"))
    assert len(files) == 120
    assert all(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID
               == JPEG2000Lossless for f in files)
    before, *_ = load_series(sorted(src.glob("*.dcm")))
    after, *_ = load_series(files)
    changed = before != after
    assert changed.sum() > 50000 and np.all(after[changed] == 0)


def _fake_pet_series(src: Path, dst: Path) -> None:
    """A PET-like series on a coarser grid sharing the MR's Frame of Reference: flat
    uptake in the head, so it is registered through the MR."""
    dst.mkdir()
    series_uid = pydicom.uid.generate_uid()
    for f in sorted(src.glob("*.dcm"))[::2]:
        ds = pydicom.dcmread(f)
        a = ds.pixel_array.astype(np.float32)
        small = a.reshape(128, 4, 128, 4).mean(axis=(1, 3))
        k = int(ds.InstanceNumber)
        slope = 0.5 + (k % 7) * 0.25  # per-slice scaling, as PET scanners write it
        pet = np.round(np.where(small > 60, 1000.0, 20.0) / slope).astype(np.uint16)
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = "0"
        ds.Rows, ds.Columns = 128, 128
        ds.PixelSpacing = [float(v) * 4 for v in ds.PixelSpacing]
        ps = float(ds.PixelSpacing[0])
        # keep the same field of view: shift the first pixel centre by 1.5 old pixels
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        pos = np.array([float(v) for v in ds.ImagePositionPatient]) + (iop[:3] + iop[3:]) * 1.5 * ps / 4
        ds.ImagePositionPatient = [float(v) for v in pos]
        ds.PixelData = pet.tobytes()
        ds.Modality = "PT"
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(dst / f.name)


def test_pet_registered_through_mr_of_same_frame_of_reference(tmp_path):
    src = heads("dicom-mr-series")
    study = tmp_path / "study"
    shutil.copytree(src, study / "mr")
    _fake_pet_series(src, study / "pet")
    out = tmp_path / "out"
    assert run_cli([study, "-o", out, "--device", "cpu", "--qc"]) == 0
    series = sorted((out / "dicom").iterdir())
    assert len(series) == 2
    on = sorted(json.loads(p.read_text())["registration"]["registered_on"]
                for p in (out / ".pixeldeid" / "qc").glob("*_metrics.json"))
    assert on == ["reference", "self"]
    by_mod = {}
    for s in series:
        ds = pydicom.dcmread(next(s.glob("*.dcm")), stop_before_pixels=True)
        by_mod[str(ds.Modality)] = s
    pet_before, aff_p, *_ = load_series(sorted((study / "pet").glob("*.dcm")))
    pet_after, *_ = load_series(sorted(by_mod["PT"].glob("*.dcm")))
    mr_before, aff_m, *_ = load_series(sorted(src.glob("*.dcm")))
    mr_after, *_ = load_series(sorted(by_mod["MR"].glob("*.dcm")))
    pet_changed = np.argwhere(pet_before != pet_after)
    assert len(pet_changed) > 500
    # background fill: the lowest real value of each slice (20 here, per-slice units)
    _, _, _, slopes, _ = load_series(sorted((study / "pet").glob("*.dcm")))
    assert np.ndim(slopes) == 1 and len(set(slopes.tolist())) > 1
    real_after = pet_after * slopes
    assert np.allclose(real_after[pet_before != pet_after], 20.0, atol=1.0)
    # the PET voxels removed lie where the MR was defaced (same world frame)
    xyz = pet_changed @ aff_p[:3, :3].T + aff_p[:3, 3]
    ijk = np.round((xyz - aff_m[:3, 3]) @ np.linalg.inv(aff_m[:3, :3]).T).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(mr_before.shape)), axis=1)
    mr_changed = mr_before != mr_after
    hit = mr_changed[tuple(ijk[ok].T)].mean()
    assert hit > 0.8


@pytest.mark.filterwarnings("ignore:The string .* is unlikely to represent")
def test_enhanced_multiframe_in_multiframe_out(tmp_path):
    hd = pytest.importorskip("highdicom")
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    src = heads("dicom-mr-series")
    dss = [pydicom.dcmread(f) for f in sorted(src.glob("*.dcm"))]
    mf = LegacyConvertedEnhancedMRImage(dss, series_instance_uid=hd.UID(), series_number=9,
                                        sop_instance_uid=hd.UID(), instance_number=1)
    (tmp_path / "mf").mkdir()
    mf.save_as(tmp_path / "mf" / "enhanced.dcm")
    out = tmp_path / "out"
    assert run_cli([tmp_path / "mf", "-o", out, "--device", "cpu"]) == 0
    files = list((out / "dicom").rglob("*.dcm"))
    assert len(files) == 1
    ds = pydicom.dcmread(files[0])
    assert int(ds.NumberOfFrames) == 120
    assert ds.ImageType[0] == "DERIVED"
    ft = ds.SharedFunctionalGroupsSequence[0].get("MRImageFrameTypeSequence") or \
        ds.PerFrameFunctionalGroupsSequence[0].MRImageFrameTypeSequence
    assert ft[0].FrameType[0] == "DERIVED"
    before, aff_b, *_ = load_series([tmp_path / "mf" / "enhanced.dcm"])
    after, aff_a, *_ = load_series(files)
    assert np.allclose(aff_a, aff_b)
    changed = before != after
    assert changed.sum() > 50000 and np.all(after[changed] == 0)
    exe = shutil.which("dciodvfy") or str(Path(sys.executable).parent / "dciodvfy")
    if Path(exe).exists():
        def errors(path):
            r = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=300)
            return {ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("Error")}
        assert not errors(files[0]) - errors(tmp_path / "mf" / "enhanced.dcm")
