"""Case-insensitive whole-word search of identity terms in bytes and files.

Terms are lower case; the data is lower-cased (ASCII) before the search, so ``DOE``,
``Doe`` and ``doe`` all match. A hit must not continue a longer word or number (the bytes
around it are not letters or digits). UTF-16 (both byte orders) is searched on request
(TIFF tags and slide metadata are often UTF-16). Uses ``ahocorasick_rs`` when installed
(one pass for all terms), else one ``bytes.find`` loop per term.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..api import legacy_encodings
from ..textclean import LOGIN_MIN, distinctive, login_lookalikes
from ..textclean import spellings as text_spellings
from .identity import Term

_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
CHUNK = 16 << 20
#: Shortest hit (bytes) reported inside bulk binary data.
BULK_MIN_BYTES = 8


@dataclass(frozen=True)
class Hit:
    """A term found at ``offset`` in the given ``encoding`` (utf-8, utf-16-le, utf-16-be)."""

    term: Term
    offset: int
    encoding: str = "utf-8"
    nbytes: int = 0
    bounded: bool = True  # not part of a longer word or number


class Matcher:
    """Search many terms at once.

    Parameters
    ----------
    terms : iterable of Term
        The spellings to find.
    min_len : int
        Shorter spellings are ignored (raw binary data: 4 keeps chance hits rare).
    utf16 : bool
        Also search the UTF-16 LE and BE encodings, and the legacy single- and multi-byte
        encodings of non-ASCII terms (:func:`pixeldeid.api.legacy_encodings`):
        files that are not DICOM say nothing of their character set.
    """

    def __init__(self, terms: Iterable[Term], *, min_len: int = 3, utf16: bool = False) -> None:
        self.patterns: list[tuple[bytes, Term, str, int]] = []  # (bytes, term, enc, unit)
        for t in terms:
            if not distinctive(t.text, min_len):
                continue
            # the data is lower-cased as bytes (ASCII letters only) before the search, so
            # each case form is too: "MÜLLER" is searched as "mÜller"; and the other
            # spellings of the text: full-width, decomposed, without accents
            encodings: tuple[str, ...] = ("utf-8",)
            if utf16:
                encodings += ("utf-16-le", "utf-16-be")
                if not t.text.isascii():
                    encodings += legacy_encodings(t.text)
            seen: set[bytes] = set()
            for enc in encodings:
                unit = 2 if enc.startswith("utf-16") else 1
                for f in text_spellings(t.text):
                    try:
                        form = f.encode(enc).lower()
                    except UnicodeEncodeError:
                        continue
                    if form not in seen:
                        seen.add(form)
                        self.patterns.append((form, t, enc, unit))
        self.longest = max((len(p[0]) for p in self.patterns), default=0)
        self._ac = None
        if self.patterns:
            try:
                import ahocorasick_rs

                self._ac = ahocorasick_rs.BytesAhoCorasick([p[0] for p in self.patterns])
            except ImportError:
                self._ac = None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def _candidates(self, low: bytes) -> Iterable[tuple[int, int]]:
        if self._ac is not None:
            for idx, start, _end in self._ac.find_matches_as_indexes(low, overlapping=True):
                yield idx, start
            return
        for idx, (pat, _t, _e, _u) in enumerate(self.patterns):
            i = low.find(pat)
            while i >= 0:
                yield idx, i
                i = low.find(pat, i + 1)

    def find(self, data: bytes, base: int = 0, *, unbounded: bool = False) -> list[Hit]:
        """Whole-word hits of the terms in ``data`` (``base`` is added to the offsets);
        ``unbounded`` also returns hits inside longer words (``bounded=False``), for binary
        data where neighbouring bytes are no text."""
        if not self.patterns or not data:
            return []
        low = bytes(data).lower()
        hits = []
        for idx, start in self._candidates(low):
            pat, term, enc, unit = self.patterns[idx]
            bounded = _boundary(low, start, start + len(pat), enc, unit, pat) or (
                unit == 1 and _login_word(low, start, start + len(pat), pat))
            if bounded or unbounded:
                hits.append(Hit(term, base + start, enc, len(pat), bounded))
        if any(h.encoding == "utf-16-be" for h in hits):
            # UTF-16 ASCII text holds both byte orders one byte apart: one hit, not two
            le = {(h.term.text, h.offset) for h in hits if h.encoding == "utf-16-le"}
            hits = [h for h in hits if h.encoding != "utf-16-be"
                    or (h.term.text, h.offset + 1) not in le]
        return hits

    def find_text(self, text: str) -> list[Hit]:
        """Hits in a decoded text value (searched as UTF-8)."""
        return self.find(text.encode("utf-8", "surrogateescape"))

    def scan_stream(self, fh: BinaryIO, *, limit: int | None = None,
                    unbounded: bool = False) -> list[Hit]:
        """Search a stream in overlapping chunks; ``limit`` bytes at most."""
        if not self.patterns:
            return []
        hits: dict[tuple[str, int, str], Hit] = {}
        pos = 0
        tail = b""
        overlap = self.longest + 2
        while limit is None or pos < limit:
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            buf = tail + chunk
            base = pos - len(tail)
            for h in self.find(buf, base, unbounded=unbounded):
                hits.setdefault((h.term.text, h.offset, h.encoding), h)
            pos += len(chunk)
            tail = buf[-overlap:]
        return sorted(hits.values(), key=lambda h: h.offset)

    def scan_file(self, path: str | os.PathLike, *, unbounded: bool = False) -> list[Hit]:
        """Search the raw bytes of a file."""
        with open(Path(path), "rb") as fh:
            return self.scan_stream(fh, unbounded=unbounded)


def drop_chance_hits(hits: list[Hit], bulk: list[tuple[int, int]],
                     min_bytes: int = BULK_MIN_BYTES) -> list[Hit]:
    """Hits inside bulk binary ranges (pixel data, tiles, voxels, compressed streams) are
    kept only when at least ``min_bytes`` long, whatever the bytes around them: a short
    word turns up there by chance (4 letters: about once per term and gigabyte of
    noise-like data), a long one does not (in UTF-16: as many characters). Outside them
    only whole-word hits count."""
    bulk = sorted(bulk)
    starts = [b[0] for b in bulk]
    kept = []
    for h in hits:
        i = bisect.bisect_right(starts, h.offset) - 1
        inside = i >= 0 and bulk[i][0] <= h.offset < bulk[i][1]
        # UTF-16: as many characters (16-bit samples of small values look like it)
        need = min_bytes * (2 if h.encoding.startswith("utf-16") else 1)
        if (h.nbytes >= need) if inside else h.bounded:
            kept.append(h)
    return kept


_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyz")  # (the data is lower-cased)
_DIGITS = frozenset(b"0123456789")


def _login_word(low: bytes, start: int, end: int, pat: bytes) -> bool:
    """A name of :data:`~pixeldeid.textclean.LOGIN_MIN`+ letters inside a login name: one
    letter before it and up to two digits after it, then the word ends
    (aharrowgate, zquixbury, jsmith2), as the header's residual search finds it."""
    if len(pat) < LOGIN_MIN or not pat.isalpha() or not pat.isascii():
        return False
    if start > 0 and low[start - 1] in _ALPHA:
        if bytes(low[start - 1:end]).decode("ascii") in login_lookalikes(pat.decode("ascii")):
            return False  # pelvis, not a login name of Elvis
        start -= 1
    stop = min(end + 2, len(low))
    while end < stop and low[end] in _DIGITS:
        end += 1
    return (start == 0 or low[start - 1] not in _ALNUM) and (
        end >= len(low) or low[end] not in _ALNUM)


def _boundary(low: bytes, start: int, end: int, enc: str, unit: int, pat: bytes) -> bool:
    """The hit neither continues nor is continued by a letter or digit, on each side where
    the term itself starts or ends with an ASCII letter or digit (a CJK name is a word
    wherever it stands: "CT王小明")."""
    if unit == 1:
        first, last = pat[0], pat[-1]
        before = low[start - 1] if start > 0 else None
        after = low[end] if end < len(low) else None
    elif enc == "utf-16-le":  # char c is (c, 0)
        first, last = (pat[0] if pat[1] == 0 else None), (pat[-2] if pat[-1] == 0 else None)
        before = low[start - 2] if start >= 2 and low[start - 1] == 0 else None
        after = low[end] if end + 1 < len(low) and low[end + 1] == 0 else None
    else:  # (0, c)
        first, last = (pat[1] if pat[0] == 0 else None), (pat[-1] if pat[-2] == 0 else None)
        before = low[start - 1] if start >= 2 and low[start - 2] == 0 else None
        after = low[end + 1] if end + 1 < len(low) and low[end] == 0 else None
    return ((first not in _ALNUM or before not in _ALNUM)
            and (last not in _ALNUM or after not in _ALNUM))
