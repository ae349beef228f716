"""Synthetic Leica SCN slides with planted identity.

Built to openslide's Leica rules (``openslide-vendor-leica.c``): BigTIFF whose
IFD 0 is tiled with an ImageDescription XML in the default namespace
``http://www.leica-microsystems.com/scn/2010/10/01``: ``scn/collection`` (size in
clicks, a ``barcode``) holding ``image`` elements (``creationDate``, ``device``,
``pixels/dimension@ifd``, ``view``, ``scanSettings``); an image whose view covers
the whole collection at offset 0 is the macro.

Identity is planted in the barcode (base64, as openslide decodes it), the collection and image names, the
creation dates, a device serial number attribute and the macro pixels.
"""

from __future__ import annotations

import base64
import os

import numpy as np

from .philips import half, text_rgb, tissue_rgb

__all__ = ["DEFAULT_PLANTED", "LEICA_XMLNS", "make_leica"]

LEICA_XMLNS = "http://www.leica-microsystems.com/scn/2010/10/01"

DEFAULT_PLANTED: dict[str, str] = {
    "barcode": "LCA-BC-S23-4411-DOE",
    "collection_name": "Doe_Jane_S23-4411",
    "image_name": "Doe_Jane_main_MRN00442211",
    "creation_date": "2023-05-14T09:30:11.123Z",
    "macro_creation_date": "2023-05-14T09:28:02.456Z",
    "serial": "SCN400-SN-7781",
    "user": "scan-op-jdoe",
}


def _pyramid(img: np.ndarray, n: int) -> list[np.ndarray]:
    out = [img]
    for _ in range(1, n):
        out.append(half(out[-1]))
    return out


def make_leica(path: str | os.PathLike, *, width: int = 1024, height: int = 768,
               tile: int = 256, levels: int = 3, mpp: float = 0.5,
               planted: dict[str, str] | None = None, macro: bool = True,
               macro_after_first: bool = False, macro_first: bool = False,
               seed: int = 0) -> dict[str, str]:
    """Write a synthetic Leica SCN (BigTIFF) to ``path`` and return the planted values.

    The main image's IFDs come first (0..levels-1), then the macro's two IFDs; with
    ``macro_after_first`` the macro IFDs sit between main levels 0 and 1 (so removing
    them renumbers the later levels); with ``macro_first`` the macro's largest IFD is
    IFD 0 and carries the XML.
    """
    import tifffile

    p = {**DEFAULT_PLANTED, **(planted or {})}
    main = _pyramid(tissue_rgb(height, width, seed), levels)
    nm_per_px = mpp * 1000
    # the collection (whole slide) is 4x the main image; macro is 480x360 px of it
    coll_x, coll_y = int(width * nm_per_px * 3), int(height * nm_per_px * 3)
    macro_img = tissue_rgb(360, 480, seed + 1)
    macro_img[:, :120] = text_rgb([p["barcode"][:10], p["barcode"][10:], p["collection_name"][:10]], 360, 120)
    macro_pyr = _pyramid(macro_img, 2)

    order = [("macro", 0), ("main", 0), ("macro", 1)] if (macro and macro_first) else [("main", 0)]
    if macro and macro_after_first and not macro_first:
        order += [("macro", i) for i in range(len(macro_pyr))]
    order += [("main", i) for i in range(1, levels)]
    if macro and not macro_after_first and not macro_first:
        order += [("macro", i) for i in range(len(macro_pyr))]
    ifd_of = {key: n for n, key in enumerate(order)}
    dims = "".join(f'<dimension sizeX="{m.shape[1]}" sizeY="{m.shape[0]}" ifd="{ifd_of["main", i]}" />'
                   for i, m in enumerate(main))
    mdims = "".join(f'<dimension sizeX="{m.shape[1]}" sizeY="{m.shape[0]}" ifd="{ifd_of["macro", i]}" />'
                    for i, m in enumerate(macro_pyr)) if macro else ""
    settings = ('<scanSettings><objectiveSettings><objective>20</objective></objectiveSettings>'
                '<illuminationSettings><numericalAperture>0.4</numericalAperture>'
                '<illuminationSource>brightfield</illuminationSource></illuminationSettings>'
                f'<user>{p["user"]}</user></scanSettings>')
    main_xml = (f'<image name="{p["image_name"]}" uuid="urn:uuid:11111111-2222-3333-4444-555555555555">'
                f'<creationDate>{p["creation_date"]}</creationDate>'
                f'<device model="Leica SCN400;Leica SCN" version="1.4.0.11235 2012/05/14 21:57:55" '
                f'serialNumber="{p["serial"]}" />'
                f'<pixels sizeX="{width}" sizeY="{height}">{dims}</pixels>'
                f'<view sizeX="{int(width * nm_per_px)}" sizeY="{int(height * nm_per_px)}" '
                f'offsetX="{int(width * nm_per_px)}" offsetY="{int(height * nm_per_px)}" spacingZ="0" />'
                + settings + '</image>')
    macro_xml = ('<image name="macro" uuid="urn:uuid:66666666-7777-8888-9999-000000000000">'
                 f'<creationDate>{p["macro_creation_date"]}</creationDate>'
                 f'<device model="Leica SCN400;Leica SCN" version="1.4.0.11235" serialNumber="{p["serial"]}" />'
                 f'<pixels sizeX="480" sizeY="360">{mdims}</pixels>'
                 f'<view sizeX="{coll_x}" sizeY="{coll_y}" offsetX="0" offsetY="0" spacingZ="0" />'
                 '<scanSettings><objectiveSettings><objective>0.16</objective></objectiveSettings>'
                 '<illuminationSettings><illuminationSource>brightfield</illuminationSource>'
                 '</illuminationSettings></scanSettings></image>') if macro else ""
    xml = ('<?xml version="1.0" encoding="utf-8"?>\n'
           f'<scn xmlns="{LEICA_XMLNS}">'
           f'<collection name="{p["collection_name"]}" uuid="urn:uuid:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" '
           f'sizeX="{coll_x}" sizeY="{coll_y}">'
           f'<barcode>{base64.b64encode(p["barcode"].encode()).decode("ascii")}</barcode>' + main_xml + macro_xml + '</collection></scn>')
    res = 1e4 / mpp  # pixels per cm
    opts = dict(compression="jpeg", photometric="rgb", metadata=None, software=False)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for n, (kind, i) in enumerate(order):
            if kind == "main":
                r = res / 2 ** i
                tw.write(main[i], tile=(tile, tile), description=xml if n == 0 else None,
                         resolution=(r, r), resolutionunit="CENTIMETER", **opts)
            else:
                tw.write(macro_pyr[i], tile=(tile // 2, tile // 2),
                         description=xml if n == 0 else None, **opts)
    out = dict(p)
    out["barcode_b64"] = base64.b64encode(p["barcode"].encode()).decode("ascii")
    return out
