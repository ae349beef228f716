"""Shared steps of the TIFF vendor modules: the rollback-guarded edit, generic tag cleaning.

:func:`edit_in_place` opens a slide for editing, runs a vendor's edit and undoes every
byte of it when anything fails, so a slide is either fully edited or untouched.

Text tags (Artist, HostComputer, DocumentName..., dates shifted or blanked) are planned
by :func:`wsi.metadata_rules.plan_tiff_tag_edits`, private/unknown text and byte tags
by :func:`wsi.metadata_rules.plan_private_tag_blanking`; this module applies both plans
to a :class:`wsi.tiffedit.TiffEditor` in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import metadata_rules as mr
from .tiffedit import IMAGE_DESCRIPTION, TiffEditor

if TYPE_CHECKING:  # pragma: no cover
    from .api import VendorReport

__all__ = ["blank_icc_profiles", "clean_tiff_tags", "edit_in_place", "refuse_exif_gps"]


def edit_in_place(path: str | Path, run: Callable[[TiffEditor, VendorReport], str | None]
                  ) -> VendorReport:
    """Open ``path`` for editing, call ``run(editor, report)``, roll back on any failure.

    When ``run`` returns text (the cleaned, kept metadata), the report's removed values
    are passed through :func:`wsi.metadata_rules.finalize_removed` against it: a removed
    value equal to kept, allowlisted text is no leak and is not scanned for.
    """
    from .api import VendorReport

    report = VendorReport()
    with TiffEditor(path, "r+") as ed:
        try:
            kept = run(ed, report)
        except BaseException:
            ed.rollback()
            raise
    if kept is not None:
        report.removed_values = mr.finalize_removed(report.removed_values, kept)
    return report


#: TIFF tags pointing at an EXIF and a GPS sub-IFD
EXIF_IFD, GPS_IFD = 34665, 34853


def refuse_exif_gps(ed: TiffEditor) -> None:
    """Raise DeidError when an IFD points at an EXIF or GPS sub-IFD (camera owner and
    serial, capture dates, positions): they are not rewritten, so such a slide is refused,
    never passed through."""
    from pixeldeid.errors import DeidError

    for d in [*ed.ifds, *ed.subifds]:
        for code, name in ((EXIF_IFD, "EXIF"), (GPS_IFD, "GPS")):
            if code in d.tags and any(d.tags[code].raw):
                raise DeidError(f"IFD {d.index} has an {name} sub-IFD (not cleaned yet)",
                                str(ed.path))


#: TIFF tag InterColorProfile: an ICC profile, whose description and copyright are text
ICC_PROFILE_TAG = 34675


def blank_icc_profiles(ed: TiffEditor, ifds: list) -> int:
    """Replace the text of every IFD's ICC profile by spaces in place (same length: the
    colour transform stays); return how many changed. A profile that cannot be parsed
    raises :class:`~pixeldeid.iccprofile.ICCProfileError` (an InputError: the slide is
    not released)."""
    from pixeldeid.iccprofile import blank_text

    changed = 0
    for d in ifds:
        tag = d.tags.get(ICC_PROFILE_TAG)
        if tag is None or not tag.raw:
            continue
        new, _blanked = blank_text(bytes(tag.raw))
        if new != tag.raw:
            ed.set_tag_bytes(d.index, ICC_PROFILE_TAG, new)
            changed += 1
    return changed


def clean_tiff_tags(ed: TiffEditor, shift_days: int | None, report: VendorReport,
                    handled: Iterable[int] = (IMAGE_DESCRIPTION,)) -> list[str]:
    """Clean the text tags and blank the private tags of every IFD (and SubIFD) of ``ed``.

    Parameters
    ----------
    ed : TiffEditor
        The slide, open for writing.
    shift_days : int, optional
        Days to shift kept dates by; None blanks them.
    report : VendorReport
        Gets an action line for what was changed.
    handled : iterable of int
        Tags the vendor module cleans itself (ImageDescription, XMP...): left alone.

    Returns
    -------
    list of str
        The old values, to scan the output for.
    """
    refuse_exif_gps(ed)
    ifds = [*ed.ifds, *ed.subifds]  # SubIFDs (tag 330) carry tags too
    edits, removed = mr.plan_tiff_tag_edits(
        ((d.index, {c: t.value for c, t in d.tags.items() if c in mr.TEXT_TAG_CODES})
         for d in ifds), shift_days)
    for index, code, new in edits:
        ed.set_ascii(index, code, new)
    blanks, blobs = mr.plan_private_tag_blanking(
        ((d.index, {c: (t.type, t.raw) for c, t in d.tags.items()}) for d in ifds),
        handled=tuple(handled))
    for index, code in blanks:
        ed.set_tag_bytes(index, code, b"\x00" * ed.ifd(index).tags[code].nbytes)
    if blanks:
        report.actions.append(f"blanked {len(blanks)} private/unknown text tags")
    icc = blank_icc_profiles(ed, ifds)
    if icc:
        report.actions.append(f"blanked the text of {icc} ICC profile(s)")
    if edits:
        report.actions.append(f"cleaned {len(edits)} generic TIFF tags")
    return blobs + removed
