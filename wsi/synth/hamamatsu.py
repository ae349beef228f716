"""Synthetic Hamamatsu NDPI: the NDPI TIFF variant written byte by byte.

Layout as in real NDPI files: classic little-endian TIFF with an 8-byte first-IFD offset,
IFDs with 8-byte next-IFD offsets followed by one 4-byte high-bits word per tag; one
JPEG strip per level (SourceLens > 0), a macro (SourceLens -1) and a map (-2); Make,
Model, Software, DateTime, the scanner serial (65442) and the property map (65449) are
stored once and shared by every IFD. Identity is planted in Reference (65427), the
serial, DateTime, the property map (serials, dates, barcode) and the nested
"NDP Shading Data" blob (SerialNumber, Date), and in the macro's label area.

``filler`` inserts that many unreferenced bytes before the IFDs (sparse when the file
system allows), to build files over 4 GB cheaply for benchmarks.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import imagecodecs
import numpy as np

from . import ACCESSION, PATIENT, SERIAL, Synth, text_image, tissue

__all__ = ["make_ndpi", "PROPERTY_MAP"]

MACRO_SERIAL = "MS-5566771"
CREATED = "2024/05/23"
UPDATED = "2024/06/01"
DATETIME = "2024:06:01 10:11:12"
SHADING_SERIAL = "SHD-99127"

PROPERTY_MAP = (
    f"Created={CREATED}\r\nUpdated={UPDATED}\r\nProduct=C13210-01\r\nsystem.version=1.0\r\n"
    f"NDP.S/N={SERIAL}\r\nMacro.S/N={MACRO_SERIAL}\r\nroi.slide.macro=68,279,1256,685\r\n"
    "roi.barcode.macro=948,281,1253,682\r\nObjective.Lens.Magnificant=20.0\r\n"
    "ccd.width=9346\r\ncoarse.focus.pitch=4870\r\nstage.center=177617,585288\r\n"
    f"Operator.Name={PATIENT}\r\n"
    ";NDP Shading Data\r;Version=0004\r;Name=Brightfield \r"
    f";Date=2024/05/30\r;SerialNumber={SHADING_SERIAL}\r;ShadingAveB_2048=200\r"
)


def _jpeg(img: np.ndarray) -> bytes:
    img = np.ascontiguousarray(img)
    return imagecodecs.jpeg8_encode(img, level=85, subsampling=(1, 1) if img.ndim == 3 else None)


def make_ndpi(path: str | os.PathLike, *, width: int = 2048, height: int = 1536,
              levels: int = 3, seed: int = 0, macro: bool = True, filler: int = 0,
              extra_text: dict[int, str] | None = None) -> Synth:
    """Write a synthetic NDPI file and return what was planted in it.

    ``extra_text`` adds ASCII tags to every IFD (tag code -> value: an ImageDescription
    270, a scanner's private tag), planted too.
    """
    extra_text = dict(extra_text or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = tissue(height, width, seed)
    images: list[tuple[np.ndarray, float, bytes]] = []
    lv = img
    lens = 20.0
    for _ in range(levels):
        images.append((lv, lens, _jpeg(lv)))
        lv, lens = lv[::2, ::2], lens / 2
        if min(lv.shape[:2]) < 16:
            break
    mac = None
    if macro:
        mac = np.concatenate([text_image(400, 300, [PATIENT, ACCESSION], bg="#eeeeee"),
                              tissue(400, 900, seed + 3)], axis=1)
        images.append((mac, -1.0, _jpeg(mac)))
        gray = np.ascontiguousarray(mac.mean(-1).astype(np.uint8)[::2, ::2])
        images.append((gray, -2.0, gray.tobytes()))

    buf = bytearray(b"II*\x00" + struct.pack("<Q", 0))  # 12-byte header
    shared: dict[str, int] = {}

    def put(data: bytes) -> int:
        if len(buf) % 2:
            buf.append(0)
        off = len(buf)
        buf.extend(data)
        return off

    for key, data in (("make", b"Hamamatsu\x00"), ("model", b"C13210-01\x00"),
                      ("software", b"NDP.scan 3.2.15\x00"), ("datetime", DATETIME.encode() + b"\x00"),
                      ("bps", struct.pack("<3H", 8, 8, 8)), ("serial", SERIAL.encode() + b"\x00"),
                      ("props", PROPERTY_MAP.encode() + b"\x00"),
                      ("reference", f"{ACCESSION} {PATIENT}".encode() + b"\x00"),
                      *((f"extra{c}", v.encode() + b"\x00") for c, v in extra_text.items())):
        shared[key] = put(data)
    # the filler goes before the image data, so the strips of a big file lie past 4 GB
    # close to their IFDs, as in real NDPI files (offset high bits after each IFD)
    strip_offsets = []
    pos = len(buf) + filler
    strips: list[tuple[int, bytes]] = []
    for _, _, data in images:
        pos += pos % 2
        strip_offsets.append(pos)
        strips.append((pos, data))
        pos += len(data)
    ifd_offsets: list[int] = []
    ifd_blobs: list[tuple[int, bytes]] = [*strips]
    for (im, lens_, data), soff in zip(images, strip_offsets, strict=True):
        h, w = im.shape[:2]
        spp = 1 if im.ndim == 2 else 3
        pos += pos % 2
        res_off = pos  # two rationals right before the IFD
        res = struct.pack("<4I", 43826, 1, 43826, 1)
        pos += len(res)
        tags = [
            (256, 4, 1, struct.pack("<I", w)),
            (257, 4, 1, struct.pack("<I", h)),
            (258, 3, spp, struct.pack("<I", shared["bps"]) if spp == 3 else struct.pack("<HH", 8, 0)),
            (259, 3, 1, struct.pack("<HH", 7 if spp == 3 else 1, 0)),
            (262, 3, 1, struct.pack("<HH", 6 if spp == 3 else 1, 0)),
            (271, 2, 10, struct.pack("<I", shared["make"])),
            (272, 2, 10, struct.pack("<I", shared["model"])),
            (273, 4, 1, struct.pack("<I", soff & 0xFFFFFFFF)),
            (277, 3, 1, struct.pack("<HH", spp, 0)),
            (278, 4, 1, struct.pack("<I", h)),
            (279, 4, 1, struct.pack("<I", len(data))),
            (282, 5, 1, struct.pack("<I", res_off & 0xFFFFFFFF)),
            (283, 5, 1, struct.pack("<I", (res_off + 8) & 0xFFFFFFFF)),
            (296, 3, 1, struct.pack("<HH", 3, 0)),
            (305, 2, 16, struct.pack("<I", shared["software"])),
            (306, 2, 20, struct.pack("<I", shared["datetime"])),
            (65420, 3, 1, struct.pack("<HH", 1, 0)),
            (65421, 11, 1, struct.pack("<f", lens_)),
            (65422, 9, 1, struct.pack("<i", 12538720)),
            (65423, 9, 1, struct.pack("<i", -96063)),
            (65424, 9, 1, struct.pack("<i", 0)),
            (65427, 2, len(ACCESSION) + len(PATIENT) + 2, struct.pack("<I", shared["reference"])),
            (65442, 2, len(SERIAL) + 1, struct.pack("<I", shared["serial"])),
            (65449, 2, len(PROPERTY_MAP) + 1, struct.pack("<I", shared["props"])),
            *((c, 2, len(v) + 1, struct.pack("<I", shared[f"extra{c}"]))
              for c, v in extra_text.items()),
        ]
        tags.sort(key=lambda t: t[0])
        n = len(tags)
        ifd = bytearray(struct.pack("<H", n))
        for code, typ, count, field in tags:
            ifd += struct.pack("<HHI", code, typ, count) + field
        ifd += struct.pack("<Q", 0)  # next IFD, patched below
        for code, *_ in tags:  # high 32 bits of each offset (inline strip offset too)
            high = {282: res_off >> 32, 283: (res_off + 8) >> 32, 273: soff >> 32}.get(code, 0)
            ifd += struct.pack("<I", high)
        ifd_blobs.append((res_off, res))
        ifd_offsets.append(pos)
        ifd_blobs.append((pos, bytes(ifd)))
        pos += len(ifd)
        pos += pos % 2
    with open(path, "wb") as fh:
        struct.pack_into("<Q", buf, 4, ifd_offsets[0])
        fh.write(buf)
        # patch next-IFD pointers
        blobs = []
        k = 0
        for off, blob in ifd_blobs:
            b = bytearray(blob)
            if off in ifd_offsets:
                n = struct.unpack_from("<H", b, 0)[0]
                nxt = ifd_offsets[k + 1] if k + 1 < len(ifd_offsets) else 0
                struct.pack_into("<Q", b, 2 + 12 * n, nxt)
                k += 1
            blobs.append((off, bytes(b)))
        for off, b in blobs:
            fh.seek(off)
            fh.write(b)
    planted = [PATIENT, ACCESSION, SERIAL, MACRO_SERIAL, CREATED, UPDATED, DATETIME,
               SHADING_SERIAL, "2024/05/30", *extra_text.values()]
    return Synth(path, planted, (width, height),
                 {"levels": len([i for i in images if i[1] > 0]), "macro": macro})
