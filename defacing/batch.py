"""Deface a batch of inputs (NIfTI files, BIDS datasets, DICOM series folders) into OUT.

Every input ends up either defaced in OUT or copied to ``OUT/quarantine`` with a reason;
nothing is passed through unchanged and nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
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
    #: Why an ``unsupported`` job is quarantined (default: not NIfTI or DICOM).
    reason: str = ""


def failure_reason(exc: BaseException) -> str:
    """One line saying why a job failed, never a traceback.

    A :class:`~pixeldeid.errors.DeidError` gives its own reason; any other exception
    (a bug or a library's complaint about a damaged input) gives
    ``"<ExceptionType>: <first line of its message>"``.
    """
    reason = getattr(exc, "reason", None)
    if reason:
        return " ".join(str(reason).split())
    lines = str(exc).strip().splitlines()
    first = " ".join(lines[0].split()) if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _is_dicom_file(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def not_regular(path: Path) -> str | None:
    """Why ``path`` is not a regular file that can be read (a link is followed), or None.

    FIFOs, devices, sockets, dangling links and links to folders are never opened (a
    FIFO would block the run, a device never end).
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "not a regular file (dangling link)" if path.is_symlink() else "not found"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if stat.S_ISREG(mode):
        return None
    kind = ("folder, not followed" if stat.S_ISDIR(mode)
            else "FIFO" if stat.S_ISFIFO(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "socket" if stat.S_ISSOCK(mode) else "special file")
    return f"not a regular file ({'link to a ' if path.is_symlink() else ''}{kind})"


def _inside(path: str, folder: str) -> bool:
    """True when the resolved ``path`` is ``folder`` or lies below it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def scan_folder(src: Path, out: Path, hidden: Callable[[Path], bool]) -> Iterable[Path]:
    """Entries below the folder ``src`` to plan, sorted: not folders (links to folders are
    entries: they are not followed), not ``hidden``, nothing below OUT (compared as
    resolved paths: OUT may be spelled differently or be reached through a link). When
    ``src`` itself lies inside OUT, nothing is left out: its entries are inputs."""
    out_real = os.path.realpath(out)
    src_in_out = _inside(os.path.realpath(src), out_real)
    in_out: dict[Path, bool] = {}  # by folder
    for p in sorted(src.rglob("*")):
        if hidden(p) or (p.is_dir() and not p.is_symlink()):
            continue
        if p.parent not in in_out:
            in_out[p.parent] = _inside(os.path.realpath(p.parent), out_real)
        if src_in_out or not in_out[p.parent]:
            yield p


def refuse_collisions(jobs: list[Job]) -> list[Job]:
    """Jobs whose output file another job already writes, or whose output is an input,
    become ``unsupported`` jobs (quarantined with the reason): one input never overwrites
    another's output, and outputs never overwrite inputs. The first job keeps its output."""
    first: dict[str, Path] = {}
    sources = {os.path.realpath(j.source) for j in jobs}
    result = []
    for job in jobs:
        key = None if job.output is None else os.path.abspath(job.output)
        if key is not None and key in first:
            job = Job("unsupported", job.source,
                      reason=f"output {job.output} is also the output of {first[key]} "
                             "(same name): deface them into separate OUT folders")
        elif key is not None and os.path.realpath(key) in sources:
            job = Job("unsupported", job.source,
                      reason=f"output {job.output} would overwrite an input")
        elif key is not None:
            first[key] = job.source
        result.append(job)
    return result


def plan(sources: Iterable[str | os.PathLike], out: Path) -> list[Job]:
    """Turn SRC arguments into jobs. Folders are scanned recursively; DICOM files are
    grouped into series later. Unknown files, and entries that are not regular files
    (FIFOs, devices, dangling links), become ``unsupported`` jobs (quarantined); so do
    inputs whose output name another input takes (:func:`refuse_collisions`)."""
    jobs: list[Job] = []
    dicom_files: list[Path] = []
    for s in sources:
        src = Path(s)
        if src.is_dir():
            for p in scan_folder(src, out, lambda p: p.name.startswith(".")):
                why = not_regular(p)
                if why:
                    jobs.append(Job("unsupported", p, reason=why))
                elif is_nifti(p):
                    jobs.append(Job("nifti", p, out / src.name / p.relative_to(src)))
                elif _is_dicom_file(p) or p.suffix.lower() == ".dcm":
                    dicom_files.append(p)
                else:
                    jobs.append(Job("unsupported", p))
        elif not_regular(src):
            jobs.append(Job("unsupported", src, reason=not_regular(src)))
        elif is_nifti(src):
            jobs.append(Job("nifti", src, out / src.name))
        elif src.is_file() and (_is_dicom_file(src) or src.suffix.lower() == ".dcm"):
            dicom_files.append(src)
        else:
            jobs.append(Job("unsupported", src))
    jobs = refuse_collisions(list(each_path_once(jobs, lambda j: j.source)))  # a file named twice: one job
    if dicom_files:
        jobs.append(Job("dicom", out, files=list(each_path_once(dicom_files))))
    return jobs


def run_jobs(jobs: list[Job], out: Path, *, modality: str = "auto", device: str = "cpu",
             qc: bool = False, deidentifier=None, check_orientation: bool = True,
             progress: Callable[[Iterable], Iterable] | None = None) -> Summary:
    """Run jobs; failures (any exception) are quarantined and the batch goes on."""
    summary = Summary()
    qc_dir = out / QC_DIRNAME if qc else None
    it = progress(jobs) if progress else jobs
    for job in it:
        try:
            _run_job(job, out, summary, modality=modality, device=device, qc_dir=qc_dir,
                     deidentifier=deidentifier, check_orientation=check_orientation)
        except Exception as exc:  # noqa: BLE001 - one bad input never ends the batch
            reason = failure_reason(exc)
            logger.error("%s: %s", printable(job.source), printable(reason))
            for f in job.files or [job.source]:
                rec = quarantine(f, out, reason, stage="deface")
                summary.outcomes.append(Outcome(str(f), reason=rec.reason))
    write_report(summary, out)
    return summary


def _run_job(job: Job, out: Path, summary: Summary, *, modality: str, device: str,
             qc_dir: Path | None, deidentifier, check_orientation: bool) -> None:
    """Run one job, adding its outcomes to ``summary``; raises when its input fails."""
    if job.kind == "unsupported":
        reason = job.reason or ("not found" if not job.source.exists()
                                else "unsupported input (not NIfTI or DICOM)")
        rec = quarantine(job.source, out, reason, stage="deface")
        summary.outcomes.append(Outcome(str(job.source), reason=rec.reason))
    elif job.kind in ("copy", "copy-image", "json", "tsv"):
        _copy_job(job, out, summary)
    elif job.kind == "dicom":
        from .dicom_series import deface_dicom_files

        summary.outcomes.extend(deface_dicom_files(
            job.files, out, modality=modality, device=device, qc_dir=qc_dir,
            deidentifier=deidentifier, check_orientation=check_orientation))
    else:
        res = deface_nifti(job.source, job.output, modality=modality, device=device,
                           qc_dir=qc_dir, hint=job.hint, reference=job.reference,
                           reference_volumes=job.reference_volumes,
                           check_orientation=check_orientation)
        summary.outcomes.append(Outcome(str(job.source), str(job.output), metrics=res.metrics))


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
    except Exception as exc:  # noqa: BLE001 - quarantined, the batch goes on
        reason = (failure_reason(exc) if isinstance(exc, DeidError)
                  else f"copy failed: {failure_reason(exc)}")
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
