"""Plan a run: group the scanned inputs into items, number the patients, pick the stages.

Patients are numbered in order of first appearance over the sorted inputs (the order
``pixeldeid dicom`` uses), through the run's pseudonym map; the header core is then given
the plan's pseudonyms as its subject map, so it numbers every patient identically.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..batch import iter_inputs
from .job import Job
from .scan import ScanRecord, scan_file

logger = logging.getLogger(__name__)

__all__ = ["Item", "Plan", "build_plan", "pixel_stage_available", "KINDS", "STAGES"]

KINDS = ("dicom", "dicom-series", "nifti", "slide", "other")
STAGES = ("pixels", "header", "deface", "wsi")
DEFACE_MODALITIES = ("CT", "MR", "PT")
#: a head series needs at least this many slices to be registered to the template
MIN_SERIES_SLICES = 8


@dataclass
class Item:
    """One unit of work: a file, or the files of one series."""

    src: str
    kind: str
    stages: list[str] = field(default_factory=list)
    modality: str = ""
    patient: str = ""
    study: str = ""
    series: str = ""
    members: list[str] | None = None
    status: str = "planned"
    reason: str = ""
    target: str = ""               # output name stem decided by the plan (nifti, slides)
    sop: str = ""                  # SOP Instance UID (duplicates run in input order)
    stale: str = ""                # output of an earlier run to withdraw (source changed)
    id: int | None = None

    def work(self) -> dict:
        """The JSON-able description a worker gets."""
        return {"id": self.id, "src": self.src, "kind": self.kind, "stages": list(self.stages),
                "members": list(self.members) if self.members else None,
                "patient": self.patient, "modality": self.modality, "target": self.target}


@dataclass
class Plan:
    """The items of a run, the identity known per patient, and notes for the user."""

    items: list[Item] = field(default_factory=list)
    identity: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    subject_map: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def patients(self) -> list[str]:
        return sorted({i.patient for i in self.items if i.patient})


def pixel_stage_available() -> bool:
    """Whether the burned-in text stage (:mod:`pixeldeid.burnedin.stage`) is present."""
    try:
        if importlib.util.find_spec("pixeldeid.burnedin.stage") is None:
            return False
        from ..burnedin import stage
    except ImportError:
        return False
    return hasattr(stage, "BurnedInStage") and hasattr(stage, "PixelSettings")


def _hash(key: bytes, kind: str, value: str, n: int = 16) -> str:
    if not value:
        return ""
    return hmac.new(key, f"{kind}\x00{value}".encode("utf-8", "surrogateescape"),
                    hashlib.sha256).hexdigest()[:n]


def _bids_subject(path: Path) -> str | None:
    for i, part in enumerate(path.parts):
        if part.startswith("sub-") and i < len(path.parts) - 1:
            return str(Path(*path.parts[: i + 1]))
    return None


def _nifti_suffix(path: Path) -> str:
    """The BIDS suffix of a NIfTI name (``T1w``, ``bold``...) when it is a plain word."""
    stem = path.name.split(".", 1)[0]
    last = stem.rsplit("_", 1)[-1] if "_" in stem else ""
    return last if last.isalnum() and len(last) <= 12 and last.isascii() else ""


def _inside(path: Path, out_resolved: Path) -> bool:
    try:
        return path.resolve().is_relative_to(out_resolved)
    except (OSError, RuntimeError):
        return False


def build_plan(sources: Iterable[str | os.PathLike], out: Path, job: Job, key: bytes,
               pseudonym: Callable[[str], str],
               progress: Callable[[Iterable], Iterable] | None = None) -> Plan:
    """Scan ``sources`` and plan every item.

    Parameters
    ----------
    sources : paths
        Files and folders (walked in sorted order, never following symbolic links).
    out : path
        The output folder (files inside it are never read).
    job : Job
        The run's settings (which stages are on).
    key : bytes
        The project key (hashed study/series keys and output names).
    pseudonym : callable
        Original patient key -> pseudonym, numbering new patients in call order.
    """
    plan = Plan()
    out_resolved = out.resolve()
    records: list[ScanRecord] = []
    bad: list[ScanRecord] = []
    paths = []
    # absolute source paths in the ledger: verify and report find the sources from any folder
    for path, reason in iter_inputs([os.path.abspath(s) for s in sources]):
        if _inside(path, out_resolved):
            continue
        if reason:
            bad.append(ScanRecord(str(path), reason=reason))
        else:
            paths.append(path)
    it = progress(paths) if progress else paths
    for path in it:
        rec = scan_file(path)
        (records if rec.kind and not rec.reason else bad).append(rec)

    pixels = job.pixels.policy != "off"
    if pixels and not pixel_stage_available():
        plan.notes.append("burned-in text stage not available (pixeldeid.burnedin.stage): "
                          "pixel data is NOT checked for burned-in text")
        pixels = False
    deface = job.deface.enabled

    # patients in order of first appearance; identity per patient
    keys: dict[str, str] = {}
    # DICOM patients first (numbered as `pixeldeid dicom` numbers them), then the others
    for rec in sorted(records, key=lambda r: r.kind != "dicom"):
        p = Path(rec.path)
        if rec.kind == "dicom" or (rec.kind == "slide" and rec.patient_key):
            pkey = rec.patient_key
        elif rec.kind == "nifti":
            sub = _bids_subject(p.resolve())
            pkey = f"BIDS:{sub}" if sub else f"FILE:{p.resolve()}"
        elif rec.kind == "slide":
            pkey = f"FILE:{p.resolve()}"
        else:
            continue
        keys[rec.path] = pkey
        if pkey not in plan.subject_map:
            plan.subject_map[pkey] = pseudonym(pkey)
        pseudo = plan.subject_map[pkey]
        bucket = plan.identity.setdefault(pseudo, set())
        bucket.update(rec.identity)

    # group DICOM series (head series to deface, DICOM slides)
    series: dict[tuple[str, str], list[ScanRecord]] = {}
    for rec in records:
        if rec.kind in ("dicom", "slide") and rec.series_uid and (
                rec.kind == "slide" and rec.sop_class
                or deface and (rec.head or job.deface.series == "all")
                and rec.modality in DEFACE_MODALITIES):
            series.setdefault((rec.kind, rec.series_uid), []).append(rec)
    grouped: dict[str, tuple[str, str]] = {}
    for (kind, uid), recs in series.items():
        if kind == "slide" or len(recs) >= MIN_SERIES_SLICES:
            for r in recs:
                grouped[r.path] = (kind, uid)

    made: set[tuple[str, str]] = set()
    seen_sop: set[str] = set()
    for rec in records:
        pseudo = plan.subject_map[keys[rec.path]]
        common = {"modality": rec.modality, "patient": pseudo,
                  "study": _hash(key, "study", rec.study_uid),
                  "series": _hash(key, "series", rec.series_uid)}
        if rec.path in grouped:
            g = grouped[rec.path]
            if g in made:
                continue
            made.add(g)
            members = [r.path for r in series[g]]
            if g[0] == "slide":
                plan.items.append(Item(members[0], "slide", ["wsi"], members=members,
                                       target=_slide_name(key, pseudo, rec.path, rec.series_uid),
                                       **common))
            else:
                plan.items.append(Item(members[0], "dicom-series", ["deface", "header"],
                                       members=members, **common))
        elif rec.kind == "dicom":
            stages = (["pixels"] if pixels and rec.has_pixels else []) + ["header"]
            plan.items.append(Item(rec.path, "dicom", stages, sop=rec.sop_uid, **common))
            if rec.sop_uid in seen_sop:
                plan.items[-1].sop = "dup:" + rec.sop_uid
            seen_sop.add(rec.sop_uid)
        elif rec.kind == "nifti":
            item = Item(rec.path, "nifti", ["deface"], modality=rec.modality or "MR",
                        patient=pseudo)
            item.target = _nifti_name(key, pseudo, Path(rec.path))
            if not deface:
                item.stages, item.status = [], "skipped"
                item.reason = "defacing disabled in the job: a head volume is not released"
            plan.items.append(item)
        elif rec.kind == "slide":
            plan.items.append(Item(rec.path, "slide", ["wsi"], patient=pseudo, modality="SM",
                                   target=_slide_name(key, pseudo, rec.path, "")))
    for rec in bad:
        status = "skipped" if rec.kind == "sidecar" else "quarantined"
        plan.items.append(Item(rec.path, "other", [], status=status, reason=rec.reason))
    return plan


def _nifti_name(key: bytes, pseudo: str, src: Path) -> str:
    from ..layout import clean_component

    suffix = _nifti_suffix(src)
    ext = ".nii.gz" if src.name.lower().endswith(".gz") else ".nii"
    who = clean_component(pseudo, 32)
    name = f"{who}_{_hash(key, 'file', str(src.resolve()), 8)}" + (f"_{suffix}" if suffix else "")
    return f"nifti/{who}/{name}{ext}"


def _slide_name(key: bytes, pseudo: str, src: str, series_uid: str) -> str:
    from ..layout import clean_component

    ident = series_uid or str(Path(src).resolve())
    return f"{clean_component(pseudo, 32)}-{_hash(key, 'slide', ident, 8)}"
