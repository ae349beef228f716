"""The "C" (clean) action for free text: remove identity known from the header and
identity-shaped patterns, keep the rest (PS3.15 Clean Descriptors Option)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache

#: a month's name or abbreviation as a word of its own ("MARROW" and "Octopus" are none)
_MONTH = (r"(?:JAN(?:UARY)?|FEB(?:RUARY)?|MAR(?:CH)?|APR(?:IL)?|MAY|JUNE?|JULY?|AUG(?:UST)?"
          r"|SEPT?(?:EMBER)?|OCT(?:OBER)?|NOV(?:EMBER)?|DEC(?:EMBER)?)(?![A-Z])\.?")
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:ST|ND|RD|TH)?"
_YEAR = r"(?:1[89]|20)\d{2}"
#: between the parts of a date with a month's name: 23-May-2017, 23/May/2017, 23_May_2017
_MSEP = r"[-/_ ]?"
#: no letter or digit before / after (unlike \b, "_" is a separator: recon_23_May_2017)
_LEFT, _RIGHT = r"(?<![A-Z0-9])", r"(?![A-Z0-9])"
_DD, _MM = r"(?:0?[1-9]|[12]\d|3[01])", r"(?:0?[1-9]|1[0-2])"
#: after a pair of labels, "N/M" is a pair of values (TR/TE 2000/10, WW/WL 1500/10)
_PAIR_OF_LABELS = r"(?<!/[A-Z] )(?<!/[A-Z]{2} )(?<!/[A-Z]{3} )"
#: an age over 89; the sex or months that may follow it (92yoF, 92YF, 92Y6M)
_AGE = r"(?:9\d|1\d\d)"
_SEX = r"[MF]?"
_AGE_MONTHS = r"(?:\s?(?:[0-9]|1[01])\s?M(?:OS?|ONTHS?)?" + _RIGHT + ")"
#: "120 Y" is a coordinate, not an age, after an X (X 120 Y 95), before a length or
#: another axis (120 Y 95 mm; 105 Y, 20 X) or before an axis word (130 Y axis)
_NOT_AFTER_X = r"(?<!\bX )(?<!\bX)(?<!\bX=)(?<!\bX:)(?<!\bX: )(?<!\bX= )"
_COORDINATE = (r"(?:\s?,?\s?[-+]?\d{1,6}(?:\.\d{1,6})?\s?(?:MM|CM|PX|DEG|°|[XZ])(?![A-Z0-9])"
               r"|\s?-?\s?(?:AXIS|AXES|DIRECTION|PLANE|COORD))")


def _cjk_unit(chars: str) -> str:
    """The regex of one of ``chars`` (year, month or day in Chinese/Japanese and Korean) as
    :func:`fold` spells it: NFKD splits a Hangul syllable into its letters."""
    return "(?:" + "|".join(unicodedata.normalize("NFKD", c) for c in chars) + ")"


# Each pattern runs on the fold of the text (Unicode dashes are "-") and in linear time:
# no two unbounded repeats that can share characters (an "age" followed by 64 KB of
# white space, or 64 KB of letters before no "@", backtracked for tens of seconds).
_PATTERNS = [
    # ISO 8601 date and time: 2017-05-23T10:00, 20200314T1000, 2020-03-14T08:00:00.5+01:00
    re.compile(r"(?<!\d)" + _YEAR + r"-?\d{2}-?\d{2}T\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?"
               r"(?:Z|[+-]\d{2}:?\d{2})?(?!\d)", re.I),
    # 08/29/1951, 1951-08-29, one separator twice (not "Pixel 0.5/0.5/1.0", "1.2/16")
    re.compile(r"(?<!\d)\d{1,4}(?P<s>[-/.])\d{1,2}(?P=s)\d{1,4}(?!\d)"),
    # with a 4-digit year, also "_" or spaced separators: 2017_05_23, 23 / 05 / 2017
    re.compile(r"(?<!\d)(?:" + _YEAR + r"(?P<a>_| ?[-/] ?)" + _DD + r"(?P=a)" + _DD
               + r"|" + _DD + r"(?P<b>_| ?[-/] ?)" + _DD + r"(?P=b)" + _YEAR + r")(?!\d)"),
    # 29-AUG-1951, 23rd May 2017, 14 of March 2020, 23/May/2017
    re.compile(_LEFT + _DAY + _MSEP + r"(?:OF )?" + _MONTH + r",?" + _MSEP + r"\d{2,4}" + _RIGHT,
               re.I),
    # May 23, 2017; March 14th 2020; Mar-14-2020; May, 23 2017
    re.compile(_LEFT + _MONTH + r",?" + _MSEP + _DAY + r",?" + _MSEP + r"\d{2,4}" + _RIGHT, re.I),
    re.compile(_LEFT + _YEAR + r",?" + _MSEP + _MONTH + _MSEP + _DAY + _RIGHT, re.I),  # 2017 May 23
    re.compile(_LEFT + _MONTH + r",?" + _MSEP + _YEAR + _RIGHT, re.I),  # March 2020
    # 2020-03, 2020/03, 03/2020 (not "TR 2000.10" nor "TR/TE 2000/10": a pair of values
    # after a pair of labels)
    re.compile(r"\b" + _PAIR_OF_LABELS + _YEAR + r"[-/](?:0[1-9]|1[0-2])\b", re.I),
    re.compile(r"\b" + _PAIR_OF_LABELS + _MM + r"[-/]" + _YEAR + r"\b", re.I),
    # 2020 03 14, 14 03 2020: two digits each (not "seed pos 1 4 1800", "MPR 3 5 2000")
    re.compile(r"\b" + _YEAR + r" (?:0[1-9]|1[0-2]) (?:0[1-9]|[12]\d|3[01])\b"),
    re.compile(r"\b(?:0[1-9]|[12]\d|3[01]) (?:0[1-9]|1[0-2]) " + _YEAR + r"\b"),
    re.compile(r"(?<!\d)(19|20)\d{6}(?!\d)"),                            # 19510829
    # 2017年5月23日, 2017년 5월 23일, 2017年5月
    re.compile(r"(?<!\d)" + _YEAR + r"\s?" + _cjk_unit("年년") + r"\s?" + _MM + r"\s?"
               + _cjk_unit("月월") + r"(?:\s?" + _DD + r"\s?" + _cjk_unit("日일") + ")?"),
    # an age over 89 (HIPAA): 92 y/o, 92yo, 95 years old, 97yoF, age 92, aged: 101, age
    # 095Y, as DICOM writes it (095Y, 092 Y), 95 y, 92YF, 92Y6M (not 90Y alone: the
    # yttrium-90 of nuclear medicine; not the coordinate of "X 120 Y 95")
    re.compile(r"\b0?" + _AGE + r"[- ]?(?:y/o|y\.o\.?|yo|yrs?|years?)(?:[- ]old)?" + _SEX + _RIGHT
               + r"|\bage[d]?(?:\s{0,3}[:=])?\s{0,3}0?" + _AGE + r"(?:\s?(?:y|yrs?|years?))?"
               + _SEX + _RIGHT
               + r"|\b0" + _AGE + r"\s?Y(?:" + _AGE_MONTHS + "|" + _SEX + _RIGHT + ")"
               + r"|\b" + _NOT_AFTER_X + r"(?:9[1-9]|1\d\d)\s?Y(?:" + _AGE_MONTHS + "|" + _SEX + _RIGHT
               + r"(?!" + _COORDINATE + "))", re.I),
    re.compile(r"\b\d{1,2}:\d{2}(:\d{2})?\b"),                          # 10:42(:10)
    # e-mail; a local part starts where a run of its characters does (else each letter of
    # a long word without "@" starts a new scan to its end)
    re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    re.compile(r"\(?\b\d{3}\)?[-. ]\d{3}[-. ]\d{4}\b"),                 # phone
    re.compile(r"\b\d{5,}\b"),                                          # long digit runs (IDs)
    re.compile(r"\b(MRN|DOB|SSN|ACC|ID)\b(?:\s*[:#])?\s*\S+", re.I),    # labelled identifiers
    # a capitalised word after a title or role: "Dr Lockhart", "Patient Ravenswood", "tech Smith"
    re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Nurse|Sister|Sr|tech|technologist|Patient|Pt|"
               r"Daughter|Son|Wife|Husband|Mother|Father)\b\.?\s+[A-Z][\w'-]+"),
]

#: Words that occur in identity fields (institution and department names, addresses)
#: but carry no identity themselves; they are not removed from descriptors.
STOPWORDS = frozenset("""
the and of for with from at by to in on de la le der die das und hospital hospitals clinic
clinics medical medicine center centre university universitat department dept radiology imaging
ward wing unit institute health care healthcare general memorial street road lane avenue
floor room building suite house trust foundation group service services nuclear diagnostic
mri ct pet us xr cr dx mr nm scan scanner head chest body brain spine abdomen pelvis
""".split())


#: Generic words of institution names (besides textclean.STOPWORDS): not identity alone.
GENERIC_INSTITUTION = frozenset("""
infirmary royal saint children childrens regional county city national community cancer
heart women womens district state hospice polyclinic klinikum klinik universitaets
universitario hopital ospedale hospitalier academic teaching private public central north
south east west northern southern eastern western practice surgery associates partners
""".split())


def institution_words(value: str) -> set[str]:
    """The distinctive lower-case words of an institution's name, address or department
    (4+ letters, not a number, not a generic word such as "hospital", "infirmary" or
    "radiology", not DICOM vocabulary): what names the site."""
    vocab = dicom_vocabulary()
    out = set()
    for w in re.split(r"[^\w'-]+", " ".join(str(value).lower().split())):
        w = w.strip("'-_")
        if (len(w) >= 4 and not w.isdigit() and w not in STOPWORDS and w not in vocab
                and w not in GENERIC_INSTITUTION):
            out.add(w)
    return out


def _cjk(ch: str) -> bool:
    """Whether ``ch`` is a CJK ideograph, kana or Hangul syllable (one may be a whole name)."""
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF
            or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FFFF)


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds a CJK ideograph, kana or Hangul syllable."""
    return any(_cjk(c) for c in text)


#: Letters that Unicode does not decompose into a base letter and an accent, as an
#: accent-free spelling writes them (ØSTERGÅRD as Ostergard, WAŁĘSA as Walesa, Größ as
#: Gross), and the dashes and slashes of word processors as ASCII (a date 23‐05‐2017
#: with U+2010 hyphens is a date)
_UNDECOMPOSED = {
    "Ø": "O", "ø": "o", "Ł": "L", "ł": "l", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe",
    "ß": "ss", "ẞ": "SS", "Đ": "D", "đ": "d", "Ð": "D", "ð": "d", "Þ": "TH", "þ": "th",
    "ı": "i", "Ħ": "H", "ħ": "h",
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58", "-"),
    **dict.fromkeys("\u2044\u2215", "/"),
    # hiragana as katakana: a phonetic name group is written in either (やまだ, ヤマダ)
    **{chr(o): chr(o + 0x60) for o in (*range(0x3041, 0x3097), 0x309D)},
    # the Arabic tatweel (kashida) only stretches a word: زقمحـمود is زقمحمود
    "\u0640": "",
}


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """``ch`` without compatibility forms and accents: full-width ``Ｌ`` is ``L``, ``ü``
    (one character or ``u`` and a combining diaeresis) is ``u``, ``ﬁ`` is ``fi``, ``Ø`` is
    ``O`` and ``ß`` is ``ss`` (:data:`_UNDECOMPOSED`), a Unicode dash ``-``, hiragana its
    katakana (``や`` is ``ヤ``), a digit of any script its ASCII digit (``٤`` is ``4``);
    invisible format characters (zero-width space and joiners, soft hyphen, byte order
    mark) and the Arabic tatweel are nothing. One character may give several
    (:func:`_folded_with_index` maps them back)."""
    if unicodedata.category(ch) == "Cf":
        return ""
    digit = unicodedata.decimal(ch, None)
    if digit is not None:
        return str(digit)
    return "".join(_UNDECOMPOSED.get(c, c) for c in unicodedata.normalize("NFKD", ch)
                   if not unicodedata.combining(c))


def fold(text: str) -> str:
    """``text`` as :func:`_fold_char` folds each character: the spelling that identity
    matching compares (the same name in full-width, decomposed or accent-free form)."""
    return text if text.isascii() else "".join(_fold_char(c) for c in text)


@lru_cache(maxsize=256)
def _folded_with_index(text: str) -> tuple[str, tuple[int, ...]]:
    """:func:`fold` of ``text`` and, for each folded character, the index in ``text`` of
    the character it came from (kept: each pattern of a cleaning asks for it again until
    one changes the text)."""
    chars: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        f = ch if ch.isascii() else _fold_char(ch)
        chars.append(f)
        index.extend([i] * len(f))
    return "".join(chars), tuple(index)


def is_token(text: str) -> bool:
    """Whether ``text`` is long enough to be removed as identity: 2+ characters, or one CJK
    character (a family name such as 王 is often one ideograph)."""
    return len(text) >= 2 or (len(text) == 1 and _cjk(text))


def distinctive(text: str, min_len: int = 3) -> bool:
    """Whether ``text`` is distinctive enough to search whole headers or files for (the
    residual check, ``pixeldeid verify``): ``min_len`` characters, or two when it holds a
    CJK character (most CJK given names are two)."""
    return len(text) >= min_len or (len(text) >= 2 and has_cjk(text))


#: What joins the parts of one name part: a double-barrelled name (Lopez-Garcia) and the
#: part after an apostrophe (O'Malley, D’Angelo) are each written alone too.
_NAME_JOINERS = re.compile(r"[-'’‘`]+")
_PN_SEPARATORS = re.compile(r"[\^=\s,]+")


def identity_tokens(values: Iterable[str], names: Iterable[str] = ()) -> list[str]:
    """Split header identity values into searchable tokens (name parts, IDs), longest first.

    Person names are split on ``^``, spaces and ``=``; parts too short for
    :func:`is_token` are dropped. The family and given name of each component group are
    also given joined without a separator, as CJK names are written (王小明 for 王^小明).
    IDs are also given without leading zeros.

    ``names`` are person names (PN values) known as such: they are tokens as ``values``
    are, and also give :func:`name_forms` (parts of double-barrelled names, the name
    written in full in other orders).
    """
    names = [str(n).strip() for n in names if n and str(n).strip()]
    out: set[str] = set()
    for v in [*values, *names]:
        if not v:
            continue
        v = str(v).strip()
        if not v:
            continue
        out.add(v)
        for part in _PN_SEPARATORS.split(v):
            part = part.strip(".")
            if is_token(part):
                out.add(part)
            if part.isdigit() and part.lstrip("0") and len(part.lstrip("0")) >= 3:
                out.add(part.lstrip("0"))
        if "^" in v:
            for group in v.split("="):
                parts = [c.strip() for c in group.split("^")[:2]]
                if all(parts) and len(parts) == 2:
                    out.add("".join(parts))
    for n in names:
        out.update(name_forms(n))
    return sorted(out, key=len, reverse=True)


def name_forms(name: str) -> set[str]:
    """Spellings of the person name ``name`` (a PN value) that free text may hold.

    - each part of a double-barrelled or apostrophe name (``Lopez-Garcia``: ``Lopez``,
      ``Garcia``; ``O'Malley``: ``Malley``), the whole part being a token already;
    - the name in full, for each component group: given and family name joined by a
      space both ways, ``family, given`` and ``family^given``, with the middle name
      where there is one (``Robert J Taylor``, ``Taylor, Robert J``...). A name part
      that is a DICOM word (Taylor, Brown, White) is no residual token alone, but the
      name in full is.

    Only parts that are tokens (:func:`is_token`) are used: no initials alone.
    """
    out: set[str] = set()
    for group in str(name).split("="):
        for word in re.split(r"[\^\s,]+", group):
            pieces = [p.strip(".") for p in _NAME_JOINERS.split(word)]
            if len(pieces) > 1:  # (digits are no name: "VS-SEG-001" is an ID as a name)
                out.update(p for p in pieces if is_token(p) and not p.isdigit())
        comps = [re.sub(r"\s+", " ", c).strip() for c in group.split("^")]
        family = comps[0]
        given = comps[1] if len(comps) > 1 else ""
        middle = comps[2] if len(comps) > 2 else ""
        if not (is_token(family) and is_token(given)):
            continue
        out.update({f"{given} {family}", f"{family} {given}", f"{family}, {given}",
                    f"{family}^{given}"})
        if middle:
            out.update({f"{given} {middle} {family}", f"{family} {given} {middle}",
                        f"{family}, {given} {middle}", f"{family}^{given}^{middle}"})
    return out


def words_of(values: Iterable[str]) -> set[str]:
    """Identity words of free-text values: each word of 3+ characters not in :data:`STOPWORDS`,
    and each CJK word (a name part is often one or two characters; a person name's family
    and given name also joined, see :func:`identity_tokens`)."""
    out: set[str] = set()
    for v in values:
        v = str(v)
        if not v.isascii():
            out.update(t for t in identity_tokens([v]) if has_cjk(t))
        for w in re.split(r"[^\w'-]+|\^|=", v):
            w = w.strip("'-_")
            if len(w) >= 3 and w.lower() not in STOPWORDS and not w.isdigit():
                out.add(w)
            for part in w.split("-"):
                if len(part) >= 3 and part.lower() not in STOPWORDS:
                    out.add(part)
    return out


def clean_text(value: str, tokens: Iterable[str]) -> str:
    """Remove identity tokens (case-insensitive, whole words) and identity-shaped patterns.

    Removed spans become ``X``-free gaps; runs of spaces are collapsed.
    """
    return _tidy(_drop_patterns(_drop_tokens(str(value), tokens)))


def remove_tokens(value: str, tokens: Iterable[str]) -> str:
    """Remove identity tokens only (whole words, case-insensitive), for text that is not
    free text (a code meaning: "ID" or a number in it is vocabulary, not an identifier).
    Text without a token is returned as it is."""
    text = str(value)
    dropped = _drop_tokens(text, tokens)
    return text if dropped == text else _tidy(dropped)


@lru_cache(maxsize=64)
def _text_regex(tokens: tuple[str, ...]) -> re.Pattern[str] | None:
    alt = "|".join(_word_pattern(t) for t in sorted(tokens, key=len, reverse=True)
                   if is_token(t))
    return re.compile(alt, re.I) if alt else None


#: A name of this many letters or more is also found with one letter before it and up to
#: two digits after it: a login name or handle (aharrowgate, zquixbury, jsmith2: TID 1003
#: Person Observer's Login Name, "portal user <name>"). Not a letter after it: Philip is
#: in Philips, Harmon in Harmony (kept device names)
LOGIN_MIN = 5
_LOGIN_TAIL = "[0-9]{0,2}"
#: Ordinary words that are one letter and a name (Elvis in pelvis is DICOM vocabulary
#: already, see :func:`login_lookalikes`).
_LETTER_AND_NAME_WORDS = frozenset({
    "nearly", "slight", "flight", "plight", "blight", "spinal", "stress", "strain", "sparks",
    "swells", "stroke", "splint", "scrapes", "bangles",
})


@cache
def _lookalikes_by_name() -> dict[str, tuple[str, ...]]:
    """Words of one letter and 5+ more (DICOM vocabulary and a few ordinary ones) by their
    tail: ``"elvis"`` -> ``("pelvis",)``."""
    out: dict[str, list[str]] = {}
    for w in dicom_vocabulary() | _LETTER_AND_NAME_WORDS:
        if len(w) > LOGIN_MIN and w.isascii() and w.isalpha():
            out.setdefault(w[1:], []).append(w)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def login_lookalikes(token: str) -> tuple[str, ...]:
    """The words that are one letter and ``token`` (lower case): ``pelvis`` for Elvis,
    ``strain`` for Train. They are no login name (a patient named Elvis had every PELVIS
    image withheld and "CT ABDOMEN PELVIS" cut to "CT ABDOMEN")."""
    return _lookalikes_by_name().get(token.lower(), ())


def login_shaped(token: str) -> bool:
    """Whether ``token`` is a name that may stand in a login name (:data:`LOGIN_MIN`+ ASCII
    letters)."""
    return len(token) >= LOGIN_MIN and token.isascii() and token.isalpha()


def _login_head(token: str) -> str:
    """The regex of the one letter a login name puts before ``token``, never one that
    spells a word of :func:`login_lookalikes`."""
    words = login_lookalikes(token)
    if not words:
        return "[A-Za-z]?"
    return (f"(?:(?!(?:{'|'.join(words)}){_LOGIN_TAIL}(?![A-Za-z0-9]))[A-Za-z])?")


def _word_pattern(token: str) -> str:
    """The regex of ``token`` as a whole word of :func:`fold`-ed text (a name also inside a
    login name, :data:`LOGIN_MIN`)."""
    core = _token_pattern(token)
    if login_shaped(token):
        core = _login_head(token) + core + _LOGIN_TAIL
    return r"(?<![A-Za-z0-9])" + core + r"(?![A-Za-z0-9])"


def contains_tokens(text: str, tokens: tuple[str, ...]) -> bool:
    """Whether :func:`remove_tokens` would remove something from ``text``."""
    pat = _text_regex(tokens)
    return pat is not None and pat.search(fold(text)) is not None


@lru_cache(maxsize=64)
def _ascii_substring_regex(tokens: tuple[str, ...]) -> re.Pattern[bytes] | None:
    """One case-insensitive pattern of ``tokens`` as substrings, or None when a token is
    not ASCII (its encoded forms vary by character set)."""
    if not tokens or not all(t.isascii() for t in tokens):
        return None
    return re.compile(b"|".join(re.escape(t.encode("ascii"))
                                for t in sorted(tokens, key=len, reverse=True)), re.I)


def may_contain_tokens(raw: bytes, tokens: tuple[str, ...]) -> bool:
    """False only when the ASCII bytes ``raw`` hold none of the ASCII ``tokens`` even as
    substrings (then :func:`contains_tokens` of their text is False too): a cheap test on
    undecoded values."""
    pat = _ascii_substring_regex(tokens)
    return pat is None or not raw.isascii() or pat.search(raw) is not None


def _drop_tokens(text: str, tokens: Iterable[str]) -> str:
    """``text`` with each of ``tokens`` (whole words, case-insensitive) replaced by a space,
    compared as :func:`fold` spells both: a name in full-width or decomposed characters,
    or without its accents, goes too."""
    for tok in tokens:
        if is_token(tok):
            text = _drop_folded(text, re.compile(_word_pattern(tok), re.I))
    return text


def find_folded(texts: Iterable[str], tokens: Iterable[str]) -> list[str]:
    """The ``tokens`` found as whole words (any case) in the :func:`fold` of the non-ASCII
    ``texts``: a name with a zero-width space or soft hyphen in it, another accent, mixed
    full-width letters, digits of another script (the byte search knows fixed spellings)."""
    pat = _text_regex(tuple(t for t in tokens if is_token(t)))
    if pat is None:
        return []
    by_fold = {fold(t).lower(): t for t in tokens}
    found = {m.group(0).lower() for text in texts if not text.isascii()
             for m in pat.finditer(fold(text))}
    return sorted({by_fold.get(f, f) for f in found})


#: where an ID's letters meet its digits (ZQX|4471): written there with or without a
#: separator (ZQX-4471, ZQX 4471)
_LETTERS_DIGITS = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")


def _id_parts(token: str) -> list[str]:
    """``token`` split where its letters meet its digits (``ZQX4471``: ``ZQX``, ``4471``)."""
    return _LETTERS_DIGITS.split(token)


def _token_pattern(token: str) -> str:
    """The regex of ``token`` as :func:`fold` spells it; where letters meet digits in it
    (an ID: ZQX4471), a separator may stand between them (ZQX-4471, ZQX 4471)."""
    return r"[-_ ./]?".join(re.escape(x) for x in _id_parts(fold(token)))


def _drop_patterns(text: str) -> str:
    for pat in _PATTERNS:
        text = _drop_folded(text, pat)
    return text


def _drop_folded(text: str, pattern: re.Pattern[str]) -> str:
    """``text`` with the spans where ``pattern`` matches its :func:`fold` replaced by a
    space (the characters of ``text`` they came from, with their combining marks)."""
    if text.isascii():
        return pattern.sub(" ", text)
    folded, index = _folded_with_index(text)
    spans = [(m.start(), m.end()) for m in pattern.finditer(folded) if m.end() > m.start()]
    for start, end in reversed(spans):
        first, last = index[start], index[end - 1] + 1
        while last < len(text) and not _fold_char(text[last]):  # its combining marks
            last += 1
        text = text[:first] + " " + text[last:]
    return text


def _tidy(text: str) -> str:
    return re.sub(r"\s{2,}", " ", text).strip(" ,;:-_^")


@cache
def dicom_vocabulary() -> frozenset[str]:
    """Lower-case words of DICOM attribute names and SR code meanings (pydicom's dictionaries).

    A header value that is one of these words (``PERFUSION`` in Image Type) is DICOM
    vocabulary, so a patient name part that equals it cannot be told apart from it.
    """
    from pydicom.datadict import DicomDictionary

    words: set[str] = set()
    for entry in DicomDictionary.values():
        words.update(w.lower() for w in re.findall(r"[A-Za-z]{3,}", entry[2]))
    try:
        from pydicom.sr._concepts_dict import concepts

        for scheme in concepts.values():
            for meaning in scheme:
                words.update(w.lower() for w in re.findall(r"[A-Za-z]{3,}", meaning))
    except Exception:  # noqa: BLE001 - optional extra vocabulary
        pass
    return frozenset(words)


def _whole_word(token: bytes) -> bytes:
    """``token`` as a regex that matches it as a whole word: not next to an ASCII letter or
    digit where the token itself starts or ends with one (a CJK name is a word anywhere;
    an ISO 2022 escape before it ends in a letter)."""
    head = rb"(?<![A-Za-z0-9])" if token[:1].isalnum() else b""
    tail = rb"(?![A-Za-z0-9])" if token[-1:].isalnum() else b""
    core = re.escape(token)
    if token.isascii() and login_shaped(token.decode("ascii")):
        core = _login_head(token.decode("ascii")).encode() + core + _LOGIN_TAIL.encode()
    return head + core + tail


@lru_cache(maxsize=256)
def _token_regex(tokens: tuple[bytes, ...]) -> re.Pattern[bytes]:
    alt = b"|".join(_whole_word(t) for t in sorted(tokens, key=len, reverse=True))
    return re.compile(alt, re.I)


def find_tokens(data: bytes, tokens: Iterable[str], encodings: Iterable[str] = ()) -> list[str]:
    """Return the tokens found in ``data`` as whole words, case-insensitive (ASCII letters).

    Each token is searched for in UTF-8 and in each Python codec of ``encodings`` (the
    data set's character sets, :func:`pydicom.charset.convert_encodings`).
    """
    return token_matches(data, tokens, encodings)[0]


def token_matches(data: bytes, tokens: Iterable[str], encodings: Iterable[str] = ()
                  ) -> tuple[list[str], bool]:
    """:func:`find_tokens` of ``data``, and whether a token (3+ bytes) occurs in it at all,
    whole word or not."""
    low = data.lower()  # ASCII case folding, as re.I does for bytes
    # only tokens present as substrings can match: the (slow) regex runs on those alone,
    # which finds exactly what it finds with every token, and not at all on clean data.
    # Forms under a gate (see _search_forms: the lead bytes of full-width letters, an ID's
    # longest part) are looked for only where the data holds it: few searches, not one each
    toks: dict[bytes, str] = {}
    for gate, forms in _search_forms(tuple(tokens), tuple(encodings)):
        if not gate or _holds(low, gate):
            toks.update((k, v) for k, v in forms if k in low)
    if not toks:
        return [], False
    found = {m.group(0).lower() for m in _token_regex(tuple(sorted(toks))).finditer(data)}
    return sorted({toks[k] if k in toks else _inside(k, toks) for k in found}), True


def _inside(word: bytes, toks: dict[bytes, str]) -> str:
    """The token of the longest form in ``word`` (a name inside a login name)."""
    return toks[max((f for f in toks if f in word), key=len)]


def _holds(data: bytes, gate: bytes) -> bool:
    """``gate in data``; a gate that is not ASCII (a lead byte and one more) is looked for
    by its first byte (a fast memchr), which binary data holds only here and there."""
    if gate.isascii():
        return gate in data
    first = gate[:1]
    i = data.find(first)
    while i >= 0:
        if data.startswith(gate, i):
            return True
        i = data.find(first, i + 1)
    return False


@lru_cache(maxsize=256)
def _search_forms(tokens: tuple[str, ...], encodings: tuple[str, ...]
                  ) -> tuple[tuple[bytes, tuple[tuple[bytes, str], ...]], ...]:
    """The lowercased encoded forms (3+ bytes) of ``tokens`` with their token (the first
    token of a form wins), for :func:`token_matches`, grouped by a gate: ``b""`` for ASCII
    forms, else the form's first two bytes; an ID written with a separator where its
    letters meet its digits (ZQX-4471 for ZQX4471) under the gate of its longest part (a
    series gives the same tokens each time)."""
    toks: dict[bytes, str] = {}
    gates: dict[bytes, bytes] = {}
    for t in tokens:
        for form in _encoded_forms(t, encodings):
            toks.setdefault(form.lower(), t)
        parts = _id_parts(t) if t.isascii() else []
        if len(parts) > 1 and len(longest := max(parts, key=len)) >= 3:
            for sep in "-_ ./":
                form = sep.join(parts).encode("ascii").lower()
                toks.setdefault(form, t)
                gates[form] = longest.encode("ascii").lower()
    groups: dict[bytes, list[tuple[bytes, str]]] = {}
    for k, v in toks.items():
        if len(k) >= 3:
            gate = gates.get(k, b"" if k.isascii() else k[:2])
            groups.setdefault(gate, []).append((k, v))
    return tuple((gate, tuple(forms)) for gate, forms in groups.items())


def case_forms(token: str) -> set[str]:
    """``token`` as written and, when it is not ASCII, in upper, lower, capitalised and
    title case: searches that fold the case of bytes fold ASCII letters only (MÜLLER for
    Müller; Jürgen Größmann for a name in full)."""
    if token.isascii():
        return {token}
    return {token, token.upper(), token.lower(), token.capitalize(), token.title()}


def full_width(text: str) -> str:
    """``text`` with its printable ASCII characters in their full-width forms (``ＡＢ１``)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def spellings(token: str) -> set[str]:
    """Spellings of ``token`` that a byte search looks for besides ASCII case: the
    :func:`case_forms`, each also decomposed (NFD), :func:`fold`-ed (``Muller`` for
    ``Müller``) and full-width."""
    forms = case_forms(token)
    if not token.isascii():
        # (each case folded: the full-width form of "OSTERGARD" comes from ØSTERGÅRD's)
        forms |= {unicodedata.normalize("NFD", f) for f in forms} | {fold(f) for f in forms}
    forms |= {full_width(f) for f in {*forms, token.upper(), token.lower()}}
    return forms


@lru_cache(maxsize=4096)
def _encoded_forms(token: str, encodings: tuple[str, ...]) -> tuple[bytes, ...]:
    """:func:`spellings` of ``token`` in UTF-8 and in ``encodings``."""
    forms: set[bytes] = set()
    utf16 = [c for c in encodings if c in ("utf-16-le", "utf-16-be")]
    for variant in spellings(token):
        if variant.isascii():
            forms.add(variant.encode("ascii"))
            forms.update(variant.encode(c) for c in utf16)  # (searched in binary data)
            continue
        for codec in ("utf-8", *encodings):
            try:
                forms.add(variant.encode(codec))
            except (UnicodeError, LookupError):
                continue
    return tuple(forms)
