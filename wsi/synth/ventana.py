"""Synthetic Ventana BIF slides with planted identity.

Built to openslide's Ventana rules (``openslide-vendor-ventana.c``): IFD 0 has
an XMP packet (tag 700) whose root is ``iScan`` (or ``Metadata/iScan``); tiled
levels have ImageDescription ``level=N mag=M``; level 0 carries an
``EncodeInfo`` XMP (AOIs, tile joints); the IFD described ``Label Image`` (or
``Label_Image``) is the macro (the whole-slide photo including the label) and
``Thumbnail`` the thumbnail.

Identity is planted in the iScan attributes BaseName, UnitNumber, UserName,
Barcode1D, Barcode2D, BuildDate, ScanDate (hypothetical extra), SlideAnnotation,
a child ``AnnotationText`` element, and the label-image pixels.
"""

from __future__ import annotations

import os
from xml.sax.saxutils import quoteattr

from .philips import half, text_rgb, tissue_rgb

__all__ = ["DEFAULT_PLANTED", "make_ventana"]

DEFAULT_PLANTED: dict[str, str] = {
    "BaseName": "S23-4411_DOE_JANE",
    "UnitNumber": "BI-SN-552301",
    "UserName": "lab-user-jdoe",
    "Barcode1D": "VB1D-99887766",
    "Barcode2D": "VB2D-DOEJANE-1970",
    "BuildDate": "12/20/2017 10:20:30 AM",
    "ScanDate": "05/14/2023 09:30:11 AM",
    "SlideAnnotation": "Patient Jane Doe MRN00442211",
    "AnnotationText": "pen-note-DOE-J-00442211",
}


def _iscan_xml(p: dict[str, str], mag: int, mpp: float) -> str:
    attrs = {
        "BaseName": p["BaseName"], "Barcode1D": p["Barcode1D"], "Barcode2D": p["Barcode2D"],
        "BuildDate": p["BuildDate"], "BuildVersion": "3.3.1.1", "CameraType": "Multi-Sensor",
        "FocusMode": "Auto", "Magnification": str(mag), "ScanDate": p["ScanDate"],
        "ScanMode": "Regular", "ScanRes": f"{mpp:.6f}", "ScannerModel": "VENTANA DP 200",
        "SlideAnnotation": p["SlideAnnotation"], "UnitNumber": p["UnitNumber"],
        "UserName": p["UserName"], "Z-layers": "1",
    }
    a = " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
    return ('<?xml version="1.0" encoding="utf-8"?><Metadata><iScan ' + a + '>'
            '<AOI0 Left="10" Top="20" Right="300" Bottom="200" />'
            f'<AnnotationText>{p["AnnotationText"]}</AnnotationText>'
            '</iScan></Metadata>')


def _encode_info(cols: int, rows: int, tile: int) -> str:
    joints = []
    # tiles are numbered from 1, rows from the bottom, serpentine
    def number(col: int, row_from_bottom: int) -> int:
        c = col if row_from_bottom % 2 == 0 else cols - 1 - col
        return row_from_bottom * cols + c + 1
    for rb in range(rows):
        for c in range(cols - 1):
            joints.append(f'<TileJointInfo Direction="RIGHT" Tile1="{number(c, rb)}" '
                          f'Tile2="{number(c + 1, rb)}" OverlapX="0" OverlapY="0" Confidence="100"/>')
    for rb in range(rows - 1):
        for c in range(cols):
            joints.append(f'<TileJointInfo Direction="UP" Tile1="{number(c, rb)}" '
                          f'Tile2="{number(c, rb + 1)}" OverlapX="0" OverlapY="0" Confidence="100"/>')
    return ('<?xml version="1.0" encoding="utf-8"?><EncodeInfo Ver="2">'
            '<SlideStitchInfo>'
            f'<ImageInfo AOIScanned="1" AOIIndex="0" Width="{tile}" Height="{tile}" '
            f'NumRows="{rows}" NumCols="{cols}" Pos-X="0" Pos-Y="0">'
            + "".join(joints) + '</ImageInfo></SlideStitchInfo>'
            '<AoiOrigin><AOI0 OriginX="0" OriginY="0"/></AoiOrigin></EncodeInfo>')


def make_ventana(path: str | os.PathLike, *, width: int = 1024, height: int = 768,
                 tile: int = 256, levels: int = 3, mag: int = 40, mpp: float = 0.25,
                 planted: dict[str, str] | None = None, label_description: str = "Label_Image",
                 encode_info: bool = True, bigtiff: bool = False, seed: int = 0) -> dict[str, str]:
    """Write a synthetic Ventana BIF to ``path`` and return the planted values.

    IFD 0 is the label image carrying the iScan XMP (as in scanner output), IFD 1
    the thumbnail, then the pyramid levels. ``width``/``height`` should be
    multiples of ``tile`` (BIF stores whole tiles).
    """
    import tifffile

    p = {**DEFAULT_PLANTED, **(planted or {})}
    base = tissue_rgb(height, width, seed)
    pyramid = [base]
    for _ in range(1, levels):
        pyramid.append(half(pyramid[-1]))
    label = tissue_rgb(200, 600, seed + 1)
    label[:, :200] = text_rgb([p["Barcode2D"], p["BaseName"], p["UserName"]], 200, 200)
    thumb = pyramid[-1][::2, ::2].copy()
    xmp = _iscan_xml(p, mag, mpp).encode("utf-8")
    opts = dict(compression="jpeg", photometric="rgb", metadata=None, software=False)
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        tw.write(label, description=label_description, rowsperstrip=16,
                 extratags=[(700, 1, len(xmp), xmp, True)], **opts)
        tw.write(thumb, description="Thumbnail", rowsperstrip=16, **opts)
        for i, lvl in enumerate(pyramid):
            extra = []
            if i == 0 and encode_info:
                rows, cols = -(-lvl.shape[0] // tile), -(-lvl.shape[1] // tile)
                ei = _encode_info(cols, rows, tile).encode("utf-8")
                extra = [(700, 1, len(ei), ei, True)]
            tw.write(lvl, tile=(tile, tile), description=f"level={i} mag={mag / 2 ** i:g} quality=90",
                     extratags=extra, **opts)
    return dict(p)
