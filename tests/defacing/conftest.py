"""Fixtures of the defacing tests: heads from ../shared (skip when absent) and synthetic
heads derived from the project's own template (always available)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from defacing.template import load_template
from defacing.volume import geometry_to_affine, image_to_array, resample_to
from tests.conftest import shared_path


def heads(*parts: str):
    return shared_path("data", "heads", *parts)


@pytest.fixture(scope="session")
def template():
    return load_template()


def moved_template_head(angle_deg: float = 8.0, shift=(4.0, -6.0, 3.0), spacing: float = 2.5):
    """The template head resampled through a known rigid motion onto an RAS grid.

    Returns ``(array, affine)`` with intensities 0-1000 (T1-like), a stand-in for a
    subject that the tests can build without reference data.
    """
    tpl = load_template()
    tx = sitk.Euler3DTransform()
    tx.SetCenter((0.0, -20.0, 10.0))
    tx.SetRotation(np.deg2rad(angle_deg), np.deg2rad(angle_deg / 2), 0.0)
    tx.SetTranslation(shift)
    ref = sitk.Image([80, 96, 92], sitk.sitkFloat32)
    ref.SetSpacing((spacing,) * 3)
    ref.SetOrigin((-100.0, -130.0, -120.0))
    img = resample_to(tpl.head, ref, tx)
    return image_to_array(img).astype(np.float32), geometry_to_affine(img)


@pytest.fixture(scope="session")
def synthetic_head():
    return moved_template_head()


def save_nifti(path, data, affine, slope=None, inter=None, dtype=None):
    img = nib.Nifti1Image(data, affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


def run_cli(args) -> int:
    """Run ``pixeldeid deface`` (the defacing CLI plugin) in process; return the exit status."""
    import argparse

    from defacing import cli

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return cli.run(p.parse_args([str(a) for a in args]))


def write_mr_series(folder, tweak=None, spacing: float = 2.5) -> list:
    """Write :func:`moved_template_head` as a single-frame MR DICOM series (one file per
    axial slice, uncompressed) into ``folder``; return the file paths.

    ``tweak(k, ds)`` may change the data set of slice ``k`` before it is written (to
    damage a header).
    """
    from pathlib import Path

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    data, _ = moved_template_head(spacing=spacing)
    vol = np.clip(data, 0, None).astype(np.uint16)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series, study, f_o_r = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(vol.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, f_o_r
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN12345", "19610203"
        ds.StudyDate, ds.Modality, ds.InstanceNumber = "20240101", "MR", k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -130.0, -120.0 + spacing * k]
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = spacing
        arr = np.ascontiguousarray(vol[:, :, k].T)
        ds.Rows, ds.Columns = arr.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = arr.tobytes()
        if tweak is not None:
            tweak(k, ds)
        path = folder / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def output_of(out, src):
    """Where ``pixeldeid deface`` wrote the input ``src`` (from the private map
    ``OUT/.pixeldeid/deface_map.csv``): outputs are named by a keyed hash, not the input."""
    import csv
    import os
    from pathlib import Path

    with open(Path(out) / ".pixeldeid" / "deface_map.csv", newline="", encoding="utf-8") as fh:
        rows = {r["source"]: r for r in csv.DictReader(fh)}
    return Path(out) / rows[os.path.abspath(src)]["output"]


def deface_report(out) -> dict:
    """``OUT/.pixeldeid/deface_report.json`` (it names the inputs: not in the release)."""
    import json
    from pathlib import Path

    return json.loads((Path(out) / ".pixeldeid" / "deface_report.json").read_text())
