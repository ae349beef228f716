"""BIDS mode: a defaced copy of a BIDS dataset.

Anatomical images (``anat/`` T1w, T2w, FLAIR, PD, PDw, T2starw, ``*_ct``) and PET
(``pet/``) are defaced; every other file (sidecars, TSVs, other NIfTI such as func/dwi)
is copied unchanged so the output stays a valid BIDS dataset.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pixeldeid.errors import InputError

from .batch import Job
from .nifti import is_nifti, nifti_stem

logger = logging.getLogger(__name__)

ANAT_SUFFIXES = ("T1w", "T2w", "FLAIR", "PD", "PDw", "T2starw", "ct", "CT")
PET_SUFFIXES = ("pet",)


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
    return None


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
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        dst = out / root.name / rel
        suffix = defaced_suffix(p)
        if suffix is None:
            if is_nifti(p) and p.parent.name not in ("func", "dwi", "fmap", "perf", "meg",
                                                       "eeg", "ieeg", "beh"):
                logger.warning("%s: image not recognised as anat/pet; copied unchanged", p)
            jobs.append(Job("copy", p, dst))
        else:
            jobs.append(Job("nifti", p, dst, hint=f"_{suffix}"))
    return jobs
