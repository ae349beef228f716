"""Deface a batch of inputs (NIfTI files, BIDS datasets, DICOM series folders) into OUT.

Every input ends up either defaced in OUT or copied to ``OUT/quarantine`` with a reason;
nothing is passed through unchanged and nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pixeldeid.atomic import atomic_output
from pixeldeid.errors import DeidError
from pixeldeid.paths import each_path_once, printable
from pixeldeid.quarantine import quarantine

from .nifti import deface_nifti, is_nifti

logger = logging.getLogger(__name__)

QC_DIRNAME = "qc"
#: Per-file report written into OUT by :func:`run_jobs`.
REPORT_NAME = "deface_report.json"


@dataclass
class Outcome:
    """One input and what became of it."""

    source: str
    output: str | None = None
    reason: str | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class Summary:
    """All outcomes of a run."""

    outcomes: list[Outcome] = field(default_factory=list)
    copied: int = 0
    #: Images copied unchanged that may show a (low-resolution) face.
    unchanged_images: list[str] = field(default_factory=list)
    #: Per-file entries of copied and scrubbed files (see :func:`write_report`).
    files: list[dict] = field(default_factory=list)

    @property
    def defaced(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def quarantined(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def exit_status(self) -> int:
        return 0 if not self.quarantined else 1

    def line(self, out: str | os.PathLike) -> str:
        copied = f", {self.copied} other files copied" if self.copied else ""
        if self.unchanged_images:
            copied += (f", {len(self.unchanged_images)} images NOT defaced (copied unchanged, "
                       f"may show a low-resolution face; see {REPORT_NAME})")
        return (f"{len(self.defaced)} defaced, {len(self.quarantined)} quarantined "
                f"of {len(self.outcomes)} inputs{copied} -> {out}")


@dataclass
class Job:
    """A unit of work: one NIfTI file or one DICOM series (several files)."""

    kind: str  # "nifti" | "dicom" | "copy" | "copy-image" | "json" | "tsv" | "unsupported"
    source: Path
    output: Path | None = None
    files: list[Path] = field(default_factory=list)
    hint: str = ""
    reference: Path | None = None
    reference_volumes: list[int] | None = None


def _is_dicom_file(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def plan(sources: Iterable[str | os.PathLike], out: Path) -> list[Job]:
    """Turn SRC arguments into jobs. Folders are scanned recursively; DICOM files are
    grouped into series later. Unknown files become ``unsupported`` jobs (quarantined)."""
    jobs: list[Job] = []
    dicom_files: list[Path] = []
    for s in sources:
        src = Path(s)
        if src.is_dir():
            for p in sorted(src.rglob("*")):
                if not p.is_file() or p.name.startswith("."):
                    continue
                if out in p.parents:
                    continue
                rel = p.relative_to(src)
                if is_nifti(p):
                    jobs.append(Job("nifti", p, out / src.name / rel))
                elif _is_dicom_file(p) or p.suffix.lower() == ".dcm":
                    dicom_files.append(p)
                else:
                    jobs.append(Job("unsupported", p))
        elif is_nifti(src):
            jobs.append(Job("nifti", src, out / src.name))
        elif src.is_file() and (_is_dicom_file(src) or src.suffix.lower() == ".dcm"):
            dicom_files.append(src)
        else:
            jobs.append(Job("unsupported", src))
    jobs = list(each_path_once(jobs, lambda j: j.source))  # a file named twice: one job
    if dicom_files:
        jobs.append(Job("dicom", out, files=list(each_path_once(dicom_files))))
    return jobs


def run_jobs(jobs: list[Job], out: Path, *, modality: str = "auto", device: str = "cpu",
             qc: bool = False, deidentifier=None, check_orientation: bool = True,
             progress: Callable[[Iterable], Iterable] | None = None) -> Summary:
    """Run jobs; failures are quarantined and the batch goes on."""
    summary = Summary()
    qc_dir = out / QC_DIRNAME if qc else None
    it = progress(jobs) if progress else jobs
    for job in it:
        if job.kind == "unsupported":
            reason = ("not found" if not job.source.exists()
                      else "unsupported input (not NIfTI or DICOM)")
            rec = quarantine(job.source, out, reason, stage="deface")
            summary.outcomes.append(Outcome(str(job.source), reason=rec.reason))
            continue
        if job.kind in ("copy", "copy-image", "json", "tsv"):
            _copy_job(job, out, summary)
            continue
        if job.kind == "dicom":
            from .dicom_series import deface_dicom_files

            summary.outcomes.extend(deface_dicom_files(
                job.files, out, modality=modality, device=device, qc_dir=qc_dir,
                deidentifier=deidentifier, check_orientation=check_orientation))
            continue
        try:
            res = deface_nifti(job.source, job.output, modality=modality, device=device,
                               qc_dir=qc_dir, hint=job.hint, reference=job.reference,
                               reference_volumes=job.reference_volumes,
                               check_orientation=check_orientation)
            summary.outcomes.append(Outcome(str(job.source), str(job.output), metrics=res.metrics))
        except (DeidError, OSError, MemoryError) as exc:
            reason = getattr(exc, "reason", None) or str(exc)
            logger.error("%s: %s", printable(job.source), printable(reason))
            rec = quarantine(job.source, out, reason, stage="deface")
            summary.outcomes.append(Outcome(str(job.source), reason=rec.reason))
    write_report(summary, out)
    return summary


def _copy_job(job: Job, out: Path, summary: Summary) -> None:
    from .sidecars import scrub_json_file, scrub_tsv_file

    entry = {"source": str(job.source), "output": str(job.output)}
    try:
        if job.kind == "json":
            entry["status"] = "scrubbed"
            entry["removed_keys"] = scrub_json_file(job.source, job.output)
        elif job.kind == "tsv":
            entry["status"] = "scrubbed"
            entry["dates_removed"] = scrub_tsv_file(job.source, job.output)
        elif job.kind == "copy-image":  # voxels kept; header text and extensions dropped
            from .nifti import read_nifti, write_nifti_atomic

            data, _, slope, inter, img = read_nifti(job.source)
            write_nifti_atomic(job.output, data, img, slope, inter, descrip=b"")
            entry["status"] = "copied-not-defaced"
            entry["note"] = ("image voxels copied unchanged (header free text and extensions "
                             "removed): may show a low-resolution face")
            summary.unchanged_images.append(str(job.source))
        else:
            with open(job.source, "rb") as src, atomic_output(job.output) as dst:
                shutil.copyfileobj(src, dst)
            entry["status"] = "copied"
        summary.copied += 1
        summary.files.append(entry)
    except (DeidError, OSError) as exc:
        reason = getattr(exc, "reason", None) or f"copy failed: {exc}"
        rec = quarantine(job.source, out, reason, stage="deface")
        summary.outcomes.append(Outcome(str(job.source), reason=rec.reason))


def write_report(summary: Summary, out: Path) -> Path:
    """Write ``OUT/deface_report.json``: one entry per input file and what became of it."""
    entries = [{"source": o.source, "output": o.output,
                "status": "defaced" if o.ok else "quarantined", "reason": o.reason,
                "face_fraction_removed": o.metrics.get("face_fraction_removed"),
                "brain_voxels_changed": o.metrics.get("brain_voxels_changed")}
               for o in summary.outcomes]
    path = Path(out) / REPORT_NAME
    with atomic_output(path) as fh:
        fh.write(json.dumps({"files": entries + summary.files,
                             "images_not_defaced": summary.unchanged_images},
                            indent=2).encode("utf-8"))
    return path
