#!/usr/bin/env python3
"""Generate ``configs/ps315/*.json`` from the DocBook XML of DICOM PS3.15.

Reads Table E.1-1 (Application Level Confidentiality Profile Attributes) and
Table E.3.10-1 (Safe Private Attributes) and writes them as committed JSON data
that :mod:`pixeldeid.standard` loads at run time.

Tables are located by their ``xml:id`` and columns by their header text, never by
position, so a later release of the standard with re-ordered or re-worded columns
is read the same way; anything unexpected (an unknown column, an action code that
is not in the profile, a malformed tag) stops the script with an error rather than
producing a silently wrong table.

Only the standard library is used.

Usage::

    python scripts/generate_ps315.py [--xml PATH] [--out configs/ps315]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_XML = REPO.parent / "shared" / "data" / "dicom-standard" / "part15-2024c.xml"
DEFAULT_OUT = REPO / "configs" / "ps315"

DB = "{http://docbook.org/ns/docbook}"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"

TABLE_E1_1 = "table_E.1-1"
TABLE_E3_10_1 = "table_E.3.10-1"

#: Action codes allowed in Table E.1-1 (PS3.15 E.1.1).
ALLOWED_CODES = frozenset({"X", "Z", "D", "K", "C", "U", "X/Z", "X/D", "X/Z/D", "X/Z/U*", "Z/D"})

#: Option names in output order, each with a pattern matched against the
#: normalised column header (abbreviated as in 2024c, or spelled out).
OPTION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("retain-safe-private", r"\b(rtn|retain)\b.*\bsafe\b.*\bpriv"),
    ("retain-uids", r"\b(rtn|retain)\b.*\buids?\b"),
    ("retain-device-identity", r"\b(rtn|retain)\b.*\bdev(ice)?\b"),
    ("retain-institution-identity", r"\b(rtn|retain)\b.*\binst(itution)?\b"),
    ("retain-patient-characteristics", r"\b(rtn|retain)\b.*\bpat(ient)?\b.*\bchar"),
    ("retain-longitudinal-full-dates", r"\b(rtn|retain)\b.*\blong.*\bfull\b"),
    ("retain-longitudinal-modified-dates", r"\b(rtn|retain)\b.*\blong.*\bmodif"),
    ("clean-descriptors", r"\bclean\b.*\bdesc"),
    ("clean-structured-content", r"\bclean\b.*\bstruct"),
    ("clean-graphics", r"\bclean\b.*\bgraph"),
)

#: Fixed columns of Table E.1-1.
E1_FIXED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", r"^(attribute )?name$"),
    ("tag", r"^(tag|data element|attribute tag)$"),
    ("retired", r"^(retd|retired)\b"),
    ("in_std_comp_iod", r"^in (std|standard) (comp|composite) iod\b"),
    ("basic", r"^basic\b"),
)

#: Columns of Table E.3.10-1; any other column is kept verbatim.
E3_FIXED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tag", r"^(data element|tag|attribute tag)$"),
    ("private_creator", r"^private creator$"),
    ("vr", r"^vr$"),
    ("vm", r"^vm$"),
    ("meaning", r"^(meaning|name|attribute name|description)$"),
)

_TAG_RE = re.compile(r"\(([0-9A-Fa-fxX]{4}),([0-9A-Fa-fxX]{4})\)")
_PRIVATE_TAG_RE = re.compile(r"\(gggg,eeee\) where gggg is odd", re.IGNORECASE)
_SAFE_TAG_RE = re.compile(r"\(([0-9A-Fa-f]{4}),[xX]{2}([0-9A-Fa-f]{2})\)")
_NAME_NOTE_RE = re.compile(r"\s*\((see\s+notes?\s[^)]*)\)$", re.IGNORECASE)
_RELEASE_RE = re.compile(r"\bDICOM\s+PS\s?3\.15\s+(\d{4}[a-z]?)\b")

#: Zero-width characters and soft hyphens that the DocBook source scatters in names.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))

#: Elements whose text is a footnote or a link, never cell content.
_NOTE_TAGS = frozenset({DB + "footnote", DB + "footnoteref", DB + "xref"})


class GenerateError(ValueError):
    """The XML does not have the shape this generator understands."""


# --------------------------------------------------------------------- XML helpers


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(elem: ET.Element, *, skip_superscript: bool = False) -> str:
    """Return the whitespace-normalised text of ``elem`` without footnotes."""
    parts: list[str] = []

    def walk(e: ET.Element) -> None:
        if e.tag in _NOTE_TAGS or (
            skip_superscript
            and e.tag == DB + "superscript"
            and "".join(e.itertext()).strip() != "*"  # "X/Z/U*" is a code, not a marker
        ):
            if e.tail:
                parts.append(e.tail)
            return
        if e.text:
            parts.append(e.text)
        for child in e:
            walk(child)
        if e.tag == DB + "para":
            parts.append(" ")  # paragraphs of one cell are separate words
        if e.tail and e is not elem:
            parts.append(e.tail)

    walk(elem)
    return " ".join("".join(parts).translate(_INVISIBLE).split())


def read_release(root: ET.Element) -> str:
    """Return the release name (e.g. ``"2024c"``) stated in the book's title block.

    Raises
    ------
    GenerateError
        If no ``DICOM PS3.15 <release>`` string is found.
    """
    candidates: list[ET.Element] = []
    for tag in ("subtitle", "title"):
        candidates.extend(root.findall(DB + tag))
    info = root.find(DB + "info")
    if info is not None:
        candidates.extend(info.iter())
    for elem in candidates:
        m = _RELEASE_RE.search(_text(elem))
        if m:
            return m.group(1)
    raise GenerateError(
        "release not found: no 'DICOM PS3.15 <release>' in the book's title, subtitle or info"
    )


def find_table(root: ET.Element, xml_id: str) -> ET.Element:
    """Return the ``<table>`` with the given ``xml:id``."""
    for elem in root.iter(DB + "table"):
        if elem.get(XML_ID) == xml_id:
            return elem
    raise GenerateError(f"table with xml:id={xml_id!r} not found")


def _grid(rows: Iterable[ET.Element], cell_tags: Sequence[str]) -> list[list[ET.Element]]:
    """Expand ``<tr>`` elements into a rectangular grid, honouring col/rowspan."""
    grid: list[list[ET.Element]] = []
    pending: dict[int, tuple[ET.Element, int]] = {}  # column -> (cell, rows left)
    for tr in rows:
        out: list[ET.Element] = []
        cells = [c for c in tr if c.tag in cell_tags]
        it = iter(cells)
        col = 0
        while True:
            if col in pending:
                cell, left = pending[col]
                out.append(cell)
                if left <= 1:
                    del pending[col]
                else:
                    pending[col] = (cell, left - 1)
                col += 1
                continue
            cell = next(it, None)
            if cell is None:
                break
            colspan = int(cell.get("colspan") or 1)
            rowspan = int(cell.get("rowspan") or 1)
            for _ in range(colspan):
                out.append(cell)
                if rowspan > 1:
                    pending[col] = (cell, rowspan - 1)
                col += 1
        # Trailing spanned cells beyond the last explicit cell.
        while col in pending:
            cell, left = pending.pop(col)
            out.append(cell)
            if left > 1:
                pending[col] = (cell, left - 1)
            col += 1
        grid.append(out)
    return grid


def _header_and_body(table: ET.Element) -> tuple[list[str], list[list[ET.Element]]]:
    thead = table.find(DB + "thead")
    tbody = table.find(DB + "tbody")
    if thead is None or tbody is None:
        raise GenerateError(f"table {table.get(XML_ID)!r} has no thead/tbody")
    head_rows = _grid(thead.findall(DB + "tr"), (DB + "th", DB + "td"))
    if len(head_rows) != 1:
        raise GenerateError(
            f"table {table.get(XML_ID)!r}: expected one header row, found {len(head_rows)}"
        )
    headers = [_text(c, skip_superscript=True) for c in head_rows[0]]
    body = _grid(tbody.findall(DB + "tr"), (DB + "td", DB + "th"))
    for i, row in enumerate(body):
        if len(row) != len(headers):
            raise GenerateError(
                f"table {table.get(XML_ID)!r} row {i + 1}: {len(row)} cells, {len(headers)} columns"
            )
    return headers, body


def _normalise_header(text: str) -> str:
    text = re.sub(r"\(from [^)]*\)", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"[^0-9a-z]+", " ", text.lower())
    return " ".join(text.split())


def map_columns(
    headers: Sequence[str],
    fixed: Sequence[tuple[str, str]],
    options: Sequence[tuple[str, str]] = (),
    *,
    table: str,
    allow_extra: bool = False,
) -> tuple[dict[str, int], dict[str, str]]:
    """Map column keys to indices by matching header text.

    Returns ``(index_by_key, extra)`` where ``extra`` maps the verbatim header of
    every unrecognised column (only when ``allow_extra``) to a snake-case key.
    """
    found: dict[str, int] = {}
    extra: dict[str, str] = {}
    for idx, raw in enumerate(headers):
        norm = _normalise_header(raw)
        keys = [k for k, pat in (*fixed, *options) if re.search(pat, norm)]
        if len(keys) > 1:
            raise GenerateError(f"table {table}: column {raw!r} matches several of {keys}")
        if not keys:
            if allow_extra and norm:
                extra[raw] = norm.replace(" ", "_")
                found[extra[raw]] = idx
                continue
            raise GenerateError(f"table {table}: unrecognised column header {raw!r}")
        if keys[0] in found:
            raise GenerateError(f"table {table}: two columns map to {keys[0]!r}")
        found[keys[0]] = idx
    missing = [k for k, _ in (*fixed, *options) if k not in found]
    if missing:
        raise GenerateError(f"table {table}: columns not found for {missing}; headers {headers}")
    return found, extra


# --------------------------------------------------------------------- tags


def parse_tag(text: str) -> dict[str, int | str]:
    """Parse a Table E.1-1 tag such as ``(0010,0010)``, ``(50xx,xxxx)`` or the
    private-attributes row ``(gggg,eeee) where gggg is odd``.

    Returns ``kind`` (``"exact"``, ``"masked"`` or ``"private"``), ``group``,
    ``element``, ``group_mask``, ``element_mask``: a tag ``t`` matches when
    ``(t >> 16) & group_mask == group`` and ``t & 0xFFFF & element_mask == element``.
    The private row is encoded as group 1 under group mask 1 (any odd group).
    """
    if _PRIVATE_TAG_RE.fullmatch(text):
        return {"kind": "private", "group": 1, "element": 0, "group_mask": 1, "element_mask": 0}
    m = _TAG_RE.fullmatch(text)
    if not m:
        raise GenerateError(f"unrecognised tag {text!r}")
    vals: list[int] = []
    masks: list[int] = []
    for part in m.groups():
        vals.append(int(re.sub("[xX]", "0", part), 16))
        masks.append(int("".join("0" if ch in "xX" else "F" for ch in part), 16))
    kind = "exact" if masks == [0xFFFF, 0xFFFF] else "masked"
    return {
        "kind": kind,
        "group": vals[0],
        "element": vals[1],
        "group_mask": masks[0],
        "element_mask": masks[1],
    }


def _yes_no(text: str, what: str, row: str) -> bool:
    if text in ("Y", "Yes", "YES"):
        return True
    if text in ("N", "No", "NO"):
        return False
    raise GenerateError(f"table E.1-1 row {row}: {what} is {text!r}, expected Y or N")


def _code(text: str, what: str, row: str) -> str:
    code = text.replace(" ", "")
    if code not in ALLOWED_CODES:
        raise GenerateError(
            f"table E.1-1 row {row}: {what} code {text!r} is not one of {sorted(ALLOWED_CODES)}"
        )
    return code


# --------------------------------------------------------------------- tables


def extract_e1_1(root: ET.Element) -> dict:
    """Return the content of ``table_e1_1.json`` (without the header keys)."""
    table = find_table(root, TABLE_E1_1)
    headers, body = _header_and_body(table)
    cols, _ = map_columns(headers, E1_FIXED_COLUMNS, OPTION_COLUMNS, table="E.1-1")
    rows = []
    seen: set[str] = set()
    for cells in body:
        name = _text(cells[cols["name"]])
        note_m = _NAME_NOTE_RE.search(name)
        if note_m:
            name = name[: note_m.start()]
        tag_text = _text(cells[cols["tag"]], skip_superscript=True)
        label = f"{tag_text or '?'} {name!r}"
        if not name:
            raise GenerateError(f"table E.1-1 row {label}: empty attribute name")
        if tag_text in seen:
            raise GenerateError(f"table E.1-1: tag {tag_text} appears twice")
        seen.add(tag_text)
        tag = parse_tag(tag_text)
        code_text = {
            key: _text(cells[cols[key]], skip_superscript=True)
            for key in ("basic", *(k for k, _ in OPTION_COLUMNS))
        }
        row = {
            "name": name,
            "tag": tag_text,
            "kind": tag["kind"],
            "group": tag["group"],
            "element": tag["element"],
            "group_mask": tag["group_mask"],
            "element_mask": tag["element_mask"],
            "retired": _yes_no(
                _text(cells[cols["retired"]], skip_superscript=True), "Retd.", label
            ),
            "in_std_comp_iod": _yes_no(
                _text(cells[cols["in_std_comp_iod"]], skip_superscript=True),
                "In Std. Comp. IOD",
                label,
            ),
            "basic": _code(code_text["basic"], "basic profile", label),
            "options": {
                key: _code(code_text[key], key, label)
                for key, _ in OPTION_COLUMNS
                if code_text[key]
            },
        }
        if note_m:
            row["note"] = note_m.group(1)
        rows.append(row)
    return {"options": [k for k, _ in OPTION_COLUMNS], "rows": rows}


def extract_e3_10_1(root: ET.Element) -> dict:
    """Return the content of ``table_e3_10_1.json`` (without the header keys)."""
    table = find_table(root, TABLE_E3_10_1)
    headers, body = _header_and_body(table)
    cols, extra = map_columns(headers, E3_FIXED_COLUMNS, table="E.3.10-1", allow_extra=True)
    rows = []
    seen: dict[tuple[str, int, int], str] = {}
    for cells in body:
        tag_text = _text(cells[cols["tag"]], skip_superscript=True)
        m = _SAFE_TAG_RE.fullmatch(tag_text)
        if not m:
            raise GenerateError(f"table E.3.10-1: unrecognised tag {tag_text!r}")
        group, low = int(m.group(1), 16), int(m.group(2), 16)
        if group % 2 == 0:
            raise GenerateError(f"table E.3.10-1: tag {tag_text} is not in a private group")
        creator = _text(cells[cols["private_creator"]])
        if not creator:
            raise GenerateError(f"table E.3.10-1: tag {tag_text} has no private creator")
        row = {
            "tag": tag_text,
            "group": group,
            "element_low": low,
            "private_creator": creator,
            "vr": _text(cells[cols["vr"]]),
            "vm": _text(cells[cols["vm"]]),
            "meaning": _text(cells[cols["meaning"]]),
        }
        for key in extra.values():
            row[key] = _text(cells[cols[key]])
        key3 = (creator, group, low)
        if key3 in seen:
            raise GenerateError(
                f"table E.3.10-1: {tag_text} of {creator!r} appears twice "
                f"({seen[key3]!r} and {row['meaning']!r})"
            )
        seen[key3] = row["meaning"]
        rows.append(row)
    return {"extra_columns": dict(extra), "rows": rows}


# --------------------------------------------------------------------- output


def _dump(header: dict, rows: list[dict]) -> str:
    """Serialise deterministically: header keys, then one row per line."""
    lines = ["{"]
    for key, value in header.items():
        lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)},")
    lines.append(' "rows": [')
    body = [f"  {json.dumps(r, ensure_ascii=False)}" for r in rows]
    lines.append(",\n".join(body))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def generate(xml_path: Path, out_dir: Path) -> dict[str, Path]:
    """Parse ``xml_path`` and write both JSON tables into ``out_dir``.

    Returns the written paths keyed by table label.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise GenerateError(f"{xml_path}: cannot read DocBook XML: {exc}") from exc
    if _local(root.tag) != "book" or not root.tag.startswith(DB):
        raise GenerateError(f"{xml_path}: not a DocBook 5 <book>")
    release = read_release(root)
    e1 = extract_e1_1(root)
    e3 = extract_e3_10_1(root)
    written = {}
    for label, fname, content in (
        ("E.1-1", "table_e1_1.json", e1),
        ("E.3.10-1", "table_e3_10_1.json", e3),
    ):
        header = {
            "_comment": (
                f"generated by scripts/generate_ps315.py from DICOM PS3.15 {release} "
                f"(table {label}), do not edit"
            ),
            "release": release,
            "source_table": label,
        }
        header.update({k: v for k, v in content.items() if k != "rows"})
        path = out_dir / fname
        _write_atomic(path, _dump(header, content["rows"]))
        written[label] = path
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--xml", type=Path, default=DEFAULT_XML, help="PS3.15 DocBook XML")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = ap.parse_args(argv)
    try:
        written = generate(args.xml, args.out)
    except GenerateError as exc:
        print(f"generate_ps315: error: {exc}", file=sys.stderr)
        return 1
    for label, path in written.items():
        n = len(json.loads(path.read_text(encoding="utf-8"))["rows"])
        print(f"table {label}: {n} rows -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
