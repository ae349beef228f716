"""Quarantine: inputs that cannot be cleaned with confidence are copied aside with a reason."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_output, write_bytes_atomic
from .paths import printable

logger = logging.getLogger(__name__)

QUARANTINE_DIRNAME = "quarantine"


@dataclass(frozen=True)
class QuarantineRecord:
    """One quarantined input: where it came from, where its copy lies, and why."""

    source: str
    copy: str | None
    reason: str


def quarantine(source: str | os.PathLike, out_dir: str | os.PathLike, reason: str,
               *, stage: str = "") -> QuarantineRecord:
    """Copy ``source`` to ``OUT/quarantine/`` with a ``.reason.txt`` beside it.

    The copy is named by a hash of the source path (never the input file name, which may
    itself carry identity); the reason file names the source path so the data holder can
    find it. The input is never modified. Directories are not copied, only their reason.

    Parameters
    ----------
    source : path
        The input that failed.
    out_dir : path
        The output root; the copy goes to ``out_dir/quarantine``.
    reason : str
        One line saying why.
    stage : str, optional
        Which stage quarantined it (``header``, ``pixels``, ``deface``, ``wsi``...).
    """
    source = Path(source)
    qdir = Path(out_dir) / QUARANTINE_DIRNAME
    qdir.mkdir(parents=True, exist_ok=True)
    digest = _digest(source)
    try:
        is_file = source.is_file()
    except OSError:  # a path longer than the system takes: the reason alone
        is_file = False
    suffix = "".join(source.suffixes[-2:]) if is_file else ""
    copy: Path | None = qdir / f"{digest}{suffix}"
    reason_line = printable(" ".join(str(reason).split()))
    if is_file:
        try:
            with atomic_output(copy) as dst, open(source, "rb") as src:
                shutil.copyfileobj(src, dst)
        except OSError as exc:  # unreadable input: keep the reason, note the failed copy
            reason_line += f" (copy failed: {exc.strerror or exc})"
            copy = None
    else:
        copy = None
    text = f"source: {printable(source)}\nstage: {stage}\nreason: {reason_line}\n"
    write_bytes_atomic(qdir / f"{digest}.reason.txt", text.encode("utf-8"))
    logger.warning("quarantined %s: %s", printable(source), reason_line)
    return QuarantineRecord(str(source), None if copy is None else str(copy), reason_line)


def _digest(source: Path) -> str:
    """The name of ``source``'s quarantine record: a hash of its absolute path, links not
    resolved (two links to one damaged file are two inputs, each with its own record)."""
    # os.fsencode: file names need not be valid UTF-8 (surrogate escapes round-trip)
    return hashlib.sha256(os.fsencode(os.path.abspath(source))).hexdigest()[:16]


def withdraw(source: str | os.PathLike, out_dir: str | os.PathLike) -> bool:
    """Remove the quarantine record (copy and reason) of ``source`` that an earlier run
    left, now that it was cleaned: the quarantine lists what is still not released.
    Returns whether there was one."""
    source = Path(source)
    qdir = Path(out_dir) / QUARANTINE_DIRNAME
    digest = _digest(source)
    found = False
    for name in (f"{digest}.reason.txt", f"{digest}{''.join(source.suffixes[-2:])}"):
        try:
            (qdir / name).unlink()
            found = True
        except FileNotFoundError:
            pass
    return found
