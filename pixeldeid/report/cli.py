"""``pixeldeid report``: a static HTML QC report of an output folder."""

from __future__ import annotations

import argparse
import sys

from ..errors import DeidError

DESCRIPTION = """Write a static HTML QC report of a de-identified output folder.
index.html + images/ (inline CSS, no external URL: opens offline): counts per stage and
modality, the quarantine list with reasons, before/after thumbnails of redacted frames
with their boxes, cine strips, defacing renders, slide label/macro before and after, the
sorted unique values of retained text for a human to scan, the profile, options and
PS3.15 release used, and a residual-risk table (k-anonymity over retained indirect
identifiers such as age, sex, weight and height; classes smaller than k flagged).
Works with the run ledger of `pixeldeid run` and on plain dicom/deface/wsi outputs; the
ledger of `pixeldeid dicom` gives the input totals (written, already done, quarantined).
The report shows images of identity: it stays inside OUT (default OUT/report). It names
no input file (counts and output names only)."""

EPILOG = """examples:
  pixeldeid report release/                  # release/report/index.html
  pixeldeid report release/ --k 10 -o release/qc-report
  pixeldeid report release/ -o /secure/review/r1 --allow-outside
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` subcommand's arguments."""
    parser.add_argument("out", metavar="OUT", help="the output folder to report on")
    parser.add_argument("-o", "--output", metavar="DIR", help="report folder (default OUT/report)")
    parser.add_argument("--k", type=int, default=5, metavar="K",
                        help="flag equivalence classes smaller than K (default 5)")
    parser.add_argument("--allow-outside", action="store_true",
                        help="allow a report folder outside OUT (it holds images of identity)")
    parser.add_argument("--max-images", type=int, default=400, metavar="N",
                        help="write at most N images (default 400)")
    parser.add_argument("--sample", type=int, default=12, metavar="N",
                        help="thumbnails of N DICOM outputs picked at random (default 12)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``pixeldeid report``; return the exit status."""
    from ..cli import printable
    from .render import build_report

    if args.k < 1:
        print("pixeldeid report: error: --k must be at least 1", file=sys.stderr)
        return 2
    try:
        index = build_report(args.out, args.output, k=args.k, allow_outside=args.allow_outside,
                             max_images=max(0, args.max_images), sample=max(0, args.sample),
                             progress=False if args.no_progress else None)
    except DeidError as exc:
        print(f"pixeldeid report: error: {exc}", file=sys.stderr)
        return 2
    print(f"pixeldeid report: {printable(index)}")
    return 0
