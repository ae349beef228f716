"""Keyed, deterministic UID replacement.

A UID is replaced by ``2.25.<n>`` where ``n`` is the first 128 bits of
HMAC-SHA256(project key, original UID) as a decimal integer. The same study gets the
same new UIDs on any machine and in any later run with the same key, and every reference
to a UID is replaced consistently because the mapping is a pure function of the value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from functools import cache

from .errors import DeidError

#: The root of the UIDs the standard defines (see :func:`is_structural`).
DICOM_ROOT = "1.2.840.10008."
CONTEXT_GROUP_ROOT = DICOM_ROOT + "6.1."

#: Keywords whose values are class/definition UIDs, never instance identity.
STRUCTURAL_UID_KEYWORDS = frozenset({
    "SOPClassUID", "MediaStorageSOPClassUID", "ReferencedSOPClassUID",
    "ReferencedSOPClassUIDInFile", "AffectedSOPClassUID", "RequestedSOPClassUID",
    "TransferSyntaxUID", "ReferencedTransferSyntaxUIDInFile", "ImplementationClassUID",
    "CodingSchemeUID", "ContextGroupExtensionCreatorUID", "MappingResourceUID",
    "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "SOPClassesInStudy",
    "ReferencedColorPaletteInstanceUID", "PrivateRecordUID", "ContextUID",
})


def keyed_uid(key: bytes, uid: str) -> str:
    """The UID that ``uid`` gets under the project ``key`` (no override)."""
    return uid_from_digest(hmac.new(key, uid.encode("ascii", "replace"), hashlib.sha256).digest())


def uid_from_digest(digest: bytes) -> str:
    """Return a ``2.25.`` UID from the first 16 bytes of ``digest`` (at most 44 characters)."""
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def is_structural(uid: str) -> bool:
    """True for UIDs the standard defines (SOP classes, transfer syntaxes, well-known
    instances and frames of reference, coding schemes: PS3.6 Annex A, as pydicom lists
    them, and the context group UIDs of PS3.6 Table A-3). Another UID under
    ``1.2.840.10008.`` is an instance UID someone allocated under the standard's root,
    and is replaced like any other."""
    return uid.startswith(DICOM_ROOT) and (uid in _standard_uids()
                                           or uid.startswith(CONTEXT_GROUP_ROOT))


@cache
def _standard_uids() -> frozenset[str]:
    from pydicom._uid_dict import UID_dictionary

    return frozenset(UID_dictionary)


class UIDMapper:
    """Map original UIDs to new ones under a project key.

    Parameters
    ----------
    key : bytes
        The project key. Keep it secret: with the key, originals can be confirmed.
    overrides : mapping, optional
        Exact old -> new values that take precedence (``--map-csv``).
    by_key : mapping, optional
        Overrides given by the UID the key would give (:func:`keyed_uid`) -> new: those of
        earlier batches into the same output folder (:mod:`pixeldeid.uidstate`), which
        hold without their originals.

    Raises
    ------
    DeidError
        (from a call) when the key would give a UID the new UID that an override gives
        another original: two studies, series or instances would be merged under one UID,
        in this batch or across batches into one output folder. The file is quarantined.
    """

    def __init__(self, key: bytes, overrides: Mapping[str, str] | None = None,
                 by_key: Mapping[str, str] | None = None) -> None:
        if not key:
            raise ValueError("UIDMapper needs a non-empty project key")
        self._key = bytes(key)
        self._overrides = dict(overrides or {})
        self._by_key = dict(by_key or {})
        # the new UIDs that overrides give: a keyed UID must never take one of them
        self._claimed = frozenset(self._overrides.values()) | frozenset(self._by_key.values())
        self._cache: dict[str, str] = {}
        self._new: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        """Return the replacement for ``uid`` (structural UIDs are returned unchanged)."""
        uid = uid.strip().rstrip("\x00").strip()
        if not uid or is_structural(uid):
            return uid
        new = self._cache.get(uid)
        if new is None:
            new = self._overrides.get(uid)
            if new is None:
                keyed = keyed_uid(self._key, uid)
                new = self._by_key.get(keyed)
                if new is None:
                    if keyed in self._claimed:
                        raise _merge_error(keyed, keyed in self._overrides.values())
                    new = keyed
            self._cache[uid] = new
            if new != uid:
                self._new[uid] = new
        return new

    def drain(self) -> dict[str, str]:
        """Return the old -> new pairs first seen since the last call, and forget them."""
        new, self._new = self._new, {}
        return new

    @property
    def mapping(self) -> dict[str, str]:
        """The old -> new pairs replaced so far in this process."""
        return {k: v for k, v in self._cache.items() if k != v}


def _merge_error(new: str, in_this_map: bool) -> DeidError:
    """The refusal of the keyed UID ``new`` that an override already gives another
    original (``in_this_map``: this batch's map CSV, else an earlier batch's). No original
    UID is named: the reason is kept in the output folder's quarantine."""
    given = ("the map CSV gives another UID (the row whose id_new is that UID)" if in_this_map
             else "an earlier batch's map CSV gave another UID in this output folder")
    return DeidError(f"the project key gives a UID of this file the new UID {new}, which "
                     f"{given}; two studies, series or instances would be merged under "
                     "one UID. Give this file's UID a row of its own in the map CSV, or "
                     "drop that row")
