"""Date offsets for slides, shared with the DICOM header core.

A slide's kept dates move by the same number of days as the DICOM of the same patient:
the offset is :func:`pixeldeid.dates.offset_for` of the project key and the patient's
original ID (the value the header core keys its pseudonyms and offsets by). Slides shift
by whole days (their dates rarely carry a time zone); the seconds part of the core's
offset is not applied.
"""

from __future__ import annotations

from pixeldeid.dates import offset_for

__all__ = ["slide_offset_days"]


def slide_offset_days(key: bytes, patient_key: str, *, override_days: int | None = None) -> int:
    """Days to shift the dates of a slide of ``patient_key``.

    Parameters
    ----------
    key : bytes
        The project key (``pixeldeid.batch.load_or_create_key``).
    patient_key : str
        The patient's original ID (DICOM Patient ID), so that the slide and the DICOM of
        that patient shift by the same days.
    override_days : int, optional
        An explicit fixed shift (``--shift-days``) that wins over the keyed offset.

    Examples
    --------
    >>> slide_offset_days(b"k" * 16, "P1") == offset_for(b"k" * 16, "P1").days
    True
    >>> slide_offset_days(b"k" * 16, "P1", override_days=-7)
    -7
    """
    if override_days is not None:
        return int(override_days)
    if not patient_key:
        raise ValueError("a keyed date offset needs the patient's ID")
    return offset_for(key, patient_key).days
