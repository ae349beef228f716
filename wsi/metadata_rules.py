"""Pure metadata rules shared by the slide vendor modules.

An allowlist of acquisition keys that are safe to keep (magnification, MPP,
compression, dimensions, objective...), date handling (removed, or shifted by a
whole number of days with the format of the value preserved), and small XML
helpers (safe parsing, the text after the root element, base64 detection).
Everything here is pure: no I/O, no logging side effects.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping

__all__ = [
    "SAFE_KEYS",
    "normalize_key",
    "is_safe_key",
    "is_date_key",
    "classify_key",
    "shift_date_value",
    "clean_date_value",
    "looks_like_date",
    "clean_mapping",
    "parse_xml",
    "split_xml_tail",
    "xml_declaration",
    "serialize_xml",
    "decode_base64_text",
    "scan_needles",
    "local_name",
    "clean_xml_tree",
    "TIFF_IDENTITY_TAGS",
    "TIFF_DATE_TAGS",
    "TEXT_TAG_CODES",
    "plan_tiff_tag_edits",
    "large_value_needles",
    "finalize_removed",
    "TIFF_STRUCTURE_TAGS",
    "plan_private_tag_blanking",
    "xml_needs_no_cleaning",
    "strip_uniform_block",
]

#: Normalized names (lower case, letters and digits only, vendor prefixes stripped)
#: of acquisition keys that carry no identity and are kept verbatim.
SAFE_KEYS: frozenset[str] = frozenset({
    # magnification and objective
    "magnification", "appmag", "mag", "objectivepower", "objective", "objectivemagnification",
    "nominalmagnification", "objectivename", "numericalaperture", "aperture", "lensna",
    # pixel size
    "mpp", "mppx", "mppy", "scanres", "pixelspacing", "xresolution", "yresolution",
    "resolutionunit", "physicalsizex", "physicalsizey", "spacingz", "imagedvolumewidth",
    "imagedvolumeheight", "imagedvolumedepth",
    # compression
    "compression", "quality", "jpegquality", "compressionquality", "compressionratio",
    "lossyimagecompression", "lossyimagecompressionmethod", "lossyimagecompressionratio",
    "lossycompressionratio",
    # dimensions and sampling
    "width", "height", "imagewidth", "imagelength", "imageheight", "tilewidth", "tileheight",
    "tilelength", "sizex", "sizey", "sizez", "columns", "rows", "totalpixelmatrixcolumns",
    "totalpixelmatrixrows", "levels", "levelcount", "numlevels", "zlayers", "bitsallocated",
    "bitsstored", "highbit", "samplesperpixel", "photometricinterpretation",
    "planarconfiguration", "pixelrepresentation", "bitdepth", "numberofframes",
    # illumination and optics
    "illuminationsource", "illumination", "exposuretime", "exposurescale", "gamma",
    "focusoffset", "focusmethod", "scanmode", "focalplanes",
    # device kind (not the unit): model, manufacturer, software version
    "manufacturer", "manufacturermodelname", "model", "devicemodel", "scannermodel",
    "softwareversions", "softwareversion", "deviceversion", "buildversion",
})

_VENDOR_PREFIXES = ("dicom", "piim", "pim", "dp")
_DATE_WORDS = ("date", "time", "datetime", "timestamp", "created", "modified")


@functools.lru_cache(maxsize=4096)
def normalize_key(key: str) -> str:
    """Return ``key`` lower-cased with non-alphanumerics and vendor prefixes removed.

    ``DICOM_PIXEL_SPACING`` → ``pixelspacing``; ``Z-layers`` → ``zlayers``.
    """
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", key.strip()) if p]
    while len(parts) > 1 and parts[0].lower() in _VENDOR_PREFIXES:
        parts = parts[1:]
    return "".join(parts).lower()


def is_safe_key(key: str, extra: Iterable[str] = ()) -> bool:
    """True when ``key`` (normalized) is on the allowlist or in ``extra``."""
    n = normalize_key(key)
    return n in SAFE_KEYS or n in {normalize_key(e) for e in extra}


def is_date_key(key: str) -> bool:
    """True when the key names a date or time (``creationDate``, ``BuildDate``...)."""
    n = normalize_key(key)
    return any(w in n for w in _DATE_WORDS)


def classify_key(key: str, extra_safe: Iterable[str] = ()) -> str:
    """Return ``"keep"``, ``"date"`` or ``"remove"`` for a metadata key.

    Allowlisted keys are kept; date and time keys are dated; all others are
    removed (fail closed: an unknown key is never kept).
    """
    if is_safe_key(key, extra_safe):
        return "keep"
    if is_date_key(key):
        return "date"
    return "remove"


# --- dates -------------------------------------------------------------------------------

# Each pattern captures year, month, day by name; the rest of the value is preserved.
_DATE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?!\d)"),      # ISO 8601
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2}):(?P<m>\d{2}):(?P<d>\d{2})(?!\d)"),          # TIFF DateTime
    re.compile(r"(?<!\d)(?P<y>(?:19|20)\d{2})/(?P<m>\d{1,2})/(?P<d>\d{1,2})(?!\d)"),      # 2012/05/14
    re.compile(r"(?<!\d)(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>(?:19|20)\d{2}|\d{2})(?!\d)"),  # US (Aperio, Ventana)
    re.compile(r"(?<!\d)(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>(?:19|20)\d{2})(?!\d)"),     # European
    re.compile(r"(?<![\d.])(?P<y>(?:19|20)\d{2})(?P<m>[01]\d)(?P<d>[0-3]\d)(?=\d{0,6}(?:\.\d+)?(?:[+-]\d{4})?(?!\d))"),  # DICOM DA/DT
)


def _parse_match(m: re.Match[str]) -> _dt.date | None:
    y, mo, d = m.group("y"), int(m.group("m")), int(m.group("d"))
    year = int(y)
    if len(y) == 2:
        year += 2000 if year < 70 else 1900
    try:
        return _dt.date(year, mo, d)
    except ValueError:
        return None


def _format_like(m: re.Match[str], new: _dt.date) -> str:
    text = m.group(0)
    base = m.start(0)
    values = {"y": new.year, "m": new.month, "d": new.day}
    out = text
    # rebuild each captured field with its original width, right to left
    for (s, e), k in sorted(((m.span(k), k) for k in ("y", "m", "d")), reverse=True):
        width = e - s
        val = values[k] % 100 if (k == "y" and width == 2) else values[k]
        field = f"{val:0{width}d}" if width >= 2 else str(val)
        out = out[: s - base] + field + out[e - base:]
    return out


def looks_like_date(value: str) -> bool:
    """True when ``value`` contains a recognizable calendar date."""
    return any(_parse_match(m) is not None for p in _DATE_PATTERNS for m in p.finditer(value))


def shift_date_value(value: str, days: int) -> str | None:
    """Shift every date found in ``value`` by ``days``, keeping the format.

    Times of day and surrounding text are kept. Returns None when no date can be
    parsed (the caller then removes the value: fail closed).

    Examples
    --------
    >>> shift_date_value("20240301", -10)
    '20240220'
    >>> shift_date_value("2010-10-01T12:34:56.789Z", 1)
    '2010-10-02T12:34:56.789Z'
    """
    for pattern in _DATE_PATTERNS:
        matches = list(pattern.finditer(value))
        parsed = [(m, _parse_match(m)) for m in matches]
        parsed = [(m, d) for m, d in parsed if d is not None]
        if not parsed:
            continue
        out, last = [], 0
        for m, d in parsed:
            out.append(value[last:m.start()])
            out.append(_format_like(m, d + _dt.timedelta(days=days)))
            last = m.end()
        out.append(value[last:])
        return "".join(out)
    return None


def clean_date_value(value: str, shift_days: int | None) -> str | None:
    """Return the value to keep for a date, or None to remove it.

    ``shift_days`` None removes the date; an integer shifts it. A value with no
    parsable date is removed in either mode. Pure time values (``112108``) are
    kept only when shifting, since a time of day alone is not a date.
    """
    if shift_days is None:
        return None
    shifted = shift_date_value(value, shift_days)
    if shifted is not None:
        return shifted
    if re.fullmatch(r'\s*"?\d{2}:?\d{2}:?\d{2}(\.\d+)?"?\s*', value):
        return value
    return None


def clean_mapping(props: Mapping[str, str], shift_days: int | None,
                  extra_safe: Iterable[str] = ()) -> tuple[dict[str, str], list[str]]:
    """Apply the key rules to a flat mapping of metadata.

    Returns the cleaned mapping (allowlisted keys, shifted dates) and the list of
    values that were removed or changed (to be scanned for afterwards).
    """
    extra = tuple(extra_safe)
    kept: dict[str, str] = {}
    removed: list[str] = []
    for key, value in props.items():
        kind = classify_key(key, extra)
        if kind == "keep":
            kept[key] = value
            continue
        if kind == "date":
            new = clean_date_value(value, shift_days)
            if new is not None:
                kept[key] = new
                if new != value:
                    removed.append(value)
                continue
        removed.append(value)
    return kept, removed


# --- XML ---------------------------------------------------------------------------------

_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.S)


def xml_declaration(text: str) -> str:
    """The ``<?xml ...?>`` declaration at the start of ``text``, or ``""``."""
    m = _DECL.match(text)
    return m.group(0).strip() if m else ""


def split_xml_tail(text: str) -> tuple[str, str]:
    """Split ``text`` into the XML document and whatever follows its root element.

    Vendor XML blobs sometimes carry data after the closing root tag (comments,
    a second fragment, NUL padding); that tail is identity-bearing until proven
    otherwise and is dropped by the cleaners.

    Raises
    ------
    ValueError
        When no root element can be found.
    """
    body = _DECL.sub("", text, count=1)
    offset = len(text) - len(body)
    m = re.search(r"<([A-Za-z_][\w.\-:]*)", body)
    # skip comments and processing instructions before the root
    while m and (body[m.start():m.start() + 4] == "<!--"):
        m = re.search(r"<([A-Za-z_][\w.\-:]*)", body[m.end():])
    if not m:
        raise ValueError("no XML root element")
    root = m.group(1)
    closing = list(re.finditer(rf"</{re.escape(root)}\s*>", body))
    if closing:
        end = closing[-1].end()
    else:  # self-closing root
        sc = re.match(rf"\s*(?:<!--.*?-->\s*)*<{re.escape(root)}\b[^>]*/>", body, re.S)
        if not sc:
            raise ValueError(f"root element <{root}> is not closed")
        end = sc.end()
    return text[: offset + end], text[offset + end:]


def parse_xml(text: str | bytes) -> ET.Element:
    """Parse vendor XML, refusing DTDs and entity declarations (fail closed).

    Raises
    ------
    ValueError
        For malformed XML or a document type declaration.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="strict")
    if re.search(r"<!DOCTYPE|<!ENTITY", text, re.I):
        raise ValueError("XML with a DOCTYPE or ENTITY declaration is refused")
    body = _DECL.sub("", text, count=1)
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValueError(f"malformed XML: {exc}") from exc


def serialize_xml(root: ET.Element, declaration: str = '<?xml version="1.0" encoding="UTF-8"?>',
                  default_namespace: str | None = None) -> str:
    """Serialize ``root`` as text with ``declaration`` on the first line.

    With ``default_namespace`` the namespace is written as the default ``xmlns``
    (needed by Leica SCN, whose detection checks the default namespace).
    """
    if default_namespace:
        ET.register_namespace("", default_namespace)
    body = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    return (declaration + "\n" if declaration else "") + body


def decode_base64_text(value: str) -> bytes | None:
    """Decode ``value`` as strict base64, or return None when it is not base64."""
    s = re.sub(r"\s+", "", value)
    if len(s) < 4 or len(s) % 4 or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", s):
        return None
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None


def scan_needles(values: Iterable[str | bytes], min_len: int = 5) -> list[bytes]:
    """The distinct byte strings worth scanning the output for.

    Strips quotes and whitespace, splits quoted arrays (Philips ``"a" "b"``),
    drops values shorter than ``min_len`` (too short to search a large file for
    without false alarms), and adds the decoded form of base64 values that
    decode to printable text (a base64 barcode's plain text).
    """
    out: dict[bytes, None] = {}

    def add(b: bytes) -> None:
        b = b.strip(b" \t\r\n\"'\x00")
        if len(b) >= min_len:
            out.setdefault(b, None)

    for v in values:
        if isinstance(v, bytes):
            add(v)
            continue
        if v is None:
            continue
        s = str(v)
        parts = re.findall(r'"([^"]*)"', s) if s.count('"') >= 2 else []
        for p in [s, *parts]:
            add(p.encode("utf-8"))
            dec = decode_base64_text(p)
            if dec is not None and dec.isascii() and dec.decode("ascii").isprintable():
                add(dec)
    return list(out)


def local_name(tag: str) -> str:
    """Element or attribute name without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def clean_xml_tree(root: ET.Element, shift_days: int | None, removed: list[str], *,
                   keep_attrs: Iterable[str] = (), keep_text: Iterable[str] = (),
                   drop_elements: Iterable[str] = ()) -> ET.Element:
    """Clean every attribute and text node of an XML tree in place (fail closed).

    An attribute or element text is kept when its name is in ``keep_attrs`` /
    ``keep_text`` or on the :data:`SAFE_KEYS` allowlist; dates (by name) are shifted
    or removed; everything else is removed and its value appended to ``removed``.
    Elements named in ``drop_elements`` are removed with their subtree. Non-blank
    text between elements (``tail``) is removed. Comments and processing
    instructions are already dropped by :func:`parse_xml`.
    """
    keep_a = {normalize_key(k) for k in keep_attrs}
    keep_t = {normalize_key(k) for k in keep_text}
    drop = {normalize_key(k) for k in drop_elements}

    def rule(name: str, value: str, keep: set[str]) -> str | None:
        n = normalize_key(name)
        if n in keep or n in SAFE_KEYS:
            return value
        if is_date_key(name):
            return clean_date_value(value, shift_days)
        return None

    def walk(el: ET.Element) -> None:
        for child in list(el):
            if normalize_key(local_name(child.tag)) in drop:
                removed.extend(t for t in child.itertext() if t.strip())
                for d in child.iter():
                    removed.extend(v for v in d.attrib.values() if v.strip())
                if child.tail and child.tail.strip():
                    removed.append(child.tail)
                el.remove(child)
                continue
            walk(child)
        for name, value in list(el.attrib.items()):
            new = rule(local_name(name), value, keep_a)
            if new is None:
                del el.attrib[name]
                if value.strip():
                    removed.append(value)
            elif new != value:
                el.attrib[name] = new
                removed.append(value)
        if el.text and el.text.strip():
            new = rule(local_name(el.tag), el.text, keep_t)
            if new is None:
                removed.append(el.text)
                el.text = None
            elif new != el.text:
                removed.append(el.text)
                el.text = new
        if el.tail and el.tail.strip():
            removed.append(el.tail)
            el.tail = None

    walk(root)
    return root


#: TIFF tags that name people, machines or files: blanked wherever they occur.
TIFF_IDENTITY_TAGS: dict[int, str] = {
    269: "DocumentName", 285: "PageName", 315: "Artist", 316: "HostComputer",
    33432: "Copyright", 37510: "UserComment", 42016: "ImageUniqueID", 42033: "BodySerialNumber",
    42037: "LensSerialNumber", 40091: "XPTitle", 40092: "XPComment", 40093: "XPAuthor",
}
#: TIFF date tags: shifted or blanked.
TIFF_DATE_TAGS: dict[int, str] = {306: "DateTime", 36867: "DateTimeOriginal", 36868: "DateTimeDigitized"}

#: codes of :data:`TIFF_IDENTITY_TAGS` and :data:`TIFF_DATE_TAGS` together
TEXT_TAG_CODES: frozenset[int] = frozenset(TIFF_IDENTITY_TAGS) | frozenset(TIFF_DATE_TAGS)


def plan_tiff_tag_edits(ifd_tags: Iterable[tuple[int, Mapping[int, object]]],
                        shift_days: int | None) -> tuple[list[tuple[int, int, str]], list[str]]:
    """Plan edits of the generic identity and date tags of every IFD.

    ``ifd_tags`` yields ``(ifd index, {tag code: decoded value})``. Returns the edits
    ``(ifd, code, new ASCII value)`` (empty string = blank) and the removed values.
    Values that are already blank are left alone.
    """
    edits: list[tuple[int, int, str]] = []
    removed: list[str] = []
    for index, tags in ifd_tags:
        for code in sorted(tags):
            value = tags[code]
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace").strip("\x00")
            if not isinstance(value, str) or not value.strip("\x00 "):
                continue
            if code in TIFF_IDENTITY_TAGS:
                edits.append((index, code, ""))
                removed.append(value)
            elif code in TIFF_DATE_TAGS:
                new = clean_date_value(value, shift_days)
                if new != value:
                    edits.append((index, code, new or ""))
                    removed.append(value)
    return edits, removed


def large_value_needles(value: str, n: int = 3, width: int = 48) -> list[str]:
    """A few slices of a long value such as a base64 image, taken from its second half.

    Scanning for a whole multi-kilobyte value is wasteful; any surviving copy of it
    contains these slices. The first half is skipped: the headers of images made by
    the same encoder (JPEG tables) are identical and would match a replacement image.
    """
    v = value.strip()
    if len(v) <= 4 * width:
        return [v]
    starts = sorted({len(v) * (k + n) // (2 * n) for k in range(n)})
    return [v[s:s + width] for s in starts if s + width <= len(v)]


def finalize_removed(values: Iterable[str], kept_text: str = "", min_len: int = 5) -> list[str]:
    """The removed values a vendor module reports for the raw byte scan.

    Applies :func:`scan_needles` (split quoted arrays, add decoded base64, drop
    values shorter than ``min_len``: a 4-byte value would match by chance about once
    per gigabyte of image data) and drops values that occur in ``kept_text`` (the
    cleaned, allowlisted metadata: a removed "3.0" equal to a kept version is no leak).
    """
    out = []
    for b in scan_needles(values, min_len=min_len):
        v = b.decode("utf-8", errors="replace")
        if v not in kept_text:
            out.append(v)
    return out


#: TIFF tags describing image structure, kept as they are (numbers and codec tables).
TIFF_STRUCTURE_TAGS: frozenset[int] = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 271, 272, 273, 274, 277, 278,
    279, 280, 281, 282, 283, 284, 286, 287, 290, 291, 296, 297, 305, 317, 318, 319, 320, 321,
    322, 323, 324, 325, 330, 332, 338, 339, 340, 341, 347, 513, 514, 529, 530, 531, 532,
    32995, 32996, 32997, 32998, 34675,
})


def plan_private_tag_blanking(ifd_tags: Iterable[tuple[int, Mapping[int, tuple[int, bytes]]]],
                              handled: Iterable[int] = ()) -> tuple[list[tuple[int, int]], list[str]]:
    """Plan the blanking of text/byte tags that are neither structure nor handled.

    ``ifd_tags`` yields ``(ifd index, {code: (TIFF type, raw bytes)})``; ``handled``
    names the tags the vendor module cleans itself (ImageDescription, XMP...). ASCII,
    BYTE and UNDEFINED values of any other tag (private scanner tags, EXIF blobs) are
    zeroed: fail closed. Returns ``(ifd, code)`` pairs and printable runs of the old
    values (to scan for).
    """
    skip = set(handled) | TIFF_STRUCTURE_TAGS | set(TIFF_IDENTITY_TAGS) | set(TIFF_DATE_TAGS)
    edits: list[tuple[int, int]] = []
    removed: list[str] = []
    for index, tags in ifd_tags:
        for code, (type_, raw) in sorted(tags.items()):
            if code in skip or type_ not in (1, 2, 7) or not raw.strip(b"\x00"):
                continue
            edits.append((index, code))
            removed += [m.decode("ascii") for m in re.findall(rb"[\x20-\x7e]{5,}", raw)][:50]
    return edits, removed


_ATTR_NAME = re.compile(rb"\s([A-Za-z_][\w.:-]*)\s*=")




def strip_uniform_block(data: bytes, tag: bytes, keep_attrs: Iterable[str],
                        words: Iterable[bytes] = ()) -> bytes | None:
    """Cut out the run of identical self-closing ``<tag .../>`` elements from ``data``.

    Large geometry packets (a Ventana EncodeInfo lists one ``TileJointInfo`` per pair of
    neighbouring camera tiles, megabytes of them) are checked in one pass instead of
    attribute by attribute. The run must repeat the markup of its first element (which
    must pass :func:`xml_needs_no_cleaning`: allowlisted attribute names, no dates) with
    the whitespace separator that follows it, its first attribute's value one of
    ``words`` and every other value a number (digits, ``.``, ``+``, ``-``): the whole run
    must match that grammar exactly (a regular expression built from the first element,
    possessive, so linear in the run's length). So nothing but numbers, words and
    allowlisted markup is taken in bulk. Returns ``data`` without the run (to be checked by
    the general rules), or None when the run is not that uniform (the caller then checks
    everything the slow way).
    """
    words = tuple(words)
    if any(w != v and v.startswith(w) for w in words for v in words) or not all(
            w.isalpha() for w in words):
        raise ValueError("words must be letters only, none a prefix of another")
    opener = b"<" + tag + b" "
    start = data.find(opener)
    if start < 0 or not words:
        return None
    end = data.find(b">", data.rfind(opener)) + 1
    first_end = data.find(b">", start) + 1
    if end <= 0 or first_end <= 0:
        return None
    first = data[start:first_end]
    unit = first.split(b'"')
    if (not first.endswith(b"/>") or b"'" in first or len(unit) % 2 != 1 or len(unit) < 3
            or unit[1] not in words or b"\x00" in first
            or not xml_needs_no_cleaning(first.decode("latin-1"), keep_attrs)):
        return None
    nxt = data.find(b"<", first_end)
    sep = data[first_end:nxt] if end > first_end and nxt >= 0 else b""
    if sep.strip():
        return None
    if _uniform_run_pattern(tuple(unit), words, sep).fullmatch(data, start, end) is None:
        return None
    return data[:start] + data[end:]


@functools.lru_cache(maxsize=32)
def _uniform_run_pattern(unit: tuple[bytes, ...], words: tuple[bytes, ...], sep: bytes
                         ) -> re.Pattern[bytes]:
    """``ELEMENT (SEP ELEMENT)*`` for :func:`strip_uniform_block`: the markup segments of
    ``unit`` literally, its first value one of ``words``, the others numbers."""
    word = b"(?:" + b"|".join(re.escape(w) for w in words) + b")"
    number = rb"[0-9.+\-]*+"
    parts = [re.escape(unit[0]), b'"', word, b'"']
    for k in range(2, len(unit) - 1, 2):
        parts += [re.escape(unit[k]), b'"', number, b'"']
    parts.append(re.escape(unit[-1]))
    element = b"".join(parts)
    return re.compile(element + b"(?:" + re.escape(sep) + element + b")*+")


def xml_needs_no_cleaning(text: str, keep_attrs: Iterable[str]) -> bool:
    """Fast check that an XML packet holds nothing but allowlisted attributes.

    True when, after the declaration, there are no comments, processing
    instructions, CDATA or DOCTYPE, no text outside markup, nothing after the root,
    and every attribute name is in ``keep_attrs`` or on the allowlist and is not a
    date. Used to skip parsing large geometry-only packets (a Ventana EncodeInfo of
    thousands of tile joints).
    """
    body = _DECL.sub("", text, count=1)
    if re.search(r"<!|<\?", body):
        return False
    if re.search(r">[^<]*[^<\s][^<]*<", body) or not body.strip().startswith("<"):
        return False
    if not body.rstrip("\x00 \r\n\t").endswith(">"):
        return False
    keep = {normalize_key(k) for k in keep_attrs}
    for raw_name in set(_ATTR_NAME.findall(body.encode("utf-8"))):
        name = raw_name.decode("ascii")
        n = normalize_key(name.rsplit(":", 1)[-1])
        if not (n in keep or n in SAFE_KEYS) or (is_date_key(name) and n not in keep):
            return False
    return True
