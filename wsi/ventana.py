"""Ventana BIF de-identification (openslide vendor ``ventana``).

Identity lives in the XMP packet (tag 700) of IFD 0, an ``iScan`` element whose
attributes include BaseName, UnitNumber, UserName, Barcode1D, Barcode2D,
BuildDate, SlideAnnotation...; in the ``Label Image`` / ``Label_Image`` IFD, which
openslide shows as the *macro* (a photo of the whole slide, label included);
and in the generic TIFF tags. The level-0 ``EncodeInfo`` XMP carries tile
geometry only, and is cleaned with the same fail-closed rules.

The iScan attributes are filtered by an allowlist (magnification, scan
resolution, Z-layers, scanner model...), dates shifted or removed. The label
image IFD is unlinked; when it is IFD 0 (the usual layout: it carries the XMP
openslide detects the format by) it stays in the chain but its description is
changed so openslide no longer lists it and its pixels are replaced by a blank
image encoded with the same compression. With ``macro="redact"`` the label image
stays, with the label end (:data:`MACRO_LABEL_FRACTION` of its width) and any OCR text
blacked out strip by strip; ``macro="remove"`` (and ``label="remove"`` with
``macro="keep"``) removes it as above.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pixeldeid.errors import DeidError, InputError

from . import metadata_rules as mr
from .redact import macro_status, redact_macro_ifd
from .tiffclean import clean_tiff_tags, edit_in_place
from .tiffedit import IMAGE_DESCRIPTION, TiffEditor

if TYPE_CHECKING:  # pragma: no cover
    from .api import SlideOptions, VendorReport

logger = logging.getLogger(__name__)

__all__ = ["ISCAN_KEEP", "ENCODE_INFO_KEEP", "MACRO_DESCRIPTIONS", "MACRO_LABEL_FRACTION",
           "clean_xmp", "deidentify",
           "blank_segment"]

XMP = 700
MACRO_DESCRIPTIONS = ("Label Image", "Label_Image")
#: fraction of the label image (openslide's macro: the whole glass) covered by the
#: paper label, at its left end
MACRO_LABEL_FRACTION = 0.35
#: description given to a blanked label IFD that must stay in the chain
BLANKED_DESCRIPTION = "Blank"
#: iScan attributes kept besides the shared allowlist
ISCAN_KEEP: frozenset[str] = frozenset({
    "Magnification", "ScanRes", "Z-layers", "Z-spacing", "ScannerModel", "BuildVersion",
    "ScanMode", "FocusMode", "CameraType", "Left", "Top", "Right", "Bottom", "FocusQuality",
    "ScanWhitePoint", "ScanWhitePointX", "ScanWhitePointY",
})
#: EncodeInfo attributes (tile geometry openslide reads)
ENCODE_INFO_KEEP: frozenset[str] = frozenset({
    "Ver", "AOIScanned", "AOIIndex", "Width", "Height", "NumRows", "NumCols", "Pos-X",
    "Pos-Y", "Direction", "Tile1", "Tile2", "OverlapX", "OverlapY", "Confidence", "OriginX",
    "OriginY", "Flag", "XY", "Z", "Left", "Top", "Right", "Bottom",
})


#: words allowed as TileJointInfo values besides numbers (the Direction column)
JOINT_WORDS: frozenset[bytes] = frozenset({b"RIGHT", b"LEFT", b"UP", b"DOWN"})


def clean_xmp(raw: bytes, shift_days: int | None) -> tuple[bytes, list[str]]:
    """Clean one Ventana XMP packet (iScan or EncodeInfo); return new bytes and removed values.

    Raises
    ------
    InputError
        When the packet is not well-formed XML.
    """
    data = raw.rstrip(b"\x00")
    text = data.decode("utf-8", errors="strict")
    # the tile-joint run of an EncodeInfo is checked in bulk; the rest the usual way
    stripped = mr.strip_uniform_block(data, b"TileJointInfo", ENCODE_INFO_KEEP, JOINT_WORDS)
    check = text if stripped is None else stripped.decode("utf-8")
    if mr.xml_needs_no_cleaning(check, ISCAN_KEEP | ENCODE_INFO_KEEP):
        try:
            mr.split_xml_tail(check)
        except ValueError as exc:
            raise InputError(f"Ventana XMP: {exc}") from exc
        return raw, []
    try:
        doc, tail = mr.split_xml_tail(text)
        root = mr.parse_xml(doc)
    except ValueError as exc:
        raise InputError(f"Ventana XMP: {exc}") from exc
    removed: list[str] = []
    if tail.strip("\x00 \r\n\t"):
        removed.append(tail.strip("\x00 \r\n\t"))
    keep = ISCAN_KEEP | ENCODE_INFO_KEEP
    mr.clean_xml_tree(root, shift_days, removed, keep_attrs=keep, keep_text=())
    decl = mr.xml_declaration(text) or '<?xml version="1.0" encoding="utf-8"?>'
    out = mr.serialize_xml(root, decl).replace("\n", "", 1)
    return out.encode("utf-8"), removed


def blank_segment(ed: TiffEditor, ifd: int, index: int) -> int:
    """Replace strip/tile ``index`` of ``ifd`` by a blank (white) one, same compression.

    Returns the new segment size. Raises ``DeidError`` for a compression it cannot write.
    """
    import imagecodecs

    d = ed.ifd(ifd)
    h, w = d.shape
    spp = int(d.first(277, 1))
    if d.is_tiled:
        th, tw = int(d.first(323)), int(d.first(322))
    else:
        rps = int(d.first(278, h))
        th, tw = min(rps, h - index * rps), w
    img = np.full((th, tw, spp) if spp > 1 else (th, tw), 255, np.uint8)
    comp = int(d.first(259, 1))
    if comp == 1:
        data = img.tobytes()
    elif comp in (6, 7):
        data = imagecodecs.jpeg_encode(img, level=90)
    elif comp == 5:
        data = imagecodecs.lzw_encode(img.tobytes())
    elif comp in (8, 32946):
        data = imagecodecs.zlib_encode(img.tobytes())
    elif comp in (33003, 33005, 34712):
        data = imagecodecs.jpeg2k_encode(img, level=80)
    else:
        raise DeidError(f"cannot write a blank image with TIFF compression {comp}")
    ed.replace_tile(ifd, index, bytes(data))
    return len(data)


def _blank_image(ed: TiffEditor, ifd: int) -> int:
    """Replace the pixels of ``ifd`` by a white image (one strip when stripped)."""
    d = ed.ifd(ifd)
    if d.is_tiled or int(d.first(259, 1)) not in (1, 5, 7, 8, 32946):
        return sum(blank_segment(ed, ifd, i) for i in range(len(ed.segments(ifd))))
    from .redact import replace_image

    h, w = d.shape
    spp = int(d.first(277, 1))
    replace_image(ed, ifd, np.full((h, w, spp), 255, np.uint8))
    return sum(n for _, n in ed.segments(ifd))


def deidentify(path: Path, options: SlideOptions) -> VendorReport:
    """Edit a Ventana BIF in place: label image (the macro), XMP metadata, TIFF tags.

    Raises
    ------
    InputError
        Not a Ventana BIF (no iScan XMP in IFD 0), or malformed XMP.
    DeidError
        Redaction asked on a slide with overlapping tiles (not supported).
    """
    return edit_in_place(path, lambda ed, rep: _run(ed, path, options, rep))


def _run(ed: TiffEditor, path: Path, options: SlideOptions, report: VendorReport) -> str:
    """Edit ``ed``; add the removed values to ``report``; return the kept metadata text."""
    removed: list[str] = []
    x0 = ed.ifds[0].tags.get(XMP)
    if x0 is None or b"iScan" not in x0.raw:
        raise InputError("not a Ventana BIF (no iScan XMP in IFD 0)", str(path))
    # the label image (openslide: macro)
    macros = [d.index for d in ed.ifds if (d.description or "") in MACRO_DESCRIPTIONS]
    redact_macro = options.macro == "redact"
    drop_macro = not redact_macro and (options.macro != "keep" or options.label != "keep")
    blanked = False
    if macros and not drop_macro and options.redact_regions:
        raise DeidError("regions cannot be mapped onto the macro image: use macro='remove'",
                        str(path))
    if macros and not drop_macro and (redact_macro or options.ocr):
        for index in macros:
            st = redact_macro_ifd(ed, index, MACRO_LABEL_FRACTION, options)
            report.actions.append(f"redacted the label end and text of label image IFD {index} "
                                  f"({st.total_tiles} strips/tiles)")
    if drop_macro:
        for index in sorted(macros, reverse=True):
            if index == 0:
                n = _blank_image(ed, 0)
                ed.set_ascii(0, IMAGE_DESCRIPTION, BLANKED_DESCRIPTION)
                blanked = True
                report.actions.append(f"blanked label image IFD 0 (kept for its XMP; {n} bytes)")
            else:
                n = ed.unlink_ifd(index)
                report.actions.append(f"unlinked label image IFD {index} ({n} bytes zeroed)")
    # IFDs openslide does not use (no level=, not macro/thumbnail) may still show identity
    known = ("Thumbnail", "Probability_Image", *MACRO_DESCRIPTIONS)
    for d in sorted(ed.ifds[1:], key=lambda d: -d.index):
        dd = d.description or ""
        if "level=" not in dd and dd not in known:
            n = ed.unlink_ifd(d.index)
            report.actions.append(f"unlinked unrecognized IFD {d.index} ({n} bytes zeroed)")
    if macros and not drop_macro:
        report.macro = macro_status(options)
        report.label = "removed" if redact_macro else "kept"
    else:
        report.macro = ("kept" if not drop_macro else "removed" if macros else "absent")
        report.label = report.macro if report.macro != "kept" else "kept"
    if options.label == "replace":
        report.actions.append("label replacement: Ventana has no separate label image; removed")
    # XMP packets of every IFD
    new_xml_all = ""
    for d in list(ed.ifds):
        tag = d.tags.get(XMP)
        if tag is None:
            continue
        new, rem = clean_xmp(tag.raw, options.date_offset)
        removed += rem
        new_xml_all += new.decode("utf-8")
        if new != tag.raw:
            ed.set_tag_bytes(d.index, XMP, new)
            report.actions.append(f"cleaned XMP of IFD {d.index} ({tag.nbytes} -> {len(new)} bytes)")
    # descriptions: keep level=..., Thumbnail, the blank marker; others removed
    for d in ed.ifds:
        dd = d.description
        if not dd:
            continue
        keep = ("level=" in dd and all(mr.is_safe_key(kv.split("=", 1)[0], ("level",))
                                       for kv in dd.split()))
        keep = keep or dd in ("Thumbnail", "Probability_Image") or (blanked and d.index == 0
                                                                    and dd == BLANKED_DESCRIPTION)
        keep = keep or (not drop_macro and dd in MACRO_DESCRIPTIONS)
        if not keep:
            removed.append(dd)
            ed.set_ascii(d.index, IMAGE_DESCRIPTION, "")
    removed += clean_tiff_tags(ed, options.date_offset, report, handled=(IMAGE_DESCRIPTION, XMP))
    if options.redact_regions:
        _redact(ed, options, report)
    report.removed_values += removed
    return new_xml_all


def _simple_geometry(ed: TiffEditor, level0: int) -> bool:
    """True when openslide's level-0 pixels are the TIFF pixels of ``level0``.

    That holds without an EncodeInfo XMP, or with one AOI at the origin whose tile
    joints all have zero overlap.
    """
    tag = ed.ifd(level0).tags.get(XMP)
    if tag is None:
        return True
    try:
        root = mr.parse_xml(mr.split_xml_tail(tag.raw.rstrip(b"\x00").decode("utf-8"))[0])
    except (ValueError, UnicodeDecodeError):
        return False
    infos = [i for i in root.iter("ImageInfo") if i.get("AOIScanned", "1") != "0"]
    if len(infos) != 1:
        return False
    zero = {"0", "0.0", "0.000000", None}
    if infos[0].get("Pos-X") not in zero or infos[0].get("Pos-Y") not in zero:
        return False
    for origin in root.iter():
        if origin.get("OriginX") not in zero or origin.get("OriginY") not in zero:
            return False
    return all(j.get("OverlapX") in zero and j.get("OverlapY") in zero
               for j in root.iter("TileJointInfo"))


def _redact(ed: TiffEditor, options: SlideOptions, report: VendorReport) -> None:
    """Black out level-0 regions on every level; the thumbnail is unlinked (its field of
    view is not recorded, so regions cannot be mapped onto it with confidence)."""
    from .redact import RedactStats, map_regions, redact_ifd

    levels = [d.index for d in ed.ifds if "level=" in (d.description or "")]
    if not levels:
        raise DeidError("no pyramid levels found for redaction", str(ed.path))
    level0 = max(levels, key=lambda i: ed.ifd(i).shape[1])
    if not _simple_geometry(ed, level0):
        raise DeidError("region redaction on a BIF with overlapping or offset tiles is not "
                        "supported", str(ed.path))
    st = RedactStats()
    shape0 = ed.ifd(level0).shape
    for i in levels:
        redact_ifd(ed, i, map_regions(options.redact_regions, shape0, ed.ifd(i).shape), st)
    for d in sorted((d for d in ed.ifds if d.description in ("Thumbnail", "Probability_Image")),
                    key=lambda d: -d.index):
        ed.unlink_ifd(d.index)
        report.actions.append(f"unlinked {d.description} IFD {d.index} (regions cannot be mapped)")
    report.redaction = st.as_dict()
    report.actions.append(f"redacted {st.total_tiles} tiles ({st.total_old} bytes affected, "
                          f"{st.total_new} written)")
