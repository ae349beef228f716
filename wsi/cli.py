"""``pixeldeid wsi``: de-identify whole-slide images (label, macro, metadata, regions)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import NamedTuple

from pixeldeid.atomic import TMP_PREFIX, atomic_output, remove_stale_temporaries
from pixeldeid.errors import DeidError
from pixeldeid.paths import printable, read_csv

from .api import SlideOptions, SlideResult, deidentify_slide, output_name

logger = logging.getLogger(__name__)

__all__ = ["DESCRIPTION", "EPILOG", "add_arguments", "run", "SLIDE_SUFFIXES", "UNSUPPORTED_SUFFIXES"]

DESCRIPTION = """De-identify whole-slide images in place in their TIFF structure.
Removes or replaces the label, removes or redacts the macro, cleans vendor metadata by an
allowlist (dates removed or shifted), blacks out level-0 regions on every pyramid level and
the thumbnail re-encoding only the tiles they touch, then scans the raw bytes of the output
for every removed value and re-opens it with openslide. Slides that fail any step are
quarantined (OUT/quarantine) with a reason; inputs are never modified unless --in-place.
OUT/.pixeldeid/wsi-report.csv lists each input with its output and status (it names the
inputs: not for release)."""

EPILOG = """examples:
  pixeldeid wsi slides/ -o clean/
  pixeldeid wsi case.svs -o clean/ --pseudonym SUBJ-0001 --label replace --macro redact
  pixeldeid wsi case.svs -o clean/ --macro remove --redact 12000,8000,2000,1500
  pixeldeid wsi archive/*.ndpi --in-place --shift-days -37
  pixeldeid wsi case.svs -o clean/ --dates shift --patient-id MRN0042 --key-file project.key
  pixeldeid wsi slides/ -o clean/ --pseudonym-map map.csv --value "Jane Doe" --value S24-1234
"""

#: file suffixes picked up when a folder is given
SLIDE_SUFFIXES = (".svs", ".ndpi", ".tif", ".tiff", ".bif", ".scn", ".dcm")
#: slide formats found in folders that no wsi module de-identifies: quarantined, not skipped
UNSUPPORTED_SUFFIXES = (".mrxs", ".vms", ".vmu", ".svslide", ".czi", ".isyntax", ".vsi",
                        ".kfb", ".sdpc", ".mds")


def _region(text: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(float(p)) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--redact wants x,y,w,h integers, not {text!r}") from None
    if len(parts) != 4 or parts[2] <= 0 or parts[3] <= 0 or min(parts[:2]) < 0:
        raise argparse.ArgumentTypeError(f"--redact wants x,y,w,h with w,h > 0, not {text!r}")
    return parts  # type: ignore[return-value]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wsi`` subcommand's arguments."""
    parser.add_argument("src", nargs="+", metavar="SRC", help="slide files or folders")
    parser.add_argument("-o", "--out", metavar="OUT", help="output folder (not with --in-place)")
    parser.add_argument("--in-place", action="store_true",
                        help="replace each input by its verified de-identified version")
    parser.add_argument("--label", choices=("remove", "replace", "keep"), default="remove",
                        help="remove the label, or replace it by one showing the pseudonym")
    parser.add_argument("--macro", choices=("remove", "redact", "keep"), default="remove",
                        help="remove the macro image, keep it with its label end and any "
                             "OCR text blacked out (redact: every vendor, incl. the Philips "
                             "base64 macro, the Ventana label image, the Leica macro, generic "
                             "TIFF macro pages and the DICOM OVERVIEW), or keep it as is")
    parser.add_argument("--redact", action="append", type=_region, default=[], metavar="X,Y,W,H",
                        help="level-0 rectangle blacked out on every level and the thumbnail "
                             "(repeatable)")
    parser.add_argument("--ocr", default="none", metavar="ENGINE",
                        help="OCR engine finding text on thumbnail, lowest level and macro "
                             "(rapidocr, or none)")
    parser.add_argument("--pseudonym", help="output name and replaced-label text (one SRC only)")
    parser.add_argument("--pseudonym-map", metavar="CSV",
                        help="CSV with columns source,pseudonym[,patient_id] (source = file "
                             "name or path; for a DICOM slide one of its files or its folder; "
                             "patient_id keys the date offset)")
    parser.add_argument("--prefix", default="SLIDE",
                        help="pseudonyms PREFIX-0001... for slides without one (default SLIDE)")
    parser.add_argument("--dates", choices=("remove", "shift"), default="remove",
                        help="remove dates (default), or shift them by the project key's "
                             "per-patient offset, the same days as the header core gives the "
                             "DICOM of that patient (needs --patient-id or a patient_id column "
                             "in --pseudonym-map)")
    parser.add_argument("--shift-days", type=int, default=None, metavar="N",
                        help="shift kept dates by exactly N days for every slide (explicit "
                             "override of the keyed offset; implies --dates shift)")
    parser.add_argument("--patient-id", metavar="ID",
                        help="original patient ID of the slide (one SRC only): keys its date "
                             "offset like the DICOM header core does")
    parser.add_argument("--value", action="append", default=[], metavar="TEXT",
                        help="identifying text that must not survive anywhere (repeatable)")
    parser.add_argument("--key-file", metavar="F",
                        help="project key for DICOM WSI UIDs and keyed date offsets "
                             "(default: generated in OUT/.pixeldeid)")


def _is_dicom(p: Path) -> bool:
    if p.suffix.lower() == ".dcm":
        return True
    try:
        with open(p, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


#: ``OUT/.pixeldeid/wsi-report.csv``: per input its output, vendor, status and reason
REPORT_NAME = "wsi-report.csv"


def report_path(out: Path) -> Path:
    """Where :func:`write_report` writes (the state folder: input paths are identity)."""
    from pixeldeid.batch import STATE_DIRNAME

    return out / STATE_DIRNAME / REPORT_NAME


def write_report(out: Path, rows: list[list[str]]) -> None:
    """The report CSV of a ``pixeldeid wsi`` run (source, output, vendor, status, reason)."""
    path = report_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as fh:
        lines = ["source,output,vendor,status,reason\n"]
        for cells in rows:
            lines.append(",".join('"' + c.replace('"', "'") + '"' for c in cells) + "\n")
        fh.write("".join(lines).encode("utf-8"))


def _run_dicom(slides: list[list[Path]], refused: list[tuple[Path, str]], names: list[str],
               args: argparse.Namespace) -> tuple[int, int, list[list[str]]]:
    """DICOM WSI: the instances of each slide (:func:`wsi.dicomwsi.group_series`) handled
    together, each slide under its pseudonym; the counts of clean and quarantined slides
    and a report row per input file. A slide whose folder holds it from an earlier run
    into OUT (same key) is already done: skipped, and counted clean."""
    from pixeldeid.batch import load_or_create_key

    from . import dicomwsi

    opts = SlideOptions(label=args.label, macro=args.macro, redact_regions=tuple(args.redact),
                        date_offset=args.shift_days, ocr=args.ocr,
                        extra_values=tuple(args.value))
    key = load_or_create_key(args.key_file, Path(args.out))
    deid = dicomwsi.make_deidentifier(key, opts, keyed_dates=args.dates == "shift")
    results = [dicomwsi.quarantine_refused(f, reason, args.out) for f, reason in refused]
    for members, name in zip(slides, names, strict=True):
        folder = Path(args.out) / dicomwsi.slide_name(name)
        if dicomwsi.done_before(members, folder, deid):
            print(f"pixeldeid wsi: {printable(members[0].parent)}: already done "
                  f"({printable(folder)}), skipped", file=sys.stderr)
            results.append(dicomwsi.SeriesResult(
                [str(m) for m in members], "clean", str(folder),
                reason="already done (its output folder holds it from an earlier run)"))
            continue
        results.append(dicomwsi.deidentify_series(
            members, args.out, dataclasses.replace(opts, pseudonym=name), deid))
    bad = 0
    for r in results:
        if not r.ok:
            bad += 1
            print(f"pixeldeid wsi: {', '.join(printable(s) for s in r.sources[:3])}: "
                  f"{printable(r.reason)}", file=sys.stderr)
    rows = [[src, r.output_dir or "", "dicom", r.status, r.reason or ""]
            for r in results for src in r.sources]
    return len(results) - bad, bad, rows


class PseudonymMap(NamedTuple):
    """A ``--pseudonym-map``: source -> pseudonym, -> patient ID, -> its line."""

    pseudonyms: dict[str, str]
    patients: dict[str, str]
    lines: dict[str, int]


class SlideName(NamedTuple):
    """A slide's pseudonym and where it was given (errors name that, never the value)."""

    text: str
    origin: str  # "--pseudonym", "--pseudonym-map line N" or "--prefix"
    chosen: str  # what a person chose: all of a given one, the prefix of PREFIX-nnnn


def _slide_keys(members: list[Path]) -> list[str]:
    """The map sources that name a DICOM slide: one of its files or its folder (path or
    name)."""
    keys = [str(m) for m in members] + [m.name for m in members]
    return keys + [str(members[0].parent), members[0].parent.name]


def _pick_name(keys: list[str], pmap: PseudonymMap, args: argparse.Namespace,
               number: int) -> SlideName:
    """The pseudonym of a slide: ``--pseudonym``, else the map's entry for the first of
    ``keys`` it has, else ``PREFIX-nnnn``."""
    if args.pseudonym:
        return SlideName(args.pseudonym, "--pseudonym", args.pseudonym)
    hit = next((c for c in keys if pmap.pseudonyms.get(c)), None)
    if hit is not None:
        given = pmap.pseudonyms[hit]
        return SlideName(given, f"--pseudonym-map line {pmap.lines[hit]}", given)
    return SlideName(f"{args.prefix}-{number:04d}", "--prefix", args.prefix)


def _dicom_names(slides: list[list[Path]], pmap: PseudonymMap, args: argparse.Namespace,
                 first: int) -> list[SlideName]:
    """The pseudonym of each DICOM slide (:func:`_pick_name` by :func:`_slide_keys`),
    ``PREFIX-nnnn`` numbered on from ``first``."""
    return [_pick_name(_slide_keys(members), pmap, args, k)
            for k, members in enumerate(slides, first)]


def _collect(srcs: list[str], out: str | None
             ) -> tuple[list[Path], list[tuple[Path, str]], list[Path]]:
    """The inputs of the sources, each once (a folder and a slide in it: one slide).

    Returns ``(slides, refused, others)``: the slide files (every file named on the
    command line, the files of folders with a :data:`SLIDE_SUFFIXES` suffix), the inputs
    to quarantine with their reason (FIFOs, devices, dangling links, unreadable folders:
    :func:`pixeldeid.batch.iter_inputs`; slides of :data:`UNSUPPORTED_SUFFIXES`), and the
    other files of folders (no slides: skipped, and said so). Folders are walked as
    ``pixeldeid dicom`` walks them; OUT (by resolved path; when a source lies inside OUT
    only OUT's quarantine and state folders) and pixeldeid's temporaries are left out.
    """
    from pixeldeid.batch import STATE_DIRNAME, iter_inputs
    from pixeldeid.quarantine import QUARANTINE_DIRNAME

    named = {os.path.abspath(s) for s in srcs}
    ours = [(Path(out) / d).resolve() for d in (QUARANTINE_DIRNAME, STATE_DIRNAME)] if out else []
    if out and not any(Path(s).resolve().is_relative_to(Path(out).resolve()) for s in srcs):
        ours.append(Path(out).resolve())  # OUT inside a source: its outputs are no inputs
    slides: list[Path] = []
    refused: list[tuple[Path, str]] = []
    others: list[Path] = []
    for p, reason in iter_inputs(srcs):
        real = Path(os.path.realpath(p))  # never raises (a link loop stays a link)
        if p.name.startswith(TMP_PREFIX) or any(real.is_relative_to(d) for d in ours):
            continue
        suffix = p.suffix.lower()
        if reason:
            refused.append((p, reason))
        elif os.path.abspath(p) in named or suffix in SLIDE_SUFFIXES:
            slides.append(p)
        elif suffix in UNSUPPORTED_SUFFIXES:
            refused.append((p, f"unsupported format ({suffix} slides are not de-identified)"))
        else:
            others.append(p)
    return slides, refused, others


def _refuse(path: Path, reason: str, args: argparse.Namespace) -> SlideResult:
    """Quarantine an input that is no slide to clean (a FIFO, an unsupported format...)."""
    from pixeldeid.quarantine import quarantine

    rec = quarantine(path, args.out or path.parent, reason, stage="wsi")
    print(f"pixeldeid wsi: {printable(path)}: {printable(reason)}", file=sys.stderr)
    return SlideResult(str(path), None, None, "quarantined", reason=reason,
                       quarantine_copy=rec.copy)


def _load_map(path: str) -> PseudonymMap:
    """Read ``source,pseudonym[,patient_id]`` rows (a later row of a source wins)."""
    rows = read_csv(path, "pseudonym map")  # unreadable, not UTF-8, bad CSV: usage error
    numbered = [(n, r) for n, r in enumerate(rows, 1) if len(r) >= 2 and r[0].strip()]
    if numbered and numbered[0][0] == 1 and \
            [c.strip().lower() for c in numbered[0][1][:2]] == ["source", "pseudonym"]:
        numbered = numbered[1:]
    return PseudonymMap({r[0].strip(): r[1].strip() for _, r in numbered},
                        {r[0].strip(): r[2].strip() for _, r in numbered
                         if len(r) >= 3 and r[2].strip()},
                        {r[0].strip(): n for n, r in numbered})


class _Output(NamedTuple):
    """What a slide becomes in OUT: a file (slide files) or a folder (DICOM slides)."""

    written: str  # its name in OUT
    name: SlideName
    where: Path  # the slide file, or the DICOM slide's folder


def _outputs(files: list[Path], names: list[SlideName], slides: list[list[Path]],
             dicom_names: list[SlideName], in_place: bool = False) -> list[_Output]:
    """The output of every slide, file names by :func:`wsi.api.output_name` (``in_place``:
    the file itself) and folder names by :func:`wsi.dicomwsi.slide_name`.

    Raises
    ------
    DeidError
        A name pixeldeid reserves (:func:`wsi.dicomwsi.reserved_name`), naming where the
        pseudonym was given.
    """
    from .dicomwsi import reserved_name, slide_name

    outs = []
    for f, name in zip(files, names, strict=True):
        try:
            written = f.name if in_place else output_name(f, SlideOptions(pseudonym=name.text))
            outs.append(_Output(written, name, f))
        except DeidError as exc:
            raise DeidError(f"{name.origin}: {exc.reason}") from None
    for members, name in zip(slides, dicom_names, strict=True):
        folder = slide_name(name.text)
        reserved = reserved_name(folder)
        if reserved:
            raise DeidError(f"{name.origin}: {reserved}")
        outs.append(_Output(folder, name, members[0].parent))
    return outs


def _output_clash(outputs: list[_Output]) -> str | None:
    """A message when two slides would get the same output name, else None.

    The names compared are those written (characters a file name cannot hold become
    ``_``), files and DICOM slide folders together, case-folded for case-insensitive file
    systems: the pseudonyms "P 1" and "P_1" both give ``P_1.svs`` and one slide would
    replace the other; a folder ``P1.svs`` would refuse the slide file ``P1.svs``.
    """
    seen: dict[str, _Output] = {}
    for o in outputs:  # (one entry a slide: any name seen before is another slide's)
        first = seen.setdefault(o.written.casefold(), o)
        if first is not o:
            return (f"two slides would get the same output name {printable(o.written)}: "
                    f"pseudonym {first.name.text!r} ({printable(first.where)}) and "
                    f"{o.name.text!r} ({printable(o.where)})")
    return None


def _holds(name: SlideName, tokens: list[str]) -> bool:
    """Whether what a person chose of ``name`` holds an identity token: the header core's
    rule (:meth:`pixeldeid.pseudonyms.Pseudonyms.chosen_words`): a token equal to one of
    its words or to all of it, case-folded."""
    from pixeldeid.api import _word_set

    words = _word_set(name.chosen) | {name.chosen.lower()}
    return any(t.lower() in words for t in tokens)


def _identity_problem(outputs: list[_Output], files: list[Path], slides: list[list[Path]],
                      values: list[str]) -> str | None:
    """A message when a slide's pseudonym holds the identity of its patient (the headers
    of a DICOM slide's instances) or a ``--value``: it would name the output and be
    drawn into a replaced label. Names where it was given, never the value."""
    from pixeldeid.textclean import identity_tokens

    from .dicomwsi import patient_tokens

    extra = identity_tokens(values)
    tokens = [extra] * len(files) + [patient_tokens(m) + extra for m in slides]
    for o, toks in zip(outputs, tokens, strict=True):
        if _holds(o.name, toks):
            return (f"{o.name.origin}: the pseudonym given to {printable(o.where)} holds the "
                    "patient's own name, ID or birth date, or a --value text; it would name "
                    "the output and its label: give another")
    return None


def _dicom_patient_problem(slides: list[list[Path]], pmap: PseudonymMap,
                           args: argparse.Namespace) -> str | None:
    """A message when a patient ID is given for a DICOM slide (it would be ignored: the
    header core keys its dates and pseudonym by the header's Patient ID), else None."""
    if args.patient_id and slides:
        return "--patient-id: DICOM slides are keyed by their header's Patient ID"
    for members in slides:
        hit = next((c for c in _slide_keys(members) if c in pmap.patients), None)
        if hit is not None:
            return (f"--pseudonym-map line {pmap.lines[hit]}: a patient_id for the DICOM "
                    f"slide {printable(members[0].parent)}; DICOM slides are keyed by their "
                    "header's Patient ID")
    return None


def _date_offsets(files: list[Path], args: argparse.Namespace,
                  patients: dict[str, str]) -> list[int | None] | str:
    """Days to shift each slide's dates (None: remove), or a usage error message."""
    if args.shift_days is not None:
        return [args.shift_days] * len(files)
    if args.dates != "shift":
        return [None] * len(files)
    if not files:
        return []
    if args.in_place and not args.key_file:
        return "--dates shift with --in-place needs --key-file (the project key)"
    ids = [args.patient_id or patients.get(str(f)) or patients.get(f.name) for f in files]
    missing = [str(f) for f, i in zip(files, ids, strict=True) if not i]
    if missing:
        return ("--dates shift needs the patient ID of every slide (--patient-id, or a "
                "patient_id column in --pseudonym-map); missing for " + ", ".join(missing[:3]))
    from pixeldeid.batch import load_or_create_key

    from .dates import slide_offset_days

    try:
        key = load_or_create_key(args.key_file, Path(args.out) if args.out else Path("."))
    except ValueError as exc:
        return str(exc)
    return [slide_offset_days(key, i) for i in ids]


def run(args: argparse.Namespace) -> int:
    """Run ``pixeldeid wsi``; 0 all clean, 1 some quarantined/failed, 2 usage error."""
    if args.in_place == bool(args.out):
        print("pixeldeid wsi: error: give exactly one of -o OUT and --in-place", file=sys.stderr)
        return 2
    from .redact import OCR_ENGINES, ocr_is_available

    if args.ocr in ("none", ""):
        args.ocr = None
    elif args.ocr not in OCR_ENGINES or not ocr_is_available(args.ocr):
        print(f"pixeldeid wsi: error: OCR engine {args.ocr!r} is not available "
              f"(known: {', '.join(OCR_ENGINES)}; pip install 'pixeldeid[ocr]')", file=sys.stderr)
        return 2
    try:  # every output is re-opened with openslide: without it every slide would fail
        import openslide  # noqa: F401
    except ImportError:
        from pixeldeid.errors import MissingDependencyError

        print(f"pixeldeid wsi: error: "
              f"{MissingDependencyError('re-opening each output slide', 'slides', 'openslide')}",
              file=sys.stderr)
        return 2
    files, refused, others = _collect(args.src, args.out)
    if not files and not refused:
        print("pixeldeid wsi: error: no slide files found", file=sys.stderr)
        return 2
    dicom = [f for f in files if f.is_file() and _is_dicom(f)]
    files = [f for f in files if f not in dicom]
    if dicom and args.in_place:
        print("pixeldeid wsi: error: DICOM WSI cannot be edited in place (new UIDs); use -o",
              file=sys.stderr)
        return 2
    from . import dicomwsi

    dicom_slides, dicom_refused = dicomwsi.group_series(dicom) if dicom else ([], [])
    if (args.pseudonym or args.patient_id) and len(files) + len(dicom_slides) > 1:
        print("pixeldeid wsi: error: --pseudonym and --patient-id need exactly one slide",
              file=sys.stderr)
        return 2
    pmap = _load_map(args.pseudonym_map) if args.pseudonym_map else PseudonymMap({}, {}, {})
    slide_names = [_pick_name([str(f), f.name], pmap, args, k) for k, f in enumerate(files, 1)]
    dicom_names = _dicom_names(dicom_slides, pmap, args, len(files) + 1)
    try:  # every name checked before any work (the key too: offsets below)
        outputs = _outputs(files, slide_names, dicom_slides, dicom_names, args.in_place)
    except DeidError as exc:
        print(f"pixeldeid wsi: error: {exc.reason}", file=sys.stderr)
        return 2
    problem = (_dicom_patient_problem(dicom_slides, pmap, args)
               or _identity_problem(outputs, files, dicom_slides, args.value)
               or (None if args.in_place else _output_clash(outputs)))
    offsets = problem or _date_offsets(files, args, pmap.patients)
    if isinstance(offsets, str):
        print(f"pixeldeid wsi: error: {offsets}", file=sys.stderr)
        return 2
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = (tqdm(total=len(files), unit="slide", file=sys.stderr, disable=not sys.stderr.isatty())
           if tqdm else None)
    names = [n.text for n in slide_names]
    if args.out:  # last of the usage checks: a file in the way, no permission (DeidError)
        from pixeldeid.batch import make_output_dir

        make_output_dir(Path(args.out))
        # working copies a killed run left (the input's bytes, identity and all)
        remove_stale_temporaries(args.out)
    if others:
        print(f"pixeldeid wsi: {len(others)} files that are no slides skipped (suffix not "
              f"{'/'.join(SLIDE_SUFFIXES)}), e.g. {printable(others[0])}", file=sys.stderr)
    results = [_refuse(p, why, args) for p, why in refused]
    for f, pseudo, days in zip(files, names, offsets, strict=True):
        opts = SlideOptions(label=args.label, macro=args.macro, redact_regions=tuple(args.redact),
                            pseudonym=pseudo, date_offset=days, ocr=args.ocr,
                            extra_values=tuple(args.value))
        r = deidentify_slide(f, args.out, in_place=args.in_place, options=opts,
                             quarantine_dir=args.out or f.parent)
        if not r.ok:
            print(f"pixeldeid wsi: {printable(f)}: {printable(r.reason)}", file=sys.stderr)
        results.append(r)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    clean = sum(r.ok for r in results)
    bad = len(results) - clean
    rows = [[r.source, r.output or "", r.vendor or "", r.status, r.reason or ""]
            for r in results]
    if dicom:
        c, b, more = _run_dicom(dicom_slides, dicom_refused, [n.text for n in dicom_names],
                                args)
        clean, bad, rows = clean + c, bad + b, rows + more
    if args.out:  # input paths (names may be identity): in the state folder, not released
        write_report(Path(args.out), rows)
    dest = args.out or "in place"
    print(f"pixeldeid wsi: {clean + bad} slides: {clean} clean, {bad} quarantined ({dest})")
    return 0 if bad == 0 else 1
