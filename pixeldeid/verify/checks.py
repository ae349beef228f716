"""The checks of ``pixeldeid verify``: every output file against every known identity value.

Per output file: a raw byte search (UTF-8, and UTF-16 for TIFF/slides; gzip members
decompressed; zip members read), then by format: every DICOM element at any depth
(private and file meta too), the strict read of the core, the de-identification marking,
dciodvfy and the pixels against the source; the NIfTI header text fields and extensions and
that the image opens; the TIFF tags of every page, that the slide opens in openslide and
that it has no label or macro image left with text; OCR of pixel data where pixels were at
risk. Findings name the file, the check and the kind and length of the value found --
never the value itself.

Chance hits are kept out: inside bulk binary data (pixel data, TIFF strips and tiles, NIfTI
voxels, compressed streams) only hits of 8 bytes or more count; elsewhere only whole words.
All-digit IDs shorter than 6 digits are searched only where IDs are written as text (DICOM
text elements, NIfTI header text, OCR text), never among ordinary numbers.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import logging
import lzma
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..api import MEDIA_DIRECTORY_SOP_CLASS
from ..batch import STATE_DIRNAME
from ..quarantine import QUARANTINE_DIRNAME
from .identity import IdentityValue, Term, identity_from_ledger, identity_from_sources, terms_for
from .ledger import LedgerItem, RunLedger
from .scan import Hit, Matcher, drop_chance_hits

logger = logging.getLogger(__name__)

#: A folder holding this file is a QC report (images of identity by design): the files the
#: report wrote there (:func:`report_files`) are not scanned, anything else beside them is.
REPORT_MARKER = ".pixeldeid-report"
#: the page and the images folder a QC report writes beside its marker
REPORT_PAGE = "index.html"
REPORT_IMAGES = "images"
TIFF_SUFFIXES = (".svs", ".ndpi", ".tif", ".tiff", ".bif", ".scn", ".qptiff")
TEXT_SUFFIXES = (".json", ".tsv", ".csv", ".txt", ".xml", ".html", ".bval", ".bvec")
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_ZIP_MEMBER_LIMIT = 1 << 30
#: Larger images (pixels x frames) are not compared with their source.
_COMPARE_LIMIT = 64 << 20


@dataclass
class Finding:
    """One problem in one output (``file`` relative to OUT; no identity value in it)."""

    file: str
    check: str
    what: str
    kind: str = ""
    length: int = 0

    def line(self) -> str:
        return f"{self.file}: [{self.check}] {self.what}"


@dataclass
class VerifyResult:
    """The outcome of :func:`verify_output`."""

    out: str
    files: int = 0
    findings: list[Finding] = field(default_factory=list)
    not_ocr_verified: list[tuple[str, str]] = field(default_factory=list)
    ocr_verified: list[str] = field(default_factory=list)
    #: (file, how much was read): long cines OCR'd in a sample of their frames and in every
    #: frame where the cine analysis of all frames saw the overlay change (not in
    #: ``ocr_verified``: most frames were compared, not read)
    ocr_partial: list[tuple[str, str]] = field(default_factory=list)
    values: dict[str, int] = field(default_factory=dict)
    ocr_required: bool = True
    #: file -> identity kinds not searched there because the release keeps them on purpose
    retained_kinds: dict[str, list[str]] = field(default_factory=dict)
    #: (source, reason): sources of ``--against`` whose header could not be read or is
    #: damaged; their identity values are not searched for (paths: never in to_json)
    unreadable_sources: list[tuple[str, str]] = field(default_factory=list)
    #: folders of OUT that are not part of the release and are not checked (the state
    #: folder, the quarantine, QC reports): they must not be published
    not_for_release: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No finding, every at-risk file OCR-verified (unless OCR was switched off), and
        every ``--against`` source read (an unread source's identity was not searched)."""
        return (not self.findings and not self.unreadable_sources
                and not (self.ocr_required and self.not_ocr_verified))

    @property
    def exit_status(self) -> int:
        return 0 if self.clean else 1

    def to_json(self) -> dict:
        return {"out": self.out, "files": self.files, "clean": self.clean,
                "values_by_kind": self.values,
                "findings": [asdict(f) for f in self.findings],
                "not_ocr_verified": [{"file": f, "reason": r} for f, r in self.not_ocr_verified],
                "ocr_verified": self.ocr_verified,
                "ocr_partial": [{"file": f, "reason": r} for f, r in self.ocr_partial],
                "retained_kinds": self.retained_kinds,
                "unreadable_sources": len(self.unreadable_sources),
                "not_for_release": self.not_for_release}


def _what(h: Hit, where: str, count: int = 1) -> str:
    enc = "" if h.encoding == "utf-8" else f" ({h.encoding})"
    more = f" ({count} places)" if count > 1 else ""
    form = f", {h.term.form}" if h.term.form else ""
    return f"{h.term.kind} value (length {h.term.length}{form}) {where}{enc}{more}"


def _outermost(hits: Iterable[Hit]) -> list[Hit]:
    """``hits`` less those lying within a longer hit of the same encoding."""
    hs = sorted(hits, key=lambda h: (h.encoding, h.offset, -h.nbytes))
    out: list[Hit] = []
    end: dict[str, int] = {}
    for h in hs:
        if h.offset + h.nbytes <= end.get(h.encoding, -1) and h.nbytes:
            continue
        out.append(h)
        end[h.encoding] = max(end.get(h.encoding, -1), h.offset + h.nbytes)
    return out


def is_report_image(name: str) -> bool:
    """Whether ``name`` is that of a QC report image: ``NNNNN-tag.ext``, numbered."""
    number, dash, rest = name.partition("-")
    return (len(number) >= 5 and number.isascii() and number.isdigit() and bool(dash)
            and "." in rest)


def _regular(p: Path) -> bool:
    return p.is_file() and not p.is_symlink()


def report_files(folder: Path) -> set[Path]:
    """The files a QC report wrote in ``folder``: none without its marker, else the marker,
    the page and the numbered images (by name, as the report replaces them)."""
    if not _regular(folder / REPORT_MARKER):
        return set()
    own = {p for p in (folder / REPORT_MARKER, folder / REPORT_PAGE) if _regular(p)}
    images = folder / REPORT_IMAGES
    if images.is_dir() and not images.is_symlink():
        own.update(p for p in images.iterdir() if is_report_image(p.name) and _regular(p))
    return own


def _only_report(folder: Path, own: set[Path]) -> bool:
    """Whether ``folder`` holds nothing but ``own`` (empty folders aside)."""
    for root, dirs, names in os.walk(folder, followlinks=False):
        r = Path(root)
        if any(r / n not in own for n in names) or any((r / d).is_symlink() for d in dirs):
            return False
    return True


def _mixed_report(folder: Path, own: set[Path]) -> set[Path]:
    """``own``, the files of a report lying among other files (release outputs, perhaps),
    with a warning: those others are checked, the report's images of identity are not."""
    if own:
        logger.warning("%s holds a QC report among other files: those are checked, the "
                       "report's own files are not; move the report out of the release "
                       "(pixeldeid report OUT -o OUT/report)", folder)
    return own


def iter_outputs(out: Path, links: list[Path] | None = None,
                 folders: list[Path] | None = None,
                 skipped: list[Path] | None = None) -> list[Path]:
    """Every file of OUT that may be released: not the state folder, the quarantine, a QC
    report folder or a report's own files (:func:`report_files`) where other files lie
    beside them. Symbolic links and other non-regular entries are not read; they are
    appended to ``links`` when given (a release must not hold them). The folders walked
    (OUT itself excluded) are appended to ``folders``, the folders left out (not for
    release) to ``skipped``, when given."""
    files: list[Path] = []
    own = report_files(out)  # (OUT itself a report folder: nothing to release)
    if own and not _only_report(out, own):
        _mixed_report(out, own)
    for root, dirs, names in os.walk(out, followlinks=False):
        r = Path(root)
        if folders is not None and r != out:
            folders.append(r)
        keep = []
        for d in sorted(dirs):
            if r == out and d in (STATE_DIRNAME, QUARANTINE_DIRNAME):
                continue
            mine = report_files(r / d)
            if mine and _only_report(r / d, mine):
                continue  # a report folder: not for release
            own |= _mixed_report(r / d, mine)
            keep.append(d)
        if skipped is not None:
            skipped += [r / d for d in sorted(set(dirs) - set(keep))]
        dirs[:] = keep
        for n in sorted(names) + [d for d in dirs if (r / d).is_symlink()]:
            p = r / n
            if p in own:
                continue
            if p.is_symlink() or not p.is_file():
                if links is not None:
                    links.append(p)
            else:
                files.append(p)
    return files


def file_kind(path: Path) -> str:
    """``dicom``, ``nifti``, ``tiff``, ``zip``, ``text`` or ``other`` (by content and name)."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return "other"
    if head[128:132] == b"DICM" or _bare_dicom(path, head):
        return "dicom"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") or name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return "other"


#: VR codes: a data set written without preamble and file meta starts with one in
#: explicit VR (after its first tag)
_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST "
                 b"SV TM UC UI UL UN UR US UT UV".split())


def _bare_dicom(path: Path, head: bytes) -> bool:
    """Whether a file without the Part 10 preamble is a DICOM data set all the same (file
    meta or group 0008 first, as old systems and some exports write it; pydicom reads it
    with ``force``): verified as DICOM (and reported), never as opaque bytes."""
    if len(head) < 8:
        return False
    group_le, group_be = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
    if 0x0002 not in (group_le, group_be) and 0x0008 not in (group_le, group_be):
        return False
    if head[4:6] not in _VRS and int.from_bytes(head[4:8], "little") > 0xFFFF:
        return False  # neither explicit VR nor a short implicit-VR length
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True, defer_size=1024)
    except Exception:  # noqa: BLE001 - no data set
        return False
    return sum(tag >> 16 == 0x0008 for tag in ds.keys()) >= 2


class _Verifier:
    def __init__(self, out: Path, values: list[IdentityValue], exclude: Sequence[str], *,
                 ledger: RunLedger, against_dicoms: Sequence[str], ocr: str | None,
                 dciodvfy: bool, source_dates: dict[str, dict[str, str] | None] | None = None,
                 ) -> None:
        self.out = out
        self.values = values
        self.pseudonyms = frozenset(exclude)
        self._patients: frozenset[str] = frozenset()
        terms = terms_for(values, exclude=exclude)
        # Short all-digit IDs ("4711") cannot be told from ordinary numbers (sizes, counts,
        # sidecar timings): they are searched in DICOM text elements, NIfTI header text
        # and OCR text only (``self.fields``).
        plain = [t for t in terms if not (t.text.isdigit() and len(t.text) < MIN_DIGITS)]
        self.fields = Matcher(terms, min_len=3)
        self.text = Matcher(plain, min_len=3)
        self.raw16 = Matcher(plain, min_len=4, utf16=True)
        self.text16 = Matcher(plain, min_len=3, utf16=True)
        self.ledger = ledger
        self.items_by_output: dict[str, LedgerItem] = {}
        for it in ledger.items():
            if it.output:
                self.items_by_output[it.output.rstrip("/")] = it
        self.against_dicoms = list(against_dicoms)
        self.ocr_name = ocr
        self._engine = None
        self._engine_error: str | None = None
        self.dciodvfy = dciodvfy
        # identity kinds a release keeps on purpose (Retain Institution Identity Option)
        self.retained: set[str] = set()
        try:
            opts = json.loads(ledger.meta().get("options") or "[]")
        except ValueError:
            opts = []
        for opt, kind in _RETAIN_OPTIONS.items():
            if opt in opts:
                self.retained.add(kind)
        self.source_dates = source_dates or {}
        self._retained: set[str] = set()
        self._source_errors: Counter | None = None
        self.result = VerifyResult(str(out), ocr_required=ocr is not None)

    # -- helpers -------------------------------------------------------------------
    def add(self, rel: str, check: str, what: str, kind: str = "", length: int = 0) -> None:
        self.result.findings.append(Finding(self.masked(rel), check, what, kind, length))

    def masked(self, name: str) -> str:
        """``name`` (a path in OUT, a zip member's name) with each identity term in it
        written as ``*``: a finding names where, never the value (``*********_John.dcm``)."""
        data = bytearray(os.fsencode(name))
        hits = self.text.find(bytes(data), unbounded=True)
        if not hits:
            return name
        for h in hits:
            data[h.offset:h.offset + h.nbytes] = b"*" * h.nbytes
        return os.fsdecode(bytes(data))

    def add_hits(self, rel: str, check: str, hits: Iterable[Hit], where: str) -> None:
        """One finding per (kind, length, encoding, spelling form), counting the places; a
        hit inside a longer one ("zelda" in "quixbury^zelda") is that one's."""
        groups: dict[tuple, list[Hit]] = {}
        for h in _outermost(hits):
            if h.term.kind in self._retained:
                continue
            if h.term.owners and self._patients and not self._patients & h.term.owners:
                continue  # another patient's institution word (the file's patient is known)
            groups.setdefault((h.term.kind, h.term.length, h.encoding, h.term.form),
                              []).append(h)
        for (kind, length, _enc, _form), hs in groups.items():
            offsets = sorted({h.offset for h in hs})
            at = where.format(offset=offsets[0]) if "{offset}" in where else where
            self.add(rel, check, _what(hs[0], at, len(offsets)), kind, length)

    def item_for(self, path: Path) -> LedgerItem | None:
        rel = path.relative_to(self.out).as_posix()
        it = self.items_by_output.get(rel)
        if it is None:  # a file inside an item's output folder (series, BIDS)
            for parent in Path(rel).parents:
                it = self.items_by_output.get(parent.as_posix())
                if it is not None:
                    break
        return it

    def patients_of(self, path: Path, rel: str) -> frozenset[str]:
        """The pseudonyms a file belongs to: its ledger item's, or the pseudonyms naming a
        folder or package of its path (empty when unknown: then every term applies)."""
        it = self.item_for(path)
        if it is not None and it.patient:
            return frozenset({it.patient})
        parts = rel.split("/")
        parts[-1] = Path(parts[-1]).stem
        return frozenset(set(parts) & self.pseudonyms)

    def check_names(self, paths: Iterable[Path]) -> None:
        """Identity in the names of folders, links and special files of OUT (``Smith John
        4711235/``); file names are checked with the file (:meth:`check_name`)."""
        self._retained = set(self.retained)
        self._patients = frozenset()
        for p in paths:
            self.check_name(p, p.relative_to(self.out).as_posix())

    def check_name(self, path: Path, rel: str) -> None:
        """Identity in one name (``Smith_John_4711235.dcm``), searched on its own, whole
        words."""
        what = "folder" if path.is_dir() and not path.is_symlink() else "file"
        self.add_hits(rel, "file-name", self.text.find(os.fsencode(path.name)),
                      f"in the {what} name")

    # -- per file ------------------------------------------------------------------
    def check_file(self, path: Path) -> None:
        rel = path.relative_to(self.out).as_posix()
        kind = file_kind(path)
        self._retained = set(self.retained)
        self._patients = self.patients_of(path, rel)
        if kind == "dicom":
            self._retained |= _retained_kinds(path)
        if self._retained - {"dates"}:
            self.result.retained_kinds[rel] = sorted(self._retained - {"dates"})
        self.check_name(path, rel)
        try:
            self.check_raw(path, rel, kind)
        except OSError as exc:
            self.add(rel, "raw-bytes", f"unreadable: {exc.strerror or exc}")
            return
        if kind == "dicom":
            self.check_dicom(path, rel)
        elif kind == "nifti":
            self.check_nifti(path, rel)
        elif kind == "tiff":
            self.check_tiff(path, rel)
        elif kind == "zip":
            self.check_zip(path, rel)

    def check_raw(self, path: Path, rel: str, kind: str) -> None:
        """Raw byte search; in bulk binary data (pixels, tiles, voxels, compressed streams)
        only hits of :data:`BULK_MIN_BYTES` or more count (see :func:`drop_chance_hits`)."""
        where = "in the file bytes at {offset}"
        if kind == "text":  # in any encoding: UTF-16 ("Unicode" on Windows), Latin-1, CJK
            self.add_hits(rel, "raw-bytes", self.text16.scan_file(path), where)
            return
        if kind == "tiff":
            hits = drop_chance_hits(self.raw16.scan_file(path, unbounded=True), _tiff_bulk(path))
            self.add_hits(rel, "raw-bytes", hits, where)
            return
        with open(path, "rb") as fh:
            magic = fh.read(8)
        opener = _opener_for(magic)
        gz = path.name.lower().endswith(".gz") or opener is not None
        # DICOM declares its character sets (its elements are decoded); other files may
        # hold text in any encoding
        # (UTF-16 in DICOM too: an OB or UN value may hold it, undeclared)
        hits = self.raw16.scan_file(path, unbounded=True)
        if kind == "dicom":
            with open(path, "rb") as fh:
                bulk = _dicom_bulk(fh, path.stat().st_size)
        elif gz or kind == "zip":
            bulk = [(_OPEN_HEAD if gz else 0, _END)]  # compressed: only names/headers plain
        elif kind == "nifti":
            bulk = [(_nifti_offset(path), _END)]
        else:
            bulk = [(_OPEN_HEAD, _END)]
        self.add_hits(rel, "raw-bytes", drop_chance_hits(hits, bulk), where)
        if gz:
            try:
                with (opener or gzip.open)(path, "rb") as fh:
                    inner = self.raw16.scan_stream(fh, unbounded=True)
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
                if kind != "nifti":  # a damaged NIfTI is reported by the open check
                    self.add(rel, "raw-bytes", f"gzip stream unreadable: {type(exc).__name__}")
                return
            inner_bulk = [(_nifti_offset(path), _END)] if kind == "nifti" else [(_OPEN_HEAD, _END)]
            self.add_hits(rel, "raw-bytes", drop_chance_hits(inner, inner_bulk),
                          "in the decompressed bytes at {offset}")
        elif kind == "other" and _unchecked_kind(magic):
            self.add(rel, "file-type", f"{_unchecked_kind(magic)} whose content cannot be "
                                       f"searched: not checked")

    # DICOM ------------------------------------------------------------------------
    def check_dicom(self, path: Path, rel: str) -> None:
        import pydicom

        from ..api import read_dicom
        from ..errors import InputError

        ds = None
        try:  # the strict reader of the core: truncation, missing pixels, no file meta
            ds = read_dicom(path)
        except InputError as exc:
            if "DICOMDIR" not in exc.reason:
                self.add(rel, "dicom-open", exc.reason)
        except Exception as exc:  # noqa: BLE001
            self.add(rel, "dicom-open", f"does not read: {type(exc).__name__}")
        if ds is None:  # the header is still searched, as far as it parses
            try:
                ds = pydicom.dcmread(path, force=True, defer_size="64 MB")
            except Exception as exc:  # noqa: BLE001
                self.add(rel, "dicom-open", f"does not parse: {type(exc).__name__}")
                return
        for where, data, numeric, raw in _dicom_values(ds):
            hits = self.fields.find(data)
            if numeric:
                hits = [h for h in hits if not h.term.text.isdigit()
                        or len(h.term.text) >= MIN_DIGITS]
            if hits:
                self.add_hits(rel, "dicom-header", hits, f"in {where}")
            if raw:
                self.check_embedded(rel, where, data)
        self.check_dates(path, rel, ds)
        is_dir = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "")) == \
            MEDIA_DIRECTORY_SOP_CLASS
        if not is_dir and str(ds.get("PatientIdentityRemoved", "") or "").upper() != "YES":
            self.add(rel, "dicom-marking", "Patient Identity Removed is not YES: this file did "
                                           "not come out of de-identification")
        if self.dciodvfy:
            self.check_dciodvfy(path, rel)
        from .ocr import pixels_at_risk

        if pixels_at_risk(ds):
            self.check_ocr_dicom(ds, path, rel)
        self.check_pixels_kept(ds, path, rel)

    def check_embedded(self, rel: str, where: str, data: bytes) -> None:
        """A compressed stream, archive or document in a bytes value (a PDF in Encapsulated
        Document, GE's gzip Protocol Data Block in a private OB): decompressed and
        searched as a compressed file of the release is, or a finding when it cannot be."""
        magic = bytes(data[:8])
        unchecked = _unchecked_kind(magic)
        if unchecked:
            self.add(rel, "dicom-header", f"{unchecked} in {where} whose content cannot be "
                                          f"searched: not checked")
            return
        if magic.startswith(b"PK\x03\x04"):
            self.check_zip(io.BytesIO(data), rel, f"in {where}")
            return
        opener = _opener_for(magic)
        try:
            if opener is not None:
                with opener(io.BytesIO(data), "rb") as fh:
                    inner = self.raw16.scan_stream(fh, unbounded=True)
            elif _is_zlib(magic):
                inner = self.raw16.find(_inflate(data), unbounded=True)
            else:
                return
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            if opener is not None:  # (two zlib-like bytes may open any binary value)
                self.add(rel, "dicom-header", f"compressed stream in {where} unreadable "
                                              f"({type(exc).__name__}): not checked")
            return
        self.add_hits(rel, "dicom-header", drop_chance_hits(inner, [(_OPEN_HEAD, _END)]),
                      f"in {where}, decompressed")

    def check_pixels_kept(self, ds, path: Path, rel: str) -> None:
        """Pixels must be those of the source (ledger item, source still there) outside the
        boxes the pixel stage recorded: a damaged image is the next worst bug after a leak.
        Defaced items change voxels by design and are not compared."""
        item = self.item_for(path)
        if (item is None or item.kind != "dicom" or "deface" in item.stages
                or not Path(item.src).is_file() or "PixelData" not in ds):
            return
        import numpy as np
        import pydicom

        px = item.details.get("pixels") if isinstance(item.details, dict) else None
        boxes = [b for b in ((px or {}).get("boxes") or []) if isinstance(b, dict)]
        try:
            src = pydicom.dcmread(item.src, force=True)
            if not boxes and src.get("PixelData") == ds.PixelData:
                return
            if (int(src.get("Rows", 0)) * int(src.get("Columns", 0))
                    * int(src.get("NumberOfFrames", 1) or 1) > _COMPARE_LIMIT):
                return
            a, b = np.asarray(src.pixel_array), np.asarray(ds.pixel_array)
        except Exception as exc:  # noqa: BLE001 - undecodable: dciodvfy and open checks speak
            logger.debug("pixels of %s not compared: %s", rel, exc)
            return
        if a.shape != b.shape:
            self.add(rel, "pixels", f"image shape changed from {a.shape} to {b.shape}")
            return
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        keep = np.ones(a.shape, bool)
        rows, cols = int(ds.Rows), int(ds.Columns)
        for bx in boxes:
            # the stage pads OCR boxes by a fifth of their height (detectors hug the glyphs)
            # and blacks them out on every frame; a JPEG block more on every side
            try:
                pad = 16 + max(2, (int(bx["y1"]) - int(bx["y0"])) // 5)
                x0, y0 = max(0, int(bx["x0"]) - pad), max(0, int(bx["y0"]) - pad)
                x1, y1 = min(cols, int(bx["x1"]) + pad), min(rows, int(bx["y1"]) + pad)
            except (KeyError, TypeError, ValueError):
                continue
            if frames > 1:
                keep[:, y0:y1, x0:x1] = False
            else:
                keep[y0:y1, x0:x1] = False
        changed = int(np.count_nonzero((a != b) & keep))
        if changed:
            self.add(rel, "pixels", f"{changed} pixel value(s) differ from the source outside "
                                    f"the recorded redaction boxes")

    def check_dates(self, path: Path, rel: str, ds) -> None:
        """Service dates equal to those of the output's source (paired by its pixel data or
        SR content tree, ``--against``): the dates were not shifted although the release
        does not keep full dates (no Retain Longitudinal Temporal Information Full Dates
        Option)."""
        if "dates" in self._retained or not self.source_dates:
            return
        from .identity import SERVICE_DATE_KEYWORDS, pairing_key

        src = self.source_dates.get(pairing_key(path, ds) or "")
        if not src:
            return
        same = [kw for kw in SERVICE_DATE_KEYWORDS
                if kw in src and str(ds.get(kw, "") or "").strip() == src[kw]]
        if same:
            self.add(rel, "dates", f"{len(same)} service date(s) ({', '.join(same)}) equal to "
                                   f"the source's: not shifted", "date", 8)

    def check_dciodvfy(self, path: Path, rel: str) -> None:
        from .. import dciodvfy

        if not dciodvfy.is_available():
            self.add(rel, "dciodvfy", "dciodvfy not installed (pip install 'pixeldeid[verify]'); "
                                      "give --no-dciodvfy to skip")
            return
        item = self.item_for(path)
        # a series item is compared with its first source file (same series, same IOD)
        src = item.src if item is not None and item.kind in ("dicom", "dicom-series") else None
        if src and Path(src).is_file():
            errors = dciodvfy.new_errors(src, path)
        else:
            errors = [f.message for f in dciodvfy.run_dciodvfy(path) if f.severity == "Error"]
            if self.against_dicoms:
                known = self.source_errors()
                errors = [e for e in errors if e not in known]
        for e in errors:
            self.add(rel, "dciodvfy", e)

    def source_errors(self) -> Counter:
        """Normalized dciodvfy errors of the --against sources (outputs with no ledger
        mapping to their source are compared with all of them)."""
        if self._source_errors is None:
            from .. import dciodvfy

            c: Counter = Counter()
            for s in self.against_dicoms:
                c.update(f.message for f in dciodvfy.run_dciodvfy(s) if f.severity == "Error")
            self._source_errors = c
        return self._source_errors

    def engine(self):
        if self._engine is None and self._engine_error is None:
            try:
                from .ocr import get_engine

                self._engine = get_engine(self.ocr_name or "auto")
            except Exception as exc:  # noqa: BLE001 - MissingDependencyError, ProfileError, ...
                self._engine_error = f"no OCR engine: {exc}".splitlines()[0]
        return self._engine

    def check_ocr_dicom(self, ds, path: Path, rel: str) -> None:
        if self.ocr_name is None:
            self.result.not_ocr_verified.append((rel, "OCR switched off (--no-ocr)"))
            return
        engine = self.engine()
        if engine is None:
            self.result.not_ocr_verified.append((rel, self._engine_error or "no OCR engine"))
            return
        from .ocr import (
            OCR_ALL_FRAMES,
            cine_change_frames,
            coverage,
            frames_rgb,
            frames_to_read,
            window_views,
        )

        n = int(ds.get("NumberOfFrames", 1) or 1)
        item = self.item_for(path)
        boxes = ((item.details.get("pixels") or {}).get("boxes") or []) if item else []
        # a long cine: a sample, and the frames where the overlay changes (all compared)
        changes = cine_change_frames(ds, n) if n > OCR_ALL_FRAMES else []
        frames = frames_to_read(n, [b.get("frame") for b in boxes if isinstance(b, dict)],
                                changes=changes or ())
        try:
            images = [(f"frame {f}", img)
                      for f, img in zip(frames, frames_rgb(ds, frames), strict=True)]
            images += window_views(ds, frames)
        except Exception as exc:  # noqa: BLE001 - undecodable pixels cannot be verified
            why = getattr(exc, "reason", None) or f"pixels not decodable: {type(exc).__name__}"
            self.result.not_ocr_verified.append((rel, why))
            return
        whole = len(frames) == n
        if not self.ocr_images(rel, images, str(ds.get("Modality", "") or ""), verified=whole):
            return
        if not whole:  # never "OCR-verified" when frames were not read: say how many were
            covered = changes is not None and set(changes) <= set(frames)
            (self.result.ocr_partial if covered else self.result.not_ocr_verified).append(
                (rel, coverage(frames, n, changes)))

    def ocr_images(self, rel: str, images: Sequence[tuple[str, object]], modality: str,
                   *, any_text_is_finding: bool = False, verified: bool = True) -> bool:
        """OCR ``images`` of one file and report what they show; the file is listed as
        OCR-verified when ``verified`` (every frame read). False when OCR failed."""
        from .ocr import ClassifierError, classify

        engine = self.engine()
        try:
            results = engine.read_batch([img for _, img in images])
        except Exception as exc:  # noqa: BLE001
            self.result.not_ocr_verified.append((rel, f"OCR failed: {type(exc).__name__}"))
            return False
        for (where, _img), boxes in zip(images, results, strict=True):
            texts = [str(getattr(b, "text", "") or "") for b in boxes]
            texts = [t for t in texts if t.strip()]
            try:
                flagged = classify(texts, self.values, modality)
            except ClassifierError as exc:
                self.result.not_ocr_verified.append((rel, str(exc)))
                return False
            for t, is_id in zip(texts, flagged, strict=True):
                hits = self.fields.find_text(t)
                if hits:
                    self.add_hits(rel, "ocr", hits, f"read in the pixels of {where}")
                elif is_id:
                    self.add(rel, "ocr", f"text classified as identity (length {len(t)}) in the "
                                         f"pixels of {where}", "ocr", len(t))
            if any_text_is_finding and texts:
                self.add(rel, "ocr", f"{len(texts)} text line(s) readable in {where}")
        if verified and rel not in self.result.ocr_verified:
            self.result.ocr_verified.append(rel)
        return True

    # NIfTI ------------------------------------------------------------------------
    def check_nifti(self, path: Path, rel: str) -> None:
        import nibabel as nib
        import numpy as np

        try:
            img = nib.load(str(path))
        except Exception as exc:  # noqa: BLE001
            self.add(rel, "nifti-open", f"does not open in nibabel: {type(exc).__name__}")
            return
        hdr = img.header
        for fld in ("descrip", "aux_file", "intent_name", "db_name"):
            try:
                raw = bytes(np.asarray(hdr[fld]).tobytes())
            except (KeyError, ValueError):
                continue
            self.add_hits(rel, "nifti-header", self.fields.find(raw.rstrip(b"\x00")),
                          f"in {fld}")
        for i, ext in enumerate(getattr(hdr, "extensions", []) or []):
            try:
                content = ext.get_content()
            except Exception:  # noqa: BLE001
                content = getattr(ext, "_content", b"")
            data = content if isinstance(content, bytes) else str(content).encode("utf-8", "replace")
            self.add_hits(rel, "nifti-header", self.fields.find(data), f"in extension {i}")
        try:
            arr = np.asanyarray(img.dataobj)
            if arr.shape != img.shape:
                raise ValueError("shape mismatch")
        except Exception as exc:  # noqa: BLE001
            self.add(rel, "nifti-open", f"voxel data does not read: {type(exc).__name__}")

    # slides -----------------------------------------------------------------------
    def check_tiff(self, path: Path, rel: str) -> None:
        import tifffile

        try:
            with tifffile.TiffFile(path) as tf:
                for pi, page in enumerate(tf.pages):
                    for tag in page.tags.values():
                        v = tag.value
                        if isinstance(v, str):
                            data = v.encode("utf-8", "replace")
                        elif isinstance(v, bytes):
                            data = v
                        else:
                            continue
                        self.add_hits(rel, "tiff-tags", self.text16.find(data),
                                      f"in tag {tag.name} of page {pi}")
        except Exception as exc:  # noqa: BLE001
            self.add(rel, "tiff-open", f"does not open in tifffile: {type(exc).__name__}")
            return
        self.check_slide(path, rel)

    def check_slide(self, path: Path, rel: str) -> None:
        try:
            import openslide
        except ImportError:
            self.add(rel, "slide-open", "openslide not installed (pip install 'pixeldeid[slides]')")
            return
        try:
            slide = openslide.OpenSlide(str(path))
        except Exception as exc:  # noqa: BLE001 - a plain TIFF that is no slide is still a TIFF
            if path.name.lower().endswith((".tif", ".tiff")):
                logger.debug("%s is not a slide: %s", rel, exc)
                return
            self.add(rel, "slide-open", f"does not open in openslide: {type(exc).__name__}")
            return
        try:
            for k, v in slide.properties.items():
                data = f"{k}={v}".encode("utf-8", "replace")
                self.add_hits(rel, "slide-properties", self.text.find(data), f"in property {k}")
            item = self.item_for(path)
            wsi = (item.details.get("wsi") or {}) if item else {}
            handled = {"label": wsi.get("label") in ("replaced", "redacted"),
                       "macro": wsi.get("macro") in ("redacted", "replaced")}
            for name in ("label", "macro"):
                if name not in slide.associated_images:
                    continue
                img = slide.associated_images[name].convert("RGB")
                if self.ocr_name is None or self.engine() is None:
                    if not handled[name]:
                        self.add(rel, "slide-" + name, f"{name} image present and not recorded as "
                                 f"{'replaced' if name == 'label' else 'redacted'}")
                    self.result.not_ocr_verified.append(
                        (rel, f"{name} image: " + ("OCR switched off (--no-ocr)"
                                                   if self.ocr_name is None else
                                                   self._engine_error or "no OCR engine")))
                    continue
                import numpy as np

                self.ocr_images(rel, [(f"the {name} image", np.asarray(img))], "SM",
                                any_text_is_finding=not handled[name])
        finally:
            slide.close()

    # packages ---------------------------------------------------------------------
    def check_zip(self, path: Path | BinaryIO, rel: str, where: str = "") -> None:
        """Every member of a zip archive: a file of OUT, or one ``where`` a DICOM element
        holds it ("in (0009,1010) private")."""
        within = f" of the zip archive {where}" if where else ""
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                for i, info in enumerate(infos):
                    if info.is_dir():
                        continue
                    if info.file_size > _ZIP_MEMBER_LIMIT:
                        self.add(rel, "zip", f"member {self.masked(info.filename)!r}{within} "
                                             f"too large to check ({info.file_size} bytes)")
                        continue
                    self.add_hits(rel, "zip", self.text.find(info.filename.encode()),
                                  f"in a member name{within}")
                    try:
                        hits = self._zip_member(zf, info)
                    except (RuntimeError, NotImplementedError, zlib.error, EOFError,
                            ValueError, zipfile.BadZipFile, OSError, lzma.LZMAError) as exc:
                        # encrypted, Deflate64/other methods, a corrupt stream
                        why = ("encrypted" if info.flag_bits & 0x1 else str(exc)
                               if isinstance(exc, ValueError) else type(exc).__name__)
                        self.add(rel, "zip", f"member {i + 1} of {len(infos)}{within} cannot "
                                             f"be read ({why}): not checked")
                        continue
                    self.add_hits(rel, "zip", hits,
                                  f"in member {self.masked(info.filename)}{within}")
        except (zipfile.BadZipFile, OSError) as exc:
            self.add(rel, "zip", f"{f'the zip archive {where} ' if where else ''}does not open: "
                                 f"{type(exc).__name__}")


    def _zip_member(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> list[Hit]:
        """Hits in one member: text in full; DICOM outside its pixel data; other binary
        data past its first bytes only when long (chance hits)."""
        if info.filename.lower().endswith(TEXT_SUFFIXES):
            with zf.open(info) as fh:
                return self.text16.scan_stream(fh)
        with zf.open(info) as fh:
            head = fh.read(132)
        opener = _opener_for(head)
        if opener is not None:  # a compressed file (a NIfTI .nii.gz of a package)
            with zf.open(info) as raw, opener(raw, "rb") as fh:
                inner = self.raw16.scan_stream(fh, unbounded=True)
            return drop_chance_hits(inner, [(_OPEN_HEAD, _END)])
        if head[:4] == b"PK\x03\x04" or any(head.startswith(m) for m in _UNCHECKED):
            raise ValueError("a nested archive or document")
        with zf.open(info) as fh:
            hits = self.raw16.scan_stream(fh, unbounded=True)
        bulk = [(_OPEN_HEAD, _END)]
        if head[128:132] == b"DICM" and info.file_size <= _ZIP_PARSE_LIMIT:
            bulk = _dicom_bulk(io.BytesIO(zf.read(info)), info.file_size)
        return drop_chance_hits(hits, bulk)


#: De-identification Method code of the Retain Institution Identity Option (CID 7050).
RETAIN_INSTITUTION_CODE = "113112"
#: PS3.15 options whose kept values are no findings -> the identity kind they keep
#: ("dates": service dates may equal the source's).
_RETAIN_OPTIONS = {"retain-institution-identity": "institution", "retain-uids": "uid",
                   "retain-longitudinal-full-dates": "dates"}


def _retained_kinds(path: Path) -> set[str]:
    """What a DICOM output says it kept on purpose (its De-identification Method Code
    Sequence; Longitudinal Temporal Information Modified UNMODIFIED: full dates)."""
    import pydicom

    from ..standard import DEID_METHOD_CODES

    codes = {DEID_METHOD_CODES[o][0]: k for o, k in _RETAIN_OPTIONS.items()}
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=["DeidentificationMethodCodeSequence",
                                            "LongitudinalTemporalInformationModified"])
        seq = ds.get("DeidentificationMethodCodeSequence") or []
        out = {codes[c] for c in (str(it.get("CodeValue", "")) for it in seq) if c in codes}
        if str(ds.get("LongitudinalTemporalInformationModified", "") or "").upper() == \
                "UNMODIFIED":
            out.add("dates")
        return out
    except Exception:  # noqa: BLE001 - unreadable: nothing is retained
        return set()


_END = 1 << 62
#: Compressed files opened like gzip (by their magic bytes, whatever their name).
_OPENERS = {b"\x1f\x8b\x08": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


def _opener_for(magic: bytes):
    """The ``open`` of the compressed format whose magic bytes start ``magic``, or None."""
    return next((op for m, op in _OPENERS.items() if magic.startswith(m)), None)
#: Formats whose text verify cannot read (compressed streams inside): a finding, never a
#: silent pass.
_UNCHECKED = {b"%PDF": "a PDF document", b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
              b"Rar!": "a RAR archive", b"\x28\xb5\x2f\xfd": "a Zstandard stream",
              b"\xd0\xcf\x11\xe0": "an OLE (Office) document"}


def _unchecked_kind(magic: bytes) -> str | None:
    """What format of :data:`_UNCHECKED` starts ``magic`` ("a PDF document"), or None."""
    return next((what for m, what in _UNCHECKED.items() if magic.startswith(m)), None)


#: Most bytes a zlib stream in an element value is inflated to (a bomb stops there).
_INFLATE_LIMIT = 256 << 20


def _is_zlib(magic: bytes) -> bool:
    """A zlib header (deflate, a valid check value): GE and Siemens private blobs."""
    return len(magic) >= 2 and magic[0] & 0x0F == 8 and magic[0] >> 4 <= 7 and \
        int.from_bytes(magic[:2], "big") % 31 == 0


def _inflate(data: bytes) -> bytes:
    """The inflated bytes of a zlib stream, at most :data:`_INFLATE_LIMIT`."""
    return zlib.decompressobj().decompress(data, _INFLATE_LIMIT)


#: The first bytes of binary files are searched in full (names, headers, PNG text chunks).
_OPEN_HEAD = 4096
_ZIP_PARSE_LIMIT = 256 << 20


def _dicom_bulk(fh, size: int) -> list[tuple[int, int]]:
    """Byte ranges of the pixel data values of a DICOM file (native or encapsulated)."""
    import pydicom

    try:
        fh.seek(0)
        ds = pydicom.dcmread(fh, force=True, defer_size=256)
    except Exception:  # noqa: BLE001 - unparsable: the whole file is searched in full
        return []
    out = []
    for tag in _PIXEL_TAGS:
        raw = ds._dict.get(tag)
        start, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if start is None or length is None:
            continue
        if length == 0xFFFFFFFF:
            out += _encapsulated_bulk(fh, start, size)
        else:
            out.append((start, start + length))
    return out


#: Marker segments of a JPEG / JPEG-LS / JPEG 2000 header that hold text, not image data:
#: COM, APP0-APP15, J2K COM.
_TEXT_MARKERS = frozenset({0xFE, 0x64, *range(0xE0, 0xF0)})


def _encapsulated_bulk(fh, start: int, size: int) -> list[tuple[int, int]]:
    """Bulk ranges of an encapsulated Pixel Data value at ``start``: each fragment, less
    the payloads of its header's text segments (COM, APPn: searched as text); the bytes
    after the Sequence Delimitation Item are no pixel data (searched as text)."""
    out: list[tuple[int, int]] = []
    pos = start
    fh.seek(pos)
    while pos + 8 <= size:
        head = fh.read(8)
        if len(head) < 8:
            break
        tag = int.from_bytes(head[:2], "little") << 16 | int.from_bytes(head[2:4], "little")
        length = int.from_bytes(head[4:], "little")
        if tag != 0xFFFEE000 or length == 0xFFFFFFFF:
            break  # the Sequence Delimitation Item (or damage): the value ends here
        frag = pos + 8
        data = fh.read(min(length, 1 << 20))  # marker segments are in the first bytes
        cut = frag
        i = 2 if data[:2] in (b"\xff\xd8", b"\xff\x4f") else len(data)  # SOI / J2K SOC
        while i + 4 <= len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if marker in (0xDA, 0x90):  # SOS / SOT: image data follows
                break
            seg = int.from_bytes(data[i + 2:i + 4], "big")
            if marker in _TEXT_MARKERS:
                out.append((cut, frag + i + 4))
                cut = frag + i + 2 + seg
            i += 2 + seg
        out.append((cut, frag + length))
        pos = frag + length
        fh.seek(pos)
    return out


def _nifti_offset(path: Path) -> int:
    """Where the voxels of a NIfTI file begin (348/540-byte header plus extensions)."""
    try:
        import nibabel as nib

        return int(nib.load(str(path)).header.get_data_offset()) or 352
    except Exception:  # noqa: BLE001
        return 352


def _tiff_bulk(path: Path) -> list[tuple[int, int]]:
    """Byte ranges of the strips and tiles of every page of a TIFF."""
    import tifffile

    out = []
    try:
        with tifffile.TiffFile(path) as tf:
            for page in tf.pages:
                for off, cnt in zip(page.dataoffsets, page.databytecounts, strict=False):
                    if cnt:
                        out.append((int(off), int(off) + int(cnt)))
    except Exception:  # noqa: BLE001 - unreadable: searched in full, reported by tiff-open
        return []
    return out


def _dicom_values(ds) -> Iterable[tuple[str, bytes, bool, bool]]:
    """``(where, value bytes, numeric, raw)`` of every element at any depth, file meta and
    private included (pixel data excluded; its bytes are in the raw scan). ``numeric``:
    numbers, UIDs or codes as text (short digit terms are no findings there); ``raw``: the
    bytes of a binary value (OB, UN: it may hold a compressed stream)."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from _walk(meta, "")
    yield from _walk(ds, "")


#: VRs holding numbers in binary form (not searched) and numbers or UIDs as text (only
#: digit terms of :data:`MIN_DIGITS` or more are findings there: "512" is no patient ID).
_BINARY_NUMBERS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT", "OF", "OD",
                             "OL", "OV"})
_NUMERIC_TEXT = frozenset({"IS", "DS", "UI"})
#: Coded structure (an SR's Code Value "1234.0", a template number): searched as numbers
#: are, short digit terms are no findings there.
_CODE_KEYWORDS = frozenset({"CodeValue", "LongCodeValue", "URNCodeValue", "CodingSchemeVersion",
                            "CodingSchemeDesignator", "ContextIdentifier", "ContextGroupVersion",
                            "MappingResource", "MappingResourceUID", "TemplateIdentifier",
                            "ContextGroupExtensionCreatorUID"})
MIN_DIGITS = 6


def _decoded(value: bytes, charsets: list[str]) -> bytes:
    """A bytes value (UN, OB: a private element of unknown creator) as text in the data
    set's character sets, else Latin-1; lower case UTF-8 ("MÜLLER" written in ISO_IR 100)."""
    from pydicom.charset import convert_encodings, decode_bytes

    try:
        text = decode_bytes(value, convert_encodings(charsets or ["ISO_IR 6"]), set())
    except Exception:  # noqa: BLE001 - undecodable in them
        text = value.decode("latin-1")
    if text.isascii():  # the bytes as they are already say it
        return b""
    return text.lower().encode("utf-8", "replace")


def _walk(ds, prefix: str, charsets: list[str] | None = None
          ) -> Iterable[tuple[str, bytes, bool, bool]]:
    cs = ds.get("SpecificCharacterSet", None) if "SpecificCharacterSet" in ds else None
    if cs is not None:
        charsets = [str(x) for x in (cs if isinstance(cs, (list, tuple))
                                     or type(cs).__name__ == "MultiValue" else [cs])]
    for elem in ds:
        tag = int(elem.tag)
        name = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        label = f"{prefix}{name} {elem.keyword or ('private' if elem.tag.is_private else '')}".strip()
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                yield from _walk(item, f"{prefix}{name}[{i}]>", charsets)
            continue
        if tag in _PIXEL_TAGS or (tag >> 16) & 0xFF00 == 0x6000 and tag & 0xFFFF == 0x3000:
            continue
        if elem.VR in _BINARY_NUMBERS:
            continue  # numbers in binary form carry no text
        try:
            v = elem.value
        except Exception:  # noqa: BLE001 - undecodable value: its raw bytes are scanned
            continue
        if v is None:
            continue
        if isinstance(v, bytes):
            text = _decoded(v, charsets or [])
            if text:
                yield label, text, False, False
            yield label, v, False, True
            continue
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            data = "\\".join(str(x) for x in v).lower().encode("utf-8", "replace")
        else:  # decoded in the data set's character set; lower case in full (MÜLLER)
            data = str(v).lower().encode("utf-8", "replace")
        yield label, data, elem.VR in _NUMERIC_TEXT or elem.keyword in _CODE_KEYWORDS, False


def _check_engine_name(name: str) -> None:
    """An unknown OCR engine name is a usage error (with "did you mean")."""
    import difflib

    from ..errors import ProfileError

    try:
        from ..burnedin.ocr import ENGINES
    except ImportError:  # no burned-in package: every at-risk file is "not OCR-verified"
        return
    names = ["auto", *ENGINES]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (choose from {', '.join(names)})"
        raise ProfileError(f"unknown OCR engine {name!r}{hint}")


def verify_output(out: str | os.PathLike, against: Sequence[str | os.PathLike] = (), *,
                  ocr: str | None = "auto", dciodvfy: bool = True,
                  progress: bool | None = None, jobs: int = 1,
                  extra_values: Sequence[IdentityValue] = ()) -> VerifyResult:
    """Check every output of ``out`` for residual identity and damage.

    Parameters
    ----------
    out : path
        A folder written by ``pixeldeid run`` / ``dicom`` / ``deface`` / ``wsi``.
    against : paths
        Source files or folders whose headers give the identity values (besides the run
        ledger's identity table).
    ocr : str or None
        OCR engine name (``auto``, ``rapidocr`` ...) for at-risk pixels; None switches OCR
        off (those files are then listed as not OCR-verified, which does not fail the run).
    dciodvfy : bool
        Run dciodvfy on DICOM outputs.
    jobs : int
        Worker processes (dciodvfy and OCR dominate; each worker loads its own engine).
    extra_values : IdentityValue
        More values to search for.

    Raises
    ------
    InputError
        ``out`` is not a folder, or no identity value is known (no ledger identity table
        and no ``against``).
    """
    from tqdm import tqdm

    from ..errors import InputError

    outp = Path(out)
    if not outp.is_dir():
        raise InputError("not a folder", str(out))
    if ocr is not None:
        _check_engine_name(ocr)
    ledger = RunLedger(outp)
    try:
        values = identity_from_ledger(ledger) + list(extra_values)
        dicoms: list[str] = []
        unreadable: list[tuple[str, str]] = []
        dates: dict[str, dict[str, str] | None] = {}
        if against:
            src_values, dicoms = identity_from_sources(against, progress=progress,
                                                       unreadable=unreadable, dates=dates)
            values += src_values
        if not values:
            raise InputError("no identity values known: the run ledger has none (or is absent); "
                             "give the sources with --against SRC", str(out))
        pseudonyms = sorted({it.patient for it in ledger.items() if it.patient}
                            | set(ledger.subject_pseudonyms()))
        v = _Verifier(outp, values, pseudonyms, ledger=ledger, against_dicoms=dicoms, ocr=ocr,
                      dciodvfy=dciodvfy, source_dates=dates)
        v.result.values = dict(Counter(x.kind for x in values))
        v.result.unreadable_sources = unreadable
        for it in ledger.items():
            if it.status == "done" and it.output and not (outp / it.output).exists():
                v.add(it.output, "ledger", "output recorded as done is missing")
        links: list[Path] = []
        folders: list[Path] = []
        skipped: list[Path] = []
        files = iter_outputs(outp, links, folders, skipped)
        v.result.not_for_release = [p.relative_to(outp).as_posix() + "/" for p in skipped]
        v.check_names([*folders, *links])
        for p in links:
            v.add(p.relative_to(outp).as_posix(), "file-type",
                  "symbolic link or special file: not checked; a release must hold plain "
                  "files only")
        v.result.files = len(files)
        bar = tqdm(total=len(files), desc="verify", unit="file", leave=False,
                   disable=None if progress is None else not progress)
        try:
            if jobs <= 1 or len(files) < 2:
                for p in files:
                    v.check_file(p)
                    bar.update()
            else:
                _parallel(v, files, jobs, (str(outp), values, pseudonyms, dicoms, ocr, dciodvfy,
                                             dates),
                          bar)
        finally:
            bar.close()
        return v.result
    finally:
        ledger.close()


_WORKER: dict = {}


def _init_worker(args: tuple, source_errors: Counter | None) -> None:
    from ..pipeline.executors import die_with_parent

    die_with_parent()
    out, values, exclude, dicoms, ocr, dciodvfy, dates = args
    ledger = RunLedger(out)
    v = _Verifier(Path(out), values, exclude, ledger=ledger, against_dicoms=dicoms, ocr=ocr,
                  dciodvfy=dciodvfy, source_dates=dates)
    v._source_errors = source_errors
    _WORKER["v"] = v


def _check_one(path: str) -> tuple:
    v: _Verifier = _WORKER["v"]
    v.result = VerifyResult(str(v.out), ocr_required=v.result.ocr_required)
    v.check_file(Path(path))
    r = v.result
    return r.findings, r.not_ocr_verified, r.ocr_verified, r.ocr_partial, r.retained_kinds


def _parallel(v: _Verifier, files: list[Path], jobs: int, args: tuple, bar) -> None:
    """Check ``files`` in ``jobs`` worker processes; results merged in file order."""
    from concurrent.futures import ProcessPoolExecutor

    from .. import dciodvfy
    from ..pipeline.executors import fork_context

    ctx = fork_context()
    source_errors = None
    if (v.dciodvfy and v.against_dicoms and dciodvfy.is_available()
            and any(_needs_source_errors(v, p) for p in files)):
        source_errors = Counter()  # once, not in every worker
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            for msgs in pool.map(_source_error_messages, v.against_dicoms,
                                 chunksize=max(1, len(v.against_dicoms) // (jobs * 4))):
                source_errors.update(msgs)
    chunk = max(1, min(16, len(files) // (jobs * 4) or 1))
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(args, source_errors)) as pool:
        for findings, unverified, verified, partial, retained in pool.map(
                _check_one, [str(p) for p in files], chunksize=chunk):
            v.result.findings += findings
            v.result.not_ocr_verified += unverified
            v.result.ocr_verified += verified
            v.result.ocr_partial += partial
            v.result.retained_kinds.update(retained)
            bar.update()


def _source_error_messages(path: str) -> list[str]:
    from .. import dciodvfy

    return [f.message for f in dciodvfy.run_dciodvfy(path) if f.severity == "Error"]


def _needs_source_errors(v: _Verifier, path: Path) -> bool:
    if file_kind(path) != "dicom":
        return False
    item = v.item_for(path)
    return item is None or item.kind not in ("dicom", "dicom-series") or not Path(
        item.src).is_file()


__all__ = ["Finding", "VerifyResult", "verify_output", "iter_outputs", "file_kind", "Term",
           "REPORT_MARKER", "REPORT_PAGE", "REPORT_IMAGES", "report_files", "is_report_image"]
