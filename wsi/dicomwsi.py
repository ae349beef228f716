"""DICOM whole-slide image de-identification (openslide vendor ``dicom``).

A DICOM slide is a set of VL Whole Slide Microscopy instances sharing one
SeriesInstanceUID: pyramid levels (ImageType value 3 ``VOLUME``), and associated
images ``LABEL``, ``OVERVIEW`` (openslide's *macro*) and ``THUMBNAIL``. The set is
de-identified together so that the keyed UIDs stay consistent and openslide
still opens it:

- LABEL and OVERVIEW instances are not released (their pixels show the label), except
  an OVERVIEW under ``macro="redact"``: its label end and any OCR text are blacked out
  in its pixel data (same transfer syntax where possible) and it is released;
- every other instance goes through pixeldeid's header core
  (:class:`pixeldeid.api.Deidentifier`: PS3.15 profile, keyed UIDs, date shift,
  pseudonym);
- the outputs are written to a staging folder, scanned byte by byte for every
  removed value (header values that changed, and the LabelText / BarcodeValue
  of the dropped label), opened with openslide and compared with the input
  (vendor, level dimensions, pixels, no label or macro), then renamed into place.
  Any problem quarantines every input file of the slide.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldeid.atomic import TMP_PREFIX
from pixeldeid.errors import DeidError, InputError
from pixeldeid.paths import printable

from . import metadata_rules as mr

if TYPE_CHECKING:  # pragma: no cover
    from pixeldeid.api import Deidentifier

    from .api import SlideOptions, VendorReport

logger = logging.getLogger(__name__)

__all__ = [
    "WSI_SOP_CLASS",
    "DROPPED_KINDS",
    "SeriesResult",
    "image_kind",
    "make_deidentifier",
    "deidentify_series",
    "deidentify_paths",
    "group_series",
    "slide_name",
    "reserved_name",
    "patient_tokens",
    "done_before",
    "deidentify",
]

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
#: ImageType value 3 of instances that are never released, and openslide's name for them
DROPPED_KINDS = {"LABEL": "label", "OVERVIEW": "macro"}
#: fraction of the OVERVIEW width covered by the slide label (left end), blacked out by
#: ``macro="redact"``
OVERVIEW_LABEL_FRACTION = 0.4
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
             "UI", "UR", "UT"}


@dataclass
class SeriesResult:
    """Outcome for one DICOM slide (one SeriesInstanceUID)."""

    sources: list[str]
    status: str = "failed"  # clean | quarantined | failed
    output_dir: str | None = None
    outputs: list[str] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (source, kind)
    replaced: list[str] = field(default_factory=list)  # sources of replaced labels
    redacted: list[str] = field(default_factory=list)  # sources of redacted overviews
    removed_values: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reason: str | None = None
    quarantine_copies: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "clean"


def image_kind(ds: Any) -> str:
    """ImageType value 3 (``VOLUME``, ``LABEL``, ``OVERVIEW``, ``THUMBNAIL``), upper case."""
    it = ds.get("ImageType")
    if it is None:
        return ""
    vals = [it] if isinstance(it, str) else list(it)
    return str(vals[2]).strip().upper() if len(vals) > 2 else ""


def _text_values(ds: Any) -> set[str]:
    """Every text value of a dataset, sequences included (file meta too)."""
    out: set[str] = set()

    def walk(d: Any) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value or ():
                    walk(item)
            elif elem.VR in _TEXT_VRS and elem.value not in (None, ""):
                v = elem.value
                vals = [v] if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__") else list(v)
                for x in vals:
                    s = str(x).strip()
                    if s:
                        out.add(s)

    walk(ds)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        walk(meta)
    return out


def make_deidentifier(key: bytes, options: SlideOptions | None = None, *,
                      profile: str = "basic", keyed_dates: bool = False) -> Deidentifier:
    """A header :class:`~pixeldeid.api.Deidentifier` for slides.

    Dates are shifted by ``options.date_offset`` days when given, or by the key's
    per-patient offset when ``keyed_dates`` (both with the
    ``retain-longitudinal-modified-dates`` option), else handled by the profile
    (removed or emptied).
    """
    from pixeldeid.api import DeidConfig, Deidentifier

    offset = None if options is None else options.date_offset
    opts: tuple[str, ...] = ()
    if offset is not None or keyed_dates:
        opts = ("retain-longitudinal-modified-dates",)
    return Deidentifier(DeidConfig(profile=profile, options=opts, key=key, date_offset_days=offset))


def _read(path: Path) -> Any:
    from pixeldeid.api import read_dicom

    ds = read_dicom(path)
    sop = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
    if sop != WSI_SOP_CLASS:
        raise InputError(f"not a VL Whole Slide Microscopy instance (SOP class {sop})", str(path))
    if "SeriesInstanceUID" not in ds:
        raise InputError("no SeriesInstanceUID", str(path))
    return ds


def _replace_label(ds: Any, options: SlideOptions) -> bool:
    """Turn a single-frame LABEL dataset into a synthesized label carrying the pseudonym.

    The pixels are replaced by a white image with the pseudonym (uncompressed RGB),
    LabelText/BarcodeValue dropped; the header then goes through the core like any
    other instance. Returns False (the label is dropped instead) for tiled labels.
    """
    from pydicom.uid import ExplicitVRLittleEndian

    from .redact import synthesize_label

    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return False
    rows, cols = int(ds.Rows), int(ds.Columns)
    img = synthesize_label((rows, cols), options.pseudonym or "DE-IDENTIFIED", 3)
    for kw in ("LabelText", "BarcodeValue", "LossyImageCompressionRatio",
               "LossyImageCompressionMethod", "ICCProfile"):
        if kw in ds:
            delattr(ds, kw)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES"  # the pseudonym
    ds.SpecimenLabelInImage = "YES"
    ds.PixelData = img.tobytes()
    ds["PixelData"].VR = "OB"
    if "OpticalPathSequence" in ds:
        for item in ds.OpticalPathSequence:
            if "ICCProfile" in item:
                del item.ICCProfile
    return True


def _redact_overview(ds: Any, options: SlideOptions) -> bool:
    """Black out the label end and OCR text of a single-frame OVERVIEW, in its own encoding
    (:func:`pixeldeid.burnedin.redact.redact_dataset`: native in place, JPEG baseline in the
    DCT domain, others re-encoded losslessly). Returns False (the overview is dropped
    instead) for a tiled overview."""
    from pixeldeid.burnedin.boxes import TextBox
    from pixeldeid.burnedin.frames import PixelFrames
    from pixeldeid.burnedin.redact import redact_dataset

    from .redact import macro_redaction_rects

    if int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return False

    def image():
        return PixelFrames(ds).decode([0])[0]

    rects = macro_redaction_rects((int(ds.Rows), int(ds.Columns)), OVERVIEW_LABEL_FRACTION,
                                  options, image)
    if rects:
        redact_dataset(ds, [TextBox(x0, y0, x1, y1, source="template")
                            for x0, y0, x1, y1 in rects])
    if options.macro == "redact":
        ds.SpecimenLabelInImage = "NO"  # its label end is black now
    return True


def slide_name(pseudonym: str | None, series_uid: str = "") -> str:
    """The output folder name of a slide: its pseudonym (characters a file name cannot
    hold become ``_``), else a hash of its new SeriesInstanceUID."""
    if pseudonym:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in pseudonym)
    return "slide-" + hashlib.sha256(series_uid.encode()).hexdigest()[:16]


def reserved_name(name: str) -> str | None:
    """Why ``name``, a slide's output file or folder name in OUT, cannot be one, else None.

    ``quarantine`` would put a clean slide among identified originals; a name starting
    with ``.`` is hidden, ``.``/``..`` are no new folder, ``.pixeldeid`` is the state folder
    and :data:`~pixeldeid.atomic.TMP_PREFIX` names are removed by the next run as stale
    temporaries. (Case-folded: case-insensitive file systems.)
    """
    from pixeldeid.batch import STATE_DIRNAME
    from pixeldeid.quarantine import QUARANTINE_DIRNAME

    if name.casefold() in (QUARANTINE_DIRNAME.casefold(), STATE_DIRNAME.casefold()):
        return f"output name {name!r} is reserved (pixeldeid's own folder in OUT)"
    if name.startswith((".", TMP_PREFIX)):
        return (f"output name {name!r} is reserved (hidden: pixeldeid's state and its "
                "temporaries, which the next run removes, start with '.')")
    return None


#: header elements :func:`patient_tokens` reads (those of the header core's identity)
_IDENTITY_READ = ("SpecificCharacterSet", "PatientBirthDate", "OtherPatientIDsSequence")


def patient_tokens(members: Iterable[str | os.PathLike]) -> list[str]:
    """The patient's identity tokens in the headers of a slide's instances: name, IDs,
    birth date forms... as the header core reads them
    (:func:`pixeldeid.textclean.identity_tokens` of its identity values). Unreadable
    files give none (they are quarantined later)."""
    import pydicom

    from pixeldeid.api import IDENTITY_KEYWORDS, Deidentifier
    from pixeldeid.textclean import identity_tokens

    values: list[str] = []
    names: list[str] = []
    for m in members:
        try:
            ds = pydicom.dcmread(m, stop_before_pixels=True,
                                 specific_tags=[*IDENTITY_KEYWORDS, *_IDENTITY_READ])
            # (the core's own reading: the same values as its pseudonym check compares)
            got, pn = Deidentifier._identity(ds)
        except Exception:  # pydicom raises many kinds on hostile files
            continue
        values += got
        names += pn
    return identity_tokens(values, names=names)


def done_before(members: Sequence[str | os.PathLike], folder: Path, deid: Deidentifier) -> bool:
    """Whether ``folder`` (the slide's output folder) holds this slide from an earlier run
    under the same key: every file in it an instance of the Series Instance UID the key
    gives the slide (keyed UIDs: a rerun writes the same one)."""
    import pydicom

    if not folder.is_dir():
        return False
    try:
        old = pydicom.dcmread(members[0], stop_before_pixels=True,
                              specific_tags=["SeriesInstanceUID"]).get("SeriesInstanceUID")
        new = deid.uids(str(old or ""))
        files = list(folder.iterdir())
        return bool(files) and bool(old) and all(
            f.is_file() and str(pydicom.dcmread(f, stop_before_pixels=True,
                                                specific_tags=["SeriesInstanceUID"])
                                .get("SeriesInstanceUID", "")) == new for f in files)
    except Exception:  # unreadable: not this slide's output (an error as before)
        return False


def deidentify_series(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                      options: SlideOptions, deid: Deidentifier, *,
                      verify: bool | None = None) -> SeriesResult:
    """De-identify the instances of one DICOM slide into ``out_dir/<pseudonym>/``.

    Parameters
    ----------
    paths : sequence of path
        All instances of the slide (one SeriesInstanceUID).
    out_dir : path
        Output root; the slide's folder is named by ``options.pseudonym`` (else a hash
        of the new SeriesInstanceUID).
    options : SlideOptions
        ``label``/``macro`` "keep" release the LABEL / OVERVIEW instances (testing
        only); ``label="replace"`` releases a synthesized single-frame label carrying
        only the pseudonym; ``redact_regions`` is refused.
    deid : Deidentifier
        The header core, shared by every slide of a batch (consistent UIDs and dates).
    verify : bool, optional
        Open the output with openslide and compare with the input (default
        ``options.verify``).

    Returns
    -------
    SeriesResult
        Never raises for bad input: problems quarantine every source of the slide.
    """
    from pixeldeid.quarantine import quarantine

    sources = [Path(p) for p in paths]
    result = SeriesResult([str(p) for p in sources])
    out_dir = Path(out_dir)
    verify = options.verify if verify is None else verify
    stage: Path | None = None
    try:
        if not sources:
            raise InputError("no DICOM instances given")
        if options.redact_regions:
            raise DeidError("region redaction is not implemented for DICOM WSI")
        reserved = reserved_name(slide_name(options.pseudonym))
        if reserved:
            raise DeidError(reserved)
        datasets = [(p, _read(p)) for p in sources]
        series = {str(ds.SeriesInstanceUID) for _, ds in datasets}
        if len(series) != 1:
            raise InputError(f"instances of {len(series)} different slides (SeriesInstanceUID) "
                             "given as one slide")
        removed: set[str] = set()
        keep_kinds = {k for k, n in DROPPED_KINDS.items()
                      if (options.label if n == "label" else options.macro) == "keep"}
        redact_overview = options.macro == "redact" or (options.macro == "keep"
                                                        and bool(options.ocr))
        out_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out_dir))
        kept_sources: list[Path] = []
        new_series = ""
        for p, ds in datasets:
            kind = image_kind(ds)
            if kind == "OVERVIEW" and redact_overview:
                if _redact_overview(ds, options):
                    result.redacted.append(str(p))
                    keep = True
                else:
                    logger.warning("%s: tiled OVERVIEW not redacted, dropped", p)
                    keep = False
                if not keep:
                    result.dropped.append((str(p), DROPPED_KINDS[kind]))
                    continue
            elif kind in DROPPED_KINDS and kind not in keep_kinds:
                for kw in ("LabelText", "BarcodeValue"):
                    if ds.get(kw):
                        removed.add(str(ds.get(kw)).strip())
                if kind == "LABEL" and options.label == "replace" and _replace_label(ds, options):
                    result.replaced.append(str(p))
                else:
                    result.dropped.append((str(p), DROPPED_KINDS[kind]))
                    continue
            before = _text_values(ds)
            deid.deidentify_dataset(ds, source=str(p))
            removed |= before - _text_values(ds)
            new_series = str(ds.SeriesInstanceUID)
            out = stage / f"{ds.SOPInstanceUID}.dcm"
            deid.write(ds, out, source=str(p))
            kept_sources.append(p)
            result.outputs.append(out.name)
        if not kept_sources:
            raise InputError("the slide has no pyramid (VOLUME) instance to release")
        # the caller's own identifying strings must not survive either
        removed |= {v for v in options.extra_values if v and v.strip()}
        result.removed_values = mr.finalize_removed(sorted(removed))
        from .tiffedit import scan_raw

        for name in result.outputs:
            for v, off in scan_raw(stage / name, result.removed_values)[:5]:
                result.problems.append(f"removed value of length {len(v)} still in {name} "
                                       f"at byte {off}")
        if verify and not result.problems:
            result.problems += _verify(kept_sources[0], stage / result.outputs[0], options)
        if result.problems:
            raise DeidError("verification failed: " + "; ".join(result.problems[:3]))
        final = out_dir / slide_name(options.pseudonym, new_series)
        if final.exists():
            raise DeidError(f"output folder {final} already exists")
        os.replace(stage, final)
        stage = None
        result.output_dir = str(final)
        result.outputs = [str(final / n) for n in result.outputs]
        result.status = "clean"
        logger.info("DICOM slide %s -> %s: %d instances, %d dropped (%s)", sources[0].parent,
                    final, len(result.outputs), len(result.dropped),
                    ", ".join(k for _, k in result.dropped) or "none")
    except (DeidError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        result.reason = reason
        result.status = "quarantined"
        result.outputs = []
        for p in sources:
            try:
                rec = quarantine(p, out_dir, reason, stage="wsi")
                if rec.copy:
                    result.quarantine_copies.append(rec.copy)
            except OSError as qexc:  # pragma: no cover - disk full etc.
                result.status = "failed"
                result.reason = f"{reason} (quarantine failed: {qexc})"
        logger.error("DICOM slide %s: %s", printable(sources[0]) if sources else "?", printable(reason))
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    return result


def _verify(src: Path, out: Path, options: SlideOptions) -> list[str]:
    try:
        import openslide
    except ImportError:  # pragma: no cover
        return ["openslide not installed: cannot verify (pip install 'pixeldeid[slides]')"]
    from .verify import check_macro_label_end, compare_outside_regions

    problems: list[str] = []
    try:
        a = openslide.OpenSlide(str(src))
    except Exception as exc:
        return [f"input does not open in openslide: {exc}"]
    try:
        try:
            b = openslide.OpenSlide(str(out))
        except Exception as exc:
            return [f"output does not open in openslide: {exc}"]
        try:
            if b.properties.get("openslide.vendor") != "dicom":
                problems.append(f"output opens as {b.properties.get('openslide.vendor')!r}")
            if a.level_dimensions != b.level_dimensions:
                problems.append(f"level dimensions changed {a.level_dimensions} -> "
                                f"{b.level_dimensions}")
                return problems
            assoc = set(b.associated_images)
            if options.label == "remove" and "label" in assoc:
                problems.append("label image still present")
            if (options.label == "replace" and "label" in assoc and "label" in a.associated_images
                    and a.associated_images["label"].tobytes() == b.associated_images["label"].tobytes()):
                problems.append("label image was not replaced")
            if options.macro == "remove" and "macro" in assoc:
                problems.append("macro (overview) image still present")
            if options.macro == "redact" and "macro" in assoc:
                problems += check_macro_label_end(b)
            problems += compare_outside_regions(a, b, ())
        finally:
            b.close()
    finally:
        a.close()
    return problems


def group_series(paths: Iterable[str | os.PathLike]
                 ) -> tuple[list[list[Path]], list[tuple[Path, str]]]:
    """Group DICOM files (or folders of them) by slide (SeriesInstanceUID).

    Returns ``(slides, refused)``: the instances of each slide, in order of first
    appearance, and the files that are no DICOM WSI instance with the reason.
    """
    import pydicom

    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    groups: dict[str, list[Path]] = {}
    refused: list[tuple[Path, str]] = []
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True,
                                 specific_tags=["SeriesInstanceUID", "SOPClassUID"])
            uid = str(ds.get("SeriesInstanceUID", ""))
            if not uid or str(ds.get("SOPClassUID", "")) != WSI_SOP_CLASS:
                raise InputError("not a VL Whole Slide Microscopy instance", str(f))
        except Exception as exc:  # pydicom raises many kinds on hostile files
            refused.append((f, getattr(exc, "reason", None)
                            or f"unreadable DICOM: {exc}".splitlines()[0]))
            continue
        groups.setdefault(uid, []).append(f)
    return list(groups.values()), refused


def quarantine_refused(path: Path, reason: str, out_dir: str | os.PathLike) -> SeriesResult:
    """The result of a file that is no DICOM WSI instance, copied to quarantine."""
    from pixeldeid.quarantine import quarantine

    r = SeriesResult([str(path)], status="quarantined", reason=reason)
    with contextlib.suppress(OSError):
        rec = quarantine(path, out_dir, reason, stage="wsi")
        if rec.copy:
            r.quarantine_copies.append(rec.copy)
    return r


def deidentify_paths(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                     options: SlideOptions, deid: Deidentifier) -> list[SeriesResult]:
    """Group DICOM files (or folders of them) by slide and de-identify each slide.

    Files that are not DICOM WSI instances are quarantined, one result each.
    """
    slides, refused = group_series(paths)
    results = [quarantine_refused(f, reason, out_dir) for f, reason in refused]
    return results + [deidentify_series(members, out_dir, options, deid) for members in slides]


def deidentify(path: Path, options: SlideOptions) -> VendorReport:
    """Per-file plug-in entry point of :mod:`wsi.api`: refused for DICOM.

    A DICOM slide is a set of files whose UIDs must change together and whose
    LABEL/OVERVIEW instances are dropped, which a single-file edit cannot do. Use
    :func:`deidentify_paths` (or :func:`deidentify_series`) instead.

    Raises
    ------
    DeidError
        Always.
    """
    raise DeidError("DICOM WSI slides are de-identified as a set of instances: use "
                    "wsi.dicomwsi.deidentify_paths(files, out_dir, options, deid)", str(path))
