"""Synthetic datasets for the pixel access and redaction tests, and pydicom-data paths."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

SC = "1.2.840.10008.5.1.4.1.1.7"


def pydicom_data(name: str) -> Path:
    """A pydicom-data file (skip when the package or the file is missing)."""
    try:
        import data_store
    except ImportError:
        pytest.skip("pydicom-data not installed")
    path = Path(data_store.__file__).parent / "data" / name
    if not path.is_file():
        pytest.skip(f"pydicom-data has no {name}")
    return path


def read(name: str) -> FileDataset:
    return pydicom.dcmread(pydicom_data(name))


def base_dataset(ts: str = ExplicitVRLittleEndian, sop_class: str = SC) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Test^Pixel"
    ds.PatientID = "PX1"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    return ds


def native_dataset(photometric: str, *, bits: int = 8, signed: bool = False, planar: int = 0,
                   frames: int = 1, rows: int = 24, cols: int = 34, big_endian: bool = False,
                   seed: int = 0) -> tuple[FileDataset, np.ndarray]:
    """An uncompressed dataset and its stored values ``(frames, rows, cols[, 3])``.

    YBR_FULL_422 is stored as pixel pairs ``Y1 Y2 Cb Cr`` (the array holds the expanded
    ``Y Cb Cr`` per pixel, chroma equal on each pair). PALETTE COLOR gets a 256-entry
    16-bit LUT whose darkest entry is index 17.
    """
    rng = np.random.default_rng(seed)
    ds = base_dataset(ExplicitVRBigEndian if big_endian else ExplicitVRLittleEndian)
    ds.set_original_encoding(False, not big_endian)
    samples = 3 if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") else 1
    if signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    dtype = np.dtype(("i" if signed else "u") + ("1" if bits <= 8 else "2"))
    shape = (frames, rows, cols) if samples == 1 else (frames, rows, cols, 3)
    top = hi if bits <= 8 else min(hi, 3000)
    arr = rng.integers(max(lo + 1, -3000), top, size=shape, endpoint=True).astype(dtype)
    if photometric == "PALETTE COLOR":
        arr = rng.integers(0, 256, size=shape).astype(np.uint8 if bits == 8 else np.uint16)
        ramp = np.linspace(65535, 2000, 256).astype(np.uint16)
        ramp[17] = 0
        for colour in ("Red", "Green", "Blue"):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{colour}PaletteColorLookupTableData", ramp.astype("<u2").tobytes())
    if photometric == "YBR_FULL_422":
        arr[..., 1::2, 1:] = arr[..., 0::2, 1:]  # chroma shared per pair (axis: columns)
        arr = arr.reshape(shape)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    if samples == 3:
        ds.PlanarConfiguration = planar
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = stored_bytes(arr, photometric, planar, big_endian)
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    return ds, arr


def stored_bytes(arr: np.ndarray, photometric: str, planar: int = 0,
                 big_endian: bool = False) -> bytes:
    """The native Pixel Data bytes of stored values (padded to even length)."""
    if photometric == "YBR_FULL_422":
        y = arr[..., 0]
        pairs = np.stack([y[..., 0::2], y[..., 1::2], arr[..., 0::2, 1], arr[..., 0::2, 2]], -1)
        data = pairs.astype(np.uint8).tobytes()
    else:
        if arr.ndim == 4 and planar == 1:
            arr = arr.transpose(0, 3, 1, 2)
        order = ">" if big_endian else "<"
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder(order)).tobytes()
    return data + b"\0" * (len(data) % 2)


def roundtrip(ds: Dataset) -> FileDataset:
    """The dataset written to bytes and read back."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))
