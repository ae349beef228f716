"""Public entry point: de-identify one whole-slide image, whatever its vendor.

``deidentify_slide`` detects the vendor (openslide's ``openslide.vendor`` values),
makes a working copy beside the output (or beside the input for ``in_place``), hands it
to the vendor module, then verifies the result (raw byte scan for every removed value,
openslide re-open as the same vendor with the same level dimensions, no label, macro as
asked) and renames it into place. Anything that fails is quarantined with its reason;
the input is never modified unless ``in_place`` is asked for, and even then only
replaced atomically by a verified file.

Vendor plug-ins
---------------
A vendor module ``wsi/<name>.py`` registered in :data:`VENDORS` provides::

    def deidentify(path: pathlib.Path, options: SlideOptions) -> VendorReport:
        '''Edit ``path`` (a working copy, or the input itself) in place.'''

It opens the file itself (``wsi.tiffedit.TiffEditor(path, "r+")`` for TIFF formats),
removes/replaces label and macro as ``options`` says, cleans metadata, applies
``options.redact_regions`` (``wsi.redact.redact_regions``), and returns a
:class:`VendorReport` listing every identifying value it removed (``removed_values``,
searched afterwards in the raw bytes of the whole file — any hit quarantines the slide)
and what it did (``actions``). It raises ``pixeldeid.errors.InputError`` /
``DeidError`` for a file it cannot clean with confidence. A module that is missing
gives a clear ``DeidError``, never a crash.

Examples
--------
>>> from wsi.api import deidentify_slide
>>> r = deidentify_slide("CMU-1.svs", "out/", pseudonym="SLIDE-0001")  # doctest: +SKIP
>>> r.status, r.output                                                   # doctest: +SKIP
('clean', 'out/SLIDE-0001.svs')
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixeldeid.atomic import TMP_PREFIX
from pixeldeid.errors import DeidError, InputError
from pixeldeid.paths import printable

logger = logging.getLogger(__name__)

__all__ = [
    "VENDORS",
    "MACRO_REMOVE_ONLY",
    "SlideOptions",
    "VendorReport",
    "SlideResult",
    "detect_vendor",
    "vendor_module",
    "deidentify_slide",
]

#: openslide vendor name -> module implementing ``deidentify(path, options)``
VENDORS: dict[str, str] = {
    "aperio": "wsi.aperio",
    "hamamatsu": "wsi.hamamatsu",
    "philips": "wsi.philips",
    "ventana": "wsi.ventana",
    "leica": "wsi.leica",
    "generic-tiff": "wsi.generic",
    "dicom": "wsi.dicomwsi",
}

Region = tuple[int, int, int, int]

#: vendors whose ``macro="redact"`` removes the macro (no macro redaction implemented):
#: none left, every vendor module redacts a kept macro (``wsi.redact.redact_macro_ifd``)
MACRO_REMOVE_ONLY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SlideOptions:
    """What to do to a slide.

    Parameters
    ----------
    label : {"remove", "replace", "keep"}
        Remove the label image, or replace it with a synthesized one carrying the
        pseudonym ("keep" is for testing only and leaves identity).
    macro : {"remove", "redact", "keep"}
        Remove the macro (overview) image, keep it with its label end and any OCR text
        blacked out, or keep it as is. "redact" works for every vendor: Aperio, NDPI,
        Philips (Macro IFD and base64 MACROIMAGE), Ventana (the Label_Image overview),
        Leica (the macro image's IFDs), generic TIFF / OME-TIFF macro pages and the DICOM
        OVERVIEW instance (``wsi.dicomwsi``). Vendors in :data:`MACRO_REMOVE_ONLY` (none)
        would remove the macro instead and say so in the report.
    redact_regions : tuple of (x, y, w, h)
        Level-0 rectangles blacked out on every level, the thumbnail and the macro.
    pseudonym : str, optional
        Names the output file and fills replaced labels and identifying fields.
    date_offset : int, optional
        Days added to dates that are kept; ``None`` removes dates.
    ocr : str, optional
        OCR engine (``wsi.redact.OCR_ENGINES``: "rapidocr") that finds text on the
        thumbnail and the lowest level (redacted on every level as regions) and on a
        kept macro (redacted there).
    extra_values : tuple of str
        More identifying strings (from the caller's records) that must not survive
        anywhere in the output bytes.
    verify : bool
        Re-open with openslide and compare (default true).
    """

    label: str = "remove"
    macro: str = "remove"
    redact_regions: tuple[Region, ...] = ()
    pseudonym: str | None = None
    date_offset: int | None = None
    ocr: str | None = None
    extra_values: tuple[str, ...] = ()
    verify: bool = True

    def __post_init__(self) -> None:
        if self.label not in ("remove", "replace", "keep"):
            raise ValueError(f"label must be remove|replace|keep, not {self.label!r}")
        if self.macro not in ("remove", "redact", "keep"):
            raise ValueError(f"macro must be remove|redact|keep, not {self.macro!r}")
        for r in self.redact_regions:
            if len(r) != 4 or r[2] <= 0 or r[3] <= 0 or r[0] < 0 or r[1] < 0:
                raise ValueError(f"bad redaction region {r!r}: need x,y,w,h with w,h > 0")


@dataclass
class VendorReport:
    """What a vendor module did to a slide."""

    removed_values: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    label: str = "absent"  # removed | replaced | absent | kept
    macro: str = "absent"  # removed | redacted | absent | kept
    redaction: dict[str, Any] = field(default_factory=dict)  # tiles/bytes re-encoded per level


@dataclass
class SlideResult:
    """Outcome for one slide."""

    source: str
    output: str | None
    vendor: str | None
    status: str  # "clean" | "quarantined" | "failed"
    reason: str | None = None
    report: VendorReport | None = None
    problems: list[str] = field(default_factory=list)
    scan_hits: list[tuple[str, int]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    quarantine_copy: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "clean"


def detect_vendor(path: str | os.PathLike) -> str:
    """Return openslide's vendor name for a slide; ``InputError`` when unknown."""
    path = Path(path)
    if not path.is_file():
        raise InputError("not a file", str(path))
    try:
        import openslide
    except ImportError:  # pragma: no cover - openslide is a test dependency
        vendor = _detect_without_openslide(path)
    else:
        try:
            vendor = openslide.OpenSlide.detect_format(str(path))
        except Exception as exc:  # openslide raises various errors on hostile files
            raise InputError(f"openslide cannot read it: {exc}", str(path)) from exc
    if not vendor:
        raise InputError("unknown slide format (openslide does not recognise it)", str(path))
    return vendor


def _detect_without_openslide(path: Path) -> str | None:
    from .tiffedit import TiffEditor

    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[128:132] == b"DICM":
        return "dicom"
    with TiffEditor(path) as ed:
        d0 = ed.ifds[0]
        desc = d0.description or ""
        if ed.is_ndpi:
            return "hamamatsu"
        if desc.startswith("Aperio"):
            return "aperio"
        if "<DataObject ObjectType=\"DPUfsImport\"" in desc:
            return "philips"
        if "leica" in desc.lower() and "<scn" in desc.lower():
            return "leica"
        if 700 in d0.tags and b"iScan" in d0.tags[700].raw:
            return "ventana"
        if d0.is_tiled:
            return "generic-tiff"
    return None


def vendor_module(vendor: str) -> Any:
    """Import the module for ``vendor``; ``DeidError`` when none is registered or importable."""
    name = VENDORS.get(vendor)
    if name is None:
        raise DeidError(f"no de-identifier for slide vendor {vendor!r}")
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:
        raise DeidError(f"de-identifier for vendor {vendor!r} is not available ({name}: {exc})") from exc
    if not callable(getattr(mod, "deidentify", None)):
        raise DeidError(f"{name} has no deidentify(path, options) function")
    return mod


def output_name(src: Path, options: SlideOptions) -> str:
    """The output file name: the pseudonym, else a hash of the source path, + suffix.

    Raises
    ------
    DeidError
        For a name pixeldeid reserves (:func:`wsi.dicomwsi.reserved_name`: a hidden name,
        which a temporary's prefix makes a file the next run removes).
    """
    from .dicomwsi import reserved_name, slide_name

    suffix = "".join(s for s in src.suffixes[-1:]).lower() or ".tif"
    if options.pseudonym:
        stem = slide_name(options.pseudonym)  # the same characters as a DICOM slide's folder
    else:
        stem = "slide-" + hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:16]
    reserved = reserved_name(stem + suffix)
    if reserved:
        raise DeidError(reserved, str(src))
    return stem + suffix


def _check_in_place(src: Path) -> None:
    """Refuse in-place editing where replacing ``src`` would leave its content identified
    under another name: a symbolic link (its target would keep it), a file with other hard
    links (they would)."""
    if src.is_symlink():
        raise DeidError("a symbolic link: editing it in place would replace the link and "
                        "leave its target identified; give the target", str(src))
    if src.stat().st_nlink > 1:
        raise DeidError(f"the file has {src.stat().st_nlink - 1} other hard link(s): editing "
                        "it in place would leave them identified", str(src))


def deidentify_slide(src: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                     in_place: bool = False, label: str = "remove", macro: str = "remove",
                     redact_regions: tuple[Region, ...] | list[Region] = (),
                     pseudonym: str | None = None, date_offset: int | None = None,
                     ocr: str | None = None, extra_values: tuple[str, ...] | list[str] = (),
                     verify: bool = True, quarantine_dir: str | os.PathLike | None = None,
                     options: SlideOptions | None = None) -> SlideResult:
    """De-identify one slide; return a :class:`SlideResult` (never raises for bad input).

    Parameters
    ----------
    src : path
        The slide file.
    out_dir : path, optional
        Output folder (required unless ``in_place``); the output is named by
        :func:`output_name`.
    in_place : bool
        Replace ``src`` itself (atomically, by a verified edited copy).
    quarantine_dir : path, optional
        Root for quarantine copies (default ``out_dir``, or the source's folder).
    Other parameters are those of :class:`SlideOptions`.
    """
    from pixeldeid.quarantine import quarantine

    src = Path(src)
    if options is None:
        options = SlideOptions(label=label, macro=macro,
                               redact_regions=tuple(tuple(r) for r in redact_regions),
                               pseudonym=pseudonym, date_offset=date_offset, ocr=ocr,
                               extra_values=tuple(extra_values), verify=verify)
    if not in_place and out_dir is None:
        raise ValueError("out_dir is required unless in_place=True")
    result = SlideResult(str(src), None, None, "failed")
    t0 = time.perf_counter()
    work: Path | None = None
    try:
        vendor = detect_vendor(src)
        result.vendor = vendor
        mod = vendor_module(vendor)
        final = src if in_place else Path(out_dir) / output_name(src, options)
        if in_place:
            _check_in_place(src)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists() and not in_place and final.resolve() == src.resolve():
            raise DeidError("output would overwrite the input; use in_place", str(src))
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=final.suffix, dir=final.parent)
        os.close(fd)
        work = Path(tmp)
        shutil.copyfile(src, work)
        if in_place:  # the cleaned file replaces the input: with the input's permissions
            shutil.copymode(src, work)
        result.seconds["copy"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        report = mod.deidentify(work, options)
        result.report = report
        result.seconds["edit"] = time.perf_counter() - t1
        if options.label == "replace" and report.label != "replaced":
            note = (f"--label replace: this {vendor} slide has no separate label image to "
                    f"replace (label {report.label}, macro {report.macro})")
            report.actions.append(note)
            logger.warning("%s: %s", src, note)
        if options.macro == "redact" and vendor in MACRO_REMOVE_ONLY and report.macro != "redacted":
            note = (f"--macro redact: {vendor} macros are removed, not redacted (macro "
                    f"{report.macro})")
            report.actions.append(note)
            logger.warning("%s: %s", src, note)
        t2 = time.perf_counter()
        from .verify import verify_slide

        problems, hits = verify_slide(src, work, vendor, options, report)
        result.problems, result.scan_hits = problems, hits
        result.seconds["verify"] = time.perf_counter() - t2
        if problems:
            raise DeidError("verification failed: " + "; ".join(problems[:5]), str(src))
        os.replace(work, final)
        work = None
        result.output = str(final)
        result.status = "clean"
        logger.info("%s -> %s (%s): %s", src, final, vendor, ", ".join(report.actions))
    except Exception as exc:  # fail closed: any failure quarantines the slide
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        result.reason = reason
        result.status = "quarantined"
        qroot = quarantine_dir or out_dir or src.parent
        try:
            rec = quarantine(src, qroot, reason, stage="wsi")
            result.quarantine_copy = rec.copy
        except OSError as qexc:  # pragma: no cover - disk full etc.
            result.status = "failed"
            result.reason = f"{reason} (quarantine failed: {qexc})"
        logger.error("%s: %s", printable(src), printable(reason))
    finally:
        if work is not None:
            with contextlib.suppress(OSError):
                work.unlink()
    result.seconds["total"] = time.perf_counter() - t0
    return result
