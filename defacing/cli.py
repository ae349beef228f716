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
to OUT/quarantine with a reason. DICOM series come back as DICOM series in
OUT/dicom/<new Series Instance UID>/ with de-identified headers, Image Type DERIVED and
UIDs of their own (keyed: Study and Frame of Reference UIDs, and with --subject-db the
Patient ID, are those that pixeldeid dicom gives the rest of the study under the same
--key-file). NIfTI files come back as OUT/nifti/<keyed hash>[_suffix].nii[.gz] (no input
folder or file name in the release); --bids keeps the dataset's layout, renames session
labels that are dates, scrubs sidecars and quarantines DICOM, other image formats and
unknown files. Files below hidden folders (.git) are skipped and reported.

Not for release: OUT/quarantine/ and OUT/.pixeldeid/ (the key when none is given, the
report deface_report.json and the map deface_map.csv that name the inputs, --qc renders
that show the face before defacing)."""

EPILOG = """examples:
  pixeldeid deface sub-01_T1w.nii.gz -o defaced/ --qc
  pixeldeid deface /data/bids -o /release/bids --bids --qc
  pixeldeid deface /data/dicom/series1 -o /release/dicom --modality mr --key-file project.key
  # the head series of a study that pixeldeid dicom wrote to /release/dicom: same Patient IDs
  pixeldeid deface /data/dicom/head -o /release/defaced --key-file project.key --subject-db /release/dicom/.pixeldeid/subjects.sqlite
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
                        help="write PNG renders (they show the face BEFORE defacing) and JSON "
                             "metrics per volume to OUT/.pixeldeid/qc (not for release)")
    parser.add_argument("--no-check-orientation", dest="check_orientation",
                        action="store_false", default=True,
                        help="skip the header orientation check (on by default, ~25%% of the "
                             "runtime): heads that fit the template better mirrored, upside "
                             "down or axis-swapped are quarantined")
    parser.add_argument("--key-file", metavar="F",
                        help="project key for DICOM UIDs, pseudonyms and output names "
                             "(created in OUT/.pixeldeid if absent)")
    parser.add_argument("--profile", default="basic", help="DICOM header profile (default basic)")
    parser.add_argument("--subject-db", metavar="F",
                        help="SQLite pseudonym map shared across batches (default "
                             "OUT/.pixeldeid/subjects.sqlite); give pixeldeid dicom's to number "
                             "the patients as it does")
    parser.add_argument("--prefix", metavar="P",
                        help="pseudonym prefix (default SUBJ): P_001, P_002...")
    parser.add_argument("--map-csv", metavar="F",
                        help="CSV id_old,id_new of patient IDs and UIDs (as pixeldeid dicom's)")


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return lambda it: it
    return lambda it: tqdm(it, total=total, desc="deface", unit="input", file=sys.stderr,
                           disable=not sys.stderr.isatty())


def _config(args: argparse.Namespace, out: Path):
    """The header settings of the flags, checked before any file is written (usage errors:
    a map or pseudonym database inside the release, an unreadable map, a bad prefix)."""
    from pixeldeid.api import DeidConfig
    from pixeldeid.batch import STATE_DIRNAME, check_not_released
    from pixeldeid.pseudonyms import load_map_csv

    map_csv = getattr(args, "map_csv", None)
    subject_db = getattr(args, "subject_db", None)
    if map_csv:  # original IDs and UIDs: identity, never in the release
        check_not_released(map_csv, out, "map CSV")
    if subject_db:  # keyed hashes that confirm identities to whoever has the key
        check_not_released(subject_db, out, "subject database")
    ids, uids = load_map_csv(map_csv) if map_csv else ({}, {})
    return DeidConfig(profile=getattr(args, "profile", "basic"),
                      pseudonym_prefix=getattr(args, "prefix", None), subject_map=ids,
                      uid_map=uids,
                      pseudonym_db=subject_db or out / STATE_DIRNAME / "subjects.sqlite")


def _deidentifier(config, key: bytes):
    from pixeldeid.api import Deidentifier

    config.key = key
    return Deidentifier(config)


def _plan(args: argparse.Namespace, out: Path, key: bytes) -> list:
    from .batch import plan, refuse_collisions

    if not getattr(args, "bids", False):
        return plan(args.src, out, key=key)
    from .bids import plan_bids

    jobs = []
    for s in args.src:
        jobs.extend(plan_bids(Path(s), out))
    return refuse_collisions(jobs)


def run(args: argparse.Namespace) -> int:
    """Run ``pixeldeid deface``; 0 all defaced, 1 some quarantined, 2 usage error."""
    from pixeldeid.atomic import remove_stale_temporaries
    from pixeldeid.batch import check_key, load_or_create_key, make_output_dir
    from pixeldeid.errors import DeidError

    from .batch import run_jobs

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
    deid = None
    try:
        config = _config(args, out)
        make_output_dir(out)
        if remove_stale_temporaries(out):  # files and folders a killed run left
            logger.info("removed temporaries of an interrupted run from %s", out)
        key = load_or_create_key(getattr(args, "key_file", None), out)
        check_key(out, key)  # (and marks OUT/.pixeldeid as the state folder: never released)
        jobs = _plan(args, out, key)
        if any(j.kind == "dicom" for j in jobs):
            deid = _deidentifier(config, key)
        summary = run_jobs(jobs, out, modality=args.modality, device=args.device, qc=args.qc,
                           deidentifier=deid, progress=_progress(len(jobs)),
                           check_orientation=getattr(args, "check_orientation", True))
    except DeidError as exc:
        print(f"pixeldeid deface: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if deid is not None:
            deid.close()
    for o in summary.quarantined:
        print(f"quarantined: {printable(o.source)}: {printable(o.reason)}", file=sys.stderr)
    print(f"pixeldeid deface: {summary.line(out)}")
    return summary.exit_status
