"""``pixeldeid deface``: the command line of the defacing package."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pixeldeid.paths import printable

logger = logging.getLogger(__name__)

DESCRIPTION = """Remove faces from CT/MR/PET head volumes (NIfTI, BIDS datasets, DICOM series).

A head template with a face mask is registered (affine) to each volume and the face
region is set to background (CT: -1000 HU), never touching a brain mask warped from
the template and dilated by a safety margin. Inputs that cannot be defaced with
confidence (unreadable, not a head, registration failing its quality check) are copied
to OUT/quarantine with a reason. DICOM series come back as DICOM series with
de-identified headers, new UIDs and Image Type DERIVED."""

EPILOG = """examples:
  pixeldeid deface sub-01_T1w.nii.gz -o defaced/ --qc
  pixeldeid deface /data/bids -o /release/bids --bids --qc
  pixeldeid deface /data/dicom/series1 -o /release/dicom --modality mr --key-file project.key
  pixeldeid deface ct_head.nii.gz -o out/ --modality ct --device cpu"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``deface`` options to ``parser``."""
    parser.add_argument("src", nargs="+", metavar="SRC",
                        help="NIfTI files, DICOM files or folders, or a BIDS dataset root")
    parser.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder")
    parser.add_argument("--modality", choices=("auto", "mr", "ct", "pet"), default="auto",
                        help="modality (auto: BIDS suffix, DICOM Modality or CT-like values)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="registration engine: cpu = SimpleITK, cuda = MONAI/torch")
    parser.add_argument("--bids", action="store_true",
                        help="SRC is a BIDS dataset root: write a defaced BIDS copy")
    parser.add_argument("--qc", action="store_true",
                        help="write PNG renders and JSON metrics per volume to OUT/qc")
    parser.add_argument("--no-check-orientation", dest="check_orientation",
                        action="store_false", default=True,
                        help="skip the header orientation check (on by default, ~25%% of the "
                             "runtime): heads that fit the template better mirrored, upside "
                             "down or axis-swapped are quarantined")
    parser.add_argument("--key-file", metavar="F",
                        help="project key for DICOM UIDs and pseudonyms (created in OUT if absent)")
    parser.add_argument("--profile", default="basic", help="DICOM header profile (default basic)")


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return lambda it: it
    return lambda it: tqdm(it, total=total, desc="deface", unit="input", file=sys.stderr,
                           disable=not sys.stderr.isatty())


def _deidentifier(args: argparse.Namespace, out: Path):
    from pixeldeid.api import DeidConfig, Deidentifier
    from pixeldeid.batch import load_or_create_key

    key = load_or_create_key(getattr(args, "key_file", None), out)
    return Deidentifier(DeidConfig(profile=getattr(args, "profile", "basic"), key=key))


def run(args: argparse.Namespace) -> int:
    """Run ``pixeldeid deface``; 0 all defaced, 1 some quarantined, 2 usage error."""
    from pixeldeid.atomic import remove_stale_temporaries
    from pixeldeid.batch import make_output_dir
    from pixeldeid.errors import DeidError

    from .batch import plan, refuse_collisions, run_jobs

    out = Path(args.out)
    if args.device == "cuda":
        from .engines import cuda_available

        if not cuda_available():
            print("pixeldeid deface: error: --device cuda but no CUDA device (torch with CUDA "
                  "and monai: pip install 'pixeldeid[gpu]')", file=sys.stderr)
            return 2
    for s in args.src:
        if Path(s).resolve() == out.resolve():
            print(f"pixeldeid deface: error: OUT {out} is also an input", file=sys.stderr)
            return 2
    try:
        make_output_dir(out)
        if remove_stale_temporaries(out):  # files and folders a killed run left
            logger.info("removed temporaries of an interrupted run from %s", out)
        if getattr(args, "bids", False):
            from .bids import plan_bids

            jobs = []
            for s in args.src:
                jobs.extend(plan_bids(Path(s), out))
            jobs = refuse_collisions(jobs)
        else:
            jobs = plan(args.src, out)
        deid = None
        if any(j.kind == "dicom" for j in jobs):
            deid = _deidentifier(args, out)
        summary = run_jobs(jobs, out, modality=args.modality, device=args.device, qc=args.qc,
                           deidentifier=deid, progress=_progress(len(jobs)),
                           check_orientation=getattr(args, "check_orientation", True))
    except DeidError as exc:
        print(f"pixeldeid deface: error: {exc}", file=sys.stderr)
        return 2
    for o in summary.quarantined:
        print(f"quarantined: {printable(o.source)}: {printable(o.reason)}", file=sys.stderr)
    print(f"pixeldeid deface: {summary.line(out)}")
    return summary.exit_status
