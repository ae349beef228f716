"""Import burned-in text templates from RSNA CTP pixel-anonymizer scripts and deid recipes.

CTP ``DicomPixelAnonymizer`` scripts hold signatures ``{ Manufacturer.containsIgnoreCase("X")
* Rows.equals("512") ... }`` (``*`` and, ``+`` or, ``!`` not, parentheses; elements by
keyword or ``[gggg,eeee]``) each followed by regions ``(x,y,w,h)``. pydicom/deid filter
recipes hold ``LABEL`` blocks under ``%filter whitelist|graylist|blacklist`` with
``contains``/``notcontains``/``equals``/``notequals``/``missing``/``empty``/``present`` lines
joined by ``+`` (and) and ``||`` (or), and ``coordinates x0,y0,x1,y1``, ``ctpcoordinates
x,y,w,h``, ``coordinates all`` or ``keepcoordinates from:SequenceOfUltrasoundRegions``.

Differences from the originals, all on the side of removing more: string comparisons
ignore case (CTP's ``equals``/``contains`` do not). A deid label's lines combine left to
right with the operator that starts each line (deid itself ANDs the lines). deid applies
the coordinates of matching labels in order, a later ``keepcoordinates`` giving back what an
earlier rule blanked; template boxes only add, so a ``coordinates all`` label before a keep
rule is skipped (it would blank every image) and other regions before one stay blanked. A
rule that cannot be expressed is skipped with a warning naming it; nothing is guessed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ProfileError
from .templates import Template, check_key, close_keywords, region_problem, tag_for

logger = logging.getLogger(__name__)

_NUMERIC_VRS = {"US", "SS", "UL", "SL", "IS", "DS", "FL", "FD", "UV", "SV"}
_REGEX_META = re.compile(r"[\\^$.|?*+()\[\]{}]")


class Unsupported(ValueError):
    """A rule of a CTP script or deid recipe that templates cannot express."""


@dataclass
class ImportResult:
    """Templates imported from one file and the rules skipped (name, reason)."""

    templates: list[Template] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


# -- boolean trees -> match dictionaries ----------------------------------------------------
# A node is ("leaf", key, condition) | ("and", [nodes]) | ("or", [nodes]) | ("not", node).
Node = tuple


def _to_match(node: Node) -> dict:
    kind = node[0]
    if kind == "leaf":
        return {node[1]: node[2]}
    if kind == "not":
        inner = node[1]
        if inner[0] == "leaf":
            return {inner[1]: {"not": inner[2]}}
        return {"none": [_to_match(inner)]}
    children = [_to_match(c) for c in _flatten(node)]
    if kind == "or":
        return children[0] if len(children) == 1 else {"any": children}
    acc: dict = {}
    for m in children:
        if set(m) & set(acc):
            acc.setdefault("all", []).append(m)
        else:
            acc.update(m)
    return acc


def _flatten(node: Node) -> list[Node]:
    """Children of an and/or node, with nested nodes of the same kind pulled up."""
    out: list[Node] = []
    for c in node[1]:
        out.extend(_flatten(c) if c[0] == node[0] else [c])
    return out


def _element_key(name: str, notes: list[str] | None = None) -> str:
    """A keyword (or 8-hex-digit tag) for ``Keyword`` or ``[gggg,eeee]``."""
    from pydicom.datadict import DicomDictionary, keyword_for_tag

    m = re.fullmatch(r"\[\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\]", name)
    if m:
        tag = int(m.group(1) + m.group(2), 16)
        kw = keyword_for_tag(tag) if tag in DicomDictionary else ""
        return kw or f"{tag:08X}"
    if tag_for(name) is not None:
        return name
    # An unambiguous misspelling (deid's recipe has "Manfacturer", "Manufacture") is read as
    # the keyword meant, with a warning: the original never matches anything, which would
    # silently drop its regions.
    close = close_keywords(name, n=2, cutoff=0.9)
    if len(close) == 1:
        if notes is not None:
            notes.append(f"keyword {name} read as {close[0]}")
        return close[0]
    try:
        check_key(name)
    except ProfileError as exc:
        raise Unsupported(exc.reason) from None
    return name


def _typed(key: str, value: str) -> object:
    """``value`` as a number when the element's VR is numeric and the text is a number."""
    from pydicom.datadict import dictionary_VR

    try:
        vr = dictionary_VR(key) if not re.fullmatch(r"[0-9A-F]{8}", key) \
            else dictionary_VR(int(key, 16))
    except KeyError:
        vr = ""
    text = value.strip()
    if vr in _NUMERIC_VRS and re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    if vr in _NUMERIC_VRS and re.fullmatch(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+)", text):
        return float(text)
    return text


def _regex(pattern: str) -> dict:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise Unsupported(f"regular expression {pattern!r}: {exc}") from None
    return {"regex": pattern}


def slug(text: str, limit: int = 60) -> str:
    """A lower-case name part: runs of other characters become one hyphen."""
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:limit].rstrip("-") or "x"


def _unique(name: str, seen: set[str]) -> str:
    out, i = name, 2
    while out in seen:
        out, i = f"{name}-{i}", i + 1
    seen.add(out)
    return out


# -- CTP ---------------------------------------------------------------------------------
_CTP_ATOM = re.compile(
    r'(\[\s*[0-9A-Fa-f]{4}\s*,\s*[0-9A-Fa-f]{4}\s*\]|[A-Za-z][A-Za-z0-9]*)\s*\.\s*'
    r'([A-Za-z]+)\s*\(\s*"((?:[^"\\]|\\.)*)"\s*\)')
_CTP_REGION = re.compile(r"\(\s*(-?[0-9]+)\s*,\s*(-?[0-9]+)\s*,\s*(-?[0-9]+)\s*,"
                         r"\s*(-?[0-9]+)\s*\)")
#: what CTP's PixelScript takes for a region: every parenthesised group after a signature
_CTP_GROUP = re.compile(r"\([^)]*\)")


def _ctp_leaf(name: str, method: str, value: str) -> Node:
    key = _element_key(name)
    value = value.replace('\\"', '"')
    m = method.lower()
    if m.endswith("ignorecase"):
        m = m[: -len("ignorecase")]
    cond: object
    if m == "equals":
        cond = _typed(key, value) if value.strip() else {"empty": True}
    elif m in ("contains", "startswith", "endswith"):
        cond = {m: value.strip()} if value.strip() else {"present": True}
    elif m == "matches":
        cond = _regex(f"^(?:{value})$")
    else:
        raise Unsupported(f"CTP method {method!r} of {name}")
    return ("leaf", key, cond)


class _CtpParser:
    """Recursive descent over a signature: expr := term ('+' term)*;
    term := factor ('*' factor)*; factor := '!' factor | '(' expr ')' | atom."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def _skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> str:
        self._skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Node:
        node = self._expr()
        if self._peek():
            raise Unsupported(f"cannot read signature near {self.text[self.pos:][:40]!r}")
        return node

    def _expr(self) -> Node:
        nodes = [self._term()]
        while self._peek() == "+":
            self.pos += 1
            nodes.append(self._term())
        return nodes[0] if len(nodes) == 1 else ("or", nodes)

    def _term(self) -> Node:
        nodes = [self._factor()]
        while self._peek() == "*":
            self.pos += 1
            nodes.append(self._factor())
        return nodes[0] if len(nodes) == 1 else ("and", nodes)

    def _factor(self) -> Node:
        c = self._peek()
        if c == "!":
            self.pos += 1
            return ("not", self._factor())
        if c == "(":
            self.pos += 1
            node = self._expr()
            if self._peek() != ")":
                raise Unsupported("unbalanced parentheses in signature")
            self.pos += 1
            return node
        m = _CTP_ATOM.match(self.text, self.pos)
        if not m:
            raise Unsupported(f"cannot read signature near {self.text[self.pos:][:40]!r}")
        self.pos = m.end()
        return _ctp_leaf(*m.groups())


def _ctp_regions(text: str) -> list[tuple[int, ...]]:
    """The regions CTP applies from the text between one signature and the next.

    CTP's ``PixelScript.getSignatures`` takes every ``( ... )`` group there, whatever lies
    around it (notes, commas), and skips a group without four comma-separated parts. A
    group of four parts that are not all integers is :class:`Unsupported` (CTP would read
    something; nothing is guessed).
    """
    out = []
    for m in _CTP_GROUP.finditer(text):
        if m.group().count(",") != 3:
            logger.debug("CTP group %r is no region (CTP skips it too)", m.group())
            continue
        region = _CTP_REGION.fullmatch(m.group())
        if region is None:
            raise Unsupported(f"region {' '.join(m.group().split())!r} is not four integers")
        out.append(tuple(int(v) for v in region.groups()))
    return out


def parse_ctp_script(text: str, source: str = "<ctp>") -> ImportResult:
    """Templates from the text of a CTP DicomPixelAnonymizer script."""
    result = ImportResult()
    seen: set[str] = set()
    section, context = "", ""
    pos, n = 0, 0
    blocks = list(re.finditer(r"\{(.*?)\}", text, re.S))
    for i, block in enumerate(blocks):
        before = text[pos:block.start()]
        lines = [ln.strip() for ln in before.splitlines()]
        # Section titles sit between lines of asterisks; other text describes the next rule.
        stars = [j for j, ln in enumerate(lines) if ln and set(ln) == {"*"}]
        if len(stars) >= 2:
            section = " ".join(ln for ln in lines[stars[-2] + 1:stars[-1]] if ln)
            context = ""
            lines = lines[stars[-1] + 1:]
        elif i == 0:  # before the first signature: only the paragraph next to it
            blank = [j for j, ln in enumerate(lines[:-1]) if not ln and any(lines[j + 1:])]
            lines = lines[blank[-1] + 1:] if blank else lines
        text_lines = [ln for ln in lines if _CTP_REGION.sub("", ln).strip()
                      and not set(ln) <= {"*"}]
        if text_lines:
            context = " / ".join(text_lines)
        after_end = blocks[i + 1].start() if i + 1 < len(blocks) else len(text)
        after = text[block.end():after_end]
        pos = block.end()
        n += 1
        label = " ".join(p for p in (section, context) if p) or f"signature {n}"
        name = _unique(f"ctp-{n:02d}-{slug(label)}", seen)
        signature = " ".join(block.group(1).split())
        try:
            match = _to_match(_CtpParser(block.group(1)).parse())
            regions = _ctp_regions(after)
            if not regions:
                raise Unsupported("no regions after the signature")
            boxes = []
            for x, y, w, h in regions:
                if w <= 0 or h <= 0 or x < 0 or y < 0:
                    raise Unsupported(f"region ({x},{y},{w},{h}) is empty or negative")
                boxes.append((x, y, x + w, y + h))
        except Unsupported as exc:
            logger.warning("%s: CTP signature %r (%s) skipped: %s", source, name, signature, exc)
            result.skipped.append((name, str(exc)))
            continue
        desc = f"CTP {label}: {{ {signature} }}"
        result.templates.append(Template(name, match, tuple(boxes), source, desc))
    return result


# -- deid --------------------------------------------------------------------------------
_DEID_FILTERS = ("contains", "notcontains", "equals", "notequals", "missing", "present", "empty")


def _deid_split(member: str) -> tuple[list[str], list[str]]:
    """Split one recipe line into statements and inner operators, as deid does."""
    statements, ops, pending = [], [], [member]
    while pending:
        m = pending.pop(0).strip()
        i_or, i_and = m.find("||"), m.find("+")
        op = None
        if i_or >= 0:
            op = "||"
        if i_and >= 0 and (i_or < 0 or i_or >= i_and):
            op = "+"
        if op is not None:
            head, rest = m.split(op, 1)
            if any(w in rest for w in _DEID_FILTERS):
                pending.append(rest.strip())
                ops.append("or" if op == "||" else "and")
                m = head
        statements.append(m.strip())
    return statements, ops


def _deid_leaf(statement: str, notes: list[str]) -> Node:
    parts = statement.split(None, 1)
    action = parts[0].lower() if parts else ""
    rest = parts[1].strip() if len(parts) > 1 else ""
    if action in ("missing", "empty", "present"):
        if not rest or " " in rest:
            raise Unsupported(f"{action} needs one field: {statement!r}")
        return ("leaf", _element_key(rest, notes), {action: True})
    if action not in ("contains", "notcontains", "equals", "notequals"):
        raise Unsupported(f"unknown filter {statement!r}")
    try:
        fld, value = rest.split(None, 1)
    except ValueError:
        raise Unsupported(f"{action} needs a field and a value: {statement!r}") from None
    key = _element_key(fld, notes)
    value = value.strip()
    cond: object
    if action.endswith("contains"):
        cond = _regex(value) if _REGEX_META.search(value) else {"contains": value}
    else:
        cond = _typed(key, value)
    node: Node = ("leaf", key, cond)
    return ("not", node) if action.startswith("not") else node


def _chain(nodes: list[Node], ops: list[str]) -> Node:
    """Left-to-right: ``a op1 b op2 c`` is ``(a op1 b) op2 c``."""
    acc = nodes[0]
    for op, node in zip(ops, nodes[1:], strict=True):
        acc = (op, [acc, node])
    return acc


def _deid_line(line: str, notes: list[str]) -> tuple[str, Node]:
    op = "and"
    if line.startswith("||"):
        op, line = "or", line[2:]
    elif line.startswith("+"):
        line = line[1:]
    statements, ops = _deid_split(line.strip())
    return op, _chain([_deid_leaf(s, notes) for s in statements], ops)


def _deid_coords(text: str, ctp: bool) -> tuple:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4 or not all(parts):
        raise Unsupported(f"coordinates {text!r} are not four values")
    vals: list[int | str] = []
    for p in parts:
        if re.fullmatch(r"[0-9]+", p):
            vals.append(int(p))
        elif not ctp and re.fullmatch(r"(Rows|Columns)\s*([+-]\s*[0-9]+)?", p):
            vals.append(p)
        else:
            raise Unsupported(f"coordinate {p!r} in {text!r}")
    if ctp:
        x, y, w, h = vals
        if w <= 0 or h <= 0:  # type: ignore[operator]
            raise Unsupported(f"ctpcoordinates {text!r} are empty")
        return (x, y, x + w, y + h)  # type: ignore[operator]
    why = region_problem(vals)
    if why:  # (swapped corners would silently cover nothing)
        raise Unsupported(f"coordinates {text!r} are empty: {why}")
    return tuple(vals)


def _deid_label(group: str, label: str, lines: list[str], source: str,
                seen: set[str]) -> Template:
    title, _, comment = label.partition("#")
    title = title.strip() or "unnamed"
    name = _unique(f"deid-{slug(group, 20)}-{slug(title)}", seen)
    try:
        node: Node | None = None
        regions: list[tuple] = []
        keep_us = False
        notes: list[str] = []
        for line in lines:
            low = line.lower()
            if low.startswith(("ctpkeepcoordinates", "keepcoordinates")):
                arg = line.split(None, 1)[1].strip() if " " in line else ""
                if low.startswith("keepcoordinates") and arg == "from:SequenceOfUltrasoundRegions":
                    keep_us = True
                    continue
                raise Unsupported(f"keep coordinates {arg!r}")
            if low.startswith(("ctpcoordinates", "coordinates")):
                arg = line.split(None, 1)[1].strip() if " " in line else ""
                if arg.lower() == "all":
                    regions.append((0, 0, "Columns", "Rows"))
                elif arg.startswith("from:"):
                    raise Unsupported(f"coordinates {arg!r}")
                else:
                    regions.append(_deid_coords(arg, low.startswith("ctp")))
                continue
            op, expr = _deid_line(line, notes)
            node = expr if node is None else (op, [node, expr])
        if keep_us and regions:
            raise Unsupported("both keep and remove coordinates")
        if node is None and not regions and not keep_us:
            raise Unsupported("neither filters nor coordinates")
    except Unsupported as exc:
        logger.warning("%s: deid label %r skipped: %s", source, title, exc)
        raise Unsupported(f"{name}: {exc}") from None
    # (a label without filters applies to every image in deid; a template says so
    # explicitly: an empty match is refused as a likely mistake)
    match = {"PixelData": {"present": True}} if node is None else _to_match(node)
    if keep_us:
        action = "keep-us-regions"
    elif regions:
        action = "redact"
    else:
        action = "clean" if group == "whitelist" else "flag"
    desc = " ".join(p for p in (f"deid {group}: {title}", comment.strip(), *notes) if p)
    for note in notes:
        logger.warning("%s: deid label %r: %s", source, title, note)
    if node is None and regions:
        logger.warning("%s: deid label %r has no filter: it matches every image", source, title)
    return Template(name, match, tuple(regions), source, desc, action)


def parse_deid_recipe(text: str, source: str = "<deid>") -> ImportResult:
    """Templates from the ``%filter`` sections of a deid recipe (``%header`` is ignored)."""
    result = ImportResult()
    seen: set[str] = set()
    group: str | None = None
    current: tuple[str, str, list[str]] | None = None

    def flush() -> None:
        if current is None:
            return
        try:
            result.templates.append(_deid_label(*current, source, seen))
        except Unsupported as exc:
            name, _, why = str(exc).partition(": ")
            result.skipped.append((name, why))

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("%"):
            flush()
            current = None
            parts = line[1:].split()
            group = parts[1].lower() if parts and parts[0] == "filter" and len(parts) > 1 \
                else None
            continue
        if group is None:
            continue
        if line.upper().startswith("LABEL"):
            flush()
            current = (group, line[5:].strip(), [])
        elif current is not None:
            current[2].append(line)
        else:
            logger.warning("%s: line outside a LABEL ignored: %r", source, line)
    flush()
    # deid paints its mask label by label: a later keepcoordinates rule gives back what an
    # earlier "coordinates all" blanked (deid.dicom.ultrasound: blank everything, keep the
    # ultrasound regions). Boxes only ever add, so such a rule would blank every image:
    # it is skipped, and the keep rule (keep-us-regions) does the job on its own.
    keep_at = [i for i, t in enumerate(result.templates) if t.action == "keep-us-regions"]
    if keep_at:
        whole = (0, 0, "Columns", "Rows")
        for i in reversed(range(keep_at[-1])):
            t = result.templates[i]
            if t.action == "redact" and whole in t.regions:
                why = ("blanks the whole image, which deid gives back where a later "
                       "keepcoordinates rule applies; templates cannot express that order")
                logger.warning("%s: deid label %r skipped: %s", source, t.name, why)
                result.skipped.append((t.name, why))
                del result.templates[i]
    return result


# -- files -------------------------------------------------------------------------------
def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ProfileError(f"cannot read template source: {exc.strerror}", str(path)) from None


def import_ctp_script(path: str | Path) -> list[Template]:
    """Templates from a CTP DicomPixelAnonymizer script (unsupported rules skipped, warned)."""
    return parse_ctp_script(_read(path), str(path)).templates


def import_deid_recipe(path: str | Path) -> list[Template]:
    """Templates from a deid recipe's filters (unsupported labels skipped, warned)."""
    return parse_deid_recipe(_read(path), str(path)).templates


def detect_format(text: str) -> str:
    """``'deid'`` or ``'ctp'`` from a file's content; ProfileError when neither."""
    if re.search(r"^\s*%filter\b", text, re.M) or re.search(r"^\s*FORMAT\s+dicom", text, re.M):
        return "deid"
    if re.search(r"\{[^{}]*\.\s*[A-Za-z]+\s*\(\s*\"", text):
        return "ctp"
    raise ProfileError("neither a CTP pixel-anonymizer script nor a deid recipe")


IMPORTERS: dict[str, Callable[[str, str], ImportResult]] = {
    "ctp": parse_ctp_script, "deid": parse_deid_recipe}


def import_file(path: str | Path, fmt: str = "auto") -> ImportResult:
    """Import a CTP script or deid recipe (``fmt`` 'ctp', 'deid' or 'auto')."""
    text = _read(path)
    if fmt == "auto":
        try:
            fmt = detect_format(text)
        except ProfileError as exc:
            raise ProfileError(exc.reason, str(path)) from None
    if fmt not in IMPORTERS:
        raise ProfileError(f"unknown template source format {fmt!r} (known: ctp, deid, auto)")
    return IMPORTERS[fmt](text, str(path))
