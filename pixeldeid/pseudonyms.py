"""Patient pseudonyms: supplied subject maps, or PREFIX_001, PREFIX_002... persisted in SQLite.

The SQLite map stores keyed hashes of the original Patient IDs, never the IDs
themselves, so the map file carries no identity; with the project key the data holder
can still confirm who is who. Numbers are allocated in order of first appearance under
an immediate transaction, so parallel workers and later batches agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from .dsvalues import supplied_value_problem
from .errors import DeidError, ProfileError
from .paths import read_csv

_UID_RE = re.compile(r"^[0-2](\.[0-9]+)+$")
_UID_STRICT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")  # PS3.5 9.1


class SubjectMap(dict[str, str]):
    """Original Patient ID -> supplied pseudonym, remembering where each pair was given.

    Parameters
    ----------
    pairs : mapping
        The original -> pseudonym pairs.
    source : str, optional
        The CSV file they were read from.
    lines : mapping, optional
        Original -> the line of ``source`` that gave its pseudonym (errors name the line,
        never the original ID).
    """

    def __init__(self, pairs: Mapping[str, str] = (), source: str | None = None,
                 lines: Mapping[str, int] | None = None) -> None:
        super().__init__(pairs)
        self.source = source
        self.lines = dict(lines or {})


def load_map_csv(path: str | os.PathLike) -> tuple[SubjectMap, dict[str, str]]:
    """Read an ``id_old,id_new`` CSV; return (patient ID map, UID map).

    Rows whose old value looks like a UID (digits and dots) go to the UID map, the others
    to the patient ID map (the MIDI-B benchmark's format). The file must be UTF-8 (a
    byte order mark is allowed). Refused, naming the line: an empty value, an old value
    given twice with different new values, a new UID that is not a valid UID or that two
    old UIDs share, and a new patient ID that cannot be written as a Patient ID or that
    two old patient IDs share.
    """
    ids: dict[str, str] = {}
    uids: dict[str, str] = {}
    uid_line: dict[str, int] = {}  # new UID -> line that gave it
    id_line: dict[str, int] = {}  # new patient ID -> line that gave it
    lines: dict[str, int] = {}  # old value -> its line
    p = str(path)
    rows = read_csv(path, "map")
    header = [c.strip() for c in rows[0]] if rows else []
    if not {"id_old", "id_new"} <= set(header):
        raise ProfileError("expected a CSV header with columns id_old,id_new", p)
    i_old, i_new = header.index("id_old"), header.index("id_new")
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # a blank line
        old = row[i_old].strip() if i_old < len(row) else ""
        new = row[i_new].strip() if i_new < len(row) else ""
        if not old or not new:
            raise ProfileError(f"line {n}: empty id_old or id_new", p)
        table = uids if _UID_RE.match(old) else ids  # (a UID's first arc is 0, 1 or 2)
        if table is uids:
            if not _UID_STRICT.match(new) or len(new) > 64:
                raise ProfileError(f"line {n}: {new!r} is not a valid UID", p)
            if uid_line.setdefault(new, n) != n and uids.get(old) != new:
                raise ProfileError(f"line {n}: new UID {new!r} is also given on line "
                                   f"{uid_line[new]} to another UID", p)
        elif (why := supplied_value_problem(new)) is not None:
            raise ProfileError(f"line {n}: {why}", p)
        elif id_line.setdefault(new, n) != n and ids.get(old) != new:
            # (the pseudonym map holds one patient per pseudonym: a second one would get
            # a new pseudonym in the next batch without the map)
            raise ProfileError(f"line {n}: new patient ID {new!r} is also given on line "
                               f"{id_line[new]} to another patient", p)
        if table.get(old, new) != new:
            raise ProfileError(f"line {n}: id_old on line {lines[old]} is given again "
                               "with another id_new", p)
        table[old] = new
        lines.setdefault(old, n)
    for old, new in ids.items():
        if new != old and new in ids:  # (a chained or rotated map)
            raise ProfileError(f"line {id_line[new]}: new patient ID {new!r} is the original "
                               f"patient ID of line {lines[new]}: that patient's real ID "
                               "would be released as another patient's pseudonym", p)
    return SubjectMap(ids, p, {o: lines[o] for o in ids}), uids


def check_prefix(prefix: str) -> None:
    """Raise :class:`ProfileError` unless ``prefix`` can start a pseudonym (PREFIX_001)."""
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9-]{0,11}$", prefix):
        raise ProfileError(f"pseudonym prefix {prefix!r} must be 1-12 letters, digits or '-'")


class PseudonymMap:
    """Assign and remember pseudonyms for original Patient IDs.

    Parameters
    ----------
    db_path : path or None
        The SQLite file (created if missing); None keeps the map in memory.
    key : bytes
        The project key used to hash the original IDs before storing them.
    prefix : str
        Pseudonyms are ``{prefix}_{n:03d}``.
    supplied : mapping, optional
        Exact original ID -> pseudonym pairs (a subject map) that take precedence.
    """

    def __init__(self, db_path: str | os.PathLike | None, key: bytes, prefix: str = "SUBJ",
                 supplied: Mapping[str, str] | None = None) -> None:
        check_prefix(prefix)
        self.prefix = prefix
        self._key = key
        self._supplied = dict(supplied or {})
        self._supplied_source = getattr(supplied, "source", None)
        self._supplied_lines: dict[str, int] = dict(getattr(supplied, "lines", None) or {})
        self._supplied_values = frozenset(self._supplied.values())
        self._cache: dict[str, str] = {}
        self._db_path = str(db_path) if db_path else ":memory:"
        self._con = self._open(db_path)
        self._check_supplied()

    def _open(self, db_path: str | os.PathLike | None) -> sqlite3.Connection:
        """Connect to the SQLite map (made when missing); a usage error when it cannot be."""
        try:
            if db_path:
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
                # a new map is owner-only before SQLite writes a byte (its WAL files take
                # that mode); an existing one keeps its mode (a team may share it)
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(db_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            con = sqlite3.connect(self._db_path, timeout=60, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL" if db_path else "PRAGMA journal_mode=MEMORY")
            con.execute("CREATE TABLE IF NOT EXISTS subjects (hkey TEXT PRIMARY KEY, "
                        "pseudonym TEXT UNIQUE, seq INTEGER, prefix TEXT)")
            self._check_key(con)
            return con
        except OSError as exc:
            raise ProfileError(f"cannot create the pseudonym map: {exc.strerror}",
                               self._db_path) from None
        except sqlite3.DatabaseError as exc:
            if db_path and Path(db_path).is_file() and Path(db_path).stat().st_size:
                raise ProfileError(f"pseudonym map is damaged ({exc}); restore it from a "
                                   "backup: it numbers the patients", self._db_path) from None
            raise ProfileError(f"cannot create the pseudonym map: {exc}",
                               self._db_path) from None

    def _check_key(self, con: sqlite3.Connection) -> None:
        """Record which project key the map hashes the original IDs with (a keyed check
        value, not the key); refuse another key: every patient would get a new pseudonym
        (a map shared by output folders made with different keys)."""
        check = hmac.new(self._key, b"pseudonym-map-key-check", hashlib.sha256).hexdigest()[:32]
        con.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT OR IGNORE INTO meta VALUES ('key-check', ?)", (check,))
        (stored,) = con.execute("SELECT value FROM meta WHERE name='key-check'").fetchone()
        if stored != check:
            con.close()
            raise ProfileError("pseudonym map was made with another project key (its patients "
                               "would get new pseudonyms): give the --key-file it was made "
                               "with, or another --subject-db", self._db_path)

    def _check_supplied(self) -> None:
        """Refuse a supplied pseudonym that the SQLite map already gave another patient, or
        one for a patient who already has another pseudonym there (one patient, and each of
        their studies, would be released under two Patient IDs)."""
        if not self._supplied:
            return
        owners: dict[str, list[str]] = {}  # pseudonym -> the originals the map gives it
        by_hkey: dict[str, str] = {}  # hashed original -> the original
        for original, pseudo in self._supplied.items():
            owners.setdefault(pseudo, []).append(original)
            by_hkey[self._hkey(original.strip())] = original
        for hkey, pseudo in self._con.execute("SELECT hkey, pseudonym FROM subjects"):
            original = by_hkey.get(hkey)
            if original is not None and self._supplied[original] != pseudo:
                n = self._supplied_lines.get(original)
                raise ProfileError(
                    f"{f'line {n}: ' if n else ''}the subject map gives pseudonym "
                    f"{self._supplied[original]!r} to a patient who already has pseudonym "
                    f"{pseudo!r} in the pseudonym map {self._db_path}; give that patient "
                    f"{pseudo!r}, or use another output folder",
                    self._supplied_source or self._db_path)
            if pseudo in owners and hkey not in {self._hkey(o.strip()) for o in owners[pseudo]}:
                raise ProfileError(f"the subject map gives pseudonym {pseudo!r}, which this "
                                   "pseudonym map already gave another patient; choose "
                                   "another pseudonym or another --subject-db", self._db_path)

    def _hkey(self, original: str) -> str:
        return hmac.new(self._key, b"patient\x00" + original.encode("utf-8", "replace"),
                        hashlib.sha256).hexdigest()

    def chosen_words(self, pseudonym: str) -> set[str]:
        """The lower-case words of ``pseudonym`` that a person chose: all of a supplied one,
        the prefix's of a numbered one (``PREFIX_007``: its number is a count, and may
        equal a patient's ID ``007`` by chance)."""
        m = re.fullmatch(r"(.+)_\d+", pseudonym)
        chosen = pseudonym if pseudonym in self._supplied_values or not m else m.group(1)
        words = {w.lower() for w in re.findall(r"[^\W_]+", chosen)}
        return words | ({chosen.lower()} if chosen == pseudonym else set())

    def __call__(self, original: str) -> str:
        """Return the pseudonym for ``original`` (allocating the next number if new).

        A supplied pseudonym is recorded in the SQLite map as well, so that no later
        batch, with or without the subject map, allocates it to another patient.
        """
        original = original.strip()
        hit = self._cache.get(original)
        if hit is not None:
            return hit
        if original in self._supplied_values and self._supplied.get(original) is None:
            lines = [self._supplied_lines.get(o) for o, v in self._supplied.items()
                     if v == original]
            where = f" (line {lines[0]})" if lines and lines[0] else ""
            raise DeidError("this patient's ID is the pseudonym the subject map gives another "
                            f"patient{where}: that patient's outputs would carry this "
                            "patient's real ID; give that patient another pseudonym")
        hkey = self._hkey(original)
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            pseudo = self._supplied.get(original)
            if pseudo is not None:
                con.execute("INSERT OR IGNORE INTO subjects VALUES (?, ?, NULL, ?)",
                            (hkey, pseudo, self.prefix))
            elif (row := con.execute("SELECT pseudonym FROM subjects WHERE hkey=?",
                                     (hkey,)).fetchone()) is not None:
                pseudo = row[0]
            else:
                seq = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM subjects WHERE prefix=?",
                                  (self.prefix,)).fetchone()[0]
                while self._taken(pseudo := f"{self.prefix}_{seq:0{max(3, len(str(seq)))}d}"):
                    seq += 1
                con.execute("INSERT INTO subjects VALUES (?, ?, ?, ?)",
                            (hkey, pseudo, seq, self.prefix))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._cache[original] = pseudo
        return pseudo

    def _taken(self, pseudo: str) -> bool:
        """Whether ``pseudo`` is a supplied pseudonym or already in the SQLite map."""
        return pseudo in self._supplied_values or self._con.execute(
            "SELECT 1 FROM subjects WHERE pseudonym=?", (pseudo,)).fetchone() is not None

    @property
    def assigned(self) -> dict[str, str]:
        """Original -> pseudonym pairs seen in this process (for ``--export-map``)."""
        return dict(self._cache)

    def close(self) -> None:
        self._con.close()
