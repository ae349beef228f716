"""BIDS mode: a defaced copy of a BIDS dataset.

Anatomical images (``anat/`` T1w, T2w, FLAIR, PD, PDw, T2starw, ``*_ct``), PET
(``pet/``), diffusion (``dwi/``; registered on the mean of its b0 volumes, one mask for
all volumes), field-map magnitude and spin-echo EPI images (``fmap/``) and ASL M0 scans
are defaced. JSON sidecars lose identifying keys (dates, institution, station, device
serial number, patient name/ID) and TSV tables their dated cells (see
:mod:`defacing.sidecars`). Other images (``func/`` BOLD, field-map phase maps, ASL
series) are copied unchanged, and every such copy is named in the summary and the
per-file report as an image that may show a low-resolution face.

:func:`subject_labels` and :func:`relabel_subjects` give subjects new BIDS labels (used by
``pixeldeid run``, which releases a BIDS dataset with its subjects renamed after their
pseudonyms).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from pixeldeid.errors import InputError

from .batch import Job, not_regular, scan_folder
from .nifti import is_nifti, nifti_stem

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


def plan_bids(root: Path, out: Path) -> list[Job]:
    """Jobs for a BIDS dataset root: deface anat/pet images, copy everything else.

    Raises
    ------
    InputError
        When ``root`` has no ``dataset_description.json``.
    """
    root = Path(root)
    if not (root / "dataset_description.json").is_file():
        raise InputError("not a BIDS dataset root (no dataset_description.json)", str(root))
    jobs: list[Job] = []
    for p in scan_folder(root, out, lambda p: any(
            part.startswith(".") for part in p.relative_to(root).parts)):
        rel = p.relative_to(root)
        why = not_regular(p)
        if why:
            jobs.append(Job("unsupported", p, reason=why))
            continue
        dst = out / root.name / rel
        suffix = defaced_suffix(p)
        if suffix is not None:
            vols = b0_volumes(p) if suffix == "dwi" else None
            jobs.append(Job("nifti", p, dst, hint=f"_{suffix}", reference_volumes=vols))
        elif is_nifti(p):
            logger.warning("%s: image not defaced (no face model for this kind); copied "
                           "unchanged, may show a low-resolution face", p)
            jobs.append(Job("copy-image", p, dst))
        elif p.suffix == ".json":
            jobs.append(Job("json", p, dst))
        elif p.suffix == ".tsv":
            jobs.append(Job("tsv", p, dst))
        else:
            jobs.append(Job("copy", p, dst))
    return jobs


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
