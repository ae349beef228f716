#!/usr/bin/env python
"""Build the small demo collection of ``scripts/demo.sh`` with planted identity.

- ``ct/``: a 20-slice CT series with identity in the header (names, IDs, dates, private
  blocks, nested sequences);
- ``us/``: an ultrasound cine (JPEG baseline YBR_FULL_422, 24 frames) with the patient's
  name, MRN, date of birth, institution and a running clock burned into the pixels
  (:mod:`pixeldeid.burnedin.synth`) and the same identity in the header, plus an
  ultrasound-like secondary capture with identity in JPEG APPn/COM segments;
- ``head/``: a T1-like head volume with a face (pydeface's average head, MIT);
- ``slide/``: a synthetic Aperio slide with a label, a macro and dated metadata.

Usage: make_demo_collection.py OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    if root.exists():
        shutil.rmtree(root)
    from pixeldeid._synth import make_ct_series, make_planted_dataset, write_dataset

    make_ct_series(root / "ct" / "DOE_JOHN", 20)
    ds, _ = make_planted_dataset(pixels="jpeg", frames=8, seed=5)
    write_dataset(ds, root / "us" / "capture_DOE_JOHN.dcm")
    from pixeldeid.burnedin.synth import make_us_cine, write

    (root / "us").mkdir(parents=True, exist_ok=True)
    cine = make_us_cine(n_frames=24, rows=480, columns=640, photometric="YBR_FULL_422",
                        clock_every=8, seed=5,
                        patient={"family": "DOE", "given": "JOHN", "mrn": "0012345678",
                                 "dob": "19610412", "institution": "ST ELSEWHERE GENERAL"})
    write(cine, root / "us" / "cine_DOE_JOHN.dcm")
    made = ["ct (20 slices)", "us (24-frame cine with burned-in identity, 8-frame JPEG)"]
    try:
        import pydeface

        src = Path(pydeface.__file__).parent / "data" / "mean_reg2mean.nii.gz"
        (root / "head").mkdir(parents=True)
        shutil.copy(src, root / "head" / "sub-01_T1w.nii.gz")
        made.append("head (T1w with face)")
    except ImportError:
        print("pydeface not installed: no head volume in the demo", file=sys.stderr)
    try:
        from wsi.synth.aperio import make_aperio

        make_aperio(root / "slide" / "S-2026-004411_DOE.svs", width=1600, height=1200)
        made.append("slide (Aperio SVS)")
    except ImportError as exc:
        print(f"wsi synthesizer unavailable ({exc}): no slide in the demo", file=sys.stderr)
    print(f"demo collection in {root}: {', '.join(made)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
