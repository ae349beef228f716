"""One ``pixeldeid run``: check settings, plan, record the plan, run the items, package.

Examples
--------
>>> from pixeldeid.pipeline.job import Job
>>> from pixeldeid.pipeline.runner import run_pipeline
>>> summary = run_pipeline(["in/"], "out/", Job(key_file="project.key", jobs=2))  # doctest: +SKIP
>>> summary.exit_status                                                            # doctest: +SKIP
0
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..atomic import atomic_output, remove_stale_temporaries
from ..batch import STATE_DIRNAME, check_key, check_not_released, check_settings, load_or_create_key
from ..errors import DeidError
from ..quarantine import quarantine
from ..standard import PIXEL_OPTIONS
from ..uidstate import reconcile_overrides
from .job import Job
from .ledger import LEDGER_NAME, RunLedger
from .packaging import PACKAGES_DIRNAME, package_subjects
from .plan import Item, Plan, build_plan, pixel_stage_available
from .stages import QC_DIRNAME, WORK_DIRNAME, run_item

logger = logging.getLogger(__name__)

__all__ = ["RunSummary", "run_pipeline", "worker_settings", "plan_table", "STAGE_LABELS"]

RUN_SETTINGS_NAME = "run-settings-id"
#: progress bar label of each kind of item
STAGE_LABELS = {"dicom": "header", "dicom-series": "deface (DICOM)", "nifti": "deface (NIfTI)",
                "slide": "wsi"}


@dataclass
class RunSummary:
    """What a run did (or, for a dry run, would do)."""

    plan: Plan
    out: Path
    dry_run: bool = False
    done: int = 0
    already: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    lost: list[tuple[str, str]] = field(default_factory=list)
    packages: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return 1 if self.quarantined or self.lost else 0

    def line(self) -> str:
        if self.dry_run:
            return f"dry run: {len(self.plan.items)} item(s) planned, nothing written"
        parts = [f"{self.done} done", f"{self.already} already done",
                 f"{len(self.quarantined)} quarantined", f"{len(self.skipped)} skipped"]
        if self.lost:
            parts.append(f"{len(self.lost)} NOT finished (run again to continue)")
        pk = f", {len(self.packages)} package(s)" if self.packages else ""
        return (f"{len(self.plan.items)} item(s): {', '.join(parts)}{pk} -> {self.out} "
                f"({self.seconds:.1f} s)")


def _check_sources(sources: list, out: Path) -> None:
    out_resolved = out.resolve()
    for src in sources:
        try:
            if Path(src).resolve().is_relative_to(out_resolved):
                raise DeidError(f"source {src} is inside the output folder {out}; choose an "
                                "output folder outside the sources")
        except (OSError, RuntimeError):
            continue


def _check_run_settings(out: Path, key: bytes, job: Job, *, record: bool = True) -> None:
    """Refuse other stage settings (pixels, deface, wsi) on an output folder written before."""
    value = hmac.new(key, json.dumps(job.output_settings(), sort_keys=True).encode(),
                     hashlib.sha256).hexdigest()
    p = out / STATE_DIRNAME / RUN_SETTINGS_NAME
    if p.exists():
        if p.read_text(encoding="ascii", errors="replace").strip() != value:
            raise DeidError("this output folder was written by `pixeldeid run` with other "
                            "settings (profile, options, layout, pixels, deface or wsi); rerun "
                            "with the same job, or use another output folder", str(out))
        return
    if not record:
        return
    with atomic_output(p) as fh:
        fh.write(value.encode() + b"\n")


def _job_pixels(job: Job):
    """The job's burned-in text settings (no QC folder), or None when its policy is off."""
    if job.pixels.policy == "off":
        return None
    from ..burnedin.stage import PixelSettings

    return PixelSettings(policy=job.pixels.policy, ocr=job.pixels.ocr, device=job.pixels.device,
                         templates_dir=job.pixels.templates)


def _validate_engines(job: Job) -> None:
    """Usage errors before anything is written (the settings are recorded in OUT, so a typo
    found per item would quarantine every item and lock OUT to the typo): unknown OCR
    engines (did you mean), a named engine not installed, a missing templates folder."""
    pixels = _job_pixels(job)
    if pixels is None and not job.wsi.ocr:
        return
    from ..burnedin.stage import PixelSettings, validate_settings

    if pixels is not None:
        validate_settings(pixels)
    if job.wsi.ocr:
        validate_settings(PixelSettings(policy="auto", ocr=job.wsi.ocr))


def reads_text(settings) -> bool:
    """Whether the pixel stage of ``settings`` has an OCR engine to read images with."""
    if settings.ocr == "none":
        return False
    if settings.ocr != "auto":
        return True  # (a named engine that is missing is validate_settings' usage error)
    from ..burnedin.ocr import available_engines

    return bool(available_engines())


def check_option_claims(options: Iterable[str], pixels, *, deface: str | None) -> None:
    """Refuse options that record work the command will not do (usage errors, raised
    before anything is written; shared by ``pixeldeid dicom`` and ``pixeldeid run``).

    Parameters
    ----------
    options : iterable of str
        The options in force (profile and extra ones).
    pixels : PixelSettings or None
        The burned-in text stage's settings; None when the policy is off.
    deface : str or None
        None when the command defaces (the option is then recorded on defaced outputs
        only); else the end of the refusal: what does not deface, and what to do instead.

    Raises
    ------
    DeidError
        ``clean-pixel-data`` with no pixel stage or no OCR engine to read images with;
        ``clean-recognizable-visual-features`` without defacing.
    """
    options = frozenset(options)
    if pixels is None and "clean-pixel-data" in options:
        raise DeidError("option clean-pixel-data records a pixel cleaning that --pixels off "
                        "does not do; choose a --pixels policy or drop the option")
    if pixels is not None and "clean-pixel-data" in options and not reads_text(pixels):
        raise DeidError("option clean-pixel-data records a pixel check that no OCR engine "
                        "would do (--ocr none, or none installed: images without a template "
                        "would go unread); choose an OCR engine or drop the option")
    if deface is not None and "clean-recognizable-visual-features" in options:
        raise DeidError("option clean-recognizable-visual-features records a defacing that "
                        f"{deface} or drop the option")


#: the end of the defacing claim's refusal when a run's job turns defacing off
_NO_DEFACE = "--no-deface (deface: enabled: false) does not do; turn defacing on"


def _any_input(sources: list[str]) -> bool:
    """Whether ``sources`` hold a file at all (a run without one creates no key or state)."""
    for src in sources:
        if not os.path.isdir(src):
            return True  # (a file, or a path the plan reports on)
        for _root, _dirs, files in os.walk(src):
            if files:
                return True
    return False


def _pixel_settings(out: Path, job: Job):
    """The burned-in text stage's settings, or None when off or not available."""
    if job.pixels.policy == "off" or not pixel_stage_available():
        return None
    from ..burnedin.stage import PixelSettings

    return PixelSettings(policy=job.pixels.policy, ocr=job.pixels.ocr, device=job.pixels.device,
                         templates_dir=job.pixels.templates,
                         qc_dir=str(out / STATE_DIRNAME / QC_DIRNAME / "pixels"))


def worker_settings(out: Path, job: Job, key: bytes, profile, subject_map: dict[str, str],
                    uid_map: dict[str, str], uid_map_by_key: dict[str, str] | None = None,
                    ) -> dict:
    """The plain dict every worker gets (picklable; the key travels with it)."""
    pixels = _pixel_settings(out, job)
    if pixels is not None:
        pixels = dataclasses.asdict(pixels)
    # the pixel options are recorded by the stages that do their work, on those outputs only
    # (the pixel stage where it redacted or verified, defacing on defaced series): recorded
    # by the header core they would claim it for every output
    profile = dataclasses.replace(profile, options=profile.options - frozenset(PIXEL_OPTIONS))
    options = tuple(sorted(o for o in job.options if o not in PIXEL_OPTIONS))
    s = {"out": str(out), "profile": profile, "options": options,
         "prefix": job.pseudonym_prefix, "subject_map": dict(subject_map),
         "uid_map": dict(uid_map), "uid_map_by_key": dict(uid_map_by_key or {}),
         "layout": job.layout, "pixels": pixels,
         "deface": {"modality": job.deface.modality, "device": job.deface.device,
                    "qc": job.deface.qc, "check_orientation": job.deface.check_orientation},
         "wsi": {"label": job.wsi.label, "macro": job.wsi.macro, "ocr": job.wsi.ocr,
                 "verify": job.wsi.verify}}
    blob = json.dumps(s, sort_keys=True, default=repr).encode()
    s["sid"] = hmac.new(key, blob, hashlib.sha256).hexdigest()
    s["key"] = key
    return s


def plan_table(plan: Plan) -> str:
    """The plan as a text table: items, files and patients per kind, modality and stages."""
    rows: dict[tuple[str, str, str], list] = {}
    for it in plan.items:
        what = "+".join(it.stages) if it.status == "planned" or it.stages else f"({it.status})"
        k = (it.kind, it.modality or "-", what)
        r = rows.setdefault(k, [0, 0, set()])
        r[0] += 1
        r[1] += len(it.members) if it.members else 1
        if it.patient:
            r[2].add(it.patient)
    head = ("kind", "modality", "stages", "items", "files", "patients")
    body = [(k[0], k[1], k[2], str(v[0]), str(v[1]), str(len(v[2])) if v[2] else "-")
            for k, v in sorted(rows.items())]
    files = sum(int(b[4]) for b in body)
    body.append(("total", "", "", str(len(plan.items)), str(files), str(len(plan.patients))))
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = []
    for n, r in enumerate([head, *body]):
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                  strict=True))]
        lines.append("  " + "  ".join(cells).rstrip())
        if n == 0 or n == len(body) - 1:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _withdraw(out: Path, rel: str) -> None:
    """Remove an earlier output of an item whose source changed (only inside OUT)."""
    p = out / rel
    try:
        if not p.resolve().is_relative_to(out.resolve()) or p.is_symlink():
            return
    except (OSError, RuntimeError):
        return
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


def _has_packages(out: Path) -> bool:
    """Whether ``OUT/packages`` holds a zip (of an earlier run with ``--zip``)."""
    folder = out / PACKAGES_DIRNAME
    return folder.is_dir() and any(folder.glob("*.zip"))


def _bars(todo: list[Item], enabled: bool | None):
    from tqdm import tqdm

    totals = Counter(it.kind for it in todo)
    bars = {}
    for n, kind in enumerate(k for k in STAGE_LABELS if totals.get(k)):
        label = STAGE_LABELS[kind]
        if kind == "dicom" and any("pixels" in it.stages for it in todo if it.kind == kind):
            label = "pixels+header"
        bars[kind] = tqdm(total=totals[kind], desc=label, unit="item", position=n, leave=False,
                          disable=None if enabled is None else not enabled)
    return bars


def run_pipeline(sources: Iterable[str | os.PathLike], out: str | os.PathLike, job: Job, *,
                 dry_run: bool = False, progress: bool | None = None,
                 echo: Callable[[str], None] | None = None,
                 executor_options: dict | None = None,
                 retry_quarantined: bool = False) -> RunSummary:
    """Plan and run a collection into ``out``; see :mod:`pixeldeid.pipeline`.

    Parameters
    ----------
    sources : paths
        Input files and folders (never modified).
    out : path
        Output folder (created); its ``.pixeldeid/run.sqlite`` is the ledger.
    job : Job
        Settings (:func:`pixeldeid.pipeline.job.load_job`).
    dry_run : bool
        Print the plan and stop (nothing is written).
    progress : bool, optional
        Progress bars (default: when the terminal is interactive).
    echo : callable, optional
        Receives the plan table and notes (default: the log).
    executor_options : dict, optional
        Extra keyword arguments of the executor (``processes=False`` for Dask).
    retry_quarantined : bool
        Try the items quarantined by an earlier run again.
    """
    from ..profiles import load_profile
    from ..pseudonyms import PseudonymMap, check_prefix, load_map_csv

    t0 = time.perf_counter()
    echo = echo or logger.info
    out = Path(out)
    sources = [str(s) for s in sources]
    _check_sources(sources, out)
    profile = load_profile(job.profile).with_options(job.options)  # usage errors first
    if job.subject_map:  # original IDs and UIDs: identity, never in the release
        check_not_released(job.subject_map, out, "map CSV")
    ids, uids = load_map_csv(job.subject_map) if job.subject_map else ({}, {})
    # ("" is a prefix given, refused here: not the default, found after the key is made)
    prefix = job.pseudonym_prefix if job.pseudonym_prefix is not None else (
        profile.pseudonym_prefix or "SUBJ")
    check_prefix(prefix)
    _validate_engines(job)
    check_option_claims(profile.options, _job_pixels(job),
                        deface=None if job.deface.enabled else _NO_DEFACE)
    from ..api import DeidConfig

    pixels = _pixel_settings(out, job)
    # built (and so checked) before the key, which may be created in OUT; the key comes later
    config = DeidConfig(profile=profile, options=tuple(job.options),
                        pseudonym_prefix=job.pseudonym_prefix,
                        **({"pixels": pixels} if pixels else {}))
    if not _any_input(sources):
        raise DeidError("no input files found under " + ", ".join(sources))
    state = out / STATE_DIRNAME
    if dry_run:
        if job.key_file:
            key = load_or_create_key(job.key_file, out)
        elif (state / "key").exists():
            key = (state / "key").read_bytes().strip()
        else:
            key = secrets.token_hex(32).encode()
        config.key = key
        if state.is_dir():  # the refusals the real run would give, nothing recorded
            check_key(out, key, record=False)
            check_settings(out, config, job.layout, record=False)
            _check_run_settings(out, key, job, record=False)
        reconcile_overrides(out, key, uids, record_new=False)  # as the real run will
        db = state / "subjects.sqlite"
        pseudonyms = PseudonymMap(None, key, prefix, ids)
        if db.exists():  # number new patients after the ones already there
            import sqlite3

            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                rows = con.execute("SELECT hkey, pseudonym, seq, prefix FROM subjects").fetchall()
            pseudonyms._con.executemany("INSERT INTO subjects VALUES (?, ?, ?, ?)", rows)
            pseudonyms._check_supplied()  # as the real run will
    else:
        key = config.key = load_or_create_key(job.key_file, out)
        state.mkdir(parents=True, exist_ok=True)
        lock = _lock(out)  # one run at a time per output folder, released at the end
        try:
            remove_stale_temporaries(out)
            shutil.rmtree(state / WORK_DIRNAME, ignore_errors=True)
            check_key(out, key)
            check_settings(out, config, job.layout)
            _check_run_settings(out, key, job)
            # the UID overrides of earlier batches hold; a contradiction is a usage error
            uids_by_key = reconcile_overrides(out, key, uids)
            pseudonyms = PseudonymMap(state / "subjects.sqlite", key, prefix, ids)
        except BaseException:
            lock.close()
            raise
    try:
        plan = build_plan(sources, out, job, key, pseudonyms)
    except BaseException:
        if not dry_run:
            lock.close()
        raise
    finally:
        pseudonyms.close()
    summary = RunSummary(plan, out, dry_run=dry_run)
    echo(f"plan: {len(plan.items)} item(s), {len(plan.patients)} patient(s)\n{plan_table(plan)}")
    for note in plan.notes:
        echo(f"note: {note}")
    if dry_run:
        summary.seconds = time.perf_counter() - t0
        return summary

    try:
        ledger = RunLedger(state / LEDGER_NAME)
    except BaseException:
        lock.close()
        raise
    try:
        _run(ledger, plan, sources, out, job, key, profile, (uids, uids_by_key), summary,
             progress, executor_options, retry_quarantined)
    finally:
        ledger.close()
        lock.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _lock(out: Path):
    """Hold ``OUT/.pixeldeid/run.lock`` for the run: one run at a time per output folder."""
    fh = open(out / STATE_DIRNAME / "run.lock", "a+b")  # noqa: SIM115 - held until the end
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock
        return fh
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise DeidError("another `pixeldeid run` (or a worker of a run that was stopped, "
                        "finishing its item) is using this output folder; wait for it to "
                        "finish", str(out)) from None
    return fh


def _run(ledger: RunLedger, plan: Plan, sources: list[str], out: Path, job: Job, key: bytes,
         profile, uids: tuple[dict, dict], summary: RunSummary, progress: bool | None,
         executor_options: dict | None, retry_quarantined: bool = False) -> None:
    from ..standard import release
    from .executors import get_executor, run_in_order, run_isolated

    meta = ledger.meta()
    srcs = sorted({*json.loads(meta.get("sources", "[]")),
                   *(str(Path(s).absolute()) for s in sources)})
    ledger.set_meta(job=job.to_json(), profile=profile.name,
                    options=sorted(profile.options), ps315_release=release(),
                    pixeldeid_version=__version__, layout=job.layout, sources=srcs,
                    created=meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                  time.gmtime()))
    for patient, pairs in plan.identity.items():
        ledger.add_identity(patient, sorted(pairs))
    todo = ledger.merge_plan(plan.items, retry_quarantined)
    by_id = {it.id: it for it in plan.items}
    summary.already = sum(it.status == "done" for it in plan.items)
    work: list[Item] = []
    for it in todo:
        if it.status == "quarantined":
            rec = quarantine(it.src, out, it.reason, stage="scan")
            ledger.record(it.id, "quarantined", reason=rec.reason)
            summary.quarantined.append((it.src, rec.reason))
        elif it.status == "skipped":
            ledger.record(it.id, "skipped", reason=it.reason)
            summary.skipped.append((it.src, it.reason))
        else:
            if it.stale and not ledger.output_shared(it.stale, it.id):
                logger.info("source changed since its output was written; redoing %s", it.src)
                _withdraw(out, it.stale)
            work.append(it)
    # count what finished in earlier runs, for the summary
    for it in plan.items:
        if it.status == "quarantined" and not any(t is it for t in todo):
            summary.quarantined.append((it.src, it.reason or "quarantined in an earlier run"))
    settings = worker_settings(out, job, key, profile, plan.subject_map, *uids)
    first = [it for it in work if not it.sop.startswith("dup:")]
    later = [it for it in work if it.sop.startswith("dup:")]  # same SOP Instance UID: in order
    bars = _bars(work, progress)

    def record(res: dict) -> None:
        it = by_id[res["id"]]
        if it.kind in bars:
            bars[it.kind].update()
        if res["status"] == "lost":
            summary.lost.append((it.src, res["reason"]))
            return
        if res["status"] == "done":
            ledger.set_artifacts(it.id, [tuple(a) for a in res.get("artifacts") or []])
            if res.get("identity"):
                ledger.add_identity(it.patient, [tuple(p) for p in res["identity"]])
            ledger.record(it.id, "done", res["output"], details=res.get("details"),
                          started=res["started"], finished=res["finished"])
            summary.done += 1
            return
        reason = res.get("reason") or "failed"
        for src in it.members or [it.src]:
            rec = quarantine(src, out, reason, stage="+".join(it.stages) or "scan")
            reason = rec.reason
        ledger.record(it.id, "quarantined", reason=reason, details=res.get("details"),
                      started=res.get("started"), finished=res.get("finished"))
        summary.quarantined.append((it.src, reason))

    lost: list[Item] = []
    try:
        if first:
            opts = executor_options or {}
            with get_executor(job.executor, job.jobs, job.scheduler, **opts) as ex:
                for _item, res in ex.map_unordered(run_item, [i.work() for i in first], settings):
                    if res["status"] == "lost":
                        lost.append(by_id[res["id"]])
                    else:
                        record(res)
        if lost:  # a dying pool stops its other workers too, some in the middle of a write
            remove_stale_temporaries(out)
        for it in lost:  # alone, in a fresh process: finishes, or quarantines a killer input
            logger.warning("a worker died; running %s alone", it.src)
            record(run_isolated(run_item, it.work(), settings))
        if lost:  # (a killer input's own worker may have died in a write)
            remove_stale_temporaries(out)
        for _item, res in run_in_order(run_item, [it.work() for it in later], settings):
            record(res)
    finally:
        for b in bars.values():
            b.close()
    if job.zip_per_subject or _has_packages(out):
        if not job.zip_per_subject:  # left as they were, they would release withdrawn outputs
            logger.warning("%s holds the zips of an earlier --zip run: brought up to date "
                           "(delete the folder to stop packaging)", out / PACKAGES_DIRNAME)
        outputs: dict[str, list[str]] = {}
        shared: list[str] = []
        for row in ledger.items():
            if row["status"] == "done" and row["output"]:
                if row["patient"]:
                    outputs.setdefault(row["patient"], []).append(row["output"])
                else:
                    shared.append(row["output"])
        summary.packages = package_subjects(out, outputs, shared)
    ledger.set_meta(finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
