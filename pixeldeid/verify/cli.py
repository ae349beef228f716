"""``pixeldeid verify``: re-check an output folder for residual identity."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..atomic import write_bytes_atomic
from ..batch import STATE_DIRNAME, check_output_file
from ..cli import worker_count
from ..errors import DeidError

logger = logging.getLogger(__name__)

#: The last ``pixeldeid verify`` result, in OUT/.pixeldeid/ (shown by ``pixeldeid report``).
LAST_VERIFY_NAME = "verify.json"

DESCRIPTION = """Re-check every output of a de-identified folder before release.
Searches each file for every identifying value known from the run ledger
(OUT/.pixeldeid/run.sqlite) and/or the source headers (--against): person names in all
spellings, IDs with and without leading zeros, birth dates in several formats, accession
numbers, institution names, with --against also the sources' staff names and instance UIDs
(own and referenced) -- in file and folder names, in the raw bytes (UTF-8; UTF-16 for TIFF/slides; gzip and zip
members), every DICOM element at any depth (private and file meta too), NIfTI header text
fields and extensions, TIFF tags and slide properties. Checks that DICOM outputs read in
full and say Patient Identity Removed YES, that NIfTI files and slides open, that no slide
label/macro with text is left, that pixels equal the source's outside the recorded
redaction boxes (run ledger, source still there), that service dates differ from the
source's (--against, paired by pixel data or SR content; not with the Retain Longitudinal Full Dates
Option), runs dciodvfy on DICOM (with --against
or a ledger: only errors the source did not have), and OCRs pixels that were at risk (US,
SC, OT, XA, NM, secondary captures, Burned In Annotation): every frame of a cine of up to
32 frames; of a longer one 32 evenly spaced frames and every frame where the analysis of
all its frames sees the overlay text change (listed as OCR-verified in part, with the
count; without that analysis: not OCR-verified). Compressed data inside DICOM elements
(gzip, zlib, zip) is searched decompressed; a PDF or other document there is a finding
(not searchable). A DICOM data set without the Part 10 preamble is checked as DICOM. Findings give the file, the
check and the kind and length of the value -- never the value itself. Symbolic links in
OUT are findings (never followed). The result is also kept in OUT/.pixeldeid/verify.json
for `pixeldeid report`.
Exit status: 0 clean, 1 findings (or files that could not be OCR-verified, or --against
sources that could not be read), 2 usage error."""

EPILOG = """examples:
  pixeldeid verify release/                       # values from release/.pixeldeid/run.sqlite
  pixeldeid verify release/ --against /data/incoming --json findings.json
  pixeldeid verify release/ --against in/ --no-ocr --no-dciodvfy
  pixeldeid verify release/ --ocr tesseract -j 4
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``verify`` subcommand's arguments."""
    parser.add_argument("out", metavar="OUT", help="the output folder to check")
    parser.add_argument("--against", nargs="+", action="extend", default=[], metavar="SRC",
                        help="source files or folders: their headers give identity values")
    parser.add_argument("--ocr", default="auto", metavar="ENGINE",
                        help="OCR engine for at-risk pixels (auto, rapidocr, easyocr, tesseract)")
    parser.add_argument("--no-ocr", action="store_true",
                        help="no OCR: at-risk files are listed as not OCR-verified")
    parser.add_argument("--no-dciodvfy", action="store_true", help="skip dciodvfy")
    parser.add_argument("--json", metavar="FILE", help="write the findings as JSON")
    parser.add_argument("-j", "--jobs", type=worker_count, default=1, metavar="N",
                        help="worker processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run ``pixeldeid verify``; return the exit status."""
    from ..cli import printable
    from .checks import verify_output

    missing = [a for a in args.against if not Path(a).exists()]
    if missing:
        print(f"pixeldeid verify: error: {printable(missing[0])}: --against source not found",
              file=sys.stderr)
        return 2
    try:
        if args.json:
            check_output_file(args.json, "findings file")
        result = verify_output(args.out, args.against, ocr=None if args.no_ocr else args.ocr,
                               dciodvfy=not args.no_dciodvfy, jobs=args.jobs,
                               progress=False if args.no_progress else None)
    except DeidError as exc:
        print(f"pixeldeid verify: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    for f in result.findings:
        print(printable(f.line()))
    for rel, why in result.not_ocr_verified:
        print(printable(f"{rel}: [ocr] not OCR-verified: {why}"))
    for rel, why in result.ocr_partial:
        print(printable(f"{rel}: [ocr] OCR-verified in part: {why}"))
    for src, why in result.unreadable_sources:
        print(printable(f"{src}: [source] {why}: its identity values were not searched for"))
    kept = sorted({k for ks in result.retained_kinds.values() for k in ks})
    if kept:
        print(f"note: {', '.join(kept)} values not searched in {len(result.retained_kinds)} "
              f"file(s): the release keeps them (PS3.15 Retain Options)")
    if result.not_for_release:
        print(printable(f"note: {', '.join(result.not_for_release)} not checked: not part of "
                        f"the release (state, quarantined originals, QC images); never publish "
                        f"them -- publish the checked files only"))
    doc = json.dumps(result.to_json(), indent=2).encode("utf-8")
    if args.json:
        write_bytes_atomic(args.json, doc)
    state = Path(args.out) / STATE_DIRNAME
    if state.is_dir():  # the last verification, for `pixeldeid report` (no identity values)
        try:
            write_bytes_atomic(state / LAST_VERIFY_NAME, doc)
        except OSError as exc:
            logger.warning("could not record the verification in %s: %s", state, exc)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(result.values.items()))
    state = "clean" if result.clean else (f"{len(result.findings)} finding(s)" + (
        f", {len(result.not_ocr_verified)} not OCR-verified" if result.not_ocr_verified else "")
        + (f", {len(result.unreadable_sources)} source(s) not read: their identity values "
           f"were not searched for, NOT VERIFIED" if result.unreadable_sources else ""))
    if not result.files:  # a wrong path, or a release left in folders not checked
        print(f"pixeldeid verify: error: no file to release found in {printable(args.out)} "
              f"(nothing checked: NOT VERIFIED)", file=sys.stderr)
        return 1
    if result.ocr_partial:
        state += (f" ({len(result.ocr_partial)} cine(s) OCR-read in part: the frames where their "
                  f"overlay changes and a sample)")
    print(f"pixeldeid verify: {result.files} file(s) checked against {kinds}: {state}")
    return result.exit_status
