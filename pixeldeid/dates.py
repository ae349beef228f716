"""Date and time shifting for the Retain Longitudinal Temporal Information with Modified Dates option.

Every DA, DT and TM value of one patient is moved by the same offset (whole days plus
seconds), so intervals between any two timestamps of that patient survive. A Date and
its companion Time (``StudyDate`` + ``StudyTime``, ...) are shifted as one timestamp, so
a time that crosses midnight moves the date too. Times without a date move by the
seconds part modulo 24 h, which keeps their interval to other times of the day (e.g. PET
Radiopharmaceutical Start Time against Series Time).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
from dataclasses import dataclass

from .errors import DeidError, shape_of

#: Offsets are drawn from this range of days (into the past), seconds from [0, 86400).
MIN_SHIFT_DAYS = 365
MAX_SHIFT_DAYS = 3650
#: A fixed offset the user gives may move dates by at most this many days either way.
MAX_FIXED_SHIFT_DAYS = 73050

_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_TM_COLON = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?(?:\.(\d{1,6}))?$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


@dataclass(frozen=True)
class DateOffset:
    """A shift of ``days`` days plus ``seconds`` seconds (seconds in [0, 86400))."""

    days: int
    seconds: int = 0

    @property
    def delta(self) -> _dt.timedelta:
        return _dt.timedelta(days=self.days, seconds=self.seconds)

    def __str__(self) -> str:
        return f"{self.days:+d}d{self.seconds:+d}s"


def offset_for(key: bytes, patient_id: str, *, days: int | None = None,
               seconds: int | None = None) -> DateOffset:
    """Derive the per-patient offset from the project key (or use the supplied parts).

    The offset is a keyed hash of the original Patient ID, so the same patient gets the
    same shift on any machine and in any later run with the same key.
    """
    digest = hmac.new(key, b"date-offset\x00" + patient_id.encode("utf-8", "replace"),
                      hashlib.sha256).digest()
    n = int.from_bytes(digest[:8], "big")
    if days is None:
        days = -(MIN_SHIFT_DAYS + n % (MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1))
    if seconds is None:
        seconds = int.from_bytes(digest[8:12], "big") % 86400
    return DateOffset(int(days), int(seconds) % 86400)


def _parse_da(value: str) -> _dt.date:
    v = value.strip()
    if len(v) == 10 and v[4] == "." and v[7] == ".":  # ACR-NEMA YYYY.MM.DD
        v = v.replace(".", "")
    if len(v) != 8 or not v.isdigit():
        raise DeidError(f"invalid DA value of the form {shape_of(value)}")
    try:
        return _dt.date(int(v[:4]), int(v[4:6]), int(v[6:8]))
    except ValueError as exc:
        raise DeidError(f"invalid DA value of the form {shape_of(value)}: {exc}") from None


def _parse_tm(value: str) -> tuple[int, str | None, int]:
    """Return (seconds since midnight, fraction digits, number of components)."""
    v = value.strip()
    m = _TM.match(v) or _TM_COLON.match(v)
    if not m:
        raise DeidError(f"invalid TM value of the form {shape_of(value)}")
    hh, mm, ss, frac = m.groups()
    comps = 1 + (mm is not None) + (ss is not None)
    h, mi, s = int(hh), int(mm or 0), int(ss or 0)
    if h > 23 or mi > 59 or s > 60:
        raise DeidError(f"invalid TM value of the form {shape_of(value)}")
    return h * 3600 + mi * 60 + min(s, 59), frac, comps


def _format_tm(secs: int, frac: str | None, comps: int) -> str:
    h, rem = divmod(secs, 3600)
    mi, s = divmod(rem, 60)
    out = f"{h:02d}"
    if comps >= 2:
        out += f"{mi:02d}"
    if comps >= 3:
        out += f"{s:02d}"
        if frac is not None:
            out += "." + frac
    return out


def _moved(start, delta: _dt.timedelta, value: str):
    """``start + delta``; DeidError when it leaves the years 1 to 9999."""
    try:
        return start + delta
    except OverflowError:
        raise DeidError(f"date of the form {shape_of(value)} shifted out of the years "
                        f"0001-9999") from None


def _digits(moment, components: int) -> str:
    """The first ``components`` of YYYY MM DD HH MM SS of ``moment``, the year zero-padded
    (``strftime('%Y')`` writes year 998 as ``998`` on glibc: not a DA)."""
    parts = [f"{moment.year:04d}", f"{moment.month:02d}", f"{moment.day:02d}"]
    if components > 3:
        parts += [f"{moment.hour:02d}", f"{moment.minute:02d}", f"{moment.second:02d}"]
    return "".join(parts[:components])


def shift_date(value: str, off: DateOffset, carry_days: int = 0) -> str:
    """Shift a DA value (or a DA range ``A-B``) by the offset's days (+ carry)."""
    if "-" in value.strip():
        parts = value.strip().split("-")
        if len(parts) != 2:
            raise DeidError(f"invalid DA range of the form {shape_of(value)}")
        return "-".join(shift_date(p, off, carry_days) if p else "" for p in parts)
    d = _moved(_parse_da(value), _dt.timedelta(days=off.days + carry_days), value)
    return _digits(d, 3)


def shift_time(value: str, off: DateOffset) -> tuple[str, int]:
    """Shift a TM value by the offset's seconds; return (new value, days carried)."""
    if "-" in value.strip():
        parts = value.strip().split("-")
        if len(parts) != 2:
            raise DeidError(f"invalid TM range of the form {shape_of(value)}")
        return "-".join(shift_time(p, off)[0] if p else "" for p in parts), 0
    secs, frac, comps = _parse_tm(value)
    carry, new = divmod(secs + off.seconds, 86400)
    return _format_tm(new, frac, comps), carry


def shift_pair(date: str, time: str, off: DateOffset) -> tuple[str, str]:
    """Shift a Date and its companion Time as one timestamp."""
    new_time, carry = shift_time(time, off)
    return shift_date(date, off, carry), new_time


def shift_datetime(value: str, off: DateOffset) -> str:
    """Shift a DT value by the whole offset, keeping its precision and UTC offset suffix."""
    v = value.strip()
    m = _DT.match(v)
    if m and m.group(8) and not _utc_offset(m.group(8)):
        m = None  # "2017-2018" is a range, not 2017 at UTC-20:18
    if "-" in v[1:] and not m:
        # a range A-B (a UTC offset suffix also contains '-', so only when it does not parse)
        a, _, b = v.partition("-")
        return "-".join(shift_datetime(p, off) if p else "" for p in (a, b))
    if not m:
        raise DeidError(f"invalid DT value of the form {shape_of(value)}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        base = _dt.datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0),
                            min(int(s or 0), 59))
    except ValueError as exc:
        raise DeidError(f"invalid DT value of the form {shape_of(value)}: {exc}") from None
    precision = sum(x is not None for x in (mo, d, h, mi, s))
    delta = off.delta if precision >= 3 else _dt.timedelta(days=off.days)
    out = _digits(_moved(base, delta, value), precision + 1)
    if frac is not None and s is not None:
        out += "." + frac
    return out + (tz or "")


def _utc_offset(suffix: str) -> bool:
    """Whether ``&ZZXX`` is a UTC offset PS3.5 allows (-1200 to +1400)."""
    minutes = int(suffix[1:3]) * 60 + int(suffix[3:5])
    return int(suffix[3:5]) < 60 and minutes <= (720 if suffix[0] == "-" else 840)


#: English month abbreviations, as a date in free text writes them (23-May-1925)
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                "Dec")


def written_forms(value: str) -> list[str]:
    """A date (``YYYYMMDD`` or ``YYYY-MM-DD``) as free text writes it; [] for another value.

    - ``YYYYMMDD``, and its 4-digit year separated by ``.``, ``/``, ``-`` or ``_`` in the
      orders day-month-year (11.03.1947), month-day-year (03/11/1947) and year-month-day
      (1947-03-11, 1947_03_11 in a file name);
    - the day (also without its zero) and the month's abbreviation and year, together
      (11Mar1947) and between slashes (11/Mar/1947). The residual search and the text
      cleaning find the first also with ``-``, ``_``, ``.``, ``/`` or a space between its
      parts (as an ID's letters and digits, :func:`pixeldeid.textclean._token_pattern`);
      ``pixeldeid verify`` finds each as written.

    Forms with a 2-digit year are left out: too many other numbers look like them. The
    forms are few: each is searched for in every file.
    """
    m = re.fullmatch(r"(\d{4})-?(\d\d)-?(\d\d)", value.strip())
    if not m:
        return []
    y, mo, d = m.groups()
    forms = [f"{y}{mo}{d}"]
    for sep in "./-_":
        for form in (f"{d}{sep}{mo}{sep}{y}", f"{mo}{sep}{d}{sep}{y}", f"{y}{sep}{mo}{sep}{d}"):
            if form not in forms:
                forms.append(form)
    if 1 <= int(mo) <= 12:
        name = _MONTH_NAMES[int(mo) - 1]
        for day in dict.fromkeys((d, d.lstrip("0"))):  # 05 and 5, once when alike
            forms += [f"{day}{name}{y}", f"{day}/{name}/{y}"]
    return forms


def age_string(birth: str, at: str) -> str | None:
    """Return the DICOM AS age (``NNNY``/``NNNM``/``NNND``) between two DA values, or None."""
    try:
        b, a = _parse_da(birth), _parse_da(at)
    except DeidError:
        return None
    if a < b:
        return None
    days = (a - b).days
    years = a.year - b.year - ((a.month, a.day) < (b.month, b.day))
    if years >= 2:
        return f"{min(years, 999):03d}Y"
    months = (a.year - b.year) * 12 + a.month - b.month - (a.day < b.day)
    if months >= 1:
        return f"{months:03d}M"
    return f"{days:03d}D"


_AS = re.compile(r"^(\d{1,3})\s*([DWMY])$", re.I)


def clip_age(value: str, limit_years: int = 89) -> str:
    """Clip an AS value above ``limit_years`` to ``090Y`` (HIPAA: ages over 89).

    Malformed ages written without the zero padding (``95Y``) are read and padded; an
    age that cannot be read at all is emptied (it could hide an age over the limit).
    """
    m = _AS.match(value.strip())
    if not m:
        return ""
    n, unit = int(m.group(1)), m.group(2).upper()
    if unit == "Y" and n > limit_years:
        return f"{limit_years + 1:03d}Y"
    return f"{n:03d}{unit}"
