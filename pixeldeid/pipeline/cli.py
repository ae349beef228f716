"""``pixeldeid run``: the whole collection through every stage, resumable."""

from __future__ import annotations

import argparse
import logging
import sys

logger = logging.getLogger(__name__)

__all__ = ["DESCRIPTION", "EPILOG", "add_arguments", "run"]

DESCRIPTION = """De-identify a mixed collection in one resumable run.

DICOM of any modality (header core; burned-in text stage for pixel data; defacing for
head CT/MR/PET series when enabled, PET registered through a CT/MR series of the same
Frame of Reference), NIfTI heads (defacing), BIDS datasets (released as OUT/bids/<name>/
with subjects renamed after their pseudonyms, sidecars scrubbed, images defaced or copied
and named as not defaced) and whole-slide images (label, macro, metadata). Every input
is scanned once (headers only), grouped by patient/study/series and given a pseudonym;
the plan is printed as a table and recorded in OUT/.pixeldeid/run.sqlite, then the items
run on a local process pool or a Dask cluster. Killed at any moment and started again, it
continues where it stopped. Inputs that cannot be cleaned with confidence are copied to
OUT/quarantine with a reason."""

EPILOG = """examples:
  pixeldeid run /data/collection -o /release/coll --config configs/jobs/example.yaml
  pixeldeid run ct/ mri/ slides/ -o out/ --key-file project.key -j 4
  pixeldeid run in/ -o out/ --config job.yaml --dry-run          # print the plan only
  pixeldeid run in/ -o out/ --executor dask -j 8                  # Dask LocalCluster
  pixeldeid run in/ -o out/ --executor dask --scheduler tcp://head:8786
  pixeldeid run in/ -o out/ --profile tcia-like --zip --no-deface --pixels all-text
  pixeldeid run bids_dataset/ -o out/ --key-file project.key     # -> out/bids/bids_dataset/

With --scheduler, every Dask worker must see SRC and OUT at the same paths (a shared file
system) and have pixeldeid installed; results come back to this process, the only writer
of the ledger.

Exit status: 0 every item done, 1 something quarantined or not finished (run again to
continue), 2 usage error. Check OUT with `pixeldeid verify OUT`, review `pixeldeid report
OUT`, then release OUT without .pixeldeid/, quarantine/ and report/ (which show identity),
or only the zips of OUT/packages/ (--zip)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``run`` options to ``parser``."""
    parser.add_argument("sources", nargs="+", metavar="SRC", help="input files and folders")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    parser.add_argument("--config", metavar="JOB.yaml",
                        help="job file (schema: configs/schemas/job.schema.json; example: "
                             "configs/jobs/example.yaml); the flags below override it")
    parser.add_argument("-j", "--jobs", type=int, metavar="N", help="parallel workers")
    parser.add_argument("--executor", choices=("local", "dask"),
                        help="local process pool (default) or Dask distributed")
    parser.add_argument("--scheduler", metavar="ADDR",
                        help="Dask scheduler address, e.g. tcp://HOST:8786 (default: a "
                             "LocalCluster of -j N workers)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument("--profile", help="header profile (basic, tcia-like, limited-dataset)")
    parser.add_argument("--option", action="append", metavar="NAME",
                        help="PS3.15 option to add (repeatable)")
    parser.add_argument("--key-file", metavar="F", help="project key file (>= 16 bytes)")
    parser.add_argument("--map-csv", metavar="F", help="subject map CSV id_old,id_new")
    parser.add_argument("--prefix", metavar="P", help="pseudonym prefix (P_001, P_002...)")
    parser.add_argument("--layout", choices=("flat", "hierarchy"), help="DICOM output names")
    parser.add_argument("--pixels", choices=("off", "auto", "template", "phi-only", "all-text"),
                        help="burned-in text policy")
    parser.add_argument("--no-deface", action="store_true",
                        help="do not deface (NIfTI heads are then not released)")
    parser.add_argument("--zip", action="store_true", help="one zip per subject in OUT/packages")
    parser.add_argument("--retry-quarantined", action="store_true",
                        help="try the items an earlier run quarantined again (a rerun skips "
                             "them by default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _job(args: argparse.Namespace):
    import dataclasses

    from .job import load_job

    job = load_job(args.config)
    job = job.override(jobs=args.jobs, executor=args.executor, scheduler=args.scheduler,
                       profile=args.profile, key_file=args.key_file,
                       subject_map=args.map_csv, pseudonym_prefix=args.prefix,
                       layout=args.layout)
    if args.option:
        job = dataclasses.replace(job, options=tuple(dict.fromkeys((*job.options,
                                                                    *args.option))))
    if args.pixels:
        job = dataclasses.replace(job, pixels=dataclasses.replace(job.pixels,
                                                                  policy=args.pixels))
    if args.no_deface:
        job = dataclasses.replace(job, deface=dataclasses.replace(job.deface, enabled=False))
    if args.zip:
        job = dataclasses.replace(job, zip_per_subject=True)
    if job.jobs < 1:
        from ..errors import ProfileError

        raise ProfileError(f"-j must be at least 1, not {job.jobs}")
    return job


def run(args: argparse.Namespace) -> int:
    """Run ``pixeldeid run``; 0 all done, 1 quarantined or unfinished, 2 usage error."""
    from ..cli import printable
    from .runner import run_pipeline

    job = _job(args)
    if not getattr(args, "verbose", 0):
        logging.getLogger("pixeldeid.quarantine").setLevel(logging.ERROR)
        logging.getLogger("defacing").setLevel(logging.CRITICAL)
        logging.getLogger("wsi").setLevel(logging.CRITICAL)
        logging.getLogger("distributed").setLevel(logging.ERROR)
    summary = run_pipeline(args.sources, args.output, job, dry_run=args.dry_run,
                           progress=False if args.no_progress else None, echo=print,
                           retry_quarantined=args.retry_quarantined)
    if not summary.plan.items:
        print("pixeldeid run: error: no input files found under "
              f"{', '.join(printable(s) for s in args.sources)}", file=sys.stderr)
        return 2
    for src, reason in summary.quarantined:
        print(f"quarantined: {printable(src)}: {reason}", file=sys.stderr)
    for src, reason in summary.lost:
        print(f"not finished: {printable(src)}: {reason}", file=sys.stderr)
    if summary.skipped:
        print(f"skipped (not released): {len(summary.skipped)} file(s), e.g. "
              f"{printable(summary.skipped[0][0])}: {summary.skipped[0][1]}", file=sys.stderr)
    if not summary.dry_run:
        counts = {}
        for it in summary.plan.items:
            counts[it.kind] = counts.get(it.kind, 0) + 1
        print("by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for p in summary.packages:
            print(f"package: {p}")
    print(f"pixeldeid run: {summary.line()}")
    return summary.exit_status
