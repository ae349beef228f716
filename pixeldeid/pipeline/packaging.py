"""Release packaging: one zip per subject, ``OUT/packages/<pseudonym>.zip``, and
``OUT/packages/dataset-files.zip`` for outputs of no patient (BIDS dataset-level files).

A package holds the finished outputs of one patient (paths relative to OUT), never the
private state (``.pixeldeid/``) or the quarantine. It is built from regular files only:
symbolic links (which could point out of OUT) and anything resolving outside OUT are left
out, and member names are checked to be plain relative paths. Zips are reproducible
(sorted members, fixed timestamps) and rewritten only when their content changes. No zip
is ever read or extracted here, so a zip bomb among the inputs is just an unsupported
input (quarantined by the plan).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from ..atomic import TMP_PREFIX, atomic_output
from ..batch import STATE_DIRNAME
from ..layout import clean_component
from ..quarantine import QUARANTINE_DIRNAME

logger = logging.getLogger(__name__)

__all__ = ["PACKAGES_DIRNAME", "SHARED_PACKAGE", "package_subjects", "remove_stale_packages",
           "write_package"]

PACKAGES_DIRNAME = "packages"
_EXCLUDED = (STATE_DIRNAME, QUARANTINE_DIRNAME, PACKAGES_DIRNAME)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def _safe_member(rel: str) -> bool:
    p = PurePosixPath(rel)
    return (bool(rel) and not p.is_absolute() and ".." not in p.parts and "\\" not in rel
            and p.parts[0] not in _EXCLUDED and not p.name.startswith(TMP_PREFIX))


def _files(out: Path, rel: str) -> Iterator[tuple[str, Path]]:
    """Regular files of an output (file or folder), never following symbolic links."""
    root = out / rel
    try:
        st = os.lstat(root)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode):
        yield rel, root
        return
    if not stat.S_ISDIR(st.st_mode):
        return  # a symbolic link or something else: left out
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            p = Path(dirpath) / name
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(p).st_mode):
                    yield p.relative_to(out).as_posix(), p


def write_package(out: Path, name: str, outputs: Iterable[str]) -> Path | None:
    """Write ``OUT/packages/<name>.zip`` from the outputs (paths relative to OUT).

    Returns the zip path, or None when there is nothing to package.
    """
    out_resolved = out.resolve()
    members: dict[str, Path] = {}
    for rel in outputs:
        if not rel or not _safe_member(rel):
            logger.warning("not packaged (outside the release area): %s", rel)
            continue
        for arc, p in _files(out, rel):
            try:
                inside = p.resolve().is_relative_to(out_resolved)
            except (OSError, RuntimeError):
                inside = False
            if inside and _safe_member(arc):
                members[arc] = p
    if not members:
        return None
    target = out / PACKAGES_DIRNAME / f"{clean_component(name, 64)}.zip"
    digest = hashlib.sha256()
    for arc in sorted(members):
        digest.update(arc.encode() + b"\0" + str(members[arc].stat().st_size).encode() + b"\0")
        with open(members[arc], "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    stamp = out / STATE_DIRNAME / PACKAGES_DIRNAME / (target.name + ".sha256")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == digest.hexdigest():
        return target
    with atomic_output(target) as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
        for arc in sorted(members):
            info = zipfile.ZipInfo(arc, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            with open(members[arc], "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    with atomic_output(stamp) as fh:
        fh.write(digest.hexdigest().encode() + b"\n")
    return target


#: the package of outputs that belong to no patient (a BIDS dataset's participants.tsv,
#: dataset_description.json, README): ``packages/<SHARED_PACKAGE>.zip``
SHARED_PACKAGE = "dataset-files"


def package_subjects(out: Path, outputs_by_patient: dict[str, list[str]],
                     shared: Iterable[str] = ()) -> list[Path]:
    """One zip per patient pseudonym, and one of the ``shared`` outputs (no patient);
    return the zips written or already up to date. Other zips in ``OUT/packages`` are
    removed (:func:`remove_stale_packages`)."""
    made = []
    used: set[str] = set()
    shared = list(shared)
    if shared:
        used.add(SHARED_PACKAGE)
        z = write_package(out, SHARED_PACKAGE, shared)
        if z is not None:
            made.append(z)
    for patient in sorted(outputs_by_patient):
        name = clean_component(patient, 64)
        if name.lower() in used:  # two pseudonyms that clean to one file name
            name += "-" + hashlib.sha256(patient.encode("utf-8", "replace")).hexdigest()[:8]
        used.add(name.lower())
        z = write_package(out, name, outputs_by_patient[patient])
        if z is not None:
            made.append(z)
    remove_stale_packages(out, made)
    return made


def remove_stale_packages(out: Path, keep: Iterable[Path]) -> list[Path]:
    """Remove every ``OUT/packages/*.zip`` not in ``keep`` (and its stamp): the zip of a
    patient whose outputs were all withdrawn, quarantined or moved to another patient
    would release them still. Return the zips removed."""
    kept = {p.name for p in keep}
    removed = []
    folder = out / PACKAGES_DIRNAME
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return removed
    for name in names:
        p = folder / name
        if not name.endswith(".zip") or name in kept or (p.is_dir() and not p.is_symlink()):
            continue
        p.unlink()
        with contextlib.suppress(OSError):
            (out / STATE_DIRNAME / PACKAGES_DIRNAME / (name + ".sha256")).unlink()
        removed.append(p)
        logger.info("removed from the release (none of its outputs is released now): %s", p)
    return removed
