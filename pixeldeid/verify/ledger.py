"""Read-only access to the run ledger ``OUT/.pixeldeid/run.sqlite`` written by ``pixeldeid run``.

The ledger is optional: outputs of plain ``pixeldeid dicom`` / ``deface`` / ``wsi`` have none,
and every reader here answers empty when it (or one of its tables) is missing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ..batch import STATE_DIRNAME

logger = logging.getLogger(__name__)

RUN_LEDGER_NAME = "run.sqlite"


@dataclass
class LedgerItem:
    """One row of the ``items`` table (JSON columns decoded)."""

    id: int
    src: str
    kind: str
    modality: str = ""
    patient: str = ""
    stages: list[str] = field(default_factory=list)
    status: str = ""
    output: str | None = None
    reason: str = ""
    details: dict = field(default_factory=dict)
    members: list[str] = field(default_factory=list)


@dataclass
class Artifact:
    """One QC image of the ``artifacts`` table (``path`` relative to OUT)."""

    item: int
    stage: str
    kind: str
    path: str
    caption: str = ""


def _path(value: str | bytes | None) -> str:
    """A source path of the ledger: text, or the bytes of a name that is not UTF-8."""
    return os.fsdecode(value) if isinstance(value, bytes) else value or ""


def _json(text: str | None, default):
    if not text:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


class RunLedger:
    """The run ledger of an output folder, opened read-only.

    Parameters
    ----------
    out : path
        The output folder; the ledger is ``out/.pixeldeid/run.sqlite``.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = self.out / STATE_DIRNAME / RUN_LEDGER_NAME
        self._con: sqlite3.Connection | None = None
        if self.path.is_file():
            try:
                self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
                self._con.execute("SELECT name FROM sqlite_master").fetchall()
            except sqlite3.DatabaseError as exc:
                logger.warning("run ledger %s unreadable (%s); scanning outputs only", self.path, exc)
                self._con = None

    @property
    def present(self) -> bool:
        """Whether a readable run ledger exists."""
        return self._con is not None

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        if self._con is None:
            return []
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:  # table missing (older or partial ledger)
            logger.debug("run ledger query failed: %s", exc)
            return []

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict (values as stored, JSON not decoded)."""
        return {str(k): "" if v is None else str(v)
                for k, v in self._rows("SELECT key, value FROM meta")}

    def items(self) -> list[LedgerItem]:
        """Every item of the plan."""
        rows = self._rows("SELECT id, src, kind, modality, patient, stages, status, output, "
                          "reason, details, members FROM items ORDER BY id")
        return [LedgerItem(id=r[0], src=_path(r[1]), kind=r[2] or "", modality=r[3] or "",
                           patient=r[4] or "", stages=_json(r[5], []), status=r[6] or "",
                           output=r[7], reason=r[8] or "", details=_json(r[9], {}),
                           members=_json(r[10], []) or [])
                for r in rows]

    def subject_pseudonyms(self) -> list[str]:
        """Pseudonyms of the output folder's subject map (``pixeldeid dicom`` keeps it as
        ``out/.pixeldeid/subjects.sqlite`` unless given ``--subject-db``), read-only."""
        path = self.out / STATE_DIRNAME / "subjects.sqlite"
        if not path.is_file():
            return []
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                return [str(r[0]) for r in con.execute("SELECT pseudonym FROM subjects") if r[0]]
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            logger.debug("subject map %s unreadable: %s", path, exc)
            return []

    def identity(self) -> list[tuple[str, str, str]]:
        """``(patient, kind, value)`` rows of the identity table."""
        return [(p or "", k or "other", v) for p, k, v in
                self._rows("SELECT patient, kind, value FROM identity") if v]

    def artifacts(self) -> list[Artifact]:
        """QC images recorded during the run."""
        return [Artifact(int(i or 0), s or "", k or "", p, c or "") for i, s, k, p, c in
                self._rows("SELECT item, stage, kind, path, caption FROM artifacts") if p]

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> RunLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
