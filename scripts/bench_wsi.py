#!/usr/bin/env python
"""Benchmark: in-place slide de-identification (pixeldeid wsi) vs a full tifffile rewrite.

Generates slides of the requested sizes (Aperio-style classic TIFF or BigTIFF with a
shared-JPEGTables tiled pyramid, thumbnail, label, macro and identity in the metadata;
and an NDPI-style file over 4 GB), then, in one run on the same files, times:

- ``rewrite``: a full rewrite of the file with tifffile, copying every compressed tile
  and strip without re-encoding (the cheapest possible "rewrite the whole file" peer:
  DSA-WSI-DeID / tifffile-based tools rewrite at least this much), and a plain file copy;
- ``edit``: pixeldeid's label + macro + metadata de-identification in place
  (``wsi.<vendor>.deidentify`` on the file);
- ``scan``: the raw-byte scan of the whole output for every removed value;
- ``redact``: one level-0 region redaction: tiles re-encoded, bytes written vs bytes of
  the affected tiles.

Usage::

    .venv/bin/python scripts/bench_wsi.py                       # 100M, 1G, 4.3G
    .venv/bin/python scripts/bench_wsi.py --sizes 100M --dir /tmp/b
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsi.api import SlideOptions  # noqa: E402
from wsi.synth import jpeg_tiles, text_image, tissue  # noqa: E402
from wsi.tiffedit import TiffEditor, scan_raw  # noqa: E402

TILE = 256


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
    return int(float(text.rstrip("KMG")) * mult)


def make_big_aperio(path: Path, target: int, bigtiff: bool, j2k: bool = False) -> None:
    """An Aperio-style slide of about ``target`` bytes (a pool of distinct tiles repeated);
    with ``j2k`` its pyramid tiles are JPEG 2000 (Aperio 33005)."""
    pool_img = tissue(8 * TILE, 8 * TILE, seed=1)
    if j2k:
        from wsi.synth import j2k_tiles

        tables, pool = b"", j2k_tiles(pool_img, TILE)
    else:
        tables, pool = jpeg_tiles(pool_img, TILE, quality=80)
    mean = statistics.mean(len(t) for t in pool)
    ntiles = max(64, int(target / mean))
    across = int(np.ceil(np.sqrt(ntiles * 4 / 3)))
    down = max(1, ntiles // across)
    w, h = across * TILE, down * TILE
    desc = (f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] ({TILE}x{TILE}) JPEG/RGB Q=80"
            "|AppMag = 40|MPP = 0.25|ScanScope ID = SS1234|Filename = S24-001234"
            "|Date = 11/23/26|Time = 13:45:07|User = jsmith_operator|Title = Jane Q Doe")
    head = desc.split("\r\n")[0]

    def tiles(n: int):
        for i in range(n):
            yield pool[i % len(pool)]

    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        kw = dict(dtype=np.uint8, tile=(TILE, TILE), compression=7, photometric="rgb",
                  metadata=None, subsampling=(2, 2), extratags=[(347, 7, len(tables), tables, True)])
        if j2k:
            kw = dict(dtype=np.uint8, tile=(TILE, TILE), compression=33005, photometric="rgb",
                      metadata=None)
        tw.write(tiles(across * down), shape=(h, w, 3), description=desc, **kw)
        th = np.ascontiguousarray(pool_img[::4, ::4])
        tw.write(th, compression="jpeg", photometric="rgb", rowsperstrip=16, metadata=None,
                 description=f"{head} \n{w}x{h} -> {th.shape[1]}x{th.shape[0]} - ")
        lw, lh = w, h
        while lw > 4 * 2048:
            lw, lh = -(-lw // 4), -(-lh // 4)
            n = -(-lw // TILE) * -(-lh // TILE)
            tw.write(tiles(n), shape=(lh, lw, 3), description=f"{head} \r\n{lw}x{lh}", **kw)
        lab = text_image(300, 360, ["Jane Q Doe", "S24-001234"])
        tw.write(lab, compression="lzw", photometric="rgb", rowsperstrip=8, subfiletype=1,
                 description=f"{head} \nlabel 360x300", metadata=None)
        mac = np.ascontiguousarray(np.concatenate([text_image(400, 330, ["Jane Q Doe"]),
                                                   tissue(400, 870, 2)], axis=1))
        tw.write(mac, compression="jpeg", photometric="rgb", rowsperstrip=16, subfiletype=9,
                 description=f"{head} \nmacro 1200x400", metadata=None)


def make_big_ventana(path: Path, target: int, tile: int) -> tuple[int, int, int]:
    """A Ventana-style BIF of about ``target`` bytes: IFD 0 the label image with the iScan
    XMP, a thumbnail, level 0 with its EncodeInfo XMP (one TileJointInfo per pair of
    neighbouring tiles) and two smaller levels. Returns (columns, rows, XMP bytes)."""
    from wsi.synth.ventana import DEFAULT_PLANTED, _encode_info, _iscan_xml

    pool_img = tissue(2 * tile, 2 * tile, seed=3)
    tables, pool = jpeg_tiles(pool_img, tile, quality=80)
    mean = statistics.mean(len(t) for t in pool)
    ntiles = max(16, int(target / mean))
    cols = int(np.ceil(np.sqrt(ntiles * 4 / 3)))
    rows = max(1, ntiles // cols)
    w, h = cols * tile, rows * tile
    xmp = _iscan_xml(DEFAULT_PLANTED, 40, 0.25).encode()
    enc = _encode_info(cols, rows, tile).encode()

    def tiles(n: int):
        for i in range(n):
            yield pool[i % len(pool)]

    label = np.ascontiguousarray(np.concatenate([text_image(200, 200, ["Jane Q Doe"]),
                                                 tissue(200, 400, 4)], axis=1))
    opts = dict(photometric="rgb", metadata=None, software=False)
    with tifffile.TiffWriter(path, bigtiff=w * h * 3 > (4 << 30)) as tw:
        tw.write(label, description="Label_Image", rowsperstrip=16, compression="jpeg",
                 extratags=[(700, 1, len(xmp), xmp, True)], **opts)
        tw.write(np.ascontiguousarray(pool_img[::8, ::8]), description="Thumbnail",
                 rowsperstrip=16, compression="jpeg", **opts)
        kw = dict(dtype=np.uint8, tile=(tile, tile), compression=7, subsampling=(2, 2), **opts)
        for lvl in range(3):
            lw, lh = -(-w // 2 ** lvl), -(-h // 2 ** lvl)
            n = -(-lw // tile) * -(-lh // tile)
            extra = [(347, 7, len(tables), tables, True)]
            if lvl == 0:
                extra.append((700, 1, len(enc), enc, True))
            tw.write(tiles(n), shape=(lh, lw, 3), extratags=extra,
                     description=f"level={lvl} mag={40 / 2 ** lvl:g} quality=80", **kw)
    return cols, rows, len(enc)


def full_rewrite(src: Path, dst: Path) -> None:
    """Rewrite every page with tifffile, copying compressed segments as they are."""
    with tifffile.TiffFile(src) as tf, tifffile.TiffWriter(dst, bigtiff=True) as tw:
        fh = tf.filehandle
        for page in tf.pages:
            def segs(p=page):
                for off, n in zip(p.dataoffsets, p.databytecounts, strict=True):
                    fh.seek(off)
                    yield fh.read(n)
            extratags = []
            if page.jpegtables is not None:
                extratags.append((347, 7, len(page.jpegtables), page.jpegtables, True))
            kw = dict(tile=(page.tilelength, page.tilewidth)) if page.is_tiled else \
                dict(rowsperstrip=page.rowsperstrip)
            tw.write(segs(), shape=page.shape, dtype=page.dtype, compression=page.compression,
                     photometric=page.photometric, description=page.description or None,
                     metadata=None, extratags=extratags, **kw)


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return time.perf_counter() - t, out


def bench_one(name: str, path: Path, vendor: str, workdir: Path, region) -> dict:
    import importlib

    mod = importlib.import_module(f"wsi.{vendor}")
    size = path.stat().st_size
    row = {"slide": name, "bytes": size}
    os.sync()  # the generated file's dirty pages are not the edit's cost
    dst = workdir / (path.stem + ".rewrite.tif")
    if vendor in ("aperio", "ventana", "philips", "leica"):
        row["rewrite_s"], _ = timed(full_rewrite, path, dst)
        dst.unlink()
    else:
        row["rewrite_s"] = float("nan")  # tifffile cannot write NDPI; see copy_s
    cp = workdir / (path.stem + ".copy" + path.suffix)
    row["copy_s"], _ = timed(shutil.copyfile, path, cp)
    cp.unlink()
    os.sync()
    opts = SlideOptions(pseudonym="BENCH-1")
    row["edit_s"], rep = timed(mod.deidentify, path, opts)
    row["scan_s"], hits = timed(scan_raw, path, [v for v in rep.removed_values if len(v) >= 4])
    row["scan_hits"] = len(hits)
    if region is not None:
        from wsi.redact import RedactStats, map_regions, redact_ifd, redact_ndpi_level

        def do_redact():
            st = RedactStats()
            with TiffEditor(path, "r+") as ed:
                level0 = ed.ifd(0).shape
                for d in list(ed.ifds):
                    rects = map_regions([region], level0, d.shape)
                    if vendor == "hamamatsu":
                        if float(d.first(65421, 0)) > 0:
                            redact_ndpi_level(ed, d.index, rects, st)
                    elif d.is_tiled or d.index == 1:
                        redact_ifd(ed, d.index, rects, st)
            return st

        row["redact_s"], st = timed(do_redact)
        row["tiles"] = st.total_tiles
        row["bytes_affected"] = st.total_old
        row["bytes_written"] = st.total_new
    return row


HEADER = (f"{'slide':<22}{'MB':>8}{'rewrite s':>11}{'copy s':>9}{'edit ms':>9}"
          f"{'scan s':>8}{'speed-up':>10}{'tiles':>7}{'redact s':>10}{'re-enc/affected':>26}")
FOOTER = ("edit = label + macro + metadata in place; speed-up = rewrite (or copy for NDPI) / edit;"
          " scan = raw byte scan of the whole file for the removed values;"
          " re-enc/affected = bytes written / bytes of the tiles (NDPI: restart intervals)"
          " the region touched.")


def format_row(r: dict) -> str:
    ref = r["rewrite_s"] if r["rewrite_s"] == r["rewrite_s"] else r["copy_s"]
    ratio = (f"{r['bytes_written'] / r['bytes_affected']:.2f}"
             f" ({r['bytes_written']}/{r['bytes_affected']})") if r.get("bytes_affected") else "-"
    red = f"{r['redact_s']:.3f}" if "redact_s" in r else "-"
    return (f"{r['slide']:<22}{r['bytes'] / 1e6:>8.0f}{r['rewrite_s']:>11.2f}{r['copy_s']:>9.2f}"
            f"{r['edit_s'] * 1e3:>9.1f}{r['scan_s']:>8.2f}{ref / r['edit_s']:>9.0f}x"
            f"{r.get('tiles', '-'):>7}{red:>10}{ratio:>26}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100M,1G,4.3G",
                    help="comma-separated target sizes (Aperio-style; sizes over 4 GB use BigTIFF)")
    ap.add_argument("--ndpi", default="4.3G", help="NDPI-style file size ('' to skip)")
    ap.add_argument("--ventana", default="100M,1G",
                    help="Ventana-style BIF sizes ('' to skip)")
    ap.add_argument("--ventana-tile", type=int, default=1024,
                    help="BIF level-0 tile (camera frame) size; the EncodeInfo XMP holds one "
                         "TileJointInfo per pair of neighbouring tiles (default 1024)")
    ap.add_argument("--j2k", default="100M",
                    help="Aperio JPEG 2000 (33005) sizes ('' to skip); redacted tiles are "
                         "re-encoded losslessly, so they grow")
    ap.add_argument("--philips", default="8192x6144",
                    help="Philips TIFF level-0 WIDTHxHEIGHT ('' to skip; the XML with the "
                         "base64 label and macro is what the edit rewrites)")
    ap.add_argument("--leica", default="8192x6144",
                    help="Leica SCN level-0 WIDTHxHEIGHT ('' to skip)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary folder)")
    args = ap.parse_args(argv)
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_wsi_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    region = (3000, 2000, 1500, 1000)
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    try:
        for s in [x for x in args.sizes.split(",") if x]:
            target = parse_size(s)
            big = target > (4 << 30) - (64 << 20)
            p = work / f"aperio-{s}.svs"
            t0 = time.perf_counter()
            make_big_aperio(p, target, bigtiff=big)
            print(f"generated {p.name} ({p.stat().st_size / 1e6:.0f} MB, "
                  f"{'BigTIFF' if big else 'classic'}) in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
            rows.append(bench_one(f"aperio {s}{' bigtiff' if big else ''}", p, "aperio", work, region))
            print(format_row(rows[-1]), flush=True)
            p.unlink()
        for s in [x for x in args.j2k.split(",") if x]:
            p = work / f"aperio-j2k-{s}.svs"
            make_big_aperio(p, parse_size(s), bigtiff=parse_size(s) > (4 << 30) - (64 << 20),
                            j2k=True)
            print(f"generated {p.name} ({p.stat().st_size / 1e6:.0f} MB, JPEG 2000)",
                  file=sys.stderr)
            rows.append(bench_one(f"aperio j2k {s}", p, "aperio", work, region))
            print(format_row(rows[-1]), flush=True)
            p.unlink()
        for s in [x for x in args.ventana.split(",") if x]:
            p = work / f"ventana-{s}.bif"
            cols, rows_, nxmp = make_big_ventana(p, parse_size(s), args.ventana_tile)
            print(f"generated {p.name} ({p.stat().st_size / 1e6:.0f} MB, {cols}x{rows_} tiles of "
                  f"{args.ventana_tile}, EncodeInfo XMP {nxmp / 1e6:.1f} MB)", file=sys.stderr)
            rows.append(bench_one(f"ventana {s} t{args.ventana_tile}", p, "ventana", work, None))
            print(format_row(rows[-1]), flush=True)
            p.unlink()
        for vendor, dims, suffix in (("philips", args.philips, ".tiff"),
                                     ("leica", args.leica, ".scn")):
            if not dims:
                continue
            import importlib

            make = getattr(importlib.import_module(f"wsi.synth.{vendor}"), f"make_{vendor}")
            w, h = (int(x) for x in dims.lower().split("x"))
            p = work / f"{vendor}-{dims}{suffix}"
            make(p, width=w, height=h, levels=4)
            print(f"generated {p.name} ({p.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
            rows.append(bench_one(f"{vendor} {dims}", p, vendor, work, None))
            print(format_row(rows[-1]), flush=True)
            p.unlink()
        if args.ndpi:
            from wsi.synth.hamamatsu import make_ndpi

            p = work / "ndpi-big.ndpi"
            make_ndpi(p, width=4096, height=3072, levels=4, filler=parse_size(args.ndpi))
            past = "IFDs past 4 GB" if p.stat().st_size > (1 << 32) else "under 4 GB"
            print(f"generated {p.name} ({p.stat().st_size / 1e9:.2f} GB, {past})",
                  file=sys.stderr)
            rows.append(bench_one(f"ndpi {args.ndpi}", p, "hamamatsu", work, region))
            print(format_row(rows[-1]), flush=True)
            p.unlink()
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(FOOTER)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
