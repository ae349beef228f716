"""Generic tiled TIFF and OME-TIFF slides, and the TIFF metadata steps shared by vendors.

openslide's generic-tiff driver shows the tiled pyramid only; any other page (a label or
macro photographed by the scanner, which openslide cannot see) is identity that would
leak silently, so non-tiled pages and pages not belonging to the pyramid are removed
unless ``options.label == "keep"``. OME-XML in ImageDescription is cleaned: dates
shifted or removed, free text (annotations, names, descriptions, experimenters) removed,
acquisition keys on the allowlist kept. Regions (``--redact``, OCR) are blacked out on
every level, SubIFD levels (tag 330, OME pyramids) included, each mapped by its size. With ``macro="redact"`` a macro page
(ImageDescription "macro"/"overview", or an OME Image of that name) stays, its label end
and OCR text blacked out tile by tile (openslide does not show it: a viewer that reads
the page does).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pixeldeid.errors import DeidError

from .metadata_rules import clean_date_value, plan_tiff_tag_edits
from .redact import (
    macro_redaction_rects,
    macro_status,
    ocr_level0_regions,
    read_ifd_image,
    redact_regions,
)
from .tiffclean import edit_in_place, refuse_exif_gps
from .tiffedit import IMAGE_DESCRIPTION, NEW_SUBFILE_TYPE, TiffEditor

if TYPE_CHECKING:  # pragma: no cover
    from .api import SlideOptions, VendorReport

logger = logging.getLogger(__name__)

__all__ = ["deidentify", "clean_standard_tags", "clean_ome_xml", "XMP", "blank_private_blobs",
           "blank_unknown_text_tags",
           "macro_pages", "MACRO_LABEL_FRACTION"]

XMP = 700
IPTC = 33723
PHOTOSHOP = 34377
SUB_IFDS = 330
#: blobs that may carry free text: blanked (zeroed in place)
BLOB_TAGS = (XMP, IPTC, PHOTOSHOP)


def clean_standard_tags(ed: TiffEditor, shift_days: int | None) -> list[str]:
    """Blank identity tags (Artist, HostComputer, DocumentName...) and shift/blank dates."""
    edits, removed = plan_tiff_tag_edits(
        ((d.index, {c: t.value for c, t in d.tags.items() if t.type == 2})
         for d in [*ed.ifds, *ed.subifds]), shift_days)
    for ifd, code, new in edits:
        if ed.ifd(ifd).get(code) != new:
            ed.set_ascii(ifd, code, new)
    return removed


def blank_private_blobs(ed: TiffEditor, codes=BLOB_TAGS) -> list[str]:
    """Zero XMP/IPTC/Photoshop blobs; return text fragments of them to scan for.

    EXIF and GPS sub-IFDs (camera serials, capture dates, positions) are not rewritten
    here: a file carrying one is refused (``DeidError``), never passed through."""
    refuse_exif_gps(ed)
    removed: list[str] = []
    for d in [*ed.ifds, *ed.subifds]:
        for code in codes:
            t = d.tags.get(code)
            if t is None or not t.raw.strip(b"\x00"):
                continue
            text = t.raw.decode("utf-8", errors="replace")
            removed += [m for m in re.findall(r">([^<>]{6,})<", text) if m.strip()][:20]
            ed.set_tag_bytes(d.index, code, b"\x00" * t.nbytes)
    return removed


#: names of associated images (ImageDescription first word, OME Image Name), kept as is
ASSOCIATED_NAMES = frozenset({"macro", "overview", "label", "thumbnail"})
#: names of the macro (overview) image, a photo of the whole glass, label end included
MACRO_NAMES = frozenset({"macro", "overview"})
#: fraction of the macro width covered by the slide label (left end)
MACRO_LABEL_FRACTION = 0.3

def blank_unknown_text_tags(ed: TiffEditor, handled=(IMAGE_DESCRIPTION, *BLOB_TAGS)
                            ) -> list[str]:
    """Zero the ASCII/BYTE/UNDEFINED values of tags that are neither image structure, nor
    the identity/date tags :func:`clean_standard_tags` cleans, nor ``handled`` (private
    scanner tags: a ``65001`` holding an accession number), in every IFD and SubIFD, and
    the text of their ICC profiles; return printable runs of the old values to scan for."""
    from .metadata_rules import plan_private_tag_blanking

    blanks, removed = plan_private_tag_blanking(
        ((d.index, {c: (t.type, t.raw) for c, t in d.tags.items()})
         for d in [*ed.ifds, *ed.subifds]), handled=tuple(handled))
    for index, code in blanks:
        ed.set_tag_bytes(index, code, b"\x00" * ed.ifd(index).tags[code].nbytes)
    from .tiffclean import blank_icc_profiles

    blank_icc_profiles(ed, [*ed.ifds, *ed.subifds])  # (kept: the colour transform)
    return removed


_OME_KEEP_ATTRS = {
    "ID", "SizeX", "SizeY", "SizeZ", "SizeC", "SizeT", "Type", "DimensionOrder",
    "PhysicalSizeX", "PhysicalSizeY", "PhysicalSizeZ", "PhysicalSizeXUnit",
    "PhysicalSizeYUnit", "PhysicalSizeZUnit", "SamplesPerPixel", "IFD", "PlaneCount",
    "FirstZ", "FirstT", "FirstC", "NominalMagnification", "LensNA", "Interleaved",
    "BigEndian", "SignificantBits", "Color", "Model", "Manufacturer", "Immersion",
    "Correction", "Creator", "UUID", "FileName", "Name",
}
_OME_DROP_ELEMENTS = {"StructuredAnnotations", "Experimenter", "ExperimenterGroup",
                      "Description", "ROI", "Project", "Dataset", "Folder", "Plate", "Screen"}


def clean_ome_xml(text: str, shift_days: int | None, pseudonym: str | None) -> tuple[str, list[str]]:
    """Clean OME-XML: drop annotations/experimenters/descriptions, dates, names."""
    import xml.etree.ElementTree as ET

    removed: list[str] = []
    try:
        root = ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:
        raise DeidError(f"OME-XML does not parse: {exc}") from exc
    ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
    if ns:
        ET.register_namespace("", ns[1:-1])

    def local(tag: str) -> str:
        return tag.split("}")[-1]

    def collect(el) -> None:
        for e in el.iter():
            if e.text and e.text.strip():
                removed.append(e.text.strip())
            for k, v in e.attrib.items():
                if k not in ("ID",) and v.strip():
                    removed.append(v)

    for parent in list(root.iter()):
        for child in list(parent):
            if local(child.tag) in _OME_DROP_ELEMENTS:
                collect(child)
                parent.remove(child)
    for el in root.iter():
        if local(el.tag) == "AcquisitionDate" and el.text:
            new = clean_date_value(el.text, shift_days)
            removed.append(el.text)
            el.text = new or "1900-01-01T00:00:00"
        for k in list(el.attrib):
            v = el.attrib[k]
            if local(k) == "schemaLocation":
                continue
            if k == "Name" and v.strip().lower() in ASSOCIATED_NAMES:
                continue  # "macro", "label"...: what the image is, no identity
            if k in ("Name", "FileName"):
                if v.strip():
                    removed.append(v)
                el.attrib[k] = pseudonym or ""
            elif k not in _OME_KEEP_ATTRS:
                removed.append(v)
                del el.attrib[k]
    out = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>' + out, [r for r in removed if r != pseudonym]


def pyramid_ifds(ed: TiffEditor) -> list[int]:
    """Indices of the IFDs openslide's generic-tiff driver uses as levels: the first page
    when tiled, and every other tiled page marked reduced-resolution (NewSubfileType bit
    1). Any other page (a tiled macro or label series of an OME-TIFF) is not a level:
    openslide does not show it, so it is removed or, as a macro, redacted."""
    out: list[int] = []
    for d in ed.ifds:
        if not d.is_tiled:
            continue
        if d.index == 0 or int(d.first(NEW_SUBFILE_TYPE, 0) or 0) & 1:
            out.append(d.index)
    return out


def macro_pages(ed: TiffEditor) -> list[int]:
    """Pages (not pyramid levels) holding a macro: ImageDescription whose first word is
    "macro" or "overview", or named so by an OME ``Image`` of the first page's OME-XML
    (its ``TiffData IFD``)."""
    import xml.etree.ElementTree as ET

    levels = set(pyramid_ifds(ed))
    out = []
    for d in ed.ifds:
        words = (d.description or "").strip().split(None, 1)
        if d.index not in levels and words and words[0].lower().rstrip(":;,") in MACRO_NAMES:
            out.append(d.index)
    desc = ed.ifds[0].description or ""
    if "<OME" in desc[:400]:
        try:
            root = ET.fromstring(desc.encode("utf-8"))
        except ET.ParseError as exc:
            raise DeidError(f"OME-XML does not parse: {exc}", str(ed.path)) from exc
        for image in root.iter():
            if image.tag.split("}")[-1] != "Image":
                continue
            if (image.get("Name") or "").strip().lower() not in MACRO_NAMES:
                continue
            for td in image.iter():
                if td.tag.split("}")[-1] == "TiffData":
                    i = int(td.get("IFD", "0"))
                    if i < len(ed.ifds) and i not in levels:
                        out.append(i)
    return sorted(set(out))


def deidentify(path: str | Path, options: SlideOptions) -> VendorReport:
    """De-identify a generic tiled TIFF / OME-TIFF in place (see module docstring)."""
    return edit_in_place(path, lambda ed, rep: _run(ed, options, rep))


def _run(ed: TiffEditor, options: SlideOptions, rep: VendorReport) -> None:
    levels = pyramid_ifds(ed)
    if not levels or levels[0] != 0:
        raise DeidError("first page is not a tiled level", str(ed.path))
    # OME pyramids keep their reduced levels in SubIFDs of the full-resolution page
    sub_levels = [i for lv in levels for i in ed.subifds_of(lv) if ed.ifd(i).is_tiled]
    macros = macro_pages(ed) if options.macro == "redact" else []
    if macros and options.redact_regions:
        raise DeidError("regions cannot be mapped onto the macro image: use macro='remove'",
                        str(ed.path))
    # descriptions: OME-XML cleaned, a macro page's name kept, anything else removed
    for d in [*ed.ifds, *ed.subifds]:
        desc = d.description
        if not desc or not desc.strip():
            continue
        if desc.lstrip().startswith("<?xml") or "<OME" in desc[:400]:
            new, removed = clean_ome_xml(desc, options.date_offset, options.pseudonym)
        elif d.index in macros and desc.strip().split(None, 1)[0].lower() in MACRO_NAMES:
            word, _, rest = desc.strip().partition(" ")
            new, removed = word, [rest.strip()] if rest.strip() else []
            if new == desc:
                continue
        else:
            new, removed = "", [desc]
        rep.removed_values += [r for r in removed if len(r) >= 4]
        ed.set_ascii(d.index, IMAGE_DESCRIPTION, new)
        rep.actions.append(f"ImageDescription of page {d.index} cleaned")
    rep.removed_values += clean_standard_tags(ed, options.date_offset)
    rep.removed_values += blank_private_blobs(ed)
    rep.removed_values += blank_unknown_text_tags(ed)
    extra = [d.index for d in ed.ifds if d.index not in levels and d.index not in macros]
    regions = list(options.redact_regions)
    if options.ocr:
        lowest = min(levels + sub_levels, key=lambda i: ed.ifd(i).shape[0] * ed.ifd(i).shape[1])
        h, w = ed.ifd(lowest).shape
        if h * w <= 4096 * 4096:
            found = ocr_level0_regions(ed.path, lowest, ed.ifd(0).shape, options.ocr)
            regions += found
            rep.actions.append(f"OCR found {len(found)} text regions in page {lowest}")
    if regions:
        st = redact_regions(ed, regions, levels + sub_levels)
        rep.redaction = {**st.as_dict(), "regions": [tuple(r) for r in regions]}
        rep.actions.append(f"redacted {st.total_tiles} tiles")
    for i in macros:  # the page and its SubIFD reductions
        def image(i: int = i):
            ed.flush()
            return read_ifd_image(ed.path, i)

        rects = macro_redaction_rects(ed.ifd(i).shape, MACRO_LABEL_FRACTION, options, image)
        st = redact_regions(ed, [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in rects],
                            [i, *ed.subifds_of(i)], level0_ifd=i)
        rep.actions.append(f"redacted the label end and text of macro page {i} "
                           f"({st.total_tiles} tiles/strips)")
    if macros:
        rep.macro = macro_status(options)
    if extra and options.label != "keep":
        subs = {i: ed.ifd(i).first(NEW_SUBFILE_TYPE, 0) for i in extra}
        ed.unlink_ifds(extra)
        for i in sorted(extra, reverse=True):
            rep.actions.append(f"removed non-pyramid page {i} (NewSubfileType {subs[i]})")
        rep.label = "removed"
        rep.macro = rep.macro if macros else "removed"
