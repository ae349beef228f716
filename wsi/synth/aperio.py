"""Synthetic Aperio SVS: tiled JPEG pyramid with shared JPEGTables, stripped thumbnail at
IFD 1, LZW label and JPEG macro, identity planted in ImageDescription, label and macro."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

from . import (
    ACCESSION,
    BARCODE,
    OPERATOR,
    PATIENT,
    SERIAL,
    Synth,
    j2k_tiles,
    jpeg_tiles,
    text_image,
    tissue,
)

__all__ = ["make_aperio", "rgb_to_ycbcr"]


def rgb_to_ycbcr(img: np.ndarray) -> np.ndarray:
    """Full-range (JFIF) YCbCr of an 8-bit RGB image."""
    r, g, b = (img[..., k].astype(np.float32) for k in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.clip(np.stack([y, cb, cr], -1).round(), 0, 255).astype(np.uint8)


def _desc(w: int, h: int, tile: int, extra: str, date: str, time: str, gt450: bool) -> str:
    head = ("Aperio Leica Biosystems GT450 v1.0.1" if gt450 else "Aperio Image Library v12.0.15")
    return (f"{head} \r\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) JPEG/RGB Q=80"
            f"|AppMag = 40|StripeWidth = 992|ScanScope ID = {SERIAL}|Filename = {ACCESSION}"
            f"|Title = {PATIENT}|Date = {date}|Time = {time}|Time Zone = GMT-05:00"
            f"|User = {OPERATOR}|MPP = 0.2520|Left = 25.4|Top = 18.1|Barcode = {BARCODE}"
            f"|DSR ID = slidehost01.example.org|ImageID = 991234|OriginalWidth = {w}"
            f"|OriginalHeight = {h}{extra}")


def make_aperio(path: str | os.PathLike, *, width: int = 2000, height: int = 1500,
                tile: int = 240, levels: int = 3, gt450: bool = False, seed: int = 0,
                label: bool = True, macro: bool = True, thumbnail: bool = True,
                bigtiff: bool = False, sticker: bool = False, j2k: bool | str = False,
                private_tag: bool = False) -> Synth:
    """Write a synthetic Aperio slide and return what was planted in it.

    With ``j2k`` the pyramid tiles are JPEG 2000 codestreams (Aperio compression 33005,
    RGB, lossy like a scanner's "J2K" setting) instead of JPEG with shared tables;
    ``j2k="ycbcr"`` stores YCbCr components (33003; openslide converts them to RGB).
    ``private_tag`` writes the operator and accession into a private ASCII tag (65001) of
    the thumbnail, a place no Aperio rule knows about.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    date, time = "11/23/26", "13:45:07"
    img = tissue(height, width, seed)
    if sticker:  # a paper label stuck on the tissue area, with an accession number
        st = text_image(480, 1500, [ACCESSION])
        img[300:300 + st.shape[0], 250:250 + st.shape[1]] = st[: height - 300, : width - 250]
    desc0 = _desc(width, height, tile, "", date, time, gt450)
    lab = text_image(300, 360, [PATIENT, ACCESSION, "DOB 1961-02-03"])
    mac = np.concatenate([text_image(400, 330, [PATIENT, ACCESSION], bg="#dddddd"),
                          tissue(400, 870, seed + 1)], axis=1)
    head = desc0.split("|", 1)[0].split("\r\n")[0]
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        def tiled(im: np.ndarray, description: str, subfiletype: int = 0) -> None:
            if j2k:
                ycc = j2k == "ycbcr"
                tw.write(iter(j2k_tiles(rgb_to_ycbcr(im) if ycc else im, tile)),
                         shape=im.shape, dtype=np.uint8, tile=(tile, tile),
                         compression=33003 if ycc else 33005, photometric="rgb",
                         description=description.replace("JPEG/RGB Q=80", "J2K/KDU Q=70"),
                         subfiletype=subfiletype, metadata=None)
                return
            tables, tiles = jpeg_tiles(im, tile)
            tw.write(iter(tiles), shape=im.shape, dtype=np.uint8, tile=(tile, tile),
                     compression=7, photometric="rgb", description=description,
                     subfiletype=subfiletype, metadata=None,
                     extratags=[(347, 7, len(tables), tables, True)],
                     subsampling=(2, 2))

        tiled(img, desc0)
        if thumbnail:
            th = img[::8, ::8]
            tw.write(th, compression="jpeg", photometric="rgb", rowsperstrip=16,
                     description=f"{head} \n{width}x{height} -> {th.shape[1]}x{th.shape[0]} - "
                                 f"|Filename = {ACCESSION}|Date = {date}|User = {OPERATOR}",
                     metadata=None,
                     extratags=[(65001, "s", 0, f"{OPERATOR} {ACCESSION}", True)]
                     if private_tag else [])
        lv = img
        for _k in range(1, levels):
            lv = lv[::4, ::4]
            if min(lv.shape[:2]) < 16:
                break
            tiled(lv, f"{head} \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) -> "
                      f"{lv.shape[1]}x{lv.shape[0]} JPEG/RGB Q=80|Filename = {ACCESSION}")
        if label:
            ldesc = f"{head} \nlabel {lab.shape[1]}x{lab.shape[0]}" if not gt450 else f"{head} \n"
            tw.write(lab, compression="lzw", predictor=2, photometric="rgb", rowsperstrip=8,
                     description=ldesc, subfiletype=1, metadata=None)
        if macro:
            mdesc = f"{head} \nmacro {mac.shape[1]}x{mac.shape[0]}" if not gt450 else f"{head} \n"
            tw.write(mac, compression="jpeg", photometric="rgb", rowsperstrip=16,
                     description=mdesc, subfiletype=9, metadata=None)
    planted = [PATIENT, ACCESSION, OPERATOR, SERIAL, BARCODE, "slidehost01.example.org",
               "991234", date, time]
    return Synth(path, planted, (width, height),
                 {"label_text": [PATIENT, ACCESSION], "gt450": gt450, "date": date})
