"""Synthetic DICOM whole-slide image series with planted identity.

Built to openslide's DICOM rules (``openslide-vendor-dicom.c``): VL Whole Slide
Microscopy Image Storage instances sharing one SeriesInstanceUID, TILED_FULL
frames; pyramid levels are ``.../VOLUME/...`` instances, associated images
``LABEL``, ``OVERVIEW`` and ``THUMBNAIL`` by ImageType value 3.

Identity is planted in the patient module, accession number, container
identifier, device serial number, study/series/acquisition dates, image
comments, the label's LabelText and BarcodeValue, and the label pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .philips import jpeg_bytes, text_rgb, tissue_rgb

__all__ = ["DEFAULT_PLANTED", "WSI_SOP_CLASS", "make_dicom_wsi"]

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"

DEFAULT_PLANTED: dict[str, str] = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "MRN00442211",
    "PatientBirthDate": "19700412",
    "AccessionNumber": "ACC-S23-4411",
    "ContainerIdentifier": "SLIDE-S23-4411-A1",
    "DeviceSerialNumber": "SCANSN-778123",
    "StudyDate": "20230514",
    "ImageComments": "scanned for Jane Doe by jsmith",
    "LabelText": "S23-4411 DOE JANE",
    "BarcodeValue": "BC-99887766-DOE",
    "OperatorsName": "SMITH^JOHN",
}


def _base(planted: dict[str, str], uids: dict[str, str], image_type: str, flavor: str,
          total: tuple[int, int], tile: tuple[int, int], n_frames: int, number: int,
          sop_uid: str, transfer_syntax: str):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = WSI_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7433.1.1"
    ds = Dataset()
    ds.file_meta = meta
    ds.ImageType = ["DERIVED" if flavor == "VOLUME" else "ORIGINAL", "PRIMARY", image_type,
                    flavor]
    ds.SOPClassUID = WSI_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = planted["StudyDate"]
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093011"
    ds.AcquisitionDateTime = planted["StudyDate"] + "093011"
    ds.AccessionNumber = planted["AccessionNumber"]
    ds.Modality = "SM"
    ds.Manufacturer = "Synthetic"
    ds.ManufacturerModelName = "SynthScanner"
    ds.DeviceSerialNumber = planted["DeviceSerialNumber"]
    ds.SoftwareVersions = "1.0"
    ds.ReferringPhysicianName = "WHO^REFERRED"
    ds.OperatorsName = planted["OperatorsName"]
    ds.PatientName = planted["PatientName"]
    ds.PatientID = planted["PatientID"]
    ds.PatientBirthDate = planted["PatientBirthDate"]
    ds.PatientSex = "F"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.StudyID = "S23-4411"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.PositionReferenceIndicator = "SLIDE_CORNER"
    ds.ImageComments = planted["ImageComments"]
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.ContainerIdentifier = planted["ContainerIdentifier"]
    ds.IssuerOfTheContainerIdentifierSequence = Sequence([])
    spec = Dataset()
    spec.SpecimenIdentifier = planted["ContainerIdentifier"] + "-SP"
    spec.SpecimenUID = uids["specimen"]
    spec.IssuerOfTheSpecimenIdentifierSequence = Sequence([])
    spec.SpecimenPreparationSequence = Sequence([])
    ds.SpecimenDescriptionSequence = Sequence([spec])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB" if transfer_syntax.endswith("1.2.1") else "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.NumberOfFrames = n_frames
    ds.Rows, ds.Columns = tile[1], tile[0]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES" if image_type in ("LABEL", "OVERVIEW") else "NO"
    ds.SpecimenLabelInImage = "YES" if image_type in ("LABEL", "OVERVIEW") else "NO"
    ds.FocusMethod = "AUTO"
    ds.ExtendedDepthOfField = "NO"
    ds.ImagedVolumeWidth = total[0] * 0.00025
    ds.ImagedVolumeHeight = total[1] * 0.00025
    ds.ImagedVolumeDepth = 0.001
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = total
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfOpticalPaths = 1
    origin = Dataset()
    origin.XOffsetInSlideCoordinateSystem = 20.0
    origin.YOffsetInSlideCoordinateSystem = 40.0
    ds.TotalPixelMatrixOriginSequence = Sequence([origin])
    ds.ImageOrientationSlide = [0, -1, 0, -1, 0, 0]
    op = Dataset()
    op.OpticalPathIdentifier = "1"
    ill = Dataset()
    ill.CodeValue, ill.CodingSchemeDesignator, ill.CodeMeaning = "111744", "DCM", "Brightfield illumination"
    op.IlluminationTypeCodeSequence = Sequence([ill])
    col = Dataset()
    col.CodeValue, col.CodingSchemeDesignator, col.CodeMeaning = "414298005", "SCT", "Full Spectrum"
    op.IlluminationColorCodeSequence = Sequence([col])
    ds.OpticalPathSequence = Sequence([op])
    sfg = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [0.00025 * 2 ** (number - 1)] * 2
    pm.SliceThickness = 0.001
    sfg.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([sfg])
    return ds


def _tiles(img: np.ndarray, tile: int) -> list[np.ndarray]:
    h, w = img.shape[:2]
    rows, cols = -(-h // tile), -(-w // tile)
    pad = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    pad[:h, :w] = img
    return [pad[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] for r in range(rows) for c in range(cols)]


def make_dicom_wsi(folder: str | os.PathLike, *, width: int = 512, height: int = 384,
                   tile: int = 128, levels: int = 2, label: bool = True, overview: bool = True,
                   planted: dict[str, str] | None = None, seed: int = 0,
                   overview_jpeg: bool = False) -> dict[str, str]:
    """Write a synthetic DICOM WSI series (one file per instance) into ``folder``.

    Levels are JPEG baseline, tiled full; the label and overview are single-frame
    uncompressed RGB. Files are named ``level-N.dcm``, ``label.dcm``,
    ``overview.dcm`` (JPEG baseline with ``overview_jpeg``). Returns the planted values, with the original UIDs under
    ``uid_*`` keys (a leaked original UID links the output back to the source).
    """
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

    p = {**DEFAULT_PLANTED, **(planted or {})}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng_prefix = "1.2.826.0.1.3680043.9.7433.2."
    uids = {k: generate_uid(rng_prefix, entropy_srcs=[k, str(seed), p["PatientID"]])
            for k in ("study", "series", "frame", "specimen")}
    img = tissue_rgb(height, width, seed)
    number = 1
    for lv in range(levels):
        if lv:
            h2, w2 = img.shape[0] // 2, img.shape[1] // 2
            img = img[: h2 * 2, : w2 * 2].reshape(h2, 2, w2, 2, 3).mean((1, 3)).astype(np.uint8)
        frames = _tiles(img, tile)
        sop = generate_uid(rng_prefix, entropy_srcs=["level", str(lv), str(seed), p["PatientID"]])
        ds = _base(p, uids, "VOLUME", "NONE" if lv == 0 else "RESAMPLED",
                   (img.shape[1], img.shape[0]), (tile, tile), len(frames), number, sop,
                   JPEGBaseline8Bit)
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.PixelData = encapsulate([jpeg_bytes(f) for f in frames])
        ds["PixelData"].VR = "OB"
        ds.save_as(folder / f"level-{lv}.dcm", enforce_file_format=True)
        p[f"uid_sop_level{lv}"] = sop
        number += 1
    assoc = []
    if label:
        im = text_rgb([p["LabelText"], p["BarcodeValue"], p["PatientName"]], 64, 160)
        assoc.append(("LABEL", im, "label"))
    if overview:
        im = tissue_rgb(96, 256, seed + 1)
        im[:, :96] = text_rgb([p["LabelText"][:12], p["BarcodeValue"][:12]], 96, 96)
        assoc.append(("OVERVIEW", im, "overview"))
    for kind, im, name in assoc:
        sop = generate_uid(rng_prefix, entropy_srcs=[name, str(seed), p["PatientID"]])
        jpeg = kind == "OVERVIEW" and overview_jpeg
        ds = _base(p, uids, kind, "NONE", (im.shape[1], im.shape[0]), (im.shape[1], im.shape[0]),
                   1, number, sop, JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian)
        if kind == "LABEL":
            ds.LabelText = p["LabelText"]
            ds.BarcodeValue = p["BarcodeValue"]
        if jpeg:
            ds.LossyImageCompression = "01"
            ds.LossyImageCompressionMethod = "ISO_10918_1"
            ds.PixelData = encapsulate([jpeg_bytes(im)])
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = im.tobytes()
        ds.save_as(folder / f"{name}.dcm", enforce_file_format=True)
        p[f"uid_sop_{name}"] = sop
        number += 1
    for k, v in uids.items():
        p[f"uid_{k}"] = v
    return p
