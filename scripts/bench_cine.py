#!/usr/bin/env python
"""Benchmark burned-in text removal on ultrasound cines: pixeldeid against per-frame OCR.

Two cines, each timed both ways in one run with the same OCR engine (warmed up first):

* a synthetic 51-frame 1016 x 672 RGB cine (:mod:`pixeldeid.burnedin.synth`: speckle,
  sector, colour Doppler, identity band with a running clock, settings column), with
  exact ground-truth boxes;
* the real Terason 51-frame RGB cine of the ``deid-data`` package (skipped when absent).

**pixeldeid** is :class:`pixeldeid.burnedin.stage.BurnedInStage` (default policy ``auto``:
templates where a signature matches, OCR of the first frame and of the overlay areas that
change, redaction of every frame, verification of the written pixels). **naive** reads
every frame with the same engine, classifies the boxes the same way (phi-only) and
redacts the union in every frame (no verification). Both times include decoding and
writing the pixel data; one-time costs (model load, imports, template and vocabulary
tables) are paid before timing, by a warm-up read and a warm-up cine.

Recall: synthetic: identity ground-truth boxes black in every frame afterwards. Real:
the identity boxes the naive approach read in any frame that are black in every frame
of each output (naive's own figure is 1 by construction on its reference), and the
identity boxes pixeldeid read that the naive output blacked out.

Examples
--------
python scripts/bench_cine.py
python scripts/bench_cine.py --device cuda --ocr easyocr --policy phi-only
"""

from __future__ import annotations

import argparse
import copy
import io
import logging
import statistics
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from pixeldeid.burnedin.boxes import TextBox
from pixeldeid.burnedin.classify import IdentityValues, Vocabulary, boxes_to_redact, classify_boxes
from pixeldeid.burnedin.frames import PixelFrames
from pixeldeid.burnedin.ocr import get_engine
from pixeldeid.burnedin.redact import redact_dataset
from pixeldeid.burnedin.stage import BurnedInStage, PixelSettings, _pad
from pixeldeid.burnedin.synth import make_us_cine


def terason_cine():
    """The deid-data Terason cine (Dataset), or None when deid-data is not installed."""
    import pydicom

    try:
        import deid_data
    except ImportError:
        return None
    p = Path(deid_data.__file__).parent / "data" / "ultrasounds" / "RGB_CINE.zip"
    if not p.is_file():
        return None
    with zipfile.ZipFile(p) as zf:
        return pydicom.dcmread(io.BytesIO(zf.read(zf.namelist()[0])))


def naive(ds, engine, identity, device: str) -> tuple[list[TextBox], float]:
    """OCR every frame, classify, redact the union; (identity boxes, seconds)."""
    t0 = time.perf_counter()
    pf = PixelFrames(ds)
    vocab = Vocabulary.load(str(ds.get("Modality", "")))
    found: list[TextBox] = []
    for f in range(pf.n_frames):
        img = pf.display([f])[0]
        found += [b.with_(frame=f) for b in engine.read(img)]
    found = classify_boxes(found, identity, vocab)
    boxes = [_pad(b, pf.rows, pf.columns).with_(frame=None)
             for b in boxes_to_redact(found, "phi-only")]
    if boxes:
        redact_dataset(ds, boxes, device=device)
    return [b for b in found if b.label == "identity"], time.perf_counter() - t0


def black_everywhere(frames: np.ndarray, b: TextBox, level: int = 16) -> bool:
    inner = frames[:, b.y0 + 1:max(b.y0 + 2, b.y1 - 1), b.x0 + 1:max(b.x0 + 2, b.x1 - 1)]
    return inner.size == 0 or int(inner.max()) <= level


def recall(frames: np.ndarray, boxes: list[TextBox]) -> str:
    if not boxes:
        return "n/a"
    hit = sum(black_everywhere(frames, b) for b in boxes)
    return f"{hit}/{len(boxes)}"


def bench_one(label: str, ds, truth: list[TextBox] | None, args, engine) -> dict:
    identity = IdentityValues.from_dataset(ds)
    stage = BurnedInStage(PixelSettings(policy=args.policy, ocr=args.ocr, device=args.device))
    n = PixelFrames(ds).n_frames
    warm = make_us_cine(n_frames=4, rows=672, columns=1016, seed=99).dataset
    stage.process(warm, IdentityValues.from_dataset(warm))   # imports, tables, templates
    times = []
    for _ in range(max(1, args.repeat)):  # median of fresh copies: one run is noisy
        mine = copy.deepcopy(ds)
        t0 = time.perf_counter()
        result = stage.process(mine, identity, label)
        times.append(time.perf_counter() - t0)
    t_mine = statistics.median(times)
    theirs = copy.deepcopy(ds)
    naive_ident, t_naive = naive(theirs, engine, identity, stage.device)
    f_mine, f_theirs = PixelFrames(mine).display(), PixelFrames(theirs).display()
    row = {"cine": label, "frames": n, "pixeldeid_s": t_mine, "naive_s": t_naive,
           "ratio": t_naive / t_mine, "frames_read": len(result.frames_read),
           "method": result.method, "verified": result.verified,
           "templates": ",".join(result.templates) or "-"}
    if truth is not None:
        row["recall_pixeldeid"] = recall(f_mine, truth)
        row["recall_naive"] = recall(f_theirs, truth)
    else:
        mine_ident = [b for b in result.boxes if b.label == "identity" or b.source != "ocr"]
        row["recall_pixeldeid"] = recall(f_mine, naive_ident) + " of naive's"
        row["recall_naive"] = recall(f_theirs, [b for b in mine_ident if b.source == "ocr"]) \
            + " of pixeldeid's OCR"
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", default="auto", help="pixeldeid policy (default auto)")
    ap.add_argument("--ocr", default="auto", help="OCR engine for both (default auto)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--frames", type=int, default=51, help="synthetic cine frames (51)")
    ap.add_argument("--no-real", action="store_true", help="skip the Terason cine")
    ap.add_argument("--repeat", type=int, default=3,
                    help="pixeldeid runs per cine, median reported (3); per-frame OCR runs once")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.ERROR)

    engine = get_engine(args.ocr, args.device)
    us = make_us_cine(n_frames=args.frames, rows=672, columns=1016, photometric="RGB", seed=3)
    engine.read(us.dataset.pixel_array[0])        # warm-up (model load, first inference)
    cines = [("synthetic 1016x672 RGB", us.dataset, us.identity_boxes)]
    real = None if args.no_real else terason_cine()
    if real is not None:
        cines.append(("Terason RGB_CINE (deid-data)", real, None))
    elif not args.no_real:
        print("deid-data not installed: the real Terason cine is skipped", file=sys.stderr)
    print(f"OCR engine {engine.name} on {engine.device}; pixeldeid policy {args.policy}")
    rows = [bench_one(label, ds, truth, args, engine) for label, ds, truth in cines]
    print(f"{'cine':32s} {'frames':>6s} {'pixeldeid s':>11s} {'naive s':>8s} {'ratio':>6s} "
          f"{'px fps':>7s} {'read':>4s}  recall pixeldeid / naive")
    for r in rows:
        print(f"{r['cine']:32s} {r['frames']:6d} {r['pixeldeid_s']:11.2f} {r['naive_s']:8.2f} "
              f"{r['ratio']:6.1f} {r['frames'] / r['pixeldeid_s']:7.1f} {r['frames_read']:4d}  "
              f"{r['recall_pixeldeid']} / {r['recall_naive']}  "
              f"[{r['method']}, verified={r['verified']}, templates={r['templates']}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
