"""DICOM PS3.15 Annex E: the Application Level Confidentiality Profile tables.

Loads the JSON that ``scripts/generate_ps315.py`` generates from the standard's
DocBook source (``configs/ps315/``): Table E.1-1 (one :class:`Rule` per attribute,
with the Basic Profile action and the action of each Option) and Table E.3.10-1
(the safe private attributes, :class:`SafePrivate`).

Nothing is read until first use; every table is parsed once and cached.

Action codes (PS3.15 E.1.1): ``D`` replace with a dummy value, ``Z`` replace with a
zero-length or dummy value, ``X`` remove, ``K`` keep, ``C`` clean, ``U`` replace UID
consistently; ``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D`` and ``X/Z/U*`` depend on the IOD
(the first letter where the attribute is optional, and so on).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType

from pixeldeid.errors import ProfileError
from pixeldeid.paths import configs_dir

logger = logging.getLogger(__name__)

__all__ = [
    "ACTION_CODES",
    "DEID_METHOD_CODES",
    "OPTIONS",
    "PIXEL_OPTIONS",
    "Rule",
    "SafePrivate",
    "action_for",
    "check_options",
    "protectiveness",
    "release",
    "rule_for",
    "rules",
    "safe_private",
    "safe_private_for",
]

#: The Options that have a column in Table E.1-1, in the table's order.
OPTIONS: tuple[str, ...] = (
    "retain-safe-private",
    "retain-uids",
    "retain-device-identity",
    "retain-institution-identity",
    "retain-patient-characteristics",
    "retain-longitudinal-full-dates",
    "retain-longitudinal-modified-dates",
    "clean-descriptors",
    "clean-structured-content",
    "clean-graphics",
)

#: Options of PS3.15 E.3 that act on pixel data and have no column in Table E.1-1.
#: :func:`check_options` accepts them; they never change a header action.
PIXEL_OPTIONS: tuple[str, ...] = ("clean-pixel-data", "clean-recognizable-visual-features")

#: Action codes from most to least protective; the first wins when options disagree.
ACTION_CODES: tuple[str, ...] = (
    "X", "X/Z/U*", "X/Z/D", "X/Z", "X/D", "Z", "Z/D", "D", "C", "U", "K",
)  # fmt: skip

_RANK = {code: i for i, code in enumerate(ACTION_CODES)}

#: CID 7050 De-identification Method codes (scheme ``DCM``; PS3.16), for
#: De-identification Method Code Sequence (0012,0064). PS3.15 itself only refers
#: to CID 7050, so the values are kept here; they match pydicom's PS3.16 dictionary.
DEID_METHOD_CODES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "basic": ("113100", "Basic Application Confidentiality Profile"),
        "clean-pixel-data": ("113101", "Clean Pixel Data Option"),
        "clean-recognizable-visual-features": (
            "113102",
            "Clean Recognizable Visual Features Option",
        ),
        "clean-graphics": ("113103", "Clean Graphics Option"),
        "clean-structured-content": ("113104", "Clean Structured Content Option"),
        "clean-descriptors": ("113105", "Clean Descriptors Option"),
        "retain-longitudinal-full-dates": (
            "113106",
            "Retain Longitudinal Temporal Information Full Dates Option",
        ),
        "retain-longitudinal-modified-dates": (
            "113107",
            "Retain Longitudinal Temporal Information Modified Dates Option",
        ),
        "retain-patient-characteristics": ("113108", "Retain Patient Characteristics Option"),
        "retain-device-identity": ("113109", "Retain Device Identity Option"),
        "retain-uids": ("113110", "Retain UIDs Option"),
        "retain-safe-private": ("113111", "Retain Safe Private Option"),
        "retain-institution-identity": ("113112", "Retain Institution Identity Option"),
    }
)

_E1_FILE = "table_e1_1.json"
_E3_FILE = "table_e3_10_1.json"
_HINT = "run scripts/generate_ps315.py"


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1.

    A tag ``t`` (``0xGGGGEEEE``) matches when ``(t >> 16) & group_mask == group`` and
    ``t & element_mask == element``. Exact rows have both masks ``0xFFFF``; repeating
    groups such as ``(50xx,xxxx)`` or ``(60xx,3000)`` mask the ``x`` digits. The row
    "Private Attributes" ``(gggg,eeee) where gggg is odd`` has ``group=1`` under
    ``group_mask=1`` (any odd group). Other rows never match an odd (private) group.
    """

    name: str
    tag: str
    group: int
    element: int
    group_mask: int
    element_mask: int
    retired: bool
    in_std_comp_iod: bool
    basic: str
    options: Mapping[str, str] = field(hash=False)

    @property
    def kind(self) -> str:
        """``"exact"``, ``"masked"`` (repeating group) or ``"private"`` (odd groups)."""
        if self.group_mask == 1 and self.group == 1:
            return "private"
        if self.group_mask == 0xFFFF and self.element_mask == 0xFFFF:
            return "exact"
        return "masked"

    def matches(self, tag: int) -> bool:
        """Return True if the attribute tag ``tag`` (``0xGGGGEEEE``) falls under this row."""
        g, e = (tag >> 16) & 0xFFFF, tag & 0xFFFF
        if g & 1 and self.kind != "private":
            return False
        return (g & self.group_mask) == self.group and (e & self.element_mask) == self.element

    def action(self, options: Iterable[str] | frozenset[str] = frozenset()) -> str:
        """Return the action code in force for this row under ``options`` (see :func:`action_for`)."""
        return _resolve(self, check_options(options))


@dataclass(frozen=True)
class SafePrivate:
    """One row of Table E.3.10-1: a private attribute that is safe to keep.

    ``note`` holds any extra column of the table (e.g. a condition), ``""`` if none.
    """

    private_creator: str
    group: int
    element_low: int
    vr: str
    vm: str
    name: str
    note: str

    @property
    def tag(self) -> str:
        """The tag as printed in the standard, e.g. ``(0019,xx0C)``."""
        return f"({self.group:04X},xx{self.element_low:02X})"


# --------------------------------------------------------------------- loading


@cache
def _load(fname: str) -> dict:
    """Read one generated JSON file, failing with a ProfileError that says how to fix it."""
    try:
        path = configs_dir() / "ps315" / fname
    except FileNotFoundError as exc:
        raise ProfileError(f"PS3.15 table {fname} not found ({exc}); {_HINT}") from exc
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProfileError(f"PS3.15 table missing; {_HINT}", path=str(path)) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"PS3.15 table unreadable ({exc}); {_HINT}", path=str(path)) from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("rows"), list)
        or not isinstance(data.get("release"), str)
        or not data["rows"]
    ):
        raise ProfileError(
            f"PS3.15 table corrupt (no 'release' or 'rows'); {_HINT}", path=str(path)
        )
    logger.debug("loaded %s (%d rows, release %s)", path, len(data["rows"]), data["release"])
    return data


def _bad(fname: str, row: object, why: str) -> ProfileError:
    return ProfileError(f"PS3.15 table {fname} corrupt at row {row!r}: {why}; {_HINT}")


@cache
def rules() -> tuple[Rule, ...]:
    """Return every row of Table E.1-1, in the standard's order."""
    data = _load(_E1_FILE)
    if tuple(data.get("options", ())) != OPTIONS:
        raise ProfileError(
            f"PS3.15 table {_E1_FILE} has options {data.get('options')}, expected "
            f"{list(OPTIONS)}; {_HINT}"
        )
    out = []
    for row in data["rows"]:
        try:
            opts = dict(row["options"])
            rule = Rule(
                name=str(row["name"]),
                tag=str(row["tag"]),
                group=int(row["group"]),
                element=int(row["element"]),
                group_mask=int(row["group_mask"]),
                element_mask=int(row["element_mask"]),
                retired=bool(row["retired"]),
                in_std_comp_iod=bool(row["in_std_comp_iod"]),
                basic=str(row["basic"]),
                options=MappingProxyType(opts),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(_E1_FILE, row, f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(row["retired"], bool) or not isinstance(row["in_std_comp_iod"], bool):
            raise _bad(_E1_FILE, row, "retired/in_std_comp_iod are not booleans")
        for key, code in (("basic", rule.basic), *opts.items()):
            if key != "basic" and key not in OPTIONS:
                raise _bad(_E1_FILE, row, f"unknown option {key!r}")
            if code not in _RANK:
                raise _bad(_E1_FILE, row, f"unknown action code {code!r}")
        out.append(rule)
    return tuple(out)


@cache
def release() -> str:
    """Return the release of PS3.15 the tables were generated from, e.g. ``"2024c"``."""
    return str(_load(_E1_FILE)["release"])


@cache
def _index() -> tuple[dict[int, Rule], tuple[Rule, ...], Rule | None]:
    exact: dict[int, Rule] = {}
    masked: list[Rule] = []
    private: Rule | None = None
    for rule in rules():
        kind = rule.kind
        if kind == "exact":
            exact[(rule.group << 16) | rule.element] = rule
        elif kind == "private":
            private = rule
        else:
            masked.append(rule)
    # Most specific pattern first (most mask bits set).
    masked.sort(key=lambda r: -(bin(r.group_mask).count("1") + bin(r.element_mask).count("1")))
    return exact, tuple(masked), private


def rule_for(tag: int) -> Rule | None:
    """Return the Table E.1-1 row that governs attribute ``tag``, or None.

    Exact tags are looked up in a dict (O(1)); then the repeating-group patterns
    (curves ``(50xx,xxxx)``, overlays ``(60xx,3000)``, ``(60xx,4000)``); any other tag
    in an odd group falls under the "Private Attributes" row.
    """
    exact, masked, private = _index()
    hit = exact.get(tag)
    if hit is not None:
        return hit
    if (tag >> 16) & 1:
        return private
    for rule in masked:
        if rule.matches(tag):
            return rule
    return None


# --------------------------------------------------------------------- options


def check_options(options: Iterable[str] | frozenset[str] | str | None) -> frozenset[str]:
    """Validate option names and return them as a frozenset.

    Accepts the names in :data:`OPTIONS` and :data:`PIXEL_OPTIONS`; a single string
    is taken as one name and None as no option.

    Raises
    ------
    ProfileError
        For an unknown name (with a "did you mean" suggestion) or when both
        ``retain-longitudinal-full-dates`` and ``retain-longitudinal-modified-dates``
        are selected (PS3.15 E.3.6 allows one or the other).
    """
    if options is None:
        return frozenset()
    if isinstance(options, frozenset) and options <= _KNOWN and not (_DATES <= options):
        return options
    names = frozenset([options] if isinstance(options, str) else options)
    for name in sorted(names, key=str):
        if name not in _KNOWN:
            raise ProfileError(_unknown_option_message(name))
    if _DATES <= names:
        raise ProfileError(
            "options 'retain-longitudinal-full-dates' and 'retain-longitudinal-modified-dates' "
            "exclude each other (PS3.15 E.3.6); choose one"
        )
    return names


def _unknown_option_message(name: object) -> str:
    import difflib
    import re

    known = OPTIONS + PIXEL_OPTIONS
    # Prefer options sharing the most words (e.g. "uids" -> "retain-uids"), then spelling.
    words = set(re.split(r"[^a-z]+", str(name).lower())) - {"", "retain", "clean"}
    score = {k: len(words & set(k.split("-"))) for k in known}
    best = max(score.values())
    pool = [k for k in known if score[k] == best] if best else list(known)
    close = difflib.get_close_matches(str(name), pool, n=1, cutoff=0.5) or (pool if best else [])
    hint = f"; did you mean {' or '.join(map(repr, close[:2]))}?" if close else ""
    return f"unknown PS3.15 option {name!r}{hint} (known: {', '.join(known)})"


_KNOWN = frozenset(OPTIONS + PIXEL_OPTIONS)
_DATES = frozenset({"retain-longitudinal-full-dates", "retain-longitudinal-modified-dates"})


def protectiveness(code: str) -> int:
    """Return the rank of an action code, 0 for the most protective (``X``).

    Raises
    ------
    ProfileError
        If ``code`` is not a PS3.15 action code.
    """
    try:
        return _RANK[code]
    except KeyError:
        raise ProfileError(f"unknown PS3.15 action code {code!r}") from None


def _resolve(rule: Rule, options: frozenset[str]) -> str:
    cells = [rule.options[o] for o in options if o in rule.options]
    if not cells:
        return rule.basic
    return min(cells, key=_RANK.__getitem__)


def action_for(tag: int, options: Iterable[str] | frozenset[str] = frozenset()) -> str | None:
    """Return the PS3.15 action code in force for ``tag`` under ``options``.

    Follows PS3.15 E.1.1: "A requirement for an Option, when implemented, overrides
    any requirement for the underlying Profile". So when any selected option has a
    non-empty cell in the row, that cell replaces the Basic Profile action (even when
    it is less protective, e.g. ``K`` under ``retain-uids``). When several selected
    options have cells that differ, the most protective wins (fail closed), in the
    order ``X > X/Z/U* > X/Z/D > X/Z > X/D > Z > Z/D > D > C > U > K``
    (:data:`ACTION_CODES`).

    Parameters
    ----------
    tag : int
        Attribute tag as ``0xGGGGEEEE``.
    options : iterable of str
        Selected option names (see :func:`check_options`).

    Returns
    -------
    str or None
        The action code, or None when no row of Table E.1-1 covers ``tag``.

    Raises
    ------
    ProfileError
        For unknown or conflicting options.
    """
    opts = check_options(options)
    rule = rule_for(tag)
    if rule is None:
        return None
    return _resolve(rule, opts)


# --------------------------------------------------------------------- safe private


@cache
def safe_private() -> Mapping[str, Mapping[tuple[int, int], SafePrivate]]:
    """Return Table E.3.10-1 keyed by private creator, then ``(group, element_low)``.

    The creator is the exact string of the standard; use :func:`safe_private_for`
    for a case- and padding-insensitive lookup.
    """
    data = _load(_E3_FILE)
    if data["release"] != release():
        raise ProfileError(
            f"PS3.15 tables disagree: {_E3_FILE} is from {data['release']}, "
            f"{_E1_FILE} from {release()}; {_HINT}"
        )
    extra_keys = list(dict(data.get("extra_columns") or {}).values())
    table: dict[str, dict[tuple[int, int], SafePrivate]] = {}
    for row in data["rows"]:
        try:
            note = "; ".join(str(row[k]) for k in extra_keys if row.get(k))
            item = SafePrivate(
                private_creator=str(row["private_creator"]),
                group=int(row["group"]),
                element_low=int(row["element_low"]),
                vr=str(row["vr"]),
                vm=str(row["vm"]),
                name=str(row["meaning"]),
                note=note,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(_E3_FILE, row, f"{type(exc).__name__}: {exc}") from exc
        if not (item.group & 1) or not 0 <= item.element_low <= 0xFF:
            raise _bad(_E3_FILE, row, "not a private element")
        table.setdefault(item.private_creator, {})[(item.group, item.element_low)] = item
    return MappingProxyType({k: MappingProxyType(v) for k, v in table.items()})


def creator_key(creator: str) -> str:
    """A private creator as it is matched: LO padding (spaces, a trailing NUL) dropped,
    case ignored; a TAB, a no-break space or inner spaces make another creator (a
    look-alike of a listed one keeps nothing)."""
    return creator.strip(" \x00").casefold()


@cache
def _safe_private_folded() -> dict[str, Mapping[tuple[int, int], SafePrivate]]:
    folded: dict[str, dict[tuple[int, int], SafePrivate]] = {}
    for creator, items in safe_private().items():
        folded.setdefault(creator_key(creator), {}).update(items)
    return folded


def safe_private_for(creator: str, group: int, element_low: int) -> SafePrivate | None:
    """Return the safe private attribute ``(group, xx<element_low>)`` of ``creator``, or None.

    The creator is matched ignoring case and surrounding or repeated spaces
    (DICOM pads LO values with spaces). ``element_low`` is the low byte of the
    element; a full element number (``0x1023``) is reduced to its low byte.
    """
    if not isinstance(creator, str):
        return None
    items = _safe_private_folded().get(creator_key(creator))
    if items is None:
        return None
    return items.get((group, element_low & 0xFF))


def _cache_clear() -> None:
    """Forget every loaded table (for tests that swap the configs folder)."""
    for fn in (_load, rules, release, _index, safe_private, _safe_private_folded):
        fn.cache_clear()
