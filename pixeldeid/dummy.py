"""Dummy values for the ``D`` action of DICOM PS3.15 Annex E.

``D`` replaces a value with "a non-zero length value that may be a dummy value and
consistent with the VR". Each dummy here is valid for its VR (character repertoire,
length, format) with a value multiplicity of 1, and says nothing about anyone.

==========  ======================  ========================================
VR          dummy                   note
==========  ======================  ========================================
AE          ``"ANONYMIZED"``        10 of 16 characters
AS          ``"000Y"``
AT          ``0``                   the tag (0000,0000)
CS          ``"ANONYMIZED"``        upper case, 10 of 16 characters
DA          ``"19000101"``
DS, IS      ``"0"``
DT          ``"19000101000000"``
TM          ``"000000"``
LO, LT, SH, ST, UC, UT  ``"ANONYMIZED"``
PN          ``"ANONYMOUS"``
UI          ``"2.25.0"``            valid UUID-derived form; the engine maps real UIDs itself
UR          ``"ANONYMIZED"``        a valid relative URI reference
FL, FD      ``0.0``
SL, SS, SV, UL, US, UV  ``0``
OB, OD, OF, OL, OV, OW, UN  ``b""``  or zeros of the original's (even) length
SQ          ``[]``                  the engine decides whether to add one empty item
==========  ======================  ========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pixeldeid.errors import DeidError

__all__ = ["DUMMY_VALUES", "dummy_value", "BINARY_VRS"]

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

DUMMY_VALUES: Mapping[str, object] = MappingProxyType({
    "AE": "ANONYMIZED",
    "AS": "000Y",
    "AT": 0,
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "FD": 0.0,
    "FL": 0.0,
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "OB": b"",
    "OD": b"",
    "OF": b"",
    "OL": b"",
    "OV": b"",
    "OW": b"",
    "PN": "ANONYMOUS",
    "SH": "ANONYMIZED",
    "SL": 0,
    "SQ": (),
    "SS": 0,
    "ST": "ANONYMIZED",
    "SV": 0,
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UI": "2.25.0",
    "UL": 0,
    "UN": b"",
    "UR": "ANONYMIZED",
    "US": 0,
    "UT": "ANONYMIZED",
    "UV": 0,
})


def dummy_value(vr: str, original: object = None) -> object:
    """Return a dummy value valid for ``vr`` with a value multiplicity of 1.

    Parameters
    ----------
    vr : str
        Two-letter VR; pydicom's ambiguous forms (``"US or SS"``, ``"OB or OW"``,
        ``"US or SS or OW"``) give the dummy of their first alternative.
    original : object, optional
        The value being replaced. Only used for binary VRs (OB, OD, OF, OL, OV, OW,
        UN): a ``bytes`` original gives zeros of its length rounded up to even, so
        lengths implied elsewhere (Overlay Data and Overlay Rows x Columns, LUT Data
        and its descriptor) stay consistent. Its content never reaches the result.

    Returns
    -------
    object
        ``str`` for text VRs, ``int``/``float`` for numbers, ``bytes`` for binary
        VRs, an empty ``list`` for SQ (a new one each call).

    Raises
    ------
    DeidError
        Unknown VR.
    """
    key = vr.split(" or ")[0].strip().upper() if isinstance(vr, str) else ""
    if key not in DUMMY_VALUES:
        raise DeidError(f"no dummy value for unknown VR {vr!r}")
    if key == "SQ":
        return []
    if key in BINARY_VRS and isinstance(original, (bytes, bytearray, memoryview)):
        n = len(original)
        return bytes(n + (n % 2))
    return DUMMY_VALUES[key]
