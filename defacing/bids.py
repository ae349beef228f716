"""BIDS mode: a defaced copy of a BIDS dataset.

Anatomical images (``anat/`` T1w, T2w, FLAIR, PD, PDw, T2starw, ``*_ct``), PET
(``pet/``), diffusion (``dwi/``; registered on the mean of its b0 volumes, one mask for
all volumes), field-map magnitude and spin-echo EPI images (``fmap/``) and ASL M0 scans
are defaced. JSON sidecars lose identifying keys (dates, institution, station, device
serial number, patient name/ID, the procedure's description, comments) and TSV tables
their dated cells, birth dates and ages over 88 (see :mod:`defacing.sidecars`). Other
NIfTI images (``func/`` BOLD, field-map phase maps, ASL series) are copied unchanged,
and every such copy is named in the summary and the per-file report as an image that may
show a low-resolution face.

Nothing else is copied as it is (:mod:`defacing.kinds`): known text files (README,
CHANGES, LICENSE, ``.bidsignore``, ``.bval``/``.bvec``...) are copied when they hold no
identity value of the dataset (:mod:`defacing.identity`); DICOM (``sourcedata/``), images
of other formats (ANALYZE, MGH/MGZ...) and any other file are quarantined with a reason;
files below hidden folders (``.git``, ``.heudiconv``) are skipped with a reason. Session
labels that are dates (``ses-20190304``) are renamed ``ses-01``... per subject in every
name and text (:mod:`defacing.sessions`); a file whose name still holds a date (another
entity, a subject label) is quarantined.

:func:`subject_labels` and :func:`relabel_subjects` give subjects new BIDS labels (used by
``pixeldeid run``, which releases a BIDS dataset with its subjects renamed after their
pseudonyms).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path

from pixeldeid.errors import InputError

from .batch import TEXT_KINDS, Job, not_regular, scan_folder, skip_jobs
from .identity import birth_date_forms, collect_values, dataset_tokens
from .kinds import bids_kind
from .nifti import is_nifti, nifti_stem
from .sessions import SessionLabels, sessions_tsv_labels, subject_of
from .sidecars import DATE_RE, has_date

logger = logging.getLogger(__name__)

ANAT_SUFFIXES = ("T1w", "T2w", "FLAIR", "PD", "PDw", "T2starw", "ct", "CT")
PET_SUFFIXES = ("pet",)
DWI_SUFFIXES = ("dwi", "sbref")
FMAP_SUFFIXES = ("magnitude", "magnitude1", "magnitude2", "epi")
PERF_SUFFIXES = ("m0scan",)
#: Largest b-value (s/mm2) of a volume used as b0-like registration reference.
B0_MAX = 100.0


def defaced_suffix(path: Path) -> str | None:
    """BIDS suffix of an image to deface, or None when it is copied unchanged."""
    if not is_nifti(path):
        return None
    stem = nifti_stem(path)
    suffix = stem.rsplit("_", 1)[-1] if "_" in stem else stem
    folder = path.parent.name
    if folder == "anat" and suffix in ANAT_SUFFIXES:
        return suffix
    if folder == "pet" and suffix in PET_SUFFIXES:
        return suffix
    if folder == "dwi" and suffix in DWI_SUFFIXES:
        return suffix
    if folder == "fmap" and suffix in FMAP_SUFFIXES:
        return suffix
    if folder == "perf" and suffix in PERF_SUFFIXES:
        return suffix
    return None


def b0_volumes(path: Path) -> list[int] | None:
    """Indices of the b0-like volumes of a diffusion image from its ``.bval`` sidecar.

    Returns None when there is no readable ``.bval`` or no volume with b <= ``B0_MAX``
    (the mean of all volumes is then used).
    """
    bval = path.parent / (nifti_stem(path) + ".bval")
    try:
        values = [float(v) for v in bval.read_text().split()]
    except (OSError, ValueError):
        return None
    idx = [i for i, b in enumerate(values) if b <= B0_MAX]
    return idx or None


def _listed_sessions(files: list[Path], root: Path) -> dict[str, list[str]]:
    """Subject label -> the session labels its ``sub-<label>_sessions.tsv`` lists."""
    out: dict[str, list[str]] = {}
    for p in files:
        if p.name.lower().endswith("_sessions.tsv"):
            try:
                text = p.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            out.setdefault(subject_of(p.relative_to(root).as_posix()), []).extend(
                sessions_tsv_labels(text))
    return out


def _dated_name(rel: Path) -> bool:
    """Whether a (relabelled) relative path still holds a date in a folder or file name."""
    return any(has_date(part) for part in rel.parts)


def session_dates(labels: list[str]) -> list[str]:
    """The dated session ``labels`` and the written forms of their dates (to search the
    released text for)."""
    out = list(labels)
    for label in labels:
        m = DATE_RE.search(label)
        if m:
            out.extend(birth_date_forms("".join(m.group(1, 2, 3))))
    return out


def _relabeller(sessions: SessionLabels,
                rel: Path) -> Callable[[str], tuple[str, int]] | None:
    """The text rewrite of a file at ``rel`` (its subject's dated sessions), or None."""
    if not sessions:
        return None
    sub = subject_of(rel.as_posix())
    return lambda text: sessions.text(text, sub)


def _file_job(p: Path, dst: Path, sessions: SessionLabels, rel: Path,
              tokens: tuple[str, ...]) -> Job:
    """The job of the regular file ``p`` of a BIDS dataset, written to ``dst``."""
    suffix = defaced_suffix(p)
    if suffix is not None:
        vols = b0_volumes(p) if suffix == "dwi" else None
        return Job("nifti", p, dst, hint=f"_{suffix}", reference_volumes=vols)
    if is_nifti(p):
        logger.warning("%s: image not defaced (no face model for this kind); copied "
                       "unchanged, may show a low-resolution face", p)
        return Job("copy-image", p, dst)
    kind, reason = bids_kind(p)
    if kind == "unsupported":
        return Job("unsupported", p, reason=reason)
    return Job(kind, p, dst, tokens=tokens, relabel=_relabeller(sessions, rel))


def plan_bids(root: Path, out: Path) -> list[Job]:
    """Jobs for a BIDS dataset root: deface anat/pet/dwi/fmap/perf images, copy the other
    NIfTI images, scrub and check the text files, quarantine everything else (DICOM, other
    image formats, unknown files), skip hidden folders; dated session labels renamed.

    Raises
    ------
    InputError
        When ``root`` has no ``dataset_description.json``, or its name holds a date.
    """
    root = Path(root)
    if not (root / "dataset_description.json").is_file():
        raise InputError("not a BIDS dataset root (no dataset_description.json)", str(root))
    if has_date(root.name):
        raise InputError("the dataset folder's name holds a date (it names the output "
                         "folder): rename it", str(root))
    jobs, entries = skip_jobs(scan_folder(root, out, lambda p: False), root)
    rels = [p.relative_to(root) for p in entries]
    sessions = SessionLabels.of([r.as_posix() for r in rels], _listed_sessions(entries, root))
    labels = {r.parts[0][4:] for r in rels if r.parts and r.parts[0].startswith("sub-")}
    tokens = dataset_tokens(collect_values(p for p in entries if not_regular(p) is None),
                            labels, extra=session_dates(sessions.dated()))
    for p, rel in zip(entries, rels, strict=True):
        why = not_regular(p)
        new_rel = Path(sessions.path(rel.as_posix()))
        if why:
            jobs.append(Job("unsupported", p, reason=why))
        elif _dated_name(new_rel):
            jobs.append(Job("unsupported", p, reason="its folder or file name holds a date "
                            "(a subject or entity label): not released; rename it"))
        else:
            jobs.append(_file_job(p, out / root.name / new_rel, sessions, rel, tokens))
    # text last: scans.tsv keeps the rows of the images released (see batch._prune_scans)
    return sorted(jobs, key=lambda j: j.kind in TEXT_KINDS)


def subject_labels(pseudonyms: dict[str, str]) -> dict[str, str]:
    """New BIDS subject labels: original label -> the alphanumeric form of its pseudonym.

    ``SUBJ_001`` becomes ``SUBJ001``. A pseudonym with no letter or digit, or whose
    alphanumeric form is taken by another subject, gets a hash of the pseudonym appended
    (deterministic: the same pseudonyms give the same labels).
    """
    out: dict[str, str] = {}
    taken: set[str] = set()
    for orig in sorted(pseudonyms, key=lambda k: (pseudonyms[k], k)):
        pseudo = pseudonyms[orig]
        label = re.sub(r"[^A-Za-z0-9]", "", pseudo)
        if not label or label.lower() in taken:
            digest = hashlib.sha256(pseudo.encode("utf-8", "surrogateescape")).hexdigest()
            label = f"{label}x{digest[:8]}"
        taken.add(label.lower())
        out[orig] = label
    return out


def relabel_subjects(text: str, labels: dict[str, str]) -> tuple[str, int]:
    """Replace every ``sub-<old>`` of ``text`` by ``sub-<new>``; return text and count.

    Only whole labels are replaced (``sub-01`` in ``sub-01_T1w`` or ``bids::sub-01/anat``,
    not in ``sub-012``); one pass, so a new label equal to an old one is not renamed twice.
    """
    if not labels:
        return text, 0
    alts = "|".join(re.escape(k) for k in sorted(labels, key=len, reverse=True))
    pattern = re.compile(rf"(?<![A-Za-z0-9])sub-({alts})(?![A-Za-z0-9])")
    return pattern.subn(lambda m: f"sub-{labels[m.group(1)]}", text)
