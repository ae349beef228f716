"""Philips TIFF de-identification (openslide vendor ``philips``).

Identity lives in the IFD 0 ImageDescription, an XML ``DataObject``: the base64
barcode (PIM_DP_UFS_BARCODE), operator, acquisition and calibration dates,
device serial number, derivation description (source file names), base64
LABELIMAGE / MACROIMAGE JPEGs in PIM_DP_SCANNED_IMAGES, comments and anything
after the root element; and in the stripped ``Label`` / ``Macro`` IFDs.

The XML is rebuilt from an allowlist: structural attributes openslide needs
(image type, pixel spacing per level, pixel data representations) and safe
acquisition keys are kept, dates are shifted or removed, everything else is
dropped. The Label/Macro IFDs are unlinked and their bytes zeroed by
:class:`wsi.tiffedit.TiffEditor`; a replacement label (``label="replace"``) is a
LABELIMAGE JPEG in the XML carrying only the pseudonym. With ``macro="redact"`` the
macro stays, its label end (:data:`MACRO_LABEL_FRACTION`) and OCR text blacked out:
strip by strip in a Macro IFD, in the DCT domain of the base64 MACROIMAGE JPEG (which
is re-embedded; the XML grows or shrinks in place as any other edit).
"""

from __future__ import annotations

import base64
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pixeldeid.errors import DeidError, InputError

from . import metadata_rules as mr
from .redact import macro_status, redact_macro_ifd, redact_macro_jpeg
from .tiffclean import clean_tiff_tags, edit_in_place
from .tiffedit import IMAGE_DESCRIPTION, TiffEditor

if TYPE_CHECKING:  # pragma: no cover
    from .api import SlideOptions, VendorReport

logger = logging.getLogger(__name__)

__all__ = ["PHILIPS_KEEP", "MACRO_LABEL_FRACTION", "clean_philips_xml", "deidentify", "label_jpeg"]

#: Philips attributes kept verbatim besides the shared allowlist (structure openslide reads).
PHILIPS_KEEP: frozenset[str] = frozenset({
    "PIM_DP_IMAGE_TYPE", "PIM_DP_IMAGE_COLUMNS", "PIM_DP_IMAGE_ROWS",
    "PIIM_PIXEL_DATA_REPRESENTATION_COLUMNS", "PIIM_PIXEL_DATA_REPRESENTATION_ROWS",
    "PIIM_PIXEL_DATA_REPRESENTATION_NUMBER", "PIIM_DP_PIXEL_DATA_REPRESENTATION_POSITION",
    "PIM_DP_UFS_INTERFACE_VERSION", "DICOM_MANUFACTURERS_MODEL_NAME", "PIM_DP_SCANNER_RACK_NUMBER",
    "DICOM_BITS_ALLOCATED", "DICOM_BITS_STORED", "DICOM_HIGH_BIT", "DICOM_PIXEL_REPRESENTATION",
    "DICOM_PHOTOMETRIC_INTERPRETATION", "DICOM_SAMPLES_PER_PIXEL", "DICOM_PLANAR_CONFIGURATION",
    "PIM_DP_IMAGE_DATA",  # only inside kept (replacement) associated images
})
_ARRAYS = ("PIM_DP_SCANNED_IMAGES", "PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE")
_ASSOCIATED = {"LABELIMAGE": "label", "MACROIMAGE": "macro"}
#: fraction of the macro width covered by the slide label (left end)
MACRO_LABEL_FRACTION = 0.35


def _image_type(obj: ET.Element) -> str | None:
    for a in obj.findall("Attribute"):
        if a.get("Name") == "PIM_DP_IMAGE_TYPE":
            return (a.text or "").strip()
    return None


def _record(el: ET.Element, removed: list[str]) -> None:
    for t in el.itertext():
        t = t.strip()
        if not t:
            continue
        removed.extend(mr.large_value_needles(t) if len(t) > 256 else [t])
        if len(t) <= 256:
            dec = mr.decode_base64_text(t)
            if dec is not None and dec.isascii() and dec.decode("ascii").isprintable():
                removed.append(dec.decode("ascii"))


def _clean_object(obj: ET.Element, shift_days: int | None, removed: list[str],
                  keep_associated: set[str], summary: dict[str, int]) -> None:
    """Clean the Attribute children of one DataObject in place."""
    for attr in list(obj):
        if attr.tag != "Attribute":
            _record(attr, removed)
            obj.remove(attr)
            continue
        name = attr.get("Name") or ""
        for key in list(attr.attrib):
            if key not in ("Name", "Group", "Element", "PMSVR"):
                removed.append(attr.attrib.pop(key))
        if name in _ARRAYS:
            arr = attr.find("Array")
            for other in [c for c in attr if c is not arr]:
                _record(other, removed)
                attr.remove(other)
            if arr is None:
                continue
            for child in list(arr):
                kind = _image_type(child) if name == "PIM_DP_SCANNED_IMAGES" else None
                if kind in _ASSOCIATED and _ASSOCIATED[kind] not in keep_associated:
                    _record(child, removed)
                    arr.remove(child)
                    summary[_ASSOCIATED[kind]] = summary.get(_ASSOCIATED[kind], 0) + 1
                    continue
                if child.tag != "DataObject" or (name == "PIM_DP_SCANNED_IMAGES"
                                                 and kind not in ("WSI", *_ASSOCIATED)):
                    _record(child, removed)
                    arr.remove(child)
                    continue
                if kind in _ASSOCIATED:  # kept associated image: structure only
                    continue
                _clean_object(child, shift_days, removed, keep_associated, summary)
            continue
        if len(attr):  # a nested structure we do not know: drop it whole
            _record(attr, removed)
            obj.remove(attr)
            continue
        value = attr.text or ""
        if name in PHILIPS_KEEP and name != "PIM_DP_IMAGE_DATA":
            continue
        kind = mr.classify_key(name, ("DICOM_PIXEL_SPACING",))
        if kind == "keep":
            continue
        if kind == "date":
            new = mr.clean_date_value(value, shift_days)
            if new is not None:
                if new != value:
                    removed.append(value)
                    attr.text = new
                continue
        _record(attr, removed)
        obj.remove(attr)
        if attr.tail and attr.tail.strip():
            removed.append(attr.tail)


def clean_philips_xml(text: str, shift_days: int | None, *, keep_label: bool = False,
                      keep_macro: bool = False, replacement_label: bytes | None = None,
                      macro_image: Callable[[bytes], bytes] | None = None
                      ) -> tuple[str, list[str], dict[str, int]]:
    """Clean a Philips ImageDescription XML.

    Parameters
    ----------
    text : str
        The XML (with whatever follows its root element).
    shift_days : int or None
        Day offset for kept dates; None removes dates.
    keep_label, keep_macro : bool
        Keep the base64 LABELIMAGE / MACROIMAGE (for testing only).
    replacement_label : bytes, optional
        A JPEG added as the new LABELIMAGE.
    macro_image : callable, optional
        With ``keep_macro``: maps the bytes of each MACROIMAGE JPEG to those released
        (the label end and text blacked out); the macro object keeps only its type and
        image data, and slices of the old base64 that the new one does not contain are
        added to the removed values (the raw re-scan must not find them).

    Returns
    -------
    xml : str
        The cleaned XML, declaration first, nothing after the root.
    removed : list of str
        Values removed or changed (slices of large base64 images).
    summary : dict
        Counts of removed associated images (``label``, ``macro``) and ``tail`` bytes.

    Raises
    ------
    InputError
        When the XML is not a Philips ``DPUfsImport`` DataObject or is malformed.
    """
    try:
        doc, tail = mr.split_xml_tail(text)
        root = mr.parse_xml(doc)
    except ValueError as exc:
        raise InputError(f"Philips XML: {exc}") from exc
    if root.tag != "DataObject" or root.get("ObjectType") != "DPUfsImport":
        raise InputError("ImageDescription is not a Philips DPUfsImport DataObject")
    removed: list[str] = []
    summary: dict[str, int] = {}
    if tail.strip("\x00 \r\n\t"):
        removed.extend(t for t in tail.split() if len(t) >= 4)
        removed.append(tail.strip("\x00 \r\n\t"))
        summary["tail"] = len(tail)
    keep = {k for k, f in (("label", keep_label), ("macro", keep_macro)) if f}
    if root.text and root.text.strip():
        removed.append(root.text)
        root.text = None
    _clean_object(root, shift_days, removed, keep, summary)
    if keep_macro and macro_image is not None:
        _redact_xml_macros(root, macro_image, removed, summary)
    wsi = root.findall("./Attribute[@Name='PIM_DP_SCANNED_IMAGES']/Array/DataObject")
    if sum(_image_type(o) == "WSI" for o in wsi) != 1:
        raise InputError("Philips XML does not hold exactly one WSI scanned image")
    if replacement_label is not None:
        arr = root.find("./Attribute[@Name='PIM_DP_SCANNED_IMAGES']/Array")
        obj = ET.SubElement(arr, "DataObject", ObjectType="DPScannedImage")
        ET.SubElement(obj, "Attribute", Name="PIM_DP_IMAGE_DATA", Group="0x301D",
                      Element="0x1005", PMSVR="IString").text = base64.b64encode(
                          replacement_label).decode("ascii")
        ET.SubElement(obj, "Attribute", Name="PIM_DP_IMAGE_TYPE", Group="0x301D",
                      Element="0x1004", PMSVR="IString").text = "LABELIMAGE"
    out = mr.serialize_xml(root, '<?xml version="1.0" encoding="UTF-8" ?>')
    return out, removed, summary


def _redact_xml_macros(root: ET.Element, macro_image: Callable[[bytes], bytes],
                       removed: list[str], summary: dict[str, int]) -> None:
    """Pass each MACROIMAGE JPEG of the XML through ``macro_image``; drop its other
    attributes."""
    for obj in root.findall("./Attribute[@Name='PIM_DP_SCANNED_IMAGES']/Array/DataObject"):
        if _image_type(obj) != "MACROIMAGE":
            continue
        for attr in list(obj):
            name = attr.get("Name")
            if attr.tag == "Attribute" and name == "PIM_DP_IMAGE_TYPE":
                continue
            if attr.tag == "Attribute" and name == "PIM_DP_IMAGE_DATA" and not len(attr):
                old = "".join((attr.text or "").split())
                try:
                    data = base64.b64decode(old, validate=True)
                except ValueError as exc:
                    raise InputError(f"Philips MACROIMAGE is not base64: {exc}") from exc
                new = base64.b64encode(macro_image(data)).decode("ascii")
                removed.extend(n for n in mr.large_value_needles(old) if n not in new)
                attr.text = new
                summary["macro_kept"] = summary.get("macro_kept", 0) + 1
                continue
            _record(attr, removed)
            obj.remove(attr)


def label_jpeg(text: str, size: tuple[int, int] = (240, 96)) -> bytes:
    """A white label image carrying only ``text`` (the pseudonym), as JPEG."""
    import io

    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(im).text((8, size[1] // 2 - 6), text, fill=(0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def deidentify(path: Path, options: SlideOptions) -> VendorReport:
    """Edit a Philips TIFF in place: label, macro, XML metadata, generic TIFF tags.

    Raises
    ------
    InputError
        Not a Philips TIFF, or its XML cannot be parsed.
    DeidError
        Redaction was asked with ``macro="keep"`` (regions cannot be mapped onto the macro).
    """
    report = edit_in_place(path, lambda ed, rep: _run(ed, path, options, rep))
    logger.debug("%s: %s", path, "; ".join(report.actions))
    return report


def _run(ed: TiffEditor, path: Path, options: SlideOptions, report: VendorReport) -> str:
    d0 = ed.ifds[0]
    desc = d0.description
    software = d0.get(305)
    if not (isinstance(software, str) and software.startswith("Philips")) or not desc:
        raise InputError("not a Philips TIFF (Software/ImageDescription)", str(path))
    replacement = None
    if options.label == "replace":
        replacement = label_jpeg(options.pseudonym or "DE-IDENTIFIED")
    keep_macro = options.macro != "remove"
    redact_macro = keep_macro and (options.macro == "redact" or bool(options.ocr))
    if keep_macro and options.redact_regions:
        raise DeidError("regions cannot be mapped onto the macro image: use macro='remove'",
                        str(path))

    def macro_image(data: bytes) -> bytes:
        return redact_macro_jpeg(data, MACRO_LABEL_FRACTION, options)

    xml, removed, summary = clean_philips_xml(
        desc, options.date_offset, keep_label=options.label == "keep",
        keep_macro=keep_macro, replacement_label=replacement,
        macro_image=macro_image if redact_macro else None)
    report.removed_values += removed
    # Label / Macro IFDs (stripped, description starts with Label / Macro); openslide
    # ignores any other stripped IFD, which is therefore removed too
    doomed: list[tuple[int, str]] = []
    for d in ed.ifds[1:]:
        dd = d.description or ""
        if d.is_tiled:
            continue
        if dd.startswith("Label") and options.label != "keep":
            doomed.append((d.index, "label"))
        elif dd.startswith("Macro") and not keep_macro:
            doomed.append((d.index, "macro"))
        elif not (dd.startswith("Label") or dd.startswith("Macro")):
            # an image openslide does not show may still show identity: not released
            doomed.append((d.index, "unrecognized image"))
    for index, kind in sorted(doomed, reverse=True):
        n = ed.unlink_ifd(index)
        report.actions.append(f"unlinked {kind} IFD {index} ({n} bytes zeroed)")
    macro_ifds = [d.index for d in ed.ifds[1:]
                  if not d.is_tiled and (d.description or "").startswith("Macro")]
    if redact_macro:
        for index in macro_ifds:
            st = redact_macro_ifd(ed, index, MACRO_LABEL_FRACTION, options)
            if (ed.ifd(index).description or "") != "Macro":
                report.removed_values.append(ed.ifd(index).description[len("Macro"):].strip())
                ed.set_ascii(index, IMAGE_DESCRIPTION, "Macro")
            report.actions.append(f"redacted the label end and text of macro IFD {index} "
                                  f"({st.total_tiles} strips)")
        if summary.get("macro_kept"):
            report.actions.append(f"redacted the label end and text of {summary['macro_kept']} "
                                  "base64 macro image(s) in the XML")
    kinds = {k for _, k in doomed} | {k for k in ("label", "macro") if summary.get(k)}
    report.label = ("replaced" if options.label == "replace" else
                    "kept" if options.label == "keep" else
                    "removed" if "label" in kinds else "absent")
    if keep_macro:
        has_macro = bool(macro_ifds) or bool(summary.get("macro_kept")) or "MACROIMAGE" in xml
        report.macro = macro_status(options) if has_macro else "absent"
    else:
        report.macro = "removed" if "macro" in kinds else "absent"
    if summary.get("tail"):
        report.actions.append(f"dropped {summary['tail']} characters after the XML root")
    ed.set_ascii(0, IMAGE_DESCRIPTION, xml)
    report.actions.append(f"cleaned XML ({len(desc)} -> {len(xml)} characters)")
    # any other description (not Label/Macro) and the generic TIFF tags
    for d in ed.ifds[1:]:
        dd = d.description
        if dd and not (dd.startswith("Label") or dd.startswith("Macro")):
            report.removed_values.append(dd)
            ed.set_ascii(d.index, IMAGE_DESCRIPTION, "")
    report.removed_values += clean_tiff_tags(ed, options.date_offset, report)
    if options.redact_regions:
        _redact(ed, options, report)
    return xml


def _redact(ed: TiffEditor, options: SlideOptions, report: VendorReport) -> None:
    """Black out level-0 regions on every pyramid level (the tiled IFDs)."""
    from .redact import RedactStats, map_regions, redact_ifd

    if options.macro != "remove":
        raise DeidError("regions cannot be mapped onto the macro image: use macro='remove'",
                        str(ed.path))
    st = RedactStats()
    level0 = ed.ifd(0).shape
    for d in list(ed.ifds):
        if d.is_tiled:
            redact_ifd(ed, d.index, map_regions(options.redact_regions, level0, d.shape), st)
    report.redaction = st.as_dict()
    report.actions.append(f"redacted {st.total_tiles} tiles ({st.total_old} bytes affected, "
                          f"{st.total_new} written)")
