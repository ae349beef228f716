"""Benchmark: pixeldeid defacing vs ``niimath -deface`` on the same head, template and mask.

Runs both tools on the same file in one run and prints seconds per volume and the
ratio; pixeldeid runs with its orientation check (the default) and without it, so
the check's share of the runtime is shown. niimath gets the project's template (``models/deface/head_template.nii.gz``) and
the matching keep-mask (1 - face mask). When a brain mask of the subject is given
(``--brain-mask``, e.g. Colin27's ch2bet), the brain voxels each tool changed are counted.

Usage::

    python scripts/bench_deface.py [HEAD.nii.gz] [--brain-mask BET.nii.gz] [--repeat 3]

Default head: ../shared/data/heads/ch2.nii.gz (1 mm T1, Colin27) with ch2bet.nii.gz.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from defacing.nifti import deface_nifti  # noqa: E402
from defacing.template import load_template, models_dir  # noqa: E402


def _niimath() -> str | None:
    exe = shutil.which("niimath") or str(Path(sys.executable).parent / "niimath")
    return exe if Path(exe).exists() else None


def _changed(a: Path, b: Path, mask: np.ndarray | None) -> tuple[int, int]:
    da = np.asarray(nib.load(str(a)).dataobj)
    db = np.asarray(nib.load(str(b)).dataobj).astype(da.dtype)
    ch = da != db
    return int(ch.sum()), (int(ch[mask].sum()) if mask is not None else -1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = REPO.parent / "shared" / "data" / "heads"
    ap.add_argument("head", nargs="?", default=str(shared / "ch2.nii.gz"))
    ap.add_argument("--brain-mask", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    head = Path(args.head)
    if not head.exists():
        print(f"head not found: {head}", file=sys.stderr)
        return 2
    bm_path = args.brain_mask or (str(shared / "ch2bet.nii.gz")
                                  if head.name == "ch2.nii.gz" else None)
    brain = np.asarray(nib.load(bm_path).dataobj) > 0 if bm_path else None

    load_template()  # not timed: loaded once per process
    tmp = Path(tempfile.mkdtemp(prefix="bench-deface-"))
    face = nib.load(str(models_dir() / "face_mask.nii.gz"))
    keep = (np.asarray(face.dataobj) < 50).astype(np.uint8)
    keep_path = tmp / "keep_mask.nii.gz"
    nib.save(nib.Nifti1Image(keep, face.affine), str(keep_path))
    tmpl = models_dir() / "head_template.nii.gz"

    rows = []
    engines = [("pixeldeid cpu (SimpleITK)", "cpu", True),
               ("pixeldeid cpu, no orient. check", "cpu", False)]
    try:
        import torch

        if torch.cuda.is_available():
            engines.append(("pixeldeid cuda (MONAI/torch)", "cuda", True))
    except ImportError:
        pass
    for label, dev, check in engines:
        times = []
        for i in range(args.repeat):
            out = tmp / f"pd_{dev}_{check}_{i}.nii.gz"
            t = time.perf_counter()
            deface_nifti(head, out, device=dev, check_orientation=check)
            times.append(time.perf_counter() - t)
        rows.append((label, times, _changed(head, out, brain)))

    exe = _niimath()
    if exe:
        times = []
        for i in range(args.repeat):
            out = tmp / f"nm_{i}.nii.gz"
            t = time.perf_counter()
            subprocess.run([exe, str(head), "-deface", str(tmpl), str(keep_path), str(out)],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        rows.append(("niimath -deface", times, _changed(head, out, brain)))
    else:
        print("niimath not installed (pip install niimath): skipped", file=sys.stderr)

    print(f"head: {head} shape {nib.load(str(head)).shape}; repeats {args.repeat}")
    print(f"{'tool':32s} {'median s':>9s} {'min s':>7s} {'changed':>9s} {'brain chg':>9s}")
    base = statistics.median(rows[-1][1]) if exe else None
    for label, times, (ch, bch) in rows:
        med = statistics.median(times)
        ratio = f"  x{med / base:.2f} of niimath" if base and "niimath" not in label else ""
        print(f"{label:32s} {med:9.2f} {min(times):7.2f} {ch:9d} "
              f"{bch if bch >= 0 else 'n/a':>9}{ratio}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
