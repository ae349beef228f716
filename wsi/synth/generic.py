"""Synthetic generic tiled TIFF and OME-TIFF slides with planted identity.

Both open in openslide as ``generic-tiff`` (tiled first page; levels are the tiled
pages). Identity is planted in ImageDescription (free text, or OME-XML with an
Experimenter, a Description, StructuredAnnotations, image Name and AcquisitionDate),
Artist, HostComputer, DocumentName, DateTime, an XMP packet, and a stripped label page
that openslide does not show.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

from . import ACCESSION, OPERATOR, PATIENT, Synth, text_image, tissue

__all__ = ["make_generic", "make_ome"]

DATETIME = "2025:03:04 05:06:07"
HOST = "scanner-pc-17.hospital.example"
#: (height, width) of the macro page
MACRO_SHAPE = (160, 480)


def _ome_macro(ifd: int, w: int, h: int) -> str:
    return (f'<Image ID="Image:1" Name="macro"><Pixels ID="Pixels:1" DimensionOrder="XYCZT" '
            f'Type="uint8" SizeX="{w}" SizeY="{h}" SizeC="3" SizeZ="1" SizeT="1" '
            'Interleaved="true"><Channel ID="Channel:1:0" SamplesPerPixel="3"/>'
            f'<TiffData IFD="{ifd}" PlaneCount="1"/></Pixels></Image>')


def _ome_xml(w: int, h: int, macro: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.openmicroscopy.org/Schemas/OME/2016-06 '
        'http://www.openmicroscopy.org/Schemas/OME/2016-06/ome.xsd" Creator="synth 1.0">'
        f'<Experimenter ID="Experimenter:0" FirstName="John" LastName="{OPERATOR}" '
        f'Email="{OPERATOR}@hospital.example"/>'
        f'<Image ID="Image:0" Name="{ACCESSION} {PATIENT}">'
        "<AcquisitionDate>2025-03-04T05:06:07</AcquisitionDate>"
        f"<Description>Biopsy of {PATIENT}, MRN 00998877</Description>"
        f'<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{w}" SizeY="{h}" '
        'SizeC="3" SizeZ="1" SizeT="1" PhysicalSizeX="0.25" PhysicalSizeY="0.25" Interleaved="true">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="3"/>'
        '<TiffData IFD="0" PlaneCount="1"/></Pixels></Image>' + macro +
        "<StructuredAnnotations><CommentAnnotation ID=\"Annotation:0\">"
        f"<Value>Referred by Dr Who; patient {PATIENT}</Value></CommentAnnotation>"
        "</StructuredAnnotations></OME>"
    )


def _xmp() -> bytes:
    return (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description>'
            f"<dc:creator>{OPERATOR}</dc:creator><dc:title>{ACCESSION}</dc:title>"
            f"</rdf:Description></rdf:RDF></x:xmpmeta>").encode()


def make_generic(path: str | os.PathLike, *, width: int = 1600, height: int = 1200,
                 tile: int = 256, levels: int = 3, ome: bool = False, label: bool = True,
                 compression: str = "jpeg", seed: int = 0, bigtiff: bool = False,
                 macro: bool = False, icc: bytes | None = None) -> Synth:
    """Write a generic tiled TIFF (or OME-TIFF with ``ome=True``); return what was planted.

    ``macro`` adds a stripped JPEG macro page after the pyramid (MACRO_SHAPE, the label
    text on its left quarter; ImageDescription "macro", or an OME Image named "macro"):
    ``info["macro_ifd"]`` is its page index. ``icc``: an ICC profile for the base level
    (TIFF tag InterColorProfile).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = tissue(height, width, seed)
    n_levels = 1 + sum(1 for k in range(1, levels)
                       if min(-(-height // 2 ** k), -(-width // 2 ** k)) >= tile // 2)
    mh, mw = MACRO_SHAPE
    macro_xml = _ome_macro(n_levels, mw, mh) if (ome and macro) else ""
    desc = (_ome_xml(width, height, macro_xml) if ome
            else f"Slide {ACCESSION} of {PATIENT}; scanned by {OPERATOR}")
    extratags = [
        (269, 2, 0, f"{ACCESSION}.tif", True),
        (315, 2, 0, OPERATOR, True),
        (316, 2, 0, HOST, True),
        (306, 2, 0, DATETIME, True),
        (700, 1, len(_xmp()), _xmp(), True),
    ]
    if icc:
        extratags.append((34675, 7, len(icc), icc, True))
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        tw.write(img, tile=(tile, tile), compression=compression, photometric="rgb",
                 description=desc, metadata=None, extratags=extratags,
                 resolution=(40000, 40000), resolutionunit="CENTIMETER")
        lv = img
        for _ in range(1, levels):
            lv = np.ascontiguousarray(lv[::2, ::2])
            if min(lv.shape[:2]) < tile // 2:
                break
            tw.write(lv, tile=(tile, tile), compression=compression, photometric="rgb",
                     subfiletype=1, metadata=None)
        if macro:
            mac = tissue(mh, mw, seed + 1)
            mac[:, : mw // 4] = text_image(mh, mw // 4, [ACCESSION[:5], ACCESSION[5:]])
            tw.write(mac, compression="jpeg", photometric="rgb", rowsperstrip=16,
                     description=None if ome else "macro", subfiletype=1, metadata=None)
        if label:
            lab = text_image(200, 300, [PATIENT, ACCESSION])
            tw.write(lab, compression="lzw", photometric="rgb", rowsperstrip=32,
                     description=f"label {PATIENT}", subfiletype=1, metadata=None)
    planted = [PATIENT, ACCESSION, OPERATOR, HOST, DATETIME]
    if ome:
        planted += ["00998877", "2025-03-04T05:06:07", f"{OPERATOR}@hospital.example"]
    return Synth(path, planted, (width, height),
                 {"ome": ome, **({"macro_ifd": n_levels} if macro else {})})


def make_ome(path: str | os.PathLike, **kw) -> Synth:
    """Write a synthetic OME-TIFF slide (see :func:`make_generic`)."""
    return make_generic(path, ome=True, **kw)
