#!/usr/bin/env python
"""Write one synthetic slide per vendor, with planted identity, to a folder.

Each file opens in openslide as its vendor (aperio, hamamatsu, generic-tiff, and, when
their generators are present, philips, ventana, leica, dicom). A ``planted.txt`` lists
the identifying strings planted in each, for checking an output with ``scan``.

Usage::

    .venv/bin/python scripts/make_wsi_samples.py OUT_DIR
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: (module, function, file name) of each generator; a missing one is skipped
GENERATORS = [
    ("wsi.synth.aperio", "make_aperio", "aperio.svs"),
    ("wsi.synth.aperio", "make_aperio", "aperio-gt450.svs", {"gt450": True}),
    ("wsi.synth.hamamatsu", "make_ndpi", "hamamatsu.ndpi"),
    ("wsi.synth.generic", "make_generic", "generic.tif"),
    ("wsi.synth.generic", "make_ome", "generic.ome.tif"),
    ("wsi.synth.philips", "make_philips", "philips.tiff"),
    ("wsi.synth.ventana", "make_ventana", "ventana.bif"),
    ("wsi.synth.leica", "make_leica", "leica.scn"),
    ("wsi.synth.dicomwsi", "make_dicom_wsi", "dicom-wsi"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for entry in GENERATORS:
        modname, fname, name = entry[:3]
        kw = entry[3] if len(entry) > 3 else {}
        try:
            fn = getattr(importlib.import_module(modname), fname)
        except (ImportError, AttributeError) as exc:
            print(f"skip {name}: {exc}", file=sys.stderr)
            continue
        s = fn(args.out / name, **kw)
        if isinstance(s, dict):  # part B's generators return {name: planted value}
            planted = list(s.get("planted", s.values())) if "planted" in s else list(s.values())
        else:
            planted = list(getattr(s, "planted", []) or [])
        lines.append(f"{name}\t" + "\t".join(map(str, planted)))
        print(f"wrote {args.out / name}")
    (args.out / "planted.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
