"""Locations of the project's declarative data (``configs/``)."""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@cache
def configs_dir() -> Path:
    """Return the ``configs/`` folder (``PIXELDEID_CONFIGS`` overrides)."""
    env = os.environ.get("PIXELDEID_CONFIGS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "configs", here / "_configs"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(
        "pixeldeid configs/ folder not found; install from a source checkout "
        "(pip install -e .) or set PIXELDEID_CONFIGS"
    )


class _DuplicateKey(ValueError):
    """A mapping of a YAML file names a key twice (YAML would keep the last silently)."""


@cache
def _unique_keys_loader():
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, (str, int, float, bool, type(None))):
                    continue  # (a complex key: the schema refuses it)
                if key in seen:
                    raise _DuplicateKey(f"key {key!r} given twice (lines {seen[key]} and "
                                        f"{key_node.start_mark.line + 1}): which one is meant?")
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_yaml(path: str | os.PathLike, what: str) -> object:
    """Parse a declarative YAML file (``what``: "profile", "job file"...), never executing it.

    Raises
    ------
    ProfileError
        One line naming the file: unreadable, or not valid YAML (with the line).
    """
    import yaml

    from .errors import ProfileError

    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_unique_keys_loader())
    except _DuplicateKey as exc:
        raise ProfileError(f"{what}: {exc}", str(path)) from None
    except OSError as exc:
        raise ProfileError(f"cannot read {what}: {exc.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise ProfileError(f"cannot read {what}: not UTF-8 text", str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ProfileError(f"{what} is not valid YAML{at}: {problem}", str(path)) from None


def read_csv(path: str | os.PathLike, what: str) -> list[list[str]]:
    """The rows of a UTF-8 CSV file (``what``: "map"...), a byte order mark allowed.

    Raises
    ------
    ProfileError
        One line naming the file: unreadable, not UTF-8, or not valid CSV.
    """
    import csv

    from .errors import ProfileError

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            # (skipinitialspace: `a, "b"` is b, not "b" with its quotes)
            return list(csv.reader(fh, strict=True, skipinitialspace=True))
    except OSError as exc:
        raise ProfileError(f"cannot read {what}: {exc.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise ProfileError(f"cannot read {what}: not UTF-8 text; save it as UTF-8 CSV",
                           str(path)) from None
    except csv.Error as exc:
        raise ProfileError(f"{what} is not valid CSV: {exc}", str(path)) from None


def each_path_once(items: Iterable[T],
                   path: Callable[[T], str | os.PathLike] = os.fspath) -> Iterator[T]:
    """Yield ``items`` whose ``path(item)`` did not come before: sources that name a file
    twice (a folder and a file in it) give one input. The path is made absolute, links are
    not resolved: two links to one file stay two inputs (annexed datasets link files of
    equal content to one object)."""
    seen: set[str] = set()
    for item in items:
        key = os.path.abspath(path(item))
        if key not in seen:
            seen.add(key)
            yield item


#: control characters shown by their escapes (a file name may hold any of them)
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(path: object) -> str:
    """A path (or any text) for one line of a terminal or a report file.

    Undecodable bytes of a file name are shown as ``\\xNN``, control characters (a
    newline, carriage return, escape sequences...) and line separators as their escapes,
    the way ``repr`` shows them (``\\n``, ``\\x1b``, ``\\u2028``): a file name can
    never break a one-line error or a ``source:`` line in two, nor drive the terminal.

    Examples
    --------
    >>> printable("bad\\nname.nii")
    'bad\\\\nname.nii'
    """
    text = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if not any(_is_control(c) for c in text):
        return text
    return "".join(_escape(c) if _is_control(c) else c for c in text)


def _is_control(c: str) -> bool:
    return unicodedata.category(c) in ("Cc", "Zl", "Zp")


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def make_private(path: str | os.PathLike) -> None:
    """Mode 0600 for a SQLite file and its ``-wal``/``-shm`` files where they exist (the
    run ledger holds names and IDs in clear text, the pseudonym map keyed hashes that
    confirm an identity to whoever has the key), like the other private files."""
    path = Path(path)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            os.chmod(p, 0o600)
        except FileNotFoundError:
            continue
