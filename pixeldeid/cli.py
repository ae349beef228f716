"""The ``pixeldeid`` command line: one command, one subcommand per kind of work.

Exit status: 0 when every input was cleaned, 1 when some were quarantined or failed,
2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from . import __version__
from .errors import DeidError, MissingDependencyError, OutputError
from .paths import printable

logger = logging.getLogger("pixeldeid")

DICOM_EPILOG = """\
examples:
  pixeldeid dicom /data/study1 -o /release/study1 --key-file project.key
  pixeldeid dicom in/ -o out/ --profile tcia-like --layout hierarchy -j 4
  pixeldeid dicom in/ -o out/ --option retain-longitudinal-modified-dates \\
      --option clean-descriptors --prefix TRIAL --map-csv subjects.csv --export-map map.csv
  pixeldeid dicom in/ -o out/ --layout dicomdir --site-id 07 --site-name "Site 07" \\
      --trial-sponsor ACME --trial-protocol-id ACME-01
  pixeldeid dicom us/ -o out/ --pixels all-text --ocr rapidocr --device cuda
  pixeldeid dicom us/ -o out/ --pixels template --templates my-templates/

Burned-in text (--pixels, default auto): every image is checked; text matching the
patient's header values or identity patterns (dates, IDs, names) is blacked out in every
frame, the result is read again, and images where identity stays readable, or images at
risk (US, SC, OT, XA, NM, secondary captures, Burned In Annotation YES) with neither OCR
nor a matching template, are quarantined. auto: templates where a signature matches plus
OCR elsewhere, keeping safe annotations (MI, TIS, probe, depth); phi-only: OCR only;
all-text: remove every text OCR finds; template: templates (or, for ultrasound without
one, everything outside the Sequence of Ultrasound Regions) only; off: pixel values
untouched (as with every policy, comment and metadata segments of compressed frames,
such as JPEG EXIF or COM, are removed without decoding the image).

The output folder also holds quarantine/ (inputs that could not be cleaned, with a
.reason.txt each) and .pixeldeid/ (ledger, pseudonym map of hashed IDs and, when no
--key-file is given, the generated project key). Release neither.
"""

#: Subcommands provided by other packages: name -> module with DESCRIPTION, EPILOG,
#: add_arguments(parser) and run(args) -> int.
PLUGIN_COMMANDS = {"run": "pixeldeid.pipeline.cli", "deface": "defacing.cli", "wsi": "wsi.cli",
                   "verify": "pixeldeid.verify.cli", "report": "pixeldeid.report.cli",
                   "templates": "pixeldeid.burnedin.templates_cli"}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def worker_count(text: str) -> int:
    """argparse type of ``-j N``: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return n


def _add_dicom(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dicom", help="de-identify DICOM headers (PS3.15 Annex E)",
                       description="De-identify DICOM files: PS3.15 Annex E Basic Profile and "
                                   "options, keyed UIDs, date shifting, pseudonyms.",
                       epilog=DICOM_EPILOG, formatter_class=_Formatter)
    p.add_argument("sources", nargs="+", metavar="SRC", help="DICOM files or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("--profile", default="basic",
                   help="named profile (basic, tcia-like, limited-dataset) or a YAML file")
    p.add_argument("--option", action="append", default=[], metavar="NAME",
                   help="PS3.15 option to add, e.g. retain-longitudinal-modified-dates "
                        "(repeatable; `pixeldeid profiles` lists them)")
    p.add_argument("--key-file", metavar="F", help="project key file (>= 16 bytes)")
    p.add_argument("--map-csv", metavar="F", help="CSV id_old,id_new of patient IDs and UIDs")
    p.add_argument("--export-map", metavar="F",
                   help="write the old->new mapping (for the data holder only; a patient "
                        "without a Patient ID is named NAME:<name>:<birth date>, a form "
                        "--map-csv takes too)")
    p.add_argument("--layout", choices=("flat", "hierarchy", "dicomdir"), default="flat")
    p.add_argument("--prefix", metavar="P", help="pseudonym prefix (default SUBJ): P_001, P_002...")
    p.add_argument("--subject-db", metavar="F",
                   help="SQLite pseudonym map shared across batches (default OUT/.pixeldeid/)")
    p.add_argument("--date-offset", type=int, metavar="DAYS",
                   help="fixed date shift in days for every patient (default: keyed per patient)")
    p.add_argument("--site-id", help="Clinical Trial Site ID (the site and protocol values "
                   "need --trial-sponsor and --trial-protocol-id: Type 1 in their module)")
    p.add_argument("--site-name", help="Clinical Trial Site Name, written to Institution Name too")
    p.add_argument("--trial-sponsor", help="Clinical Trial Sponsor Name")
    p.add_argument("--trial-protocol-id", help="Clinical Trial Protocol ID")
    p.add_argument("--trial-protocol-name", help="Clinical Trial Protocol Name")
    p.add_argument("--time-point", help="Clinical Trial Time Point ID")
    p.add_argument("--time-point-description", help="Clinical Trial Time Point Description")
    g = p.add_argument_group("burned-in text in pixel data")
    g.add_argument("--pixels", default="auto", metavar="POLICY",
                   help="off, auto (default), template, phi-only or all-text")
    g.add_argument("--ocr", default="auto", metavar="ENGINE",
                   help="OCR engine: auto (default: easyocr on a GPU, else rapidocr, else "
                        "tesseract), rapidocr, easyocr, tesseract or none")
    g.add_argument("--device", default="auto", metavar="DEV",
                   help="auto (default), cpu or cuda: where OCR and frame analysis run")
    g.add_argument("--templates", metavar="PATH",
                   help="folder or file of extra redaction templates (YAML) besides the "
                        "shipped ones")
    p.add_argument("-j", "--jobs", type=worker_count, default=1, metavar="N",
                   help="worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_dicom)


def _run_dicom(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import DeidConfig, SiteInfo
    from .batch import check_export_map, check_not_released, load_or_create_key, run_batch
    from .pipeline.runner import check_option_claims
    from .profiles import load_profile
    from .pseudonyms import load_map_csv

    # Validate profile and options before touching any file (usage errors exit 2 and
    # write nothing, not even a generated key).
    profile = load_profile(args.profile).with_options(args.option)
    pixels = _pixel_settings(args)
    check_option_claims(profile.options, pixels,
                        deface="pixeldeid dicom does not do; deface with pixeldeid deface (it "
                               "records the option itself)")
    out = Path(args.output)
    if args.map_csv:  # original IDs and UIDs: identity, never in the release
        check_not_released(args.map_csv, out, "map CSV")
    if args.subject_db:  # keyed hashes that confirm identities to whoever has the key
        check_not_released(args.subject_db, out, "subject database")
    ids, uids = load_map_csv(args.map_csv) if args.map_csv else ({}, {})
    if uids and "retain-uids" in profile.options:
        raise DeidError(f"--map-csv gives new values for {len(uids)} UID(s), but option "
                        "retain-uids keeps every UID: drop the option or the UID rows")
    if args.export_map:
        check_export_map(args.export_map, out)
    site = SiteInfo(args.site_id, args.site_name, args.trial_sponsor, args.trial_protocol_id,
                    args.trial_protocol_name, args.time_point, args.time_point_description)
    config = DeidConfig(profile=profile, pseudonym_prefix=args.prefix, subject_map=ids,
                        uid_map=uids, pseudonym_db=args.subject_db,
                        date_offset_days=args.date_offset, site=site, pixels=pixels)
    config.key = load_or_create_key(args.key_file, out)  # last: it may create OUT
    if not args.verbose:  # each quarantined input gets one line, printed below
        logging.getLogger("pixeldeid.quarantine").setLevel(logging.ERROR)
    try:
        summary = run_batch(args.sources, out, config, layout=args.layout, jobs=args.jobs,
                            export_map=args.export_map,
                            progress=False if args.no_progress else None)
    except OutputError as exc:  # full or read-only: what was done, then why it stopped
        if exc.summary is not None:
            for o in exc.summary.quarantined:
                print(f"quarantined: {printable(o.source)}: {printable(o.reason)}",
                      file=sys.stderr)
            print(f"pixeldeid dicom: {exc.summary.line(out)}")
        print(f"pixeldeid: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    for o in summary.quarantined:
        print(f"quarantined: {printable(o.source)}: {printable(o.reason)}", file=sys.stderr)
    for o in summary.map_gaps:
        print(f"not in the export map: {printable(o.source)}: {printable(o.reason)}",
              file=sys.stderr)
    print(f"pixeldeid dicom: {summary.line(out)}")
    if not summary.all:
        print("pixeldeid: error: no input files found under "
              f"{', '.join(printable(s) for s in args.sources)}", file=sys.stderr)
        return 2
    return summary.exit_status


def _pixel_settings(args: argparse.Namespace):
    """The burned-in text settings of the flags, checked (usage errors before any file)."""
    if args.pixels == "off":
        return None
    from .burnedin.stage import PixelSettings, validate_settings

    settings = PixelSettings(policy=args.pixels, ocr=args.ocr, device=args.device,
                             templates_dir=args.templates)
    validate_settings(settings)
    return settings


def _add_profiles(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profiles", help="list profiles and PS3.15 options",
                       description="List the shipped profiles and the PS3.15 Annex E options.",
                       epilog="example:\n  pixeldeid profiles", formatter_class=_Formatter)
    p.set_defaults(func=_run_profiles)


def _run_profiles(args: argparse.Namespace) -> int:
    from .profiles import load_profile, profile_names
    from .standard import OPTIONS, PIXEL_OPTIONS, release

    print(f"PS3.15 {release()} options:")
    for o in OPTIONS:
        print(f"  {o}")
    print("pixel options (recorded where the pixel stage or pixeldeid deface does the work):")
    for o in PIXEL_OPTIONS:
        print(f"  {o}")
    print("profiles:")
    for n in profile_names():
        prof = load_profile(n)
        print(f"  {n}: {', '.join(sorted(prof.options)) or '(no options)'}")
    return 0


def _add_plugins(sub: argparse._SubParsersAction) -> None:
    for name, modname in PLUGIN_COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ImportError as exc:  # a package of the distribution without its CLI yet
            logger.debug("subcommand %s unavailable: %s", name, exc)
            continue
        if not hasattr(mod, "add_arguments") or not hasattr(mod, "run"):
            continue
        desc = getattr(mod, "DESCRIPTION", "")
        p = sub.add_parser(name, help=desc.splitlines()[0] if desc else name, description=desc,
                           epilog=getattr(mod, "EPILOG", None), formatter_class=_Formatter)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pixeldeid", formatter_class=_Formatter,
        description="Remove identity from medical images.",
        epilog="Run `pixeldeid COMMAND --help` for the options and examples of each command.")
    parser.add_argument("--version", action="version", version=f"pixeldeid {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (also pydicom's warnings about input values, "
                        "which may quote them: for the operator's console, not shared logs)")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_dicom(sub)
    _add_profiles(sub)
    _add_plugins(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose > 1 else
                                              logging.INFO if args.verbose else logging.WARNING)
    logging.basicConfig(level=level, format="pixeldeid: %(levelname)s: %(message)s")
    # pydicom logs a failed pixel decode at ERROR with its traceback, naming no file; the
    # file is quarantined with a one-line reason either way (-v shows pydicom's account)
    logging.getLogger("pydicom").setLevel(logging.ERROR if args.verbose else logging.CRITICAL)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            if args.verbose < 1:
                # pydicom warns about each odd input value it reads; in a batch these bury the
                # progress bar and the summary (a file that cannot be cleaned is quarantined
                # with its reason either way); -v shows them
                warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
            return int(args.func(args) or 0)
    except (DeidError, MissingDependencyError) as exc:
        print(f"pixeldeid: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `pixeldeid profiles | head -1`: the reader went; no error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a path given on the command line that cannot be written or read
        logger.debug("command failed", exc_info=True)
        where = f"{printable(exc.filename)}: " if exc.filename else ""
        print(f"pixeldeid: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixeldeid: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
