"""Attribute Types (1, 2, 3) by IOD, from highdicom's tables generated from PS3.3.

Compound PS3.15 action codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) say "remove unless a zero-length
or dummy value is required to keep the IOD valid"; the Type of the attribute at its place
in the IOD decides which.
"""

from __future__ import annotations

import logging
from functools import cache, lru_cache

logger = logging.getLogger(__name__)

_RANK = {"1": 4, "1C": 4, "2": 3, "2C": 3, "3": 1}
_TYPE_OF_RANK = {4: "1", 3: "2", 1: "3"}


@cache
def _maps() -> tuple[dict, dict, dict] | None:
    """highdicom's SOP class -> IOD, IOD -> modules and module -> attributes maps (loaded once)."""
    try:
        from highdicom._standard_utils import (
            get_iod_module_map,
            get_module_attribute_map,
            get_sop_class_iod_map,
        )
    except ImportError:  # pragma: no cover - highdicom is a core dependency
        return None
    return get_sop_class_iod_map(), get_iod_module_map(), get_module_attribute_map()


@cache
def _iod_types(sop_class_uid: str, conditional: bool = True
               ) -> dict[tuple[str, ...], str] | None:
    maps = _maps()
    if maps is None:
        return None
    sop_iod, iod_modules, modules = maps
    iod = sop_iod.get(sop_class_uid)
    if iod is None:
        return None
    ranks = _RANK if conditional else {**_RANK, "1C": 1, "2C": 1}
    out: dict[tuple[str, ...], int] = {}
    for mod in iod_modules.get(iod, []):
        if not conditional and mod.get("usage") != "M":
            continue  # an optional module's Type 1 (Overlay Data) is not required
        for attr in modules.get(mod["key"], []):
            key = (*attr["path"], attr["keyword"])
            rank = ranks.get(attr["type"], 1)
            if rank > out.get(key, 0):
                out[key] = rank
    return {k: _TYPE_OF_RANK[v] for k, v in out.items()}


@lru_cache(maxsize=8192)
def required_type(sop_class_uid: str, path: tuple[str, ...], keyword: str) -> str | None:
    """``"1"`` or ``"2"`` when the IOD requires ``keyword`` at ``path`` unconditionally
    (Type 1 or 2, not 1C/2C, in a mandatory module), else None (also for an unknown IOD)."""
    table = _iod_types(sop_class_uid, False)
    kind = table.get((*path, keyword)) if table is not None else None
    return kind if kind in ("1", "2") else None


def attribute_type(sop_class_uid: str, path: tuple[str, ...], keyword: str) -> str | None:
    """Return the Type ("1", "2" or "3") of ``keyword`` at sequence ``path`` in the IOD.

    Conditional types count as their unconditional form (an attribute that is present is
    taken to meet its condition). An attribute that the IOD does not list is Type "3";
    returns None when the IOD itself is unknown (private or new SOP classes).
    """
    table = _iod_types(sop_class_uid)
    if table is None:
        return None
    return table.get((*path, keyword), "3")


def warm() -> None:
    """Load the tables now (before forking workers, so they share them)."""
    _maps()


def resolve_compound(code: str, attr_type: str | None) -> str:
    """Resolve a compound action code to a simple one for the attribute's Type.

    ``X/Z``: Z for Type 1/2, else X. ``X/D``: D for Type 1, Z->D for Type 2 (a dummy is
    also valid), else X. ``X/Z/D``: D for Type 1, Z for Type 2, else X. ``Z/D``: D for
    Type 1, else Z. ``X/Z/U*`` (a sequence of references, PS3.15 E.1.1: "X unless Z or
    replacement of contained instance UIDs (U) is required to maintain IOD conformance"):
    U for Type 1 (the sequence is kept, each UID in it replaced by the keyed mapping of
    its target), Z for Type 2, else X. Unknown Type: the attribute is treated as Type 3
    when not found in a known IOD, and as Type 1 (keep a harmless dummy, the references
    replaced) when the IOD itself is unknown.
    """
    t = attr_type or "1"
    if code == "X/Z":
        return "Z" if t in ("1", "2") else "X"
    if code == "X/D":
        return "D" if t in ("1", "2") else "X"
    if code == "X/Z/D":
        return {"1": "D", "2": "Z"}.get(t, "X")
    if code == "Z/D":
        return "D" if t == "1" else "Z"
    if code == "X/Z/U*":
        return {"1": "U", "2": "Z"}.get(t, "X")
    return code
