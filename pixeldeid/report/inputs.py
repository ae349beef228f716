"""The account of inputs from the ledger of ``pixeldeid dicom`` (``OUT/.pixeldeid/ledger.sqlite``).

``pixeldeid dicom`` records one row per input it read (table ``files``: a keyed hash of the
input path, never the path; the input's size and mtime; its status ``written``,
``identical`` or ``quarantined``; the output name relative to OUT; the new SOP Instance
UID; the quarantine reason). An input finished by an earlier run is skipped by a rerun and
keeps its row; an input quarantined before it was read (a dangling link, an unreadable
folder) has a quarantine record but no row. The report reads the ledger read-only and
shows counts only: no input path or name (the report lies in OUT, next to the release).
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

#: The ledger of ``pixeldeid dicom`` in ``OUT/.pixeldeid`` (:class:`pixeldeid.batch.Ledger`).
DICOM_LEDGER_NAME = "ledger.sqlite"
#: Where ``pixeldeid dicom`` sets a damaged ledger aside before starting a fresh one.
DAMAGED_SUFFIX = ".damaged"
#: Ledger statuses in the order shown, with what each means.
STATUS_MEANING = {
    "written": "written: output written by this input",
    "identical": "already done: its output was already there, same content (a byte-identical "
                 "copy of an earlier input, or finished before)",
    "skipped": "already done: finished by an earlier run",
    "quarantined": "quarantined after reading",
}


@dataclass
class InputAccount:
    """What the ``pixeldeid dicom`` ledger says about the inputs of an output folder.

    ``state`` is ``"absent"`` (no ledger), ``"read"`` or ``"unreadable"`` (``problem``
    says why, without a path). Counts cover every input recorded over all runs into the
    folder, each input once with its latest outcome.
    """

    state: str = "absent"
    problem: str = ""
    statuses: dict[str, int] = field(default_factory=dict)   # ledger rows per status
    before_reading: int = 0      # quarantine records with no ledger row (input errors)
    outputs_recorded: int = 0    # distinct outputs named by written/identical rows
    outputs_missing: int = 0     # of those, no longer in OUT
    damaged_aside: bool = False  # a damaged ledger was set aside: earlier runs not counted

    @property
    def read(self) -> bool:
        return self.state == "read"

    @property
    def totals(self) -> dict[str, int]:
        """``inputs``, ``written``, ``already done``, ``quarantined``: as the summary line
        of ``pixeldeid dicom`` counts them (over every run recorded)."""
        s = self.statuses
        quarantined = s.get("quarantined", 0) + self.before_reading
        return {"inputs": sum(s.values()) + self.before_reading,
                "written": s.get("written", 0),
                "already done": s.get("identical", 0) + s.get("skipped", 0),
                "quarantined": quarantined}

    @property
    def status_rows(self) -> list[dict]:
        """One row per status: ``status``, ``meaning``, ``count`` (statuses in the ledger,
        then the quarantine records without a row)."""
        order = list(STATUS_MEANING)
        rows = [{"status": st, "meaning": STATUS_MEANING.get(st, "(status unknown to this "
                                                                 "report)"), "count": n}
                for st, n in sorted(self.statuses.items(),
                                    key=lambda kv: (order + [kv[0]]).index(kv[0]))]
        if self.before_reading:
            rows.append({"status": "quarantined before reading",
                         "meaning": "quarantine record without a ledger row (unreadable path, "
                                    "dangling link, not a regular file)",
                         "count": self.before_reading})
        return rows


def ledger_path(out: str | os.PathLike) -> Path:
    from ..batch import STATE_DIRNAME

    return Path(out) / STATE_DIRNAME / DICOM_LEDGER_NAME


def _connect_ro(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-only. A ledger closed cleanly (no ``-wal`` beside it) is opened
    immutable, so that no ``-wal``/``-shm`` file is created in OUT; one in use (or left by
    a run that stopped) is read through its write-ahead log."""
    uri = "file:" + urllib.parse.quote(os.fspath(path.resolve())) + "?mode=ro"
    if not path.with_name(path.name + "-wal").exists():
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True, timeout=5)


def read_input_account(out: str | os.PathLike, quarantine: list[dict]) -> InputAccount:
    """The account of inputs of ``out`` from its ``pixeldeid dicom`` ledger.

    ``quarantine`` is :func:`~pixeldeid.report.collect.read_quarantine` of ``out``: its
    records whose reason no quarantined ledger row holds are inputs quarantined before
    they were read (the ledger has no row for them). A missing, locked or damaged ledger
    gives an account that says so; it never raises.
    """
    out = Path(out)
    path = ledger_path(out)
    acc = InputAccount()
    acc.damaged_aside = path.with_name(path.name + DAMAGED_SUFFIX).exists()
    if not path.is_file():
        if acc.damaged_aside:
            acc.state, acc.problem = "unreadable", "set aside as damaged, none in its place"
        return acc
    try:
        con = _connect_ro(path)
    except sqlite3.Error as exc:
        return _unreadable(acc, exc)
    try:
        rows = con.execute("SELECT status, output, reason FROM files").fetchall()
    except sqlite3.Error as exc:
        return _unreadable(acc, exc)
    finally:
        con.close()
    statuses: Counter = Counter()
    reasons: Counter = Counter()
    outputs: set[str] = set()
    for status, output, reason in rows:
        status = str(status or "(none)")
        statuses[status] += 1
        if status == "quarantined":
            reasons[" ".join(str(reason or "").split())] += 1
        elif status in ("written", "identical", "skipped") and output:
            outputs.add(str(output))
    recorded = Counter(" ".join(str(q.get("reason") or "").split()) for q in quarantine)
    acc.state = "read"
    acc.statuses = dict(statuses)
    acc.before_reading = sum((recorded - reasons).values())
    acc.outputs_recorded = len(outputs)
    acc.outputs_missing = sum(not _output_there(out, rel) for rel in outputs)
    return acc


def _output_there(out: Path, rel: str) -> bool:
    try:
        return (out / rel).exists()
    except (OSError, ValueError):
        return False


def _unreadable(acc: InputAccount, exc: sqlite3.Error) -> InputAccount:
    msg = str(exc).lower()
    if "locked" in msg or "busy" in msg:
        why = "locked (a pixeldeid dicom run may be writing it)"
    elif "no such table" in msg:
        why = "not a ledger of pixeldeid dicom (no files table)"
    elif "not a database" in msg or "malformed" in msg or "corrupt" in msg:
        why = "damaged"
    else:
        why = f"unreadable ({type(exc).__name__})"
    logger.warning("pixeldeid dicom ledger %s: %s", why, exc)
    acc.state, acc.problem = "unreadable", why
    return acc


# -- no input names in the report ------------------------------------------------------
_QUOTED_PATH = re.compile(r"""(['"])[^'"\n]*[/\\][^'"\n]*\1""")
_BARE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?(?:~|\.{1,2})?[/\\][^\s'\"]+")


def _ordinary_word(stem: str) -> bool:
    """A file stem that reads as an ordinary word of a reason ("zero", "dangling"), not
    a name: lower-case letters only."""
    return stem.isalpha() and stem.islower()


def scrub_reason(reason: str, source: str = "") -> str:
    """``reason`` without the input's path or name (a reason may quote an exception that
    names the file): ``source`` and its name are replaced where they stand whole (not
    "zero" of "zero-byte file" for zero.dcm), the stem too unless it is an ordinary word;
    and so is anything that looks like a path."""
    text = str(reason or "")
    if source:
        p = Path(source)
        forms = {source, os.path.abspath(source), p.name}
        if len(p.stem) >= 3 and not _ordinary_word(p.stem):
            forms.add(p.stem)
        for form in sorted((f for f in forms if f), key=len, reverse=True):
            # whole: not inside a longer name, word or number
            text = re.sub(rf"(?<![\w.-]){re.escape(form)}(?![\w-]|\.\w)", "(input)", text)
    text = _QUOTED_PATH.sub("(path)", text)
    return _BARE_PATH.sub("(path)", text)
