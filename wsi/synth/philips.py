"""Synthetic Philips TIFF slides with planted identity.

Built to openslide's Philips rules (``openslide-vendor-philips.c``): Software
starts with ``Philips``; IFD 0 ImageDescription is a ``DataObject`` of
ObjectType ``DPUfsImport``; one ``WSI`` DPScannedImage whose
PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE has one DICOM_PIXEL_SPACING per tiled
level; later tiled IFDs are reduced-resolution; stripped IFDs whose
ImageDescription starts with ``Label`` / ``Macro`` are the associated images,
and LABELIMAGE / MACROIMAGE DPScannedImages carry base64 JPEGs in the XML.

Identity is planted in: the base64 barcode, the operator, the acquisition and
calibration dates, the device serial number, a source file name, a comment
after the root element (the XML "tail"), the label and macro pixels and the
base64 label and macro JPEGs inside the XML.
"""

from __future__ import annotations

import base64
import os

import numpy as np

__all__ = ["DEFAULT_PLANTED", "make_philips", "tissue_rgb", "text_rgb", "jpeg_bytes", "half"]

DEFAULT_PLANTED: dict[str, str] = {
    "barcode": "PHB-S23-7731-DOEJANE",
    "operator": "OPERATOR-JDOE-4411",
    "serial": "FMT-SN-99812",
    "acquisition_datetime": "20230514093011.000000",
    "calibration_date": "20230401",
    "source_file": "C:/scans/Doe_Jane_MRN00442211.tiff",
    "tail": "MRN00442211-DOE-JANE-TAIL",
}


def tissue_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth pink-purple tissue-like RGB image (uint8), deterministic in ``seed``.

    Images over 4096 x 4096 repeat a 2048 x 2048 patch (benchmark-sized slides).
    """
    if height * width > 4096 * 4096:
        patch = tissue_rgb(2048, 2048, seed)
        return np.tile(patch, (-(-height // 2048), -(-width // 2048), 1))[:height, :width]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.zeros((height, width), np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.15, 0.4) * max(height, width)
        field += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    field = field / max(float(field.max()), 1e-6)
    noise = rng.normal(0, 6, (height, width)).astype(np.float32)
    r = 245 - 60 * field + noise
    g = 240 - 140 * field + noise
    b = 245 - 50 * field + noise
    return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)


def half(img: np.ndarray) -> np.ndarray:
    """Downsample an RGB image by two (box filter; plain decimation for large images)."""
    h2, w2 = img.shape[0] // 2, img.shape[1] // 2
    if h2 * w2 > 4096 * 4096:
        return np.ascontiguousarray(img[: h2 * 2:2, : w2 * 2:2])
    return img[: h2 * 2, : w2 * 2].reshape(h2, 2, w2, 2, 3).mean((1, 3)).astype(np.uint8)


def text_rgb(lines: list[str], height: int, width: int) -> np.ndarray:
    """White RGB image with ``lines`` of black text (a slide label)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        d.text((4, 4 + 14 * i), line, fill=(0, 0, 0))
    return np.asarray(im)


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode an RGB array as a baseline JPEG."""
    import imagecodecs

    return bytes(imagecodecs.jpeg_encode(rgb, level=quality))


def _attr(name: str, value: str, pmsvr: str = "IString", group: str = "0x301D",
          element: str = "0x1000") -> str:
    return (f'<Attribute Name="{name}" Group="{group}" Element="{element}" '
            f'PMSVR="{pmsvr}">{value}</Attribute>')


def _xml(planted: dict[str, str], n_levels: int, mpp: float, level_sizes: list[tuple[int, int]],
         label_jpeg: bytes | None, macro_jpeg: bytes | None, tail: bool) -> str:
    reps = []
    for i in range(n_levels):
        mm = mpp * 1e-3 * 2 ** i
        w, h = level_sizes[i]
        reps.append(
            '<DataObject ObjectType="PixelDataRepresentation">'
            + _attr("DICOM_PIXEL_SPACING", f"&quot;{mm:.9g}&quot; &quot;{mm:.9g}&quot;",
                    "IDoubleArray", "0x0028", "0x0030")
            + _attr("PIIM_PIXEL_DATA_REPRESENTATION_COLUMNS", str(w), "IUInt32", "0x2001", "0x115E")
            + _attr("PIIM_PIXEL_DATA_REPRESENTATION_NUMBER", str(i), "IUInt16", "0x2001", "0x0082")
            + _attr("PIIM_PIXEL_DATA_REPRESENTATION_ROWS", str(h), "IUInt32", "0x2001", "0x1160")
            + "</DataObject>")
    wsi = ('<DataObject ObjectType="DPScannedImage">'
           + _attr("DICOM_DERIVATION_DESCRIPTION",
                   f"tiff-useBigTIFF=0-useJpegTables=1-source={planted['source_file']}",
                   "IString", "0x0008", "0x2111")
           + _attr("DICOM_LOSSY_IMAGE_COMPRESSION", "01", "IString", "0x0028", "0x2110")
           + _attr("DICOM_PIXEL_SPACING", f"&quot;{mpp * 1e-3:.9g}&quot; &quot;{mpp * 1e-3:.9g}&quot;",
                   "IDoubleArray", "0x0028", "0x0030")
           + _attr("DICOM_LOSSY_IMAGE_COMPRESSION_METHOD", "&quot;PHILIPS_DP_1_0&quot;",
                   "IStringArray", "0x0028", "0x2114")
           + _attr("DICOM_LOSSY_IMAGE_COMPRESSION_RATIO", "&quot;3&quot;", "IDoubleArray",
                   "0x0028", "0x2112")
           + _attr("DICOM_ACQUISITION_DATETIME", planted["acquisition_datetime"], "IString",
                   "0x0008", "0x002A")
           + '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" Group="0x1001" '
             'Element="0x8B01" PMSVR="IDataObjectArray"><Array>' + "".join(reps) + "</Array></Attribute>"
           + _attr("PIM_DP_IMAGE_TYPE", "WSI", "IString", "0x301D", "0x1004")
           + _attr("PIM_DP_IMAGE_COLUMNS", str(level_sizes[0][0]), "IUInt32", "0x301D", "0x1007")
           + _attr("PIM_DP_IMAGE_ROWS", str(level_sizes[0][1]), "IUInt32", "0x301D", "0x1006")
           + "</DataObject>")
    assoc = ""
    for kind, data in (("LABELIMAGE", label_jpeg), ("MACROIMAGE", macro_jpeg)):
        if data is None:
            continue
        assoc += ('<DataObject ObjectType="DPScannedImage">'
                  + _attr("PIM_DP_IMAGE_DATA", base64.b64encode(data).decode("ascii"),
                          "IString", "0x301D", "0x1005")
                  + _attr("PIM_DP_IMAGE_TYPE", kind, "IString", "0x301D", "0x1004")
                  + "</DataObject>")
    barcode64 = base64.b64encode(planted["barcode"].encode()).decode("ascii")
    xml = ('<?xml version="1.0" encoding="UTF-8" ?>\n'
           '<DataObject ObjectType="DPUfsImport">'
           + _attr("DICOM_ACQUISITION_DATETIME", planted["acquisition_datetime"], "IString",
                   "0x0008", "0x002A")
           + _attr("DICOM_DATE_OF_LAST_CALIBRATION", f"&quot;{planted['calibration_date']}&quot;",
                   "IStringArray", "0x0018", "0x1200")
           + _attr("DICOM_TIME_OF_LAST_CALIBRATION", "&quot;112108&quot;", "IStringArray",
                   "0x0018", "0x1201")
           + _attr("DICOM_DEVICE_SERIAL_NUMBER", planted["serial"], "IString", "0x0018", "0x1000")
           + _attr("DICOM_MANUFACTURER", "PHILIPS", "IString", "0x0008", "0x0070")
           + _attr("DICOM_MANUFACTURERS_MODEL_NAME", "UFS Scanner", "IString", "0x0008", "0x1090")
           + _attr("DICOM_SOFTWARE_VERSIONS", "&quot;1.6.6186&quot; &quot;4.0.3&quot;",
                   "IStringArray", "0x0018", "0x1020")
           + _attr("PIIM_DP_SCANNER_OPERATOR_ID", planted["operator"], "IString", "0x101D", "0x100A")
           + _attr("PIM_DP_UFS_BARCODE", barcode64, "IString", "0x301D", "0x1002")
           + _attr("PIM_DP_UFS_INTERFACE_VERSION", "3.0", "IString", "0x301D", "0x1001")
           + '<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" '
             'PMSVR="IDataObjectArray"><Array>' + wsi + assoc + "</Array></Attribute>"
           + "<!-- scanner note: " + planted["operator"] + " -->"
           + "</DataObject>")
    if tail:
        xml += f"\n<!-- {planted['tail']} -->\n"
    return xml


def make_philips(path: str | os.PathLike, *, width: int = 1024, height: int = 768,
                 tile: int = 256, levels: int = 3, mpp: float = 0.25,
                 planted: dict[str, str] | None = None, label_ifd: bool = True,
                 macro_ifd: bool = True, xml_images: bool = True, tail: bool = True,
                 bigtiff: bool = False, private_tag: bool = True, seed: int = 0) -> dict[str, str]:
    """Write a synthetic Philips TIFF to ``path`` and return the planted values.

    With ``private_tag`` the first reduced level also carries the serial number in a
    private ASCII tag (65001), a place no vendor rule knows about.

    The returned mapping names each planted value; it includes ``label_b64`` and
    ``macro_b64`` (a slice of the base64 label/macro JPEG in the XML) when
    ``xml_images`` is set, so a test can check the XML images are gone.
    """
    import tifffile

    planted = {**DEFAULT_PLANTED, **(planted or {})}
    base = tissue_rgb(height, width, seed)
    pyramid = [base]
    for _ in range(1, levels):
        pyramid.append(half(pyramid[-1]))
    sizes = [(p.shape[1], p.shape[0]) for p in pyramid]
    label = text_rgb([planted["barcode"], planted["operator"]], 96, 240)
    macro = tissue_rgb(120, 360, seed + 1)
    macro[:, :120] = text_rgb([planted["barcode"][:16], planted["barcode"][16:]], 120, 120)
    label_jpeg = jpeg_bytes(label) if xml_images else None
    macro_jpeg = jpeg_bytes(macro) if xml_images else None
    xml = _xml(planted, levels, mpp, sizes, label_jpeg, macro_jpeg, tail)
    opts = dict(compression="jpeg", photometric="rgb", metadata=None)
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        tw.write(pyramid[0], tile=(tile, tile), description=xml, software="Philips DP v1.0",
                 subfiletype=0, **opts)
        for i, lvl in enumerate(pyramid[1:]):
            extra = [(65001, "s", 0, planted["serial"], True)] if private_tag and i == 0 else []
            tw.write(lvl, tile=(tile, tile), subfiletype=1, software=False, extratags=extra,
                     **opts)
        if label_ifd:
            tw.write(label, description="Label", software=False, rowsperstrip=32, **opts)
        if macro_ifd:
            tw.write(macro, description="Macro", software=False, rowsperstrip=32, **opts)
    out = dict(planted)
    out["barcode_b64"] = base64.b64encode(planted["barcode"].encode()).decode("ascii")
    if xml_images:
        # slices from the entropy-coded middle (JPEG headers are shared by any encoder run)
        lb, mb = (base64.b64encode(b).decode("ascii") for b in (label_jpeg, macro_jpeg))
        out["label_b64"] = lb[len(lb) // 2:len(lb) // 2 + 60]
        out["macro_b64"] = mb[len(mb) // 2:len(mb) // 2 + 60]
    return out
