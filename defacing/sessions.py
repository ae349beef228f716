"""Session labels that are dates (``ses-20190304``): renamed ``ses-01``, ``ses-02``... per subject.

A scan date used as the session label would stay in every folder and file name of the
release, and in the tables and sidecars that name the files (``scans.tsv``,
``sessions.tsv``, ``IntendedFor``). Each subject's dated labels are numbered in their
order (a date order for ``YYYYMMDD`` labels), skipping numbers the subject's other
sessions use, and the new label is written everywhere the old one stood: folder and file
names (:meth:`SessionLabels.path`) and text (:meth:`SessionLabels.text`), where a
``sub-<label>`` before the session names the subject and the file's own subject is used
otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from .sidecars import DATE_RE

_SES_RE = re.compile(r"(?<![A-Za-z0-9])(?:sub-([A-Za-z0-9]+)([/_]))?ses-([A-Za-z0-9]+)"
                     r"(?![A-Za-z0-9])")
_SUB_RE = re.compile(r"(?<![A-Za-z0-9])sub-([A-Za-z0-9]+)(?![A-Za-z0-9])")
_ENTITY_SES = re.compile(r"(?<![A-Za-z0-9])ses-([A-Za-z0-9]+)(?![A-Za-z0-9])")


def is_dated(label: str) -> bool:
    """Whether a session label holds a calendar date (``20190304``, ``20190304pre``)."""
    return DATE_RE.search(label) is not None


def subject_of(rel: PurePosixPath | str) -> str:
    """The subject label of a path relative to the dataset root: its first ``sub-``
    folder, else the ``sub-`` entity of its file name ('' when none)."""
    rel = PurePosixPath(rel)
    for part in rel.parts[:-1]:
        if part.startswith("sub-") and _SUB_RE.fullmatch(part):
            return part[4:]
    m = _SUB_RE.search(rel.name)
    return m.group(1) if m else ""


def sessions_in(rel: PurePosixPath | str) -> set[str]:
    """The session labels a relative path names (folders and file-name entities)."""
    return {m.group(1) for part in PurePosixPath(rel).parts for m in _ENTITY_SES.finditer(part)}


class SessionLabels:
    """Old -> new session labels of a dataset, per subject (only dated labels change).

    Parameters
    ----------
    seen : mapping
        Subject label -> every session label found for it (paths, ``sessions.tsv``).
    """

    def __init__(self, seen: dict[str, set[str]]) -> None:
        self.labels: dict[str, dict[str, str]] = {}
        for sub, labels in sorted(seen.items()):
            dated = sorted(x for x in labels if is_dated(x))
            if not dated:
                continue
            taken = {x.lower() for x in labels if not is_dated(x)}
            new: dict[str, str] = {}
            n = 0
            for old in dated:
                n += 1
                while f"{n:02d}" in taken:
                    n += 1
                new[old] = f"{n:02d}"
            self.labels[sub] = new

    @classmethod
    def of(cls, rels: Iterable[PurePosixPath | str],
           listed: dict[str, Iterable[str]] | None = None) -> SessionLabels:
        """The labels of the relative paths ``rels`` and of ``listed`` sessions (subject ->
        labels, from each subject's ``sessions.tsv``)."""
        seen: dict[str, set[str]] = {}
        for rel in rels:
            found = sessions_in(rel)
            if found:
                seen.setdefault(subject_of(rel), set()).update(found)
        for sub, labels in (listed or {}).items():
            seen.setdefault(sub, set()).update(labels)
        return cls(seen)

    def __bool__(self) -> bool:
        return bool(self.labels)

    def dated(self) -> list[str]:
        """Every dated label replaced (to search the release for)."""
        return sorted({old for m in self.labels.values() for old in m})

    def _new(self, sub: str, old: str) -> str | None:
        got = self.labels.get(sub, {}).get(old)
        if got is not None or sub:
            return got
        news = {m[old] for m in self.labels.values() if old in m}  # no subject: unambiguous only
        return news.pop() if len(news) == 1 else None

    def text(self, text: str, subject: str = "") -> tuple[str, int]:
        """``text`` with dated session labels renamed; return it and the count. A
        ``sub-<label>`` just before the session names its subject, else ``subject``."""
        if not self.labels:
            return text, 0

        done = [0]

        def repl(m: re.Match) -> str:
            sub = m.group(1) if m.group(1) is not None else subject
            new = self._new(sub, m.group(3))
            if new is None:
                return m.group(0)
            done[0] += 1
            prefix = f"sub-{m.group(1)}{m.group(2)}" if m.group(1) is not None else ""
            return f"{prefix}ses-{new}"

        return _SES_RE.sub(repl, text), done[0]

    def path(self, rel: PurePosixPath | str) -> PurePosixPath:
        """The relative path with its dated session labels renamed."""
        rel = PurePosixPath(rel)
        sub = subject_of(rel)
        return PurePosixPath(*[self.text(part, sub)[0] for part in rel.parts])


def sessions_tsv_labels(text: str) -> list[str]:
    """The labels of the ``session_id`` column of a ``sessions.tsv`` ([] when none)."""
    lines = [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
    if not lines or "session_id" not in lines[0].split("\t"):
        return []
    col = lines[0].split("\t").index("session_id")
    out = []
    for line in lines[1:]:
        cells = line.split("\t")
        if col < len(cells) and cells[col].strip().startswith("ses-"):
            out.append(cells[col].strip()[4:])
    return out
