"""Hamamatsu NDPI: macro, Reference, serials, property map and dates, in place.

- the macro is the IFD with SourceLens (65421) -1; the "map" (-2, a low-resolution
  picture of the whole glass, label end included) goes with it;
- 65427 Reference (slide name / barcode text) and 65442 scanner serial are blanked;
- 65449 property map (one copy shared by every IFD) is rewritten with allowlisted
  ``key=value`` records only; Created/Updated are shifted or removed; the nested
  ``;NDP Shading Data ... ;SerialNumber=...;Date=...`` blob is dropped;
- DateTime and other standard identity tags go through :mod:`wsi.generic`.

Region redaction re-encodes only the restart intervals of each level JPEG that a region
touches, in place (:func:`wsi.redact.redact_ndpi_level`); a level it cannot handle
(non-standard Huffman tables, an interval that would grow) quarantines the slide.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pixeldeid.errors import DeidError

from .generic import BLOB_TAGS, blank_private_blobs, blank_unknown_text_tags, clean_standard_tags
from .metadata_rules import clean_date_value
from .redact import (
    RedactStats,
    macro_status,
    map_regions,
    ocr_level0_regions,
    redact_macro_ifd,
    redact_ndpi_level,
)
from .tiffclean import edit_in_place
from .tiffedit import TiffEditor

if TYPE_CHECKING:  # pragma: no cover
    from .api import SlideOptions, VendorReport

logger = logging.getLogger(__name__)

__all__ = ["deidentify", "clean_property_map", "SOURCE_LENS", "NDPI_SAFE_KEYS"]

SOURCE_LENS = 65421
REFERENCE = 65427
SERIAL = 65442
PROPERTY_MAP = 65449
#: fraction of the macro width covered by the label (left end in NDPI macros)
MACRO_LABEL_FRACTION = 0.27

#: property-map keys kept (regular expressions, whole key)
NDPI_SAFE_KEYS = tuple(re.compile(p) for p in (
    r"Product", r"system\.version", r"Objective\.Lens\.Magnificant", r"ccd\..*", r"PSHV.*",
    r"exposure\..*", r".*focus\.pitch", r"slide\.tickness", r"valid\..*", r"cube\.kind",
    r"colorfilterID", r"calibration\.version", r"target\.white\.intensity",
    r"lane\.shift\.amount", r"variable\.exposuretime", r"YRNP\[\d+\]", r"zCoarse\[\d+\]",
    r"zFine\[\d+\]", r"slant\..*", r"focalplane\..*", r"stage\.center", r"AHEX\[\d+\].*",
    r"MHLN\[\d+\].*", r"roi\.slide\.macro",
))
_DATE_KEYS = ("Created", "Updated")


def clean_property_map(text: str, shift_days: int | None) -> tuple[str, list[str]]:
    """Keep allowlisted records of an NDPI property map; return it and removed values."""
    kept: list[str] = []
    removed: list[str] = []
    for rec in text.split("\r\n"):
        if not rec:
            continue
        key, sep, value = rec.partition("=")
        if rec.startswith(";") or "\r" in rec or not sep:
            # nested blob (NDP Shading Data): dropped whole; its identifying values scanned for
            for m in re.finditer(r";(SerialNumber|Date|Name|Operator|User)=([^\r;]*)", rec):
                v = m.group(2).strip()
                if len(v) >= 4 and m.group(1) in ("SerialNumber", "Date", "Operator", "User"):
                    removed.append(v)
            continue
        if any(p.fullmatch(key) for p in NDPI_SAFE_KEYS):
            kept.append(rec)
        elif key in _DATE_KEYS:
            new = clean_date_value(value, shift_days)
            if new is not None:
                kept.append(f"{key}={new}")
            if new != value:
                removed.append(value)
        elif value.strip():
            removed.append(value.strip())
    return "".join(r + "\r\n" for r in kept), removed


def deidentify(path: str | Path, options: SlideOptions) -> VendorReport:
    """De-identify an NDPI file in place; see the module docstring."""

    def run(ed: TiffEditor, rep: VendorReport) -> None:
        if not ed.is_ndpi:
            raise DeidError("not an NDPI file (no tag 65420)", str(path))
        _run(ed, options, rep)

    return edit_in_place(path, run)


def _run(ed: TiffEditor, options: SlideOptions, rep: VendorReport) -> None:
    lens = {d.index: float(d.first(SOURCE_LENS, 0.0)) for d in ed.ifds}
    regions = list(options.redact_regions)
    if regions and any(v < 0 for v in lens.values()) and options.macro != "remove":
        raise DeidError("regions cannot be mapped onto the macro image: use macro='remove'",
                        str(ed.path))
    levels = [i for i, v in lens.items() if v > 0]
    if not levels:
        raise DeidError("no pyramid level (SourceLens > 0)", str(ed.path))
    level0 = max((ed.ifd(i).shape for i in levels), key=lambda s: s[0] * s[1])
    if options.ocr:
        lowest = min(levels, key=lambda i: ed.ifd(i).shape[0] * ed.ifd(i).shape[1])
        found = ocr_level0_regions(ed.path, lowest, level0, options.ocr)
        regions += found
        rep.actions.append(f"OCR found {len(found)} text regions in IFD {lowest}")
    if regions:
        st = RedactStats()
        for i in levels:
            redact_ndpi_level(ed, i, map_regions(regions, level0, ed.ifd(i).shape), st)
        rep.redaction = {**st.as_dict(), "regions": [tuple(r) for r in regions]}
        rep.actions.append(f"redacted {st.total_tiles} restart intervals "
                           f"({st.total_old} bytes affected, {st.total_new} written in place)")
    # property map: shared by every IFD; cleaning one copy cleans all of them
    done: set[int] = set()
    for d in list(ed.ifds):
        t = d.tags.get(PROPERTY_MAP)
        if t is None or t.value_offset in done:
            continue
        new, removed = clean_property_map(d.get(PROPERTY_MAP), options.date_offset)
        ed.set_ascii(d.index, PROPERTY_MAP, new)
        done.add(ed.ifd(d.index).tags[PROPERTY_MAP].value_offset)
        rep.removed_values += removed
    rep.actions.append("property map cleaned")
    for code in (REFERENCE, SERIAL):
        for d in list(ed.ifds):
            v = ed.ifd(d.index).get(code)
            if isinstance(v, str) and v.strip():
                rep.removed_values.append(v.strip())
                ed.set_ascii(d.index, code, "")
    rep.actions.append("Reference and serial blanked")
    rep.removed_values += clean_standard_tags(ed, options.date_offset)
    rep.removed_values += blank_private_blobs(ed)
    # other text tags (an ImageDescription, a scanner's private ASCII tags) and ICC text
    rep.removed_values += blank_unknown_text_tags(
        ed, handled=(PROPERTY_MAP, REFERENCE, SERIAL, *BLOB_TAGS))
    macros = [i for i, v in lens.items() if v == -1.0]
    maps = [i for i, v in lens.items() if v == -2.0]
    remove: list[int] = []
    if macros or maps:
        if options.macro == "remove":
            remove += macros + maps
            rep.macro = "removed" if macros else "absent"
        else:
            for i in macros + maps:
                redact_macro_ifd(ed, i, MACRO_LABEL_FRACTION, options, ocr=i in macros)
            rep.macro = macro_status(options)
    ed.unlink_ifds(remove)
    for i in sorted(remove, reverse=True):
        rep.actions.append(f"unlinked IFD {i} (SourceLens {lens[i]:g})")
