"""Leica SCN de-identification (openslide vendor ``leica``).

Identity lives in the IFD 0 ImageDescription XML (default namespace
``http://www.leica-microsystems.com/scn/2010/10/01``): the collection
``barcode`` (base64, decoded by openslide), collection and image ``name`` /
``uuid``, ``creationDate``, device serial numbers, users; and in the macro
image, an ``image`` whose ``view`` covers the whole collection at offset 0,
stored in its own IFDs.

The XML is cleaned by allowlist (sizes, offsets, IFD numbers, objective,
aperture, illumination, device model/version), dates shifted or removed. The
macro ``image`` element is dropped and its IFDs unlinked (a macro stored in
IFD 0, which carries the XML, is blanked instead); the ``ifd`` attributes of the
remaining dimensions are renumbered to the shorter chain. With ``macro="redact"``
the macro stays (its XML entry cleaned like the others) with its label end and any
OCR text blacked out in its own IFDs, tile by tile. IFDs that no image of
the XML names are unlinked too: openslide never shows them, so nobody would
notice what they hold.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from pixeldeid.errors import DeidError, InputError

from . import metadata_rules as mr
from .redact import macro_status
from .tiffclean import clean_tiff_tags, edit_in_place
from .tiffedit import IMAGE_DESCRIPTION, TiffEditor

if TYPE_CHECKING:  # pragma: no cover
    from .api import SlideOptions, VendorReport

logger = logging.getLogger(__name__)

__all__ = ["LEICA_XMLNS", "LEICA_KEEP", "MACRO_LABEL_FRACTION", "clean_leica_xml", "deidentify"]

LEICA_XMLNS = "http://www.leica-microsystems.com/scn/2010/10/01"
_NS = {"d": LEICA_XMLNS}
#: fraction of the macro width covered by the slide label (left end)
MACRO_LABEL_FRACTION = 0.3
#: attribute and element names kept besides the shared allowlist
LEICA_KEEP: frozenset[str] = frozenset({
    "sizeX", "sizeY", "sizeZ", "offsetX", "offsetY", "spacingZ", "ifd", "z", "c", "r",
    "model", "version", "objective", "numericalAperture", "illuminationSource",
    "channel", "wavelength",
})


def _macro_images(collection: ET.Element) -> list[ET.Element]:
    cx, cy = collection.get("sizeX"), collection.get("sizeY")
    out = []
    for image in collection.findall("d:image", _NS):
        view = image.find("d:view", _NS)
        if view is None:
            continue
        if (view.get("offsetX") == "0" and view.get("offsetY") == "0"
                and view.get("sizeX") == cx and view.get("sizeY") == cy):
            out.append(image)
    return out


def clean_leica_xml(text: str, shift_days: int | None, *, remove_macro: bool = True
                    ) -> tuple[str, list[str], list[int]]:
    """Clean a Leica SCN XML description.

    Returns the cleaned XML (IFD numbers not yet renumbered), the removed values and
    the IFD numbers of the dropped macro image(s).

    Raises
    ------
    InputError
        Malformed XML or not an SCN document.
    """
    try:
        doc, tail = mr.split_xml_tail(text)
        root = mr.parse_xml(doc)
    except ValueError as exc:
        raise InputError(f"Leica XML: {exc}") from exc
    if root.tag != f"{{{LEICA_XMLNS}}}scn":
        raise InputError("ImageDescription is not a Leica scn document")
    collection = root.find("d:collection", _NS)
    if collection is None:
        raise InputError("Leica XML has no collection")
    removed: list[str] = []
    if tail.strip("\x00 \r\n\t"):
        removed.append(tail.strip("\x00 \r\n\t"))
    macro_ifds: list[int] = []
    if remove_macro:
        for image in _macro_images(collection):
            for dim in image.iter(f"{{{LEICA_XMLNS}}}dimension"):
                try:
                    macro_ifds.append(int(dim.get("ifd", "")))
                except ValueError as exc:
                    raise InputError(f"Leica XML: bad ifd attribute {dim.get('ifd')!r}") from exc
            # record what the rules would not keep (dates included), then drop it all
            mr.clean_xml_tree(image, None, removed, keep_attrs=LEICA_KEEP, keep_text=LEICA_KEEP)
            collection.remove(image)
    # barcode: the element is dropped, its base64 and decoded forms recorded
    for bc in collection.findall("d:barcode", _NS):
        if bc.text and bc.text.strip():
            removed.append(bc.text.strip())
            dec = mr.decode_base64_text(bc.text)
            if dec is not None:
                removed.append(dec.decode("utf-8", errors="replace"))
        collection.remove(bc)
    mr.clean_xml_tree(root, shift_days, removed, keep_attrs=LEICA_KEEP, keep_text=LEICA_KEEP)
    out = mr.serialize_xml(root, '<?xml version="1.0" encoding="utf-8"?>',
                           default_namespace=LEICA_XMLNS)
    return out, removed, sorted(set(macro_ifds))


def _renumber(xml: str, dropped: list[int]) -> str:
    """Rewrite ``ifd="N"`` attributes after IFDs ``dropped`` left the chain."""
    root = mr.parse_xml(xml)
    for dim in root.iter(f"{{{LEICA_XMLNS}}}dimension"):
        n = int(dim.get("ifd", "0"))
        dim.set("ifd", str(n - sum(d < n for d in dropped)))
    return mr.serialize_xml(root, '<?xml version="1.0" encoding="utf-8"?>',
                            default_namespace=LEICA_XMLNS)


def deidentify(path: Path, options: SlideOptions) -> VendorReport:
    """Edit a Leica SCN in place: macro image, XML metadata, generic TIFF tags.

    Raises
    ------
    InputError
        Not a Leica SCN, or malformed XML.
    DeidError
        Region redaction asked on a slide with non-brightfield images.
    """
    return edit_in_place(path, lambda ed, rep: _run(ed, path, options, rep))


def _run(ed: TiffEditor, path: Path, options: SlideOptions, report: VendorReport) -> str:
    """Edit ``ed``; add the removed values to ``report``; return the kept metadata text."""
    desc = ed.ifds[0].description
    if not desc or LEICA_XMLNS not in desc:
        raise InputError("not a Leica SCN (no scn XML in IFD 0)", str(path))
    redact_macro = options.macro == "redact"
    remove_macro = not redact_macro and (options.macro != "keep" or options.label != "keep")
    xml, removed, macro_ifds = clean_leica_xml(desc, options.date_offset,
                                               remove_macro=remove_macro)
    kept_macro = [] if remove_macro else _macro_ifds(desc)
    n_ifds = len(ed.ifds)
    bad = [i for i in macro_ifds if i >= n_ifds]
    if bad:
        raise InputError(f"Leica XML names IFDs {bad} beyond the {n_ifds} in the file", str(path))
    bad = [i for i in kept_macro if i >= n_ifds]
    if bad:
        raise InputError(f"Leica XML names IFDs {bad} beyond the {n_ifds} in the file", str(path))
    if options.redact_regions:
        if kept_macro:
            raise DeidError("regions cannot be mapped onto the macro image: use macro='remove'",
                            str(path))
        _redact(ed, desc, options, report)
    if kept_macro and (redact_macro or options.ocr):
        n = _redact_macro(ed, kept_macro, options)
        report.actions.append(f"redacted the macro's label end and text ({n} tiles)")
    # IFDs no remaining XML image refers to are invisible to openslide: not released
    referenced = {int(d.get("ifd", "-1"))
                  for d in mr.parse_xml(xml).iter(f"{{{LEICA_XMLNS}}}dimension")}
    orphans = [i for i in range(1, n_ifds) if i not in referenced and i not in macro_ifds]
    if 0 in macro_ifds:
        # IFD 0 carries the XML openslide detects the format by: it stays in the chain,
        # no longer named by the XML, with its tiles replaced by blank ones
        from .ventana import blank_segment

        n = sum(blank_segment(ed, 0, i) for i in range(len(ed.segments(0))))
        report.actions.append(f"blanked macro IFD 0 (kept for its XML; {n} bytes)")
    doomed = sorted((set(macro_ifds) | set(orphans)) - {0})
    for index in reversed(doomed):
        n = ed.unlink_ifd(index)
        what = "macro" if index in macro_ifds else "unreferenced"
        report.actions.append(f"unlinked {what} IFD {index} ({n} bytes zeroed)")
    if doomed:
        xml = _renumber(xml, doomed)
    if kept_macro:
        report.macro = macro_status(options)
        report.label = "removed" if report.macro == "redacted" and redact_macro else "kept"
    else:
        report.macro = "removed" if macro_ifds else ("kept" if not remove_macro else "absent")
        report.label = report.macro
    if options.label == "replace":
        report.actions.append("label replacement: Leica has no separate label image; removed")
    ed.set_ascii(0, IMAGE_DESCRIPTION, xml)
    report.actions.append(f"cleaned XML ({len(desc)} -> {len(xml)} characters)")
    for d in ed.ifds[1:]:
        dd = d.description
        if dd:
            removed.append(dd)
            ed.set_ascii(d.index, IMAGE_DESCRIPTION, "")
    removed += clean_tiff_tags(ed, options.date_offset, report)
    report.removed_values += removed
    return xml


def _macro_ifds(desc: str) -> list[int]:
    """IFDs of the macro image(s) of the XML, largest first."""
    root = mr.parse_xml(mr.split_xml_tail(desc)[0])
    collection = root.find("d:collection", _NS)
    dims = [d for m in _macro_images(collection) for d in m.iter(f"{{{LEICA_XMLNS}}}dimension")]
    dims.sort(key=lambda d: -int(d.get("sizeX", "0") or 0))
    try:
        return list(dict.fromkeys(int(d.get("ifd", "")) for d in dims))
    except ValueError as exc:
        raise InputError("Leica XML: bad ifd attribute of the macro") from exc


def _redact_macro(ed: TiffEditor, ifds: list[int], options: SlideOptions) -> int:
    """Black out the label end and OCR text of the macro: found on its largest IFD, mapped
    onto its smaller ones; tiles outside stay byte-identical. Returns tiles re-encoded."""
    from .redact import (
        RedactStats,
        macro_redaction_rects,
        map_regions,
        read_ifd_image,
        redact_ifd,
    )

    shape0 = ed.ifd(ifds[0]).shape

    def image():
        ed.flush()
        return read_ifd_image(ed.path, ifds[0])

    rects = macro_redaction_rects(shape0, MACRO_LABEL_FRACTION, options, image)
    regions = [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in rects]
    st = RedactStats()
    for i in ifds:
        redact_ifd(ed, i, map_regions(regions, shape0, ed.ifd(i).shape), st)
    return st.total_tiles


def _main_images(desc: str) -> list[tuple[float, float, list[int]]]:
    """``(offset x, offset y, IFDs largest first)`` of each brightfield main image, with the
    offsets in openslide level-0 pixels (collection clicks / level-0 clicks per pixel)."""
    root = mr.parse_xml(mr.split_xml_tail(desc)[0])
    collection = root.find("d:collection", _NS)
    macros = {id(m) for m in _macro_images(collection)}
    images = []
    for image in collection.findall("d:image", _NS):
        if id(image) in macros:
            continue
        src = image.findtext("d:scanSettings/d:illuminationSettings/d:illuminationSource", "", _NS)
        if src.strip() != "brightfield":
            # openslide does not show it, but it stays in the file: regions cannot be
            # mapped onto it with confidence, so refuse (fail closed)
            raise DeidError(f"region redaction with a non-brightfield image ({src.strip()!r}) "
                            "is not supported")
        view = image.find("d:view", _NS)
        dims = [d for d in image.iter(f"{{{LEICA_XMLNS}}}dimension") if d.get("z", "0") == "0"]
        dims.sort(key=lambda d: -int(d.get("sizeX", "0")))
        cpp = int(view.get("sizeX")) / int(dims[0].get("sizeX"))
        images.append((cpp, int(view.get("offsetX")), int(view.get("offsetY")),
                       [int(d.get("ifd")) for d in dims]))
    if not images:
        raise InputError("no brightfield main image in the Leica XML")
    cpp0 = min(i[0] for i in images)
    return [(ox / cpp0, oy / cpp0, ifds) for _, ox, oy, ifds in images]


def _redact(ed: TiffEditor, desc: str, options: SlideOptions, report: VendorReport) -> None:
    """Black out level-0 regions (openslide coordinates) on every main-image IFD."""
    from .redact import RedactStats, map_regions, redact_ifd

    st = RedactStats()
    for ox, oy, ifds in _main_images(desc):
        local = [(x - ox, y - oy, w, h) for x, y, w, h in options.redact_regions]
        # clip to the image (map_regions clips the far side; clip the near side here)
        local = [(max(0.0, x), max(0.0, y), w - max(0.0, -x), h - max(0.0, -y))
                 for x, y, w, h in local]
        local = [r for r in local if r[2] > 0 and r[3] > 0]
        shape0 = ed.ifd(ifds[0]).shape
        for i in ifds:
            redact_ifd(ed, i, map_regions(local, shape0, ed.ifd(i).shape), st)
    report.redaction = st.as_dict()
    report.actions.append(f"redacted {st.total_tiles} tiles ({st.total_old} bytes affected, "
                          f"{st.total_new} written)")
