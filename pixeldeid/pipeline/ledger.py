"""The run ledger ``OUT/.pixeldeid/run.sqlite``: the plan, each item's result, identity.

The parent process is the only writer (workers return their results); every result is
committed as it arrives, so a run killed at any moment loses at most the items in
flight, which the next run does again (their outputs are written atomically, and a
redone item replaces its own earlier output). Readers (``pixeldeid verify``/``report``)
open it read-only. The schema is shared with them (see the module constants).

Private: the identity table holds the original names and IDs; the folder
``OUT/.pixeldeid`` is never released.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from ..batch import open_state_db
from ..paths import make_private
from .plan import Item

logger = logging.getLogger(__name__)

__all__ = ["RunLedger", "LEDGER_NAME", "SCHEMA", "signature", "path_to_db", "path_from_db",
           "make_private"]

LEDGER_NAME = "run.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS items(
  id INTEGER PRIMARY KEY,
  src TEXT NOT NULL,
  members TEXT,
  kind TEXT NOT NULL,
  modality TEXT,
  patient TEXT,
  study TEXT, series TEXT,
  stages TEXT NOT NULL,
  status TEXT NOT NULL,
  output TEXT,
  reason TEXT,
  details TEXT,
  started REAL, finished REAL,
  sig TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS items_src ON items(kind, src);
CREATE TABLE IF NOT EXISTS identity(patient TEXT, kind TEXT, value TEXT,
                                    UNIQUE(patient, kind, value));
CREATE TABLE IF NOT EXISTS artifacts(item INTEGER, stage TEXT, kind TEXT, path TEXT,
                                     caption TEXT);
"""


def signature(paths: Iterable[str]) -> str:
    """Sizes, modification and status change times and inodes of an item's source files
    ('' when one is unreadable): a rewrite that keeps size and modification time shows."""
    parts = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            return ""
        parts.append(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}")
    return ";".join(parts)


def path_to_db(path: str) -> str | bytes:
    """A source path as stored in the ledger: its text, or its bytes (a BLOB) when the file
    name is not valid UTF-8 (SQLite text cannot hold the surrogate escapes of such a name)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def path_from_db(value: str | bytes | None) -> str | None:
    """The source path of a ledger value written by :func:`path_to_db`."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


class RunLedger:
    """Open (or create) the run ledger of an output folder."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._con = open_state_db(path, self._open, "run ledger")  # damaged: planned again

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        # owner-only before SQLite writes a byte (it gives its WAL files the database's mode)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        make_private(path)  # (a ledger of an earlier version: world-readable)
        con = sqlite3.connect(path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.executescript(SCHEMA)
        except sqlite3.DatabaseError:
            con.close()
            raise
        make_private(path)
        return con

    # -- meta ------------------------------------------------------------------------
    def set_meta(self, **values: object) -> None:
        for k, v in values.items():
            text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, text))
        self._con.commit()

    def meta(self) -> dict[str, str]:
        return dict(self._con.execute("SELECT key, value FROM meta"))

    # -- items -----------------------------------------------------------------------
    def merge_plan(self, items: list[Item], retry_quarantined: bool = False) -> list[Item]:
        """Give every planned item its ledger id; return the items that need action.

        An item finished before (done, quarantined or skipped with the same source
        signature, its output still present) keeps its status and is not returned. A
        changed source or a missing output makes it planned again, and so does an earlier
        quarantine when ``retry_quarantined`` (e.g. after installing a missing OCR engine).
        """
        todo: list[Item] = []
        con = self._con
        rows = {(r[1], path_from_db(r[2])): r for r in con.execute(
            "SELECT id, kind, src, status, output, sig, reason FROM items")}
        out_dir = self.path.parent.parent
        for it in items:
            sig = signature(it.members or [it.src])
            row = rows.get((it.kind, it.src))
            members = json.dumps(it.members) if it.members else None
            if row is None:
                cur = con.execute(
                    "INSERT INTO items(src, members, kind, modality, patient, study, series, "
                    "stages, status, reason, sig) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (path_to_db(it.src), members, it.kind, it.modality, it.patient, it.study, it.series,
                     json.dumps(it.stages), it.status, it.reason or None, sig))
                it.id = cur.lastrowid
                todo.append(it)
                continue
            it.id, status, output = row[0], row[3], row[4]
            final = ("done", "skipped") if retry_quarantined else ("done", "quarantined", "skipped")
            finished = status in final and row[5] == sig and (
                status != "done" or (output and (out_dir / output).exists()))
            if finished:
                it.status, it.reason = status, row[6] or it.reason
                continue
            con.execute("UPDATE items SET members=?, modality=?, patient=?, study=?, series=?, "
                        "stages=?, status=?, output=NULL, reason=?, details=NULL, started=NULL, "
                        "finished=NULL, sig=? WHERE id=?",
                        (members, it.modality, it.patient, it.study, it.series,
                         json.dumps(it.stages), it.status, it.reason or None, sig, it.id))
            if it.status == "planned" and status == "done" and output:
                it.stale = output  # the runner withdraws the earlier output
            todo.append(it)
        con.commit()
        return todo

    def output_shared(self, output: str, item_id: int) -> bool:
        """Whether another finished item also has ``output`` (an exact duplicate input)."""
        return self._con.execute("SELECT 1 FROM items WHERE output=? AND id<>? AND "
                                 "status='done' LIMIT 1", (output, item_id)).fetchone() is not None

    def record(self, item_id: int, status: str, output: str | None = None, reason: str = "",
               details: dict | None = None, started: float | None = None,
               finished: float | None = None) -> None:
        """Store one item's result and commit."""
        self._con.execute("UPDATE items SET status=?, output=?, reason=?, details=?, started=?, "
                          "finished=? WHERE id=?",
                          (status, output, reason or None,
                           json.dumps(details, sort_keys=True) if details else None,
                           started, finished if finished is not None else time.time(), item_id))
        self._con.commit()

    def items(self) -> list[dict]:
        cur = self._con.execute("SELECT * FROM items ORDER BY id")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur]
        for row in rows:
            row["src"] = path_from_db(row["src"])
        return rows

    def counts(self) -> dict[str, int]:
        return dict(self._con.execute("SELECT status, COUNT(*) FROM items GROUP BY status"))

    # -- identity and artifacts ------------------------------------------------------------
    def add_identity(self, patient: str, pairs: Iterable[tuple[str, str]]) -> None:
        self._con.executemany("INSERT OR IGNORE INTO identity VALUES (?, ?, ?)",
                              [(patient, k, v) for k, v in pairs if v])

    def set_artifacts(self, item_id: int, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """Replace the QC artifacts of an item: (stage, kind, path relative to OUT, caption)."""
        self._con.execute("DELETE FROM artifacts WHERE item=?", (item_id,))
        self._con.executemany("INSERT INTO artifacts VALUES (?, ?, ?, ?, ?)",
                              [(item_id, *r) for r in rows])

    def commit(self) -> None:
        self._con.commit()

    def close(self) -> None:
        self._con.commit()
        self._con.close()
