"""Deface a batch of inputs (NIfTI files, BIDS datasets, DICOM series folders) into OUT.

Every input ends up either defaced in OUT, or copied to ``OUT/quarantine`` with a reason,
or (files below hidden folders such as ``.git``, and operating-system files) skipped with
a reason; nothing is passed through unchanged and nothing is dropped silently. What
names the inputs stays in ``OUT/.pixeldeid/`` (never released): the per-file report
``deface_report.json``, the map ``deface_map.csv`` and the ``--qc`` renders, which show the
face before defacing. Outside BIDS mode NIfTI outputs are named by a keyed hash of the
input path (:mod:`defacing.naming`), never by the input's folder or file name.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pixeldeid.atomic import atomic_output
from pixeldeid.batch import STATE_DIRNAME
from pixeldeid.errors import DeidError, InputError
from pixeldeid.paths import each_path_once, printable
from pixeldeid.quarantine import quarantine

from .kinds import hidden_folder, is_dicom_file, skip_reason
from .naming import OutputNamer, write_map
from .nifti import deface_nifti, is_nifti

logger = logging.getLogger(__name__)

#: QC renders and metrics go to ``OUT/.pixeldeid/qc`` (they show the face before defacing).
QC_DIRNAME = "qc"
#: Per-file report written into ``OUT/.pixeldeid`` by :func:`run_jobs` (it names the inputs).
REPORT_NAME = "deface_report.json"
#: Job kinds of text files, written after their checks by :func:`_text_job`.
TEXT_KINDS = ("json", "tsv", "tsv-gz", "text")


def state_dir(out: Path) -> Path:
    """``OUT/.pixeldeid``: what is never released."""
    return Path(out) / STATE_DIRNAME


def qc_dir_of(out: Path) -> Path:
    """Where ``--qc`` writes: ``OUT/.pixeldeid/qc``."""
    return state_dir(out) / QC_DIRNAME


def report_path(out: Path) -> Path:
    """``OUT/.pixeldeid/deface_report.json``."""
    return state_dir(out) / REPORT_NAME


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
    #: Entries of files skipped with a reason (hidden folders, operating-system files).
    skipped: list[dict] = field(default_factory=list)

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
        report = f"{STATE_DIRNAME}/{REPORT_NAME}"
        copied = f", {self.copied} other files copied" if self.copied else ""
        if self.unchanged_images:
            copied += (f", {len(self.unchanged_images)} images NOT defaced (copied unchanged, "
                       f"may show a low-resolution face; see {report})")
        if self.skipped:
            n = sum(e.get("files", 1) for e in self.skipped)
            copied += (f", {n} files skipped (hidden folders or system files, not released; "
                       f"see {report})")
        return (f"{len(self.defaced)} defaced, {len(self.quarantined)} quarantined "
                f"of {len(self.outcomes)} inputs{copied} -> {out}")


@dataclass
class Job:
    """A unit of work: one NIfTI file or one DICOM series (several files)."""

    #: "nifti" | "dicom" | "copy-image" | "json" | "tsv" | "tsv-gz" | "text" |
    #: "unsupported" (quarantined) | "skip" (reported, not released)
    kind: str
    source: Path
    output: Path | None = None
    files: list[Path] = field(default_factory=list)
    hint: str = ""
    reference: Path | None = None
    reference_volumes: list[int] | None = None
    #: Why an ``unsupported`` job is quarantined (default: not NIfTI or DICOM), or a
    #: ``skip`` job skipped.
    reason: str = ""
    #: Identity values a text job's output must not hold (:mod:`defacing.identity`).
    tokens: tuple[str, ...] = ()
    #: Rewrites a text job's text before its checks (dated session labels renamed).
    relabel: Callable[[str], tuple[str, int]] | None = None


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
    return is_dicom_file(p)


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


def skip_jobs(entries: Iterable[Path], root: Path) -> tuple[list[Job], list[Path]]:
    """Split the entries below the folder ``root``: ``skip`` jobs (one per hidden folder,
    one per operating-system file) and the entries left to plan."""
    hidden: dict[Path, list[Path]] = {}
    jobs: list[Job] = []
    rest: list[Path] = []
    for p in entries:
        rel = p.relative_to(root)
        folder = hidden_folder(rel)
        why = skip_reason(rel)
        if folder is not None:
            hidden.setdefault(root / folder, []).append(p)
        elif why:
            jobs.append(Job("skip", p, reason=why))
        else:
            rest.append(p)
    for folder, files in hidden.items():
        jobs.append(Job("skip", folder, files=files,
                        reason=f"hidden folder ({len(files)} files; version control or tool "
                               "state): not released"))
    return jobs, rest


def _plan_file(p: Path, namer: OutputNamer, jobs: list[Job], dicom_files: list[Path]) -> None:
    """Add the job of one regular file or entry ``p`` (DICOM files are grouped later)."""
    why = not_regular(p)
    if why:
        jobs.append(Job("unsupported", p, reason=why))
    elif is_nifti(p):
        jobs.append(Job("nifti", p, namer.nifti(p)))
    elif _is_dicom_file(p) or p.suffix.lower() == ".dcm":
        dicom_files.append(p)
    else:
        jobs.append(Job("unsupported", p))


def plan(sources: Iterable[str | os.PathLike], out: Path, key: bytes | None = None) -> list[Job]:
    """Turn SRC arguments into jobs. Folders are scanned recursively; DICOM files are
    grouped into series later. Unknown files, and entries that are not regular files
    (FIFOs, devices, dangling links), become ``unsupported`` jobs (quarantined); so do
    inputs whose output name another input takes (:func:`refuse_collisions`). Files below
    hidden folders and operating-system files become ``skip`` jobs (reported).

    NIfTI outputs are named by a keyed hash of the input path under ``key``
    (:class:`defacing.naming.OutputNamer`; None: a random key, names no rerun repeats).
    """
    namer = OutputNamer(out, key)
    jobs: list[Job] = []
    dicom_files: list[Path] = []
    for s in sources:
        src = Path(s)
        if src.is_dir():
            skipped, rest = skip_jobs(scan_folder(src, out, lambda p: False), src)
            jobs.extend(skipped)
            for p in rest:
                _plan_file(p, namer, jobs, dicom_files)
        elif not_regular(src):
            jobs.append(Job("unsupported", src, reason=not_regular(src)))
        else:
            _plan_file(src, namer, jobs, dicom_files)
    jobs = refuse_collisions(list(each_path_once(jobs, lambda j: j.source)))  # a file named twice: one job
    if dicom_files:
        jobs.append(Job("dicom", out, files=list(each_path_once(dicom_files))))
    return jobs


def run_jobs(jobs: list[Job], out: Path, *, modality: str = "auto", device: str = "cpu",
             qc: bool = False, deidentifier=None, check_orientation: bool = True,
             progress: Callable[[Iterable], Iterable] | None = None) -> Summary:
    """Run jobs; failures (any exception) are quarantined and the batch goes on. The
    report and the map go to ``OUT/.pixeldeid/``, ``--qc`` renders to
    ``OUT/.pixeldeid/qc``."""
    summary = Summary()
    qc_dir = qc_dir_of(out) if qc else None
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
    elif job.kind == "skip":
        logger.info("%s: skipped: %s", printable(job.source), job.reason)
        summary.skipped.append({"source": str(job.source), "output": None, "status": "skipped",
                                "reason": job.reason, "files": len(job.files) or 1})
    elif job.kind == "copy-image" or job.kind in TEXT_KINDS:
        _copy_job(job, out, summary)
    elif job.kind == "dicom":
        from .dicom_series import deface_dicom_files

        summary.outcomes.extend(deface_dicom_files(
            job.files, out, modality=modality, device=device, qc_dir=qc_dir,
            deidentifier=deidentifier, check_orientation=check_orientation))
    elif job.kind == "nifti":
        res = deface_nifti(job.source, job.output, modality=modality, device=device,
                           qc_dir=qc_dir, hint=job.hint, reference=job.reference,
                           reference_volumes=job.reference_volumes,
                           check_orientation=check_orientation)
        summary.outcomes.append(Outcome(str(job.source), str(job.output), metrics=res.metrics))
    else:
        raise DeidError(f"no deface job of kind {job.kind!r}", str(job.source))


def _copy_image(job: Job, entry: dict, summary: Summary) -> None:
    """A NIfTI image not defaced: voxels kept, header text and extensions dropped."""
    from .nifti import read_nifti, write_nifti_atomic

    data, _, slope, inter, img = read_nifti(job.source)
    write_nifti_atomic(job.output, data, img, slope, inter, descrip=b"")
    entry["status"] = "copied-not-defaced"
    entry["note"] = ("image voxels copied unchanged (header free text and extensions "
                     "removed): may show a low-resolution face")
    summary.unchanged_images.append(str(job.source))


def _copy_job(job: Job, out: Path, summary: Summary) -> None:
    """Write a file that is not defaced (an image copied, a text file checked); a failure
    quarantines it with the reason."""
    entry: dict = {"source": str(job.source), "output": str(job.output)}
    try:
        if job.kind == "copy-image":
            _copy_image(job, entry, summary)
        else:
            entry.update(_text_job(job))
        summary.copied += 1
        summary.files.append(entry)
    except Exception as exc:  # noqa: BLE001 - quarantined, the batch goes on
        reason = (failure_reason(exc) if isinstance(exc, DeidError)
                  else f"copy failed: {failure_reason(exc)}")
        rec = quarantine(job.source, out, reason, stage="deface")
        summary.outcomes.append(Outcome(str(job.source), reason=rec.reason))


def _read_job_text(job: Job) -> tuple[bytes, str]:
    """The input bytes of a text job and their UTF-8 text (a ``.tsv.gz`` decompressed)."""
    from .sidecars import read_text

    what = {"json": "JSON sidecar", "tsv": "TSV", "tsv-gz": "TSV"}.get(job.kind, "text file")
    if job.kind != "tsv-gz":
        raw, text = read_text(job.source, what)
    else:
        try:
            raw = gzip.decompress(job.source.read_bytes())
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"unreadable gzip: {exc}", str(job.source)) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"TSV is not UTF-8 text: {exc.reason}", str(job.source)) from None
    if "\x00" in text:
        raise InputError(f"{what} holds NUL characters (binary data)", str(job.source))
    return raw, text


def _scrub(job: Job, text: str) -> tuple[str | None, dict]:
    """The scrubbed text of a text job (None: unchanged) and what the report says of it."""
    from .sidecars import scrub_json_text, scrub_tsv_text

    if job.kind == "json":
        if not text.strip():
            raise InputError("unreadable JSON sidecar: empty", str(job.source))
        new, removed = scrub_json_text(text, job.source)
        return new, {"status": "scrubbed", "removed_keys": removed}
    if job.kind in ("tsv", "tsv-gz"):
        new, count = scrub_tsv_text(text, header=job.kind == "tsv")
        entry = {"status": "scrubbed", "dates_removed": count}
        new = new if count else None
        if job.kind == "tsv" and job.output is not None \
                and job.output.name.lower().endswith("_scans.tsv"):
            new = _prune_scans(new if new is not None else text, job.output.parent, entry) \
                or new
        return new, entry
    return None, {"status": "copied"}


def _prune_scans(text: str, folder: Path, entry: dict) -> str | None:
    """``scans.tsv`` without the rows of files not released (quarantined, or failed:
    the table keeps pointing at released files only), or None when none is missing. Run
    after the images of the dataset (:func:`defacing.bids.plan_bids` orders the jobs)."""
    from .sidecars import prune_rows

    def released(cell: str) -> bool:
        return bool(cell) and ".." not in Path(cell).parts and (folder / cell).is_file()

    pruned, dropped = prune_rows(text, "filename", released)
    if not dropped:
        return None
    entry["rows_removed"] = dropped  # (rows naming files not released)
    return pruned


def _text_job(job: Job) -> dict:
    """Write a text job's output: dated session labels renamed, JSON and TSV scrubbed
    (:mod:`defacing.sidecars`), then refused (InputError: quarantined) when it still holds
    an identity value of the dataset or, for other text, text labelled as a patient's
    identity (:func:`defacing.identity.find_identity`). Unchanged files keep their bytes
    (a ``.tsv.gz`` is always compressed anew: its gzip header may name a file)."""
    from .identity import find_identity

    raw, text = _read_job_text(job)
    relabelled = 0
    if job.relabel is not None:
        text, relabelled = job.relabel(text)
    new, entry = _scrub(job, text)
    final = new if new is not None else text
    why = find_identity(final, job.tokens, labels=job.kind == "text")
    if why:
        raise InputError(f"{why}: not released", str(job.source))
    data = raw if new is None and not relabelled else final.encode("utf-8")
    if job.kind == "tsv-gz":
        data = gzip.compress(data, mtime=0)
    with atomic_output(job.output) as fh:
        fh.write(data)
    if relabelled:
        entry["sessions_relabelled"] = relabelled
    return entry


def write_report(summary: Summary, out: Path) -> Path:
    """Write ``OUT/.pixeldeid/deface_report.json`` (one entry per input file and what
    became of it; it names the inputs: never released) and merge the inputs and their
    outputs into ``OUT/.pixeldeid/deface_map.csv``."""
    entries = [{"source": o.source, "output": o.output,
                "status": "defaced" if o.ok else "quarantined", "reason": o.reason,
                "face_fraction_removed": o.metrics.get("face_fraction_removed"),
                "brain_voxels_changed": o.metrics.get("brain_voxels_changed")}
               for o in summary.outcomes]
    path = report_path(out)
    with atomic_output(path) as fh:
        fh.write(json.dumps({"files": entries + summary.files + summary.skipped,
                             "images_not_defaced": summary.unchanged_images},
                            indent=2).encode("utf-8"))
    rows = [(e["source"], e["output"], e["status"]) for e in entries + summary.files
            + summary.skipped]
    write_map(rows, out)
    return path
