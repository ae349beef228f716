"""Plan a run: group the scanned inputs into items, number the patients, pick the stages.

Patients are numbered in order of first appearance over the sorted inputs (the order
``pixeldeid dicom`` uses), through the run's pseudonym map; the header core is then given
the plan's pseudonyms as its subject map, so it numbers every patient identically.

BIDS datasets (a folder with ``dataset_description.json`` above ``sub-*`` folders): every
NIfTI image and known text file under the root becomes an item whose output is
``bids/dataset-<keyed hash>/<same relative path>`` with each ``sub-<label>`` renamed after the
subject's pseudonym (:func:`defacing.bids.subject_labels`). Images to deface (see
:func:`defacing.bids.defaced_suffix`) have the stage ``deface``; other images (kind
``nifti``) and text files (kind ``sidecar``: JSON and TSV scrubbed, ``.bval``/``.bvec``,
README... copied) have the stage ``bids``. The original ``sub-<label>`` is identity of
kind ``other``, and so is the bare label when it has 4 characters or more and is not a
plain number of under 6 digits (``sub-DOEJOHN`` gives ``DOEJOHN``; ``01`` would be found
in every file): ``pixeldeid verify`` looks for them. A file whose name holds a subject
label that cannot be renamed (no such subject folder in the run, not in
``participants.tsv``) is quarantined. Hidden files (``.git``, ``.datalad``) and files of
no kind released (physiological recordings, EEG, scripts) are skipped with a reason;
DICOM (``sourcedata/``) is planned as anywhere else. Session labels are kept; one that looks like a date
(``ses-20210304``) is identity too, and the plan says so in a note.

A PET series to deface is registered through a CT or MR series of the same Frame of
Reference UID when the inputs hold one (the item's ``reference``).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..batch import iter_inputs
from .job import Job
from .scan import UNSUPPORTED, ScanRecord, scan_file

logger = logging.getLogger(__name__)

__all__ = ["Item", "Plan", "build_plan", "pixel_stage_available", "KINDS", "STAGES"]

KINDS = ("dicom", "dicom-series", "nifti", "slide", "sidecar", "other")
STAGES = ("pixels", "header", "deface", "wsi", "bids")
#: the output folder of BIDS datasets
BIDS_DIRNAME = "bids"
_SUBJECT_RE = re.compile(r"(?<![A-Za-z0-9])sub-([A-Za-z0-9]+)")
_SESSION_RE = re.compile(r"(?<![A-Za-z0-9])ses-([A-Za-z0-9]+)")
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
    bids: dict | None = None       # BIDS file: {"action", "labels", "hint"} (see _bids_item)
    reference: list[str] | None = None  # PET: files of the CT/MR series to register through
    reference_series: str = ""     # its hashed series key
    id: int | None = None

    def work(self) -> dict:
        """The JSON-able description a worker gets."""
        return {"id": self.id, "src": self.src, "kind": self.kind, "stages": list(self.stages),
                "members": list(self.members) if self.members else None,
                "patient": self.patient, "modality": self.modality, "target": self.target,
                "bids": self.bids, "reference": list(self.reference) if self.reference else None,
                "reference_series": self.reference_series}


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
    """The BIDS suffix of a NIfTI name (``T1w``, ``bold``...) when it is one BIDS defines;
    any other last word of a name (``T1_HARROWGATE``, ``mprage_4455667``) is the input's,
    and may be identity."""
    from defacing.naming import KEPT_SUFFIXES

    stem = path.name.split(".", 1)[0]
    last = stem.rsplit("_", 1)[-1] if "_" in stem else ""
    return last if last in KEPT_SUFFIXES else ""


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

    # BIDS datasets: the root and subject folder of each file under one
    bids_of, bids_skip = _find_bids(records + bad)
    if bids_skip:
        records = [r for r in records if r.path not in bids_skip]
        bad = [r for r in bad if r.path not in bids_skip]

    # patients in order of first appearance; identity per patient
    keys: dict[str, str] = {}

    def assign(path: str, pkey: str, identity=()) -> None:
        keys[path] = pkey
        if pkey not in plan.subject_map:
            plan.subject_map[pkey] = pseudonym(pkey)
        plan.identity.setdefault(plan.subject_map[pkey], set()).update(identity)

    # DICOM patients first (numbered as `pixeldeid dicom` numbers them), then the others
    for rec in sorted(records, key=lambda r: r.kind != "dicom"):
        p = Path(rec.path)
        if rec.kind == "dicom" or (rec.kind == "slide" and rec.patient_key):
            pkey = rec.patient_key
        elif rec.kind == "nifti" and rec.path in bids_of:
            root, sub = bids_of[rec.path]
            pkey = f"BIDS:{root.resolve() / sub}" if sub else f"FILE:{p.resolve()}"
        elif rec.kind == "nifti":
            sub = _bids_subject(p.resolve())
            pkey = f"BIDS:{sub}" if sub else f"FILE:{p.resolve()}"
        elif rec.kind == "slide":
            pkey = f"FILE:{p.resolve()}"
        else:
            continue
        assign(rec.path, pkey, rec.identity)
    bids_datasets = _bids_datasets(bids_of, assign, plan, key) if bids_of else {}

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

    # CT/MR series per Frame of Reference: PET series are registered through one
    anat: dict[str, dict[str, list[ScanRecord]]] = {}
    for rec in records:
        if (rec.kind == "dicom" and rec.modality in ("CT", "MR") and rec.frame_of_reference
                and rec.series_uid):
            anat.setdefault(rec.frame_of_reference, {}).setdefault(rec.series_uid, []).append(rec)

    made: set[tuple[str, str]] = set()
    seen_sop: set[str] = set()
    for rec in records:
        if rec.path in bids_of:
            plan.items.append(_bids_item(rec, bids_of[rec.path], bids_datasets, keys, plan,
                                         deface))
            continue
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
                # burned-in text first, as for any DICOM image (a head series is no less
                # likely to carry a name in its pixels)
                item = Item(members[0], "dicom-series",
                            (["pixels"] if pixels else []) + ["deface", "header"],
                            members=members, **common)
                if rec.modality == "PT":
                    ref = _pet_reference(rec, anat, grouped)
                    if ref:
                        item.reference = ref[0]
                        item.reference_series = _hash(key, "series", ref[1])
                plan.items.append(item)
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
        if rec.path in bids_of:
            plan.items.append(_bids_item(rec, bids_of[rec.path], bids_datasets, keys, plan,
                                         deface))
            continue
        status = "skipped" if rec.kind == "sidecar" else "quarantined"
        plan.items.append(Item(rec.path, "other", [], status=status, reason=rec.reason))
    for path, reason in bids_skip.items():
        plan.items.append(Item(path, "other", [], status="skipped", reason=reason))
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


# -- PET through CT/MR -------------------------------------------------------------------------
def _pet_reference(pet: ScanRecord, anat: dict[str, dict[str, list[ScanRecord]]],
                   grouped: dict[str, tuple[str, str]]) -> tuple[list[str], str] | None:
    """The files and Series Instance UID of the CT/MR series to register a PET series
    through: same Frame of Reference UID; a head series planned for defacing first, then
    the one with most files (ties: by UID)."""
    cands = anat.get(pet.frame_of_reference) if pet.frame_of_reference else None
    if not cands:
        return None
    usable = [(uid, recs) for uid, recs in cands.items() if len(recs) >= MIN_SERIES_SLICES]
    if not usable:
        return None
    uid, recs = min(usable, key=lambda u: (u[1][0].path not in grouped, -len(u[1]), u[0]))
    return [r.path for r in recs], uid


# -- BIDS --------------------------------------------------------------------------------------
@dataclass
class _Dataset:
    name: str                                   # output folder under bids/
    labels: dict[str, str] = field(default_factory=dict)  # original label -> new label


def _bids_root(folder: Path, cache: dict[Path, Path | None]) -> Path | None:
    """The nearest folder at or above ``folder`` with a ``dataset_description.json`` and a
    ``sub-*`` folder, or None."""
    if folder in cache:
        return cache[folder]
    root: Path | None = None
    try:
        if (folder / "dataset_description.json").is_file() and any(
                c.name.startswith("sub-") and c.is_dir() for c in folder.iterdir()):
            root = folder
    except OSError:
        root = None
    if root is None and folder.parent != folder:
        root = _bids_root(folder.parent, cache)
    cache[folder] = root
    return root


def _find_bids(recs: list[ScanRecord]) -> tuple[dict[str, tuple[Path, str]], dict[str, str]]:
    """The files of BIDS datasets.

    Returns path -> (dataset root, subject folder name or '') for the NIfTI and text files
    (a subject's pseudonym is keyed ``BIDS:<root>/sub-<label>`` wherever its folder lies),
    and path -> reason for the files skipped: hidden ones (``.git``, ``.datalad``; not
    ``.bidsignore``) and those of no kind that pixeldeid releases (physiological
    recordings, EEG, scripts). Other files (DICOM in ``sourcedata/``, a damaged image) are
    left to the plan as anywhere else.
    """
    cache: dict[Path, Path | None] = {}
    found: dict[str, tuple[Path, str]] = {}
    skip: dict[str, str] = {}
    for rec in recs:
        p = Path(rec.path)
        root = _bids_root(p.parent, cache)
        if root is None:
            continue
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) and rel.as_posix() != ".bidsignore":
            skip[rec.path] = "hidden file of a BIDS dataset: not released"
            continue
        if not rec.kind and rec.reason == UNSUPPORTED:
            skip[rec.path] = ("file of a BIDS dataset that is not an image or a known text "
                              "file: not released")
            continue
        if rec.kind not in ("nifti", "sidecar"):
            continue
        # the subject folder, also inside derivatives/ or sourcedata/ (same subject, same key)
        sub = next((part for part in rel.parts[:-1] if part.startswith("sub-")), "")
        found[rec.path] = (root, sub)
    return found, skip


def _participants(path: Path) -> list[str]:
    """The ``participant_id`` values (``sub-*``) of a participants.tsv ([] if unreadable)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    if not lines:
        return []
    head = lines[0].split("\t")
    if "participant_id" not in head:
        return []
    col = head.index("participant_id")
    cells = [ln.split("\t") for ln in lines[1:]]
    return [c[col].strip() for c in cells if len(c) > col and c[col].strip().startswith("sub-")]


def _label_identity(label: str) -> list[tuple[str, str]]:
    """Identity of an original subject label: ``sub-<label>``, and the bare label unless
    it is a short plain number (``01`` would be found in every file)."""
    out = [("other", f"sub-{label}")]
    if not (label.isdigit() and len(label) < 6) and len(label) >= 4:
        out.append(("other", label))
    return out


def _dataset_identity(root: Path) -> set[tuple[str, str]]:
    """(kind, value) of the identity values a BIDS dataset's JSON sidecars and TSV tables
    hold (:func:`defacing.identity.collect_values`)."""
    from defacing.identity import collect_values, sidecar_files

    kinds = {"name": "name", "id": "id", "birth": "birth_date"}
    return {(kinds[k], v) for k, vs in collect_values(sidecar_files(root)).items()
            for v in vs if v.strip()}


def _bids_datasets(bids_of: dict[str, tuple[Path, str]], assign: Callable, plan: Plan,
                   key: bytes) -> dict[Path, _Dataset]:
    """Pseudonyms of the subjects of every BIDS dataset (folders with inputs, then the
    ``participants.tsv`` rows of an input one), their new labels and the output names."""
    from defacing.bids import subject_labels
    from defacing.sidecars import DATE_RE


    subjects: dict[Path, dict[str, None]] = {}
    dated: set[tuple[str, str]] = set()
    for path, (root, sub) in bids_of.items():
        subs = subjects.setdefault(root, {})
        if sub:
            subs[sub] = None
            pkey = f"BIDS:{root.resolve() / sub}"
            assign(path, pkey)
            for ses in _SESSION_RE.findall(Path(path).relative_to(root).as_posix()):
                if DATE_RE.fullmatch(ses):  # kept, but verify looks for it
                    dated.add((pkey, ses))
        if Path(path).relative_to(root).as_posix() == "participants.tsv":
            for pid in _participants(Path(path)):
                subs[pid] = None
    datasets: dict[Path, _Dataset] = {}
    for root, subs in sorted(subjects.items()):
        pseudos: dict[str, str] = {}
        for sub in subs:
            pkey = f"BIDS:{root.resolve() / sub}"
            if pkey not in plan.subject_map:  # listed in participants.tsv only
                assign(f"BIDS-SUBJECT:{pkey}", pkey)
            pseudo = plan.subject_map[pkey]
            pseudos[sub[4:]] = pseudo
            plan.identity.setdefault(pseudo, set()).update(_label_identity(sub[4:]))
        # the names, IDs and birth dates its sidecars and tables hold: verify looks for
        # them in every file of its subjects (the stage removes or quarantines them)
        found = _dataset_identity(root)
        for pseudo in pseudos.values():
            plan.identity.setdefault(pseudo, set()).update(found)
        # named by a keyed hash: nothing of an input path reaches an output name (a
        # dataset folder may be named after a patient or a study)
        datasets[root] = _Dataset(f"dataset-{_hash(key, 'bids', str(root.resolve()), 8)}",
                                  subject_labels(pseudos))
    for pkey, ses in dated:
        plan.identity.setdefault(plan.subject_map[pkey], set()).add(("other", ses))
    if dated:
        plan.notes.append(f"{len({s for _, s in dated})} BIDS session label(s) look like "
                          "dates: they are kept in the output names (rename the sessions "
                          "before release; `pixeldeid verify` reports them)")
    return datasets


def _bids_action(path: Path) -> tuple[str, str]:
    """(action, deface hint) of a file of a BIDS dataset."""
    from defacing.bids import defaced_suffix

    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        suffix = defaced_suffix(path)
        return ("deface", f"_{suffix}") if suffix else ("copy-image", "")
    if name.endswith(".json"):
        return "json", ""
    if name.endswith(".tsv"):
        return "tsv", ""
    if name.endswith((".bval", ".bvec")):
        return "copy", ""
    return "text", ""


def _bids_item(rec: ScanRecord, where: tuple[Path, str], datasets: dict[Path, _Dataset],
               keys: dict[str, str], plan: Plan, deface: bool) -> Item:
    """The item of one file of a BIDS dataset (output ``bids/<dataset>/<relabelled path>``)."""
    from defacing.bids import relabel_subjects

    root, sub = where
    ds = datasets[root]
    p = Path(rec.path)
    parts = [relabel_subjects(part, ds.labels)[0] for part in p.relative_to(root).parts]
    target = "/".join([BIDS_DIRNAME, ds.name, *parts])
    new = set(ds.labels.values())
    unknown = sorted({m for part in parts for m in _SUBJECT_RE.findall(part)} - new)
    pkey = keys.get(rec.path) or (f"BIDS:{root.resolve() / sub}" if sub else "")
    patient = plan.subject_map.get(pkey, "") if pkey else ""
    action, hint = _bids_action(p)
    # one map per dataset, shared; the root: the dataset's identity values (stages)
    bids = {"action": action, "hint": hint, "labels": ds.labels, "root": str(root)}
    if rec.kind == "nifti":
        mod = "PT" if hint == "_pet" else "CT" if hint.lower() == "_ct" else "MR"
        item = Item(rec.path, "nifti", ["deface"] if action == "deface" else ["bids"],
                    modality=mod, patient=patient, target=target, bids=bids)
        if not deface:
            item.stages, item.status = [], "skipped"
            item.reason = ("defacing disabled in the job: a head volume is not released"
                           if action == "deface" else "defacing disabled in the job: images "
                           "of a BIDS dataset are not released (they may show a face)")
    else:
        item = Item(rec.path, "sidecar", ["bids"], patient=patient, target=target, bids=bids)
    if unknown and item.status == "planned":  # fail closed: the name would keep a label
        item.stages, item.status = [], "quarantined"
        item.reason = ("BIDS file name holds a subject label that is neither a subject folder "
                       "of the run nor in participants.tsv: cannot be renamed")
    return item
