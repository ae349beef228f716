#!/usr/bin/env python
"""Write a synthetic CT series (and optionally planted-identity files) for tests and demos.

Examples
--------
python scripts/make_ct_corpus.py /tmp/ct -n 50 --seed 3
python scripts/make_ct_corpus.py /tmp/ct -n 10 --planted 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pixeldeid._synth import make_ct_series, make_planted_dataset, write_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder (created)")
    ap.add_argument("-n", type=int, default=20, help="number of CT slices (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="study seed (default 0)")
    ap.add_argument("--series", type=int, default=1, help="number of series/patients")
    ap.add_argument("--planted", type=int, default=0,
                    help="also write this many planted-identity files (JPEG, 2 frames)")
    ap.add_argument("--filename", default="IM{index:05d}.dcm",
                    help="file name pattern: fields index, patient_id, family, sop")
    args = ap.parse_args(argv)
    total = 0
    for k in range(args.series):
        seed = args.seed + k
        sub = args.out / f"series{k:03d}" if args.series > 1 else args.out
        total += len(make_ct_series(sub, args.n, seed=seed, filename=args.filename))
    for k in range(args.planted):
        ds, planted = make_planted_dataset(seed=args.seed + k, frames=2)
        write_dataset(ds, args.out / "planted" / f"planted{k:03d}.dcm")
        (args.out / "planted" / f"planted{k:03d}.txt").write_text(
            "\n".join(planted) + "\n", encoding="utf-8")
        total += 1
    print(f"wrote {total} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
