"""``pixeldeid templates``: import, list and try burned-in text templates."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

DESCRIPTION = """Burned-in text templates: known regions of burned-in identity keyed by header
values (Manufacturer, ManufacturerModelName, Rows, Columns...). Shipped templates live in
configs/templates/*.yaml; --templates DIR adds a folder (or file) of your own.

  import  convert an RSNA CTP DicomPixelAnonymizer script or a pydicom/deid recipe into a
          validated template YAML file (rules that cannot be expressed are skipped and named)
  list    list the templates (shipped and --templates)
  match   show which templates match DICOM files (header only)

Exit status: 0 all good, 1 rules skipped on import (or files unreadable for match), 2 usage
error (unreadable or invalid file)."""

EPILOG = """examples:
  pixeldeid templates import DicomPixelAnonymizer.script -o my-templates/
  pixeldeid templates import deid.dicom.ultrasound -o my-templates/ --format deid
  pixeldeid templates list --templates my-templates/
  pixeldeid templates match scans/*.dcm --templates my-templates/
  pixeldeid dicom in/ -o out/ --templates my-templates/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``templates`` subcommands."""
    sub = parser.add_subparsers(dest="templates_command", metavar="ACTION")
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("import", help="convert a CTP script or deid recipe to template YAML",
                       formatter_class=fmt,
                       epilog="example:\n  pixeldeid templates import deid.dicom -o mine/\n")
    p.add_argument("file", metavar="FILE", help="CTP DicomPixelAnonymizer script or deid recipe")
    p.add_argument("-o", "--output", default=".", metavar="DIR",
                   help="folder for the YAML file (default: current folder)")
    p.add_argument("--format", choices=("auto", "ctp", "deid"), default="auto",
                   help="source format (default: detected from the content)")
    p.add_argument("--name", metavar="NAME",
                   help="output file name without .yaml (default: from FILE)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p = sub.add_parser("list", help="list the templates", formatter_class=fmt,
                       epilog="example:\n  pixeldeid templates list --templates mine/\n")
    p.add_argument("--templates", action="append", default=[], metavar="DIR",
                   help="extra template folder or file (repeatable)")
    p = sub.add_parser("match", help="which templates match DICOM files", formatter_class=fmt,
                       epilog="example:\n  pixeldeid templates match us/*.dcm\n")
    p.add_argument("files", nargs="+", metavar="FILE", help="DICOM files")
    p.add_argument("--templates", action="append", default=[], metavar="DIR",
                   help="extra template folder or file (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Run ``pixeldeid templates``; return the exit status."""
    action = getattr(args, "templates_command", None)
    if action == "import":
        return _import(args)
    if action == "list":
        return _list(args)
    if action == "match":
        return _match(args)
    print("pixeldeid templates: error: choose an action: import, list or match "
          "(see pixeldeid templates --help)", file=sys.stderr)
    return 2


def _import(args: argparse.Namespace) -> int:
    import yaml

    from ..atomic import write_bytes_atomic
    from ..cli import printable
    from ..errors import ProfileError
    from .template_import import import_file, slug
    from .templates import parse_templates

    _PlainDumper = _plain_dumper()  # noqa: N806
    result = import_file(args.file, args.format)
    out = Path(args.output) / f"{args.name or slug(Path(args.file).name, 80)}.yaml"
    if out.exists() and not args.force:
        raise ProfileError("output file exists (use --force to replace it)", str(out))
    data = [t.to_dict() for t in result.templates]
    head = (f"# Burned-in text templates imported by `pixeldeid templates import` from\n"
            f"# {Path(args.file).name}: {len(data)} imported, {len(result.skipped)} skipped.\n")
    for name, why in result.skipped:
        head += f"# skipped {name}: {why}\n"
    text = head + yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True,
                            width=100, default_flow_style=None)
    parse_templates(yaml.safe_load(text), str(out))  # what is written must load
    write_bytes_atomic(out, text.encode("utf-8"))
    kinds = Counter(t.action for t in result.templates)
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"pixeldeid templates: {len(data)} templates ({detail}) written to {printable(out)}")
    for name, why in result.skipped:
        print(f"skipped: {name}: {why}", file=sys.stderr)
    return 1 if result.skipped else 0


def _plain_dumper() -> type:
    import yaml

    class PlainDumper(yaml.SafeDumper):
        """Safe YAML without anchors and aliases (each template reads on its own)."""

        def ignore_aliases(self, data: object) -> bool:
            return True

    return PlainDumper


def _list(args: argparse.Namespace) -> int:
    from .templates import load_templates

    for t in load_templates(args.templates):
        what = f"{len(t.regions)} region(s)" if t.action == "redact" else t.action
        print(f"{t.name}\t{what}\t{Path(t.source).name}\t{t.description}")
    return 0


def _match(args: argparse.Namespace) -> int:
    import pydicom
    from pydicom.errors import InvalidDicomError

    from ..cli import printable
    from .templates import load_templates, matching_templates

    templates = load_templates(args.templates)
    status = 0
    for f in args.files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (OSError, InvalidDicomError) as exc:
            print(f"{printable(f)}: cannot read: {exc}", file=sys.stderr)
            status = 1
            continue
        names = [f"{t.name} ({t.action})" for t in matching_templates(ds, templates, None)]
        print(f"{printable(f)}: {', '.join(names) if names else 'no template'}")
    return status
