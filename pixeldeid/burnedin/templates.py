"""Burned-in text templates: known text regions keyed by header values.

A template file (``configs/templates/*.yaml`` or a user folder) holds a list of templates,
each with a ``name``, a ``description``, a ``match`` (DICOM keyword -> condition, all must
hold) and ``regions`` (``[x0, y0, x1, y1]`` pixels, ``x1``/``y1`` exclusive). Files are
validated against ``configs/schemas/template.schema.json`` and never executed.

Conditions (string comparisons ignore case and surrounding spaces; a multi-valued element
such as ImageType matches when any value or the backslash-joined string does)::

    Manufacturer: Philips Medical Systems        # equals
    Rows: [600, 768]                              # equals one of
    ManufacturerModelName: {contains: EPIQ}       # also startswith, endswith
    SeriesDescription: {regex: "dose|report"}     # re.search
    Columns: {min: 640, max: 1024}                # numeric range, inclusive
    BurnedInAnnotation: {missing: true}           # also present, empty
    ImageType: {not: {contains: SECONDARY}}
    any: [{Modality: CT}, {Modality: MR}]         # at least one sub-match (also all, none)

A coordinate may be ``Rows`` or ``Columns`` (optionally ``+``/``-`` an integer), resolved
against the dataset at match time; regions are clipped to the image. A region that is empty
whatever the image (``x1 <= x0``), a range with ``min > max`` and an empty match are errors;
quote tags (``'60000022'``: unquoted, YAML reads a number).

``action`` (default ``redact``) says what a match means: ``redact`` blacks out the regions;
``keep-us-regions`` blacks out everything outside SequenceOfUltrasoundRegions; ``flag``
(imported filters without coordinates) marks the image as carrying text in unknown places
(the pixel stage reads it with OCR, or quarantines it where no OCR runs); ``clean``
(imported whitelists) is informational only: pixeldeid never skips its checks because of it.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from ..errors import ProfileError
from ..paths import configs_dir, read_yaml
from ..schemas import validate
from .boxes import TextBox, clip_coords

logger = logging.getLogger(__name__)

#: What a matching template asks for.
ACTIONS = ("redact", "keep-us-regions", "flag", "clean")
#: Actions that produce boxes to black out.
REGION_ACTIONS = ("redact", "keep-us-regions")
#: Keys of a match that combine sub-matches instead of naming an element.
COMBINERS = ("all", "any", "none")
_OPS = ("regex", "contains", "startswith", "endswith", "min", "max", "missing", "present",
        "empty", "not")
_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_COORD = re.compile(r"^(Rows|Columns)\s*(?:([+-])\s*([0-9]+))?$")

Coord = int | str
Region = tuple[Coord, Coord, Coord, Coord]


@dataclass(frozen=True)
class Template:
    """A named signature (``match``) and the pixel regions holding burned-in text.

    Parameters
    ----------
    name : str
        Unique name.
    match : dict
        DICOM keyword (or 8-hex-digit tag) -> condition; every entry must hold.
    regions : tuple of (x0, y0, x1, y1)
        Pixel rectangles, ``x1``/``y1`` exclusive; a coordinate may be ``"Rows"`` or
        ``"Columns"`` (optionally ``+``/``-`` N), see :meth:`resolve_regions`.
    source : str
        File the template came from.
    description : str
        Free text (vendor, model, where the identity lies).
    action : str
        One of :data:`ACTIONS`.
    """

    name: str
    match: dict[str, object] = field(hash=False)
    regions: tuple[Region, ...] = ()
    source: str = ""
    description: str = ""
    action: str = "redact"

    def matches(self, ds: Dataset) -> bool:
        """True when every condition of :attr:`match` holds for ``ds``."""
        return _match(self.match, ds)

    def resolve_regions(self, ds: Dataset) -> list[tuple[int, int, int, int]]:
        """The regions in pixels for ``ds``: expressions resolved, clipped, empty ones dropped."""
        rows = _int_or_none(ds.get("Rows"))
        cols = _int_or_none(ds.get("Columns"))
        out = []
        for region in self.regions:
            try:
                x0, y0, x1, y1 = (_coord(c, rows, cols) for c in region)
            except ValueError as exc:
                logger.warning("template %r: region %s skipped: %s", self.name, region, exc)
                continue
            c = clip_coords(x0, y0, x1, y1, rows, cols)
            if c["x1"] > c["x0"] and c["y1"] > c["y0"]:
                out.append((c["x0"], c["y0"], c["x1"], c["y1"]))
        return out

    def boxes(self, ds: Dataset) -> list[TextBox]:
        """The boxes this template blacks out on ``ds`` (its signature is not checked).

        ``redact``: the resolved regions (``source='template'``); ``keep-us-regions``: the
        outside of SequenceOfUltrasoundRegions (``source='us-regions'``, none when absent or
        invalid); other actions: none. Every box has ``label='identity'``, ``frame=None``.
        """
        if self.action == "keep-us-regions":
            from .usregions import us_region_boxes

            us = us_region_boxes(ds)
            if us is None:
                logger.info("template %r: no valid SequenceOfUltrasoundRegions", self.name)
            return us or []
        if self.action != "redact":
            return []
        return [TextBox(x0, y0, x1, y1, frame=None, label="identity", source="template")
                for x0, y0, x1, y1 in self.resolve_regions(ds)]

    def to_dict(self) -> dict:
        """The template as YAML/JSON data (the file format; ``source`` left out)."""
        d: dict[str, object] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        if self.action != "redact":
            d["action"] = self.action
        d["match"] = self.match
        if self.regions or self.action == "redact":
            d["regions"] = [list(r) for r in self.regions]
        return d


# -- loading ------------------------------------------------------------------------------
@cache
def _keywords() -> tuple[str, ...]:
    from pydicom.datadict import DicomDictionary

    return tuple(sorted({e[4] for e in DicomDictionary.values() if e[4]} | set(_repeater_tags())))


@cache
def _repeater_tags() -> dict[str, int]:
    """Keywords of repeating-group elements (OverlayDescription...) -> first group's tag."""
    from pydicom.datadict import RepeatersDictionary

    return {e[4]: int(mask.replace("x", "0"), 16) for mask, e in RepeatersDictionary.items()
            if e[4]}


def tag_for(key: str) -> int | None:
    """The tag of a keyword (repeating groups: the first, e.g. 6000), an 8-hex-digit tag."""
    from pydicom.datadict import tag_for_keyword

    if _HEX_TAG.match(key):
        return int(key, 16)
    tag = tag_for_keyword(key)
    return tag if tag is not None else _repeater_tags().get(key)


def close_keywords(key: str, n: int = 3, cutoff: float = 0.75) -> list[str]:
    """DICOM keywords close to ``key`` (for "did you mean")."""
    return difflib.get_close_matches(key, _keywords(), n=n, cutoff=cutoff)


def check_key(key: str, source: str = "<template>") -> None:
    """Raise :class:`ProfileError` unless ``key`` is a DICOM keyword or an 8-hex-digit tag."""
    if key in COMBINERS or tag_for(key) is not None:
        return
    close = close_keywords(key)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ProfileError(f"unknown DICOM keyword {key!r} in match{hint}", source)


def _check_match(match: dict, name: str, source: str) -> None:
    if not match:
        raise ProfileError(f"template {name!r}: empty match (it would match every image): "
                           "name at least one element", source)
    for key, cond in match.items():
        check_key(key, source)
        if key in COMBINERS:
            for sub in cond:  # type: ignore[union-attr]
                _check_match(sub, name, source)
        else:
            _check_condition(cond, key, name, source)


def _check_condition(cond: object, key: str, name: str, source: str) -> None:
    if not isinstance(cond, dict):
        return
    if "regex" in cond:
        try:
            re.compile(str(cond["regex"]))
        except re.error as exc:
            raise ProfileError(f"template {name!r}: bad regex for {key}: {exc}", source) \
                from None
    lo, hi = cond.get("min"), cond.get("max")
    if lo is not None and hi is not None and lo > hi:
        raise ProfileError(f"template {name!r}: range of {key} is empty: min {lo} > max {hi}",
                           source)
    if "not" in cond:
        _check_condition(cond["not"], key, name, source)


_FIELDS = ("name", "description", "action", "match", "regions")


def _did_you_mean(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=2, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _key_text(key: object, label: str, source: str) -> str:
    """A match key as text. YAML reads an unquoted tag as a number: ``60000022`` (eight
    digits, the first not 0) is that tag; other numbers are ambiguous (``00100010`` is read
    as octal 32776) and an error."""
    if isinstance(key, str):
        return key
    if type(key) is int and 10_000_000 <= key <= 99_999_999:
        return str(key)
    raise ProfileError(f"template {label!r}: match key {key!r} is no DICOM keyword or tag "
                       "(YAML reads an unquoted tag as a number, 0-led ones as octal): quote "
                       "it, e.g. '00100010'", source)


def _text_keys(match: dict, label: str, source: str) -> dict:
    """``match`` with every key (sub-matches too) as text, see :func:`_key_text`."""
    out: dict = {}
    for key, cond in match.items():
        k = _key_text(key, label, source)
        if k in out:
            raise ProfileError(f"template {label!r}: match key {k!r} given twice", source)
        if k in COMBINERS and isinstance(cond, list):
            cond = [_text_keys(m, label, source) if isinstance(m, dict) else m for m in cond]
        out[k] = cond
    return out


def _with_text_keys(data: object, source: str) -> object:
    """Template-file data with the keys of every match as text (a copy where changed)."""
    if not isinstance(data, list):
        return data
    out = []
    for i, item in enumerate(data):
        if isinstance(item, dict) and isinstance(item.get("match"), dict):
            item = {**item, "match": _text_keys(item["match"], item.get("name", f"#{i}"),
                                                source)}
        out.append(item)
    return out


def _precheck(data: object, source: str) -> None:
    """Name unknown keys (template fields, DICOM keywords, condition operators) with hints."""
    if not isinstance(data, list):
        return
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            continue
        label = item.get("name", f"#{i}")
        for k in item:
            if k not in _FIELDS:
                raise ProfileError(f"template {label!r}: unknown key {k!r}"
                                   f"{_did_you_mean(str(k), _FIELDS)} (known: "
                                   f"{', '.join(_FIELDS)})", source)
        if isinstance(item.get("match"), dict):
            _precheck_match(item["match"], label, source)


def _precheck_match(match: dict, label: str, source: str) -> None:
    for key, cond in match.items():
        check_key(str(key), source)
        if key in COMBINERS and isinstance(cond, list):
            for sub in cond:
                if isinstance(sub, dict):
                    _precheck_match(sub, label, source)
            continue
        while isinstance(cond, dict):
            for op in cond:
                if op not in _OPS:
                    raise ProfileError(f"template {label!r}: unknown condition {op!r} for "
                                       f"{key}{_did_you_mean(str(op), _OPS)} (known: "
                                       f"{', '.join(_OPS)})", source)
            cond = cond.get("not")


def parse_templates(data: object, source: str = "<templates>") -> list[Template]:
    """Validate template-file data (a list) against the schema and build the templates.

    Unknown keys, DICOM keywords and condition operators raise :class:`ProfileError` with
    "did you mean" suggestions.
    """

    data = _with_text_keys(data, source)
    _precheck(data, source)
    validate(data, "template", "template file", source)
    assert isinstance(data, list)
    seen: set[str] = set()
    for item in data:
        if item["name"] in seen:
            raise ProfileError(f"template name {item['name']!r} used twice", source)
        seen.add(item["name"])
    out: list[Template] = []
    for item in data:
        name = item["name"]
        action = item.get("action", "redact")
        regions = tuple(tuple(r) for r in item.get("regions", []))
        if action == "redact" and not regions:
            raise ProfileError(f"template {name!r}: action redact needs regions", source)
        for r in regions:
            for c in r:
                if isinstance(c, str) and not _COORD.match(c.strip()):
                    raise ProfileError(f"template {name!r}: bad coordinate {c!r} (an integer, "
                                       "Rows or Columns, optionally +/- N)", source)
            why = region_problem(r)
            if why:  # (it would silently cover nothing: corners swapped, or w/h given)
                raise ProfileError(f"template {name!r}: region {list(r)} is empty: {why} "
                                   "(regions are [x0, y0, x1, y1], x1/y1 exclusive)", source)
        _check_match(item["match"], name, source)
        out.append(Template(name, item["match"], regions, source,  # type: ignore[arg-type]
                            item.get("description", ""), action))
    return out


@cache
def _load_file(path: str, _mtime_ns: int, _size: int) -> tuple[Template, ...]:
    data = read_yaml(path, "template file")
    if data is None:
        data = []
    return tuple(parse_templates(data, path))


def load_template_file(path: str | Path) -> list[Template]:
    """Load one YAML template file (cached while the file is unchanged)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ProfileError(f"cannot read template file: {exc.strerror}", str(p)) from None
    return list(_load_file(str(p.resolve()), st.st_mtime_ns, st.st_size))


def template_files(dirs: Sequence[str | Path] | None = None) -> list[Path]:
    """The shipped template files followed by those of ``dirs`` (folders or files)."""
    files = sorted((configs_dir() / "templates").glob("*.yaml"))
    for d in dirs or ():
        p = Path(d)
        if p.is_dir():
            files += sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        elif p.is_file():
            files.append(p)
        else:
            raise ProfileError("template folder or file not found", str(p))
    unique: dict[Path, Path] = {}
    for f in files:  # a folder given twice (or the shipped one) is read once
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def load_templates(dirs: Sequence[str | Path] | None = None) -> list[Template]:
    """Shipped templates (``configs/templates/*.yaml``) plus those in ``dirs``.

    Every file is schema-checked; unknown keys or DICOM keywords raise
    :class:`ProfileError` with "did you mean" suggestions; a name used twice is an error.
    Files are cached while unchanged.
    """
    out: list[Template] = []
    where: dict[str, str] = {}
    for f in template_files(dirs):
        for t in load_template_file(f):
            if t.name in where:
                raise ProfileError(f"template name {t.name!r} also defined in {where[t.name]}",
                                   t.source)
            where[t.name] = t.source
            out.append(t)
    return out


# -- matching -----------------------------------------------------------------------------
def matching_templates(ds: Dataset, templates: Sequence[Template],
                       actions: Iterable[str] | None = REGION_ACTIONS) -> list[Template]:
    """The templates whose signature matches ``ds``.

    By default only templates that give regions to black out (``redact`` and
    ``keep-us-regions``), and only when they give at least one box for ``ds`` (a region
    wholly outside the image, or a SequenceOfUltrasoundRegions that is invalid, is no
    match: nothing would be covered). ``actions=None`` returns every signature match
    (``flag`` and ``clean`` too).
    """
    keep = None if actions is None else set(actions)
    out = []
    for t in templates:
        if (keep is None or t.action in keep) and t.matches(ds):
            if keep is None or t.action not in REGION_ACTIONS or t.boxes(ds):
                out.append(t)
    return out


def template_boxes(ds: Dataset, templates: Sequence[Template]) -> list[TextBox]:
    """Boxes (``source='template'``, ``label='identity'``, every frame) of matching templates.

    ``keep-us-regions`` templates give the boxes of :func:`.usregions.us_region_boxes`
    (``source='us-regions'``).
    """
    return [b for t in matching_templates(ds, templates) for b in t.boxes(ds)]


def _match(match: dict, ds: Dataset) -> bool:
    for key, cond in match.items():
        if key == "all":
            ok = all(_match(m, ds) for m in cond)  # type: ignore[union-attr]
        elif key == "any":
            ok = any(_match(m, ds) for m in cond)  # type: ignore[union-attr]
        elif key == "none":
            ok = not any(_match(m, ds) for m in cond)  # type: ignore[union-attr]
        else:
            ok = _holds(cond, *_lookup(ds, key))
        if not ok:
            return False
    return True


def _lookup(ds: Dataset, key: str) -> tuple[bool, object]:
    """(present, value) of an element by keyword or hex tag; file meta for group 0002."""
    tag = tag_for(key)
    if tag is None:
        return False, None
    where = ds
    if tag >> 16 == 0x0002:
        where = getattr(ds, "file_meta", None) or Dataset()
    if tag not in where:
        return False, None
    return True, where[tag].value


def _strings(value: object) -> list[str]:
    """Comparable strings of a value: each item, then the backslash-joined whole."""
    if value is None or isinstance(value, (bytes, bytearray, DicomSequence)):
        return []
    if isinstance(value, (MultiValue, list, tuple)):
        items = [str(v).strip() for v in value]
        return [*items, "\\".join(items)] if len(items) > 1 else items
    return [str(value).strip()]


def _is_empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, bytes, bytearray, list, tuple, MultiValue, DicomSequence)):
        return len(value) == 0 or (isinstance(value, str) and not value.strip())
    return False


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _equals(expected: object, strings: list[str]) -> bool:
    if isinstance(expected, bool):
        expected = "YES" if expected else "NO"
    if isinstance(expected, (int, float)):
        return any(_number(s) == float(expected) for s in strings)
    e = str(expected).strip().casefold()
    return any(s.casefold() == e for s in strings)


def _holds(cond: object, present: bool, value: object) -> bool:
    if isinstance(cond, dict):
        if "not" in cond:
            return not _holds(cond["not"], present, value)
        if "missing" in cond:
            return (not present) == bool(cond["missing"])
        if "present" in cond:
            return present == bool(cond["present"])
        if "empty" in cond:
            return present and _is_empty(value) == bool(cond["empty"])
        strings = _strings(value) if present else []
        if not strings:
            return False
        if "regex" in cond:
            rx = re.compile(str(cond["regex"]), re.IGNORECASE)
            return any(rx.search(s) for s in strings)
        for op, test in (("contains", str.__contains__), ("startswith", str.startswith),
                         ("endswith", str.endswith)):
            if op in cond:
                needle = str(cond[op]).strip().casefold()
                return any(test(s.casefold(), needle) for s in strings)
        if "min" in cond or "max" in cond:
            lo = float(cond.get("min", -math.inf))  # type: ignore[arg-type]
            hi = float(cond.get("max", math.inf))  # type: ignore[arg-type]
            nums = [n for n in map(_number, strings) if n is not None]
            return any(lo <= n <= hi for n in nums)
        raise ProfileError(f"unknown condition {sorted(cond)} (known: {', '.join(_OPS)})")
    if not present:
        return False
    strings = _strings(value)
    if isinstance(cond, list):
        return any(_equals(c, strings) for c in cond)
    return _equals(cond, strings)


def _int_or_none(v: object) -> int | None:
    try:
        return None if v is None else int(v)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _coord_parts(c: Coord) -> tuple[str, int] | None:
    """A coordinate as (base, offset): base ``""`` for an integer; None when unreadable."""
    if isinstance(c, int) and not isinstance(c, bool):
        return "", c
    m = _COORD.match(str(c).strip())
    if not m:
        return None
    delta = int(m.group(3) or 0)
    return m.group(1), -delta if m.group(2) == "-" else delta


def region_problem(region: Sequence[Coord]) -> str | None:
    """Why ``region`` (x0, y0, x1, y1) covers nothing whatever the image, or None.

    Only coordinates of the same kind compare (two integers, or ``Columns - 40`` and
    ``Columns``); ``[0, 0, Columns, 40]`` depends on the image and passes.
    """
    for lo, hi, axis in ((region[0], region[2], "x"), (region[1], region[3], "y")):
        a, b = _coord_parts(lo), _coord_parts(hi)
        if a is not None and b is not None and a[0] == b[0] and b[1] <= a[1]:
            return f"{axis}1 <= {axis}0"
    return None


def _coord(c: Coord, rows: int | None, cols: int | None) -> int:
    parts = _coord_parts(c)
    if parts is None:
        raise ValueError(f"bad coordinate {c!r}")
    base, delta = parts
    if not base:
        return delta
    size = rows if base == "Rows" else cols
    if size is None:
        raise ValueError(f"{base} not in the dataset")
    return size + delta
