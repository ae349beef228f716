"""Aperio SVS: label, macro and ImageDescription metadata, in place.

openslide reads the tiled IFDs as levels, calls the non-tiled IFD at index 1 the
thumbnail, and names the other non-tiled IFDs by the first word of the second line of
their ImageDescription ("label", "macro"). GT450 files also mark label and macro with
NewSubfileType 1 and 9. Rules kept here:

- label/macro found by keyword, else by NewSubfileType 1/9 (non-tiled, not index 1);
  an unnamed non-tiled image that is not the thumbnail is removed too (fail closed);
- IFDs are unlinked from the end, and an unlink that would move a label or macro to
  index 1 (where openslide would show it as the thumbnail) is refused;
- every ImageDescription (levels, thumbnail, label, macro) is rebuilt from parts known
  to be safe: the first ``|``-field only in its known header form, ``key = value`` fields
  only when allowlisted (AppMag, MPP, dimensions, stage offsets, optics) with a value of
  the expected form (a number, or a fixed text pattern); dates are shifted or removed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pixeldeid.errors import DeidError

from .generic import blank_private_blobs, blank_unknown_text_tags, clean_standard_tags
from .metadata_rules import classify_key, clean_date_value, normalize_key
from .redact import (
    macro_status,
    map_regions,
    ocr_level0_regions,
    redact_ifd,
    redact_macro_ifd,
    replace_image,
    synthesize_label,
)
from .tiffclean import edit_in_place
from .tiffedit import IMAGE_DESCRIPTION, NEW_SUBFILE_TYPE, TiffEditor

if TYPE_CHECKING:  # pragma: no cover
    from .api import SlideOptions, VendorReport

logger = logging.getLogger(__name__)

__all__ = ["deidentify", "classify_ifds", "clean_description", "clean_header", "APERIO_SAFE_KEYS",
           "APERIO_TEXT_VALUES"]

#: Aperio ImageDescription keys kept verbatim (besides metadata_rules.SAFE_KEYS)
APERIO_SAFE_KEYS = (
    "AppMag", "MPP", "StripeWidth", "OriginalWidth", "OriginalHeight", "Left", "Top",
    "LineCameraSkew", "LineAreaXOffset", "LineAreaYOffset", "Focus Offset", "Exposure Time",
    "Exposure Scale", "Gamma", "Filtered", "Compression", "Quality", "ICC Profile",
)
#: fraction of the macro width covered by the slide label (left end on Aperio scanners)
MACRO_LABEL_FRACTION = 0.3


def classify_ifds(ed: TiffEditor) -> dict[int, str]:
    """Map each IFD index to "level", "thumbnail", "label", "macro" or "other"."""
    out: dict[int, str] = {}
    for d in ed.ifds:
        if d.is_tiled:
            out[d.index] = "level"
            continue
        desc = d.description or ""
        lines = [ln for ln in desc.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
        word = lines[1].split(" ")[0].strip().lower() if len(lines) > 1 and lines[1] else ""
        sub = int(d.first(NEW_SUBFILE_TYPE, 0) or 0)
        if word in ("label", "macro"):
            out[d.index] = word
        elif d.index == 1:
            out[d.index] = "thumbnail"
        elif sub == 1:
            out[d.index] = "label"
        elif sub == 9:
            out[d.index] = "macro"
        else:
            out[d.index] = "other"
    return out


def clean_description(desc: str, shift_days: int | None) -> tuple[str, list[str]]:
    """Rebuild an Aperio ImageDescription from parts known to be safe; return it and the
    removed values.

    Fail closed: nothing is kept because it is not known to be identifying.

    - The first ``|``-field keeps only its known header form (:func:`clean_header`): the
      library name/version line and the dimensions/tile/compression, thumbnail or
      associated-image line; anything else in it is dropped.
    - Each ``key = value`` field is kept when its key is allowlisted and its value has the
      expected form (:data:`APERIO_TEXT_VALUES`, else a number); date and time fields are
      shifted (``shift_days``) or removed, and kept only when they are dates or times;
      everything else is dropped.

    Raises
    ------
    DeidError
        The first field has no known Aperio header line (openslide would not read the
        slide as Aperio without it).
    """
    parts = desc.split("|")
    head, removed = clean_header(parts[0])
    kept = [head]
    for p in parts[1:]:
        field_, gone = _clean_field(p, shift_days)
        if field_ is not None:
            kept.append(field_)
        removed += gone
    return "|".join(kept), removed


#: the library name and version line opening each header segment (name: fixed forms)
_HEADER_LINE = re.compile(
    r"Aperio (?:Image Library|Leica Biosystems GT ?\d+(?: DX)?|ImageServer|eSlide Manager)"
    r" v(?:\d+(?:\.\d+)*|FS\d+(?: \d+)?)")
_DIMS = r"\d+x\d+"
_CODEC = r"(?:JPEG|J2K|JP2K|LZW|RAW|NONE)/(?:RGB|YUV\d*|KDU|YCC|YCBCR)"
#: the second line of a segment: level dimensions/tile/compression, thumbnail, label/macro
_INFO_LINES = (
    re.compile(rf"{_DIMS} \[\d+,\d+ {_DIMS}\] \({_DIMS}\)(?: -> {_DIMS})? {_CODEC}"
               r"(?: Q=\d+)? *"),
    re.compile(rf"{_DIMS} -> {_DIMS}(?: -)? *"),
    re.compile(rf"(?:label|macro)(?: {_DIMS})? *"),
    re.compile(r" *"),
)
#: values of allowlisted keys that are text, not numbers: the fixed forms kept
APERIO_TEXT_VALUES: dict[str, re.Pattern[str]] = {
    "iccprofile": re.compile(r"(?:ScanScope|AT2|GT ?450)(?: v\d+(?:\.\d+)*)?"),
    "compression": re.compile(rf"JPEG|J2K|JP2K|LZW|RAW|NONE|{_CODEC}"),
}
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_DATE_OR_TIME = re.compile(r"[0-9][0-9/:.\-]*")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9 ]*")


def clean_header(field: str) -> tuple[str, list[str]]:
    """The known parts of an Aperio description's first ``|``-field, and what was dropped.

    The field is one or more ``;``-separated segments (a re-saved slide keeps its
    parent's header after a ``;``), each a library name/version line followed by one
    line of dimensions, tile size and compression (``46000x32914 [0,100 46000x32914]
    (256x256) JPEG/RGB Q=70``), of thumbnail size (``2220x2967 -> 574x768 -``) or naming
    an associated image (``label 387x463``). Text after a known header line, lines of no
    known form and segments without a header line are dropped.

    Raises
    ------
    DeidError
        The first segment does not open with a known library name/version line.
    """
    removed: list[str] = []
    segments: list[str] = []
    for k, seg in enumerate(field.split(";")):
        sep = next((s for s in ("\r\n", "\n", "\r") if s in seg), "\r\n")
        lines = re.split(r"\r\n|\n|\r", seg)
        m = _HEADER_LINE.match(lines[0])
        if m is None:
            if k == 0:
                raise DeidError("Aperio ImageDescription does not open with a known scanner "
                                "library line")
            removed.append(seg)
            continue
        rest = lines[0][m.end():]
        head = m.group(0) + (" " if rest.startswith(" ") else "")
        if rest.strip():
            removed.append(rest.strip())
        kept = [head]
        for j, line in enumerate(lines[1:]):
            if j == 0 and any(p.fullmatch(line) for p in _INFO_LINES):
                kept.append(line)
            elif line.strip():
                removed.append(line.strip())
        segments.append(sep.join(kept))
    return ";".join(segments), removed


def _clean_field(field: str, shift_days: int | None) -> tuple[str | None, list[str]]:
    """One ``key = value`` field rebuilt (None: dropped) and the values removed."""
    key, sep, value = field.partition("=")
    key_s, value_s = key.strip(), value.strip()
    gone = [field.strip()] if field.strip() else []
    if not sep or not _KEY.fullmatch(key_s):
        return None, gone
    gone = [value_s] if value_s else []
    kind = classify_key(key_s, APERIO_SAFE_KEYS)
    if kind == "keep":
        form = APERIO_TEXT_VALUES.get(normalize_key(key_s), _NUMBER)
        if form.fullmatch(value_s):
            return f"{key_s} = {value_s}", []
        return None, gone
    if kind == "date" and _DATE_OR_TIME.fullmatch(value_s):
        new = clean_date_value(value_s, shift_days)
        if new is not None:
            return f"{key_s} = {new}", gone if new != value_s else []
    return None, gone


def deidentify(path: str | Path, options: SlideOptions) -> VendorReport:
    """De-identify an Aperio SVS in place; see the module docstring."""
    return edit_in_place(path, lambda ed, rep: _run(ed, options, rep))


def _run(ed: TiffEditor, options: SlideOptions, rep: VendorReport) -> None:
    kinds = classify_ifds(ed)
    if kinds.get(0) != "level":
        raise DeidError("first IFD of an Aperio slide must be tiled", str(ed.path))
    # 1. metadata
    for d in list(ed.ifds):
        desc = d.description
        if desc is None:
            continue
        new, removed = clean_description(desc, options.date_offset)
        if new != desc:
            ed.set_ascii(d.index, IMAGE_DESCRIPTION, new)
            rep.removed_values += removed
    rep.actions.append("ImageDescription cleaned")
    rep.removed_values += clean_standard_tags(ed, options.date_offset)
    rep.removed_values += blank_private_blobs(ed)
    rep.removed_values += blank_unknown_text_tags(ed)
    # 2. region redaction on levels and thumbnail (same field of view as level 0)
    labels = [i for i, k in kinds.items() if k == "label"]
    macros = [i for i, k in kinds.items() if k == "macro"]
    others = [i for i, k in kinds.items() if k == "other"]
    level0 = ed.ifd(0).shape
    regions = list(options.redact_regions)
    if options.redact_regions and macros and options.macro != "remove":
        raise DeidError("regions cannot be mapped onto the macro image: use macro='remove'",
                        str(ed.path))
    if options.ocr:
        lowest = min((i for i, k in kinds.items() if k == "level"),
                     key=lambda i: ed.ifd(i).shape[0] * ed.ifd(i).shape[1])
        sources = [i for i, k in kinds.items() if k == "thumbnail"] + [lowest]
        for i in dict.fromkeys(sources):
            h, w = ed.ifd(i).shape
            if h * w <= 4096 * 4096:
                found = ocr_level0_regions(ed.path, i, level0, options.ocr)
                regions += found
                rep.actions.append(f"OCR found {len(found)} text regions in IFD {i}")
    if regions:
        from .redact import RedactStats

        st = RedactStats()
        for i, k in kinds.items():
            if k in ("level", "thumbnail"):
                redact_ifd(ed, i, map_regions(regions, level0, ed.ifd(i).shape), st)
        rep.redaction = {**st.as_dict(), "regions": [tuple(r) for r in regions]}
        rep.actions.append(f"redacted {st.total_tiles} tiles/strips "
                           f"({st.total_old} bytes affected, {st.total_new} written)")
    # 3. label
    remove: list[int] = list(others)
    if labels:
        if options.label == "remove":
            remove += labels
            rep.label = "removed"
        elif options.label == "replace":
            for i in labels:
                d = ed.ifd(i)
                img = synthesize_label(d.shape, options.pseudonym or "DE-IDENTIFIED",
                                       int(d.first(277, 3)))
                replace_image(ed, i, img)
            rep.label = "replaced"
        else:
            rep.label = "kept"
    # 4. macro
    if macros:
        if options.macro == "remove":
            remove += macros
            rep.macro = "removed"
        else:
            for i in macros:
                redact_macro_ifd(ed, i, MACRO_LABEL_FRACTION, options)
            rep.macro = macro_status(options)
    # 5. unlink from the end; never promote a label/macro to index 1
    remaining = [i for i in range(len(ed.ifds)) if i not in remove]
    if len(remaining) > 1 and kinds[remaining[1]] in ("label", "macro", "other"):
        raise DeidError(f"removing IFDs would make the {kinds[remaining[1]]} image the "
                        "thumbnail (index 1)", str(ed.path))
    ed.unlink_ifds(remove)
    for i in sorted(set(remove), reverse=True):
        rep.actions.append(f"unlinked {kinds[i]} IFD {i}")
