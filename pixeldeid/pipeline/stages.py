"""Worker functions of ``pixeldeid run``: one item in, a JSON-able result out.

:func:`run_item` is a top-level, picklable function: it gets the item (see
:meth:`pixeldeid.pipeline.plan.Item.work`) and the run's settings (a plain dict built by
:func:`pixeldeid.pipeline.runner.worker_settings`), writes the item's output atomically
into OUT and returns ``{"id", "status", "output", "reason", "details", "artifacts",
"identity", "started", "finished"}``. It keeps no state between items except caches
(the header de-identifier), so any process or Dask worker can run any item, in any
order. Quarantine copies are made by the parent, which also records the result.

Every item works in its own folder ``OUT/.pixeldeid/work/item-<id>`` and its output is
moved into place in one step at the end; an output left by an earlier, interrupted run of
the same item is replaced.

Files of a BIDS dataset (items with ``bids``, see :mod:`pixeldeid.pipeline.plan`) have
every ``sub-<label>`` renamed (:func:`defacing.bids.relabel_subjects`): images are defaced
(diffusion on its b0 volumes) or copied with their header text removed ("not defaced, may
show a face" in the details), JSON sidecars and TSV tables scrubbed
(:mod:`defacing.sidecars`), ``.bval``/``.bvec`` copied. A PET series with a ``reference``
is registered through that CT/MR series (same Frame of Reference).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..batch import STATE_DIRNAME
from ..errors import DeidError

logger = logging.getLogger(__name__)

__all__ = ["run_item", "WORK_DIRNAME", "QC_DIRNAME"]

WORK_DIRNAME = "work"
QC_DIRNAME = "qc"
#: item details of a BIDS image copied without defacing
NOT_DEFACED = "not defaced, may show a face"

#: what is costly to build (header de-identifier, pixel stage), for the last settings seen
_CACHE: dict[str, dict] = {}
#: the cached state (and pixeldeid.batch's one module dict) is shared by the threads of a
#: worker process: they take turns (run Dask workers with threads_per_worker=1)
_LOCK = threading.RLock()


def run_item(item: dict, settings: dict) -> dict:
    """Process one item; never raises for a bad input (the result says quarantined)."""
    t0 = time.time()
    pydicom_log = logging.getLogger("pydicom")
    if pydicom_log.level < logging.ERROR:  # not set by the CLI (-v: ERROR): a Dask worker
        pydicom_log.setLevel(logging.CRITICAL)  # decode failures: their traceback, no file
    runner = {"dicom": _run_dicom, "dicom-series": _run_series, "nifti": _run_nifti,
              "slide": _run_slide, "sidecar": _run_sidecar}.get(item["kind"])
    try:
        if runner is None:
            raise DeidError(f"no stage for items of kind {item['kind']!r}")
        with _LOCK:
            res = runner(item, settings)
    except DeidError as exc:
        res = {"status": "quarantined", "reason": exc.reason}
    except MemoryError:
        res = {"status": "quarantined", "reason": "out of memory"}
    except RecursionError:
        res = {"status": "quarantined", "reason": "hostile input: nesting too deep"}
    except Exception as exc:  # noqa: BLE001 - one bad item must not stop the run
        logger.debug("unexpected error on %s", item["src"], exc_info=True)
        res = {"status": "quarantined",
               "reason": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    finally:
        work = _work_dir(settings, item, create=False)
        shutil.rmtree(work, ignore_errors=True)
    res.setdefault("output", None)
    res.setdefault("reason", "")
    res["reason"] = " ".join(str(res["reason"]).split())
    res.setdefault("details", {})
    res.setdefault("artifacts", [])
    res.setdefault("identity", [])
    res.update(id=item["id"], started=t0, finished=time.time())
    return _jsonable(res)


# -- shared state ----------------------------------------------------------------------------
def _config(settings: dict, **extra: Any):
    from ..api import DeidConfig

    kwargs: dict[str, Any] = dict(
        profile=settings["profile"], options=tuple(settings["options"]), key=settings["key"],
        pseudonym_prefix=settings["prefix"], subject_map=dict(settings["subject_map"]),
        uid_map=dict(settings["uid_map"]),
        uid_map_by_key=dict(settings.get("uid_map_by_key", {})), pseudonym_db=None)
    kwargs.update(extra)
    return DeidConfig(**kwargs)


def _state(settings: dict) -> dict:
    """The process's cache of what is costly to build, for these settings."""
    sid = settings["sid"]
    if sid not in _CACHE:
        _CACHE.clear()
        _CACHE[sid] = {}
    return _CACHE[sid]


def _batch_worker(settings: dict) -> dict:
    """The state of :mod:`pixeldeid.batch`'s worker for these settings (built once)."""
    from .. import batch

    st = _state(settings)
    if "batch" not in st:
        extra = {}
        if settings.get("pixels"):
            from ..burnedin.stage import PixelSettings

            extra["pixels"] = PixelSettings(**settings["pixels"])
        batch._init_worker(_config(settings, **extra), settings["out"], settings["layout"], True)
        st["batch"] = dict(batch._WORKER)
    return st["batch"]


def _deidentifier(settings: dict):
    from ..api import Deidentifier

    st = _state(settings)
    if "deid" not in st:
        st["deid"] = Deidentifier(_config(settings))
    return st["deid"]


def _work_dir(settings: dict, item: dict, create: bool = True) -> Path:
    p = Path(settings["out"]) / STATE_DIRNAME / WORK_DIRNAME / f"item-{item['id']}"
    if create:
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
    return p


def _place(src: Path, final: Path, out: Path) -> None:
    """Move ``src`` (file or folder) to ``final`` in one step, replacing an earlier one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir() and final.exists():
        trash = out / STATE_DIRNAME / WORK_DIRNAME / f"trash-{uuid.uuid4().hex}"
        os.replace(final, trash)
        os.replace(src, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, final)


def _rel(path: str | os.PathLike, out: Path) -> str:
    return Path(path).resolve().relative_to(out.resolve()).as_posix()


def _qc_artifacts(qc: Path, out: Path, stage: str) -> list[list[str]]:
    rows = []
    for p in sorted(qc.glob("*.png")) if qc.is_dir() else []:
        what = p.stem.rsplit("_", 1)[-1]
        kind = what if what in ("before", "after", "render", "strip", "label", "macro") else "render"
        rows.append([stage, kind, _rel(p, out), what])
    return rows


def _check_pseudonym(path: Path, expected: str) -> None:
    import pydicom

    got = str(pydicom.dcmread(path, stop_before_pixels=True,
                              specific_tags=["PatientID"]).get("PatientID", ""))
    if got != expected:
        raise DeidError(f"patient pseudonym {got!r} differs from the plan's {expected!r}")


# -- stages ------------------------------------------------------------------------------------
def _run_dicom(item: dict, settings: dict) -> dict:
    """Header (and pixel) stage through :func:`pixeldeid.batch.process_file`."""
    from .. import batch

    state = _batch_worker(settings)
    if batch._WORKER.get("deid") is not state["deid"]:
        batch._WORKER.clear()
        batch._WORKER.update(state)
    outcome = batch.process_file(item["src"])
    details = dict(getattr(outcome, "details", None) or {})
    if outcome.status == "quarantined":
        return {"status": "quarantined", "reason": outcome.reason, "details": details}
    new = list((outcome.mapping.get("patient") or {}).values())
    if new and new[0] != item["patient"]:
        if outcome.status == "written":
            with contextlib.suppress(OSError):
                (Path(settings["out"]) / outcome.output).unlink()
        raise DeidError(f"patient pseudonym {new[0]!r} differs from the plan's "
                        f"{item['patient']!r}")
    out = Path(settings["out"])
    artifacts = []
    pix = details.get("pixels") or {}
    rels = []
    for p in pix.get("qc") or []:
        with contextlib.suppress(ValueError, OSError):
            name = Path(p).stem
            kind = "before" if "before" in name else "after" if "after" in name else "render"
            rels.append(_rel(p, out))
            artifacts.append(["pixels", kind, rels[-1], name])
    if pix.get("qc"):  # paths relative to OUT, like every path of the ledger
        details["pixels"] = {**pix, "qc": rels}
    return {"status": "done", "output": outcome.output, "details": details,
            "artifacts": artifacts}


def _run_series(item: dict, settings: dict) -> dict:
    """Deface a head CT/MR/PET DICOM series, then de-identify its headers."""
    from defacing.dicom_series import deface_series

    out = Path(settings["out"])
    d = settings["deface"]
    work = _work_dir(settings, item)
    qc = out / STATE_DIRNAME / QC_DIRNAME / f"item-{item['id']}" if d["qc"] else None
    ref, ref_details = _reference(item)
    members, pixels = _without_burned_in_text([Path(m) for m in item["members"]], settings,
                                              work / "redacted")
    try:
        folder, metrics = deface_series(members, work, _deidentifier(settings),
                                        modality=d["modality"], device=d["device"], qc_dir=qc,
                                        source=item["src"], reference=ref,
                                        check_orientation=d["check_orientation"])
    finally:  # (copies with the original headers: never left in OUT)
        shutil.rmtree(work / "redacted", ignore_errors=True)
    first = min(folder.glob("*.dcm"))
    _check_pseudonym(first, item["patient"])
    rel = f"dicom/{folder.name}"
    _place(folder, out / rel, out)
    artifacts = _qc_artifacts(qc, out, "deface") if qc else []
    deface = {"metrics": metrics, "qc": [a[2] for a in artifacts], "files": len(item["members"])}
    if ref_details:
        deface["reference"] = ref_details
    details = {"deface": deface, **({"pixels": pixels} if pixels else {})}
    return {"status": "done", "output": rel, "details": details, "artifacts": artifacts}


def _without_burned_in_text(members: list[Path], settings: dict,
                            work: Path) -> tuple[list[Path], dict]:
    """The files of a series with their burned-in text removed by the pixel stage, as
    :func:`_run_dicom` removes it from any image (the identity values of each file's own
    header); a file with nothing to remove is used as it is, a redacted one from a copy in
    ``work``. Returns the files and what was done ({} when the stage is off). A file whose
    text cannot be removed raises (the item is quarantined)."""
    if not settings.get("pixels"):
        return members, {}
    import pydicom

    from ..burnedin.classify import IdentityValues

    st = _state(settings)
    if "pixel_stage" not in st:
        from ..burnedin.stage import BurnedInStage, PixelSettings

        st["pixel_stage"] = BurnedInStage(PixelSettings(**settings["pixels"]))
    stage = st["pixel_stage"]
    files, redacted = [], 0
    for i, m in enumerate(members):
        ds = pydicom.dcmread(m)
        if not stage.process(ds, IdentityValues.from_dataset(ds), source=str(m)).redacted:
            files.append(m)
            continue
        work.mkdir(parents=True, exist_ok=True)
        files.append(work / f"{i:05d}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
        redacted += 1
    return files, {"files": len(members), "redacted": redacted}


def _reference(item: dict):
    """The CT/MR volume a PET series is registered through, and what the details say of it.

    A reference that cannot be read is not used: the PET series is then registered on
    itself (as without a reference), and the details say why.
    """
    files = item.get("reference")
    if not files:
        return None, None
    from defacing.dicom_series import load_reference

    info = {"series": item.get("reference_series", ""), "files": len(files)}
    try:
        ref = load_reference([Path(f) for f in files], item["src"])
    except (DeidError, OSError, MemoryError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        logger.warning("%s: reference series not used: %s", item["src"], reason)
        return None, {**info, "used": False, "error": " ".join(reason.split())}
    return ref, {**info, "used": True}


def _run_nifti(item: dict, settings: dict) -> dict:
    """Deface a NIfTI head volume (or copy a BIDS image that is not defaced)."""
    from defacing.nifti import deface_nifti

    out = Path(settings["out"])
    d = settings["deface"]
    work = _work_dir(settings, item)
    tmp = work / Path(item["target"]).name
    bids = item.get("bids") or {}
    if bids.get("action") == "copy-image":
        from defacing.nifti import read_nifti, write_nifti_atomic

        data, _, slope, inter, img = read_nifti(item["src"])  # header text, extensions dropped
        write_nifti_atomic(tmp, data, img, slope, inter, descrip=b"")
        _place(tmp, out / item["target"], out)
        return {"status": "done", "output": item["target"],
                "details": {"bids": {"action": "copied", "note": NOT_DEFACED}}}
    kwargs = {}
    if bids:
        from defacing.bids import b0_volumes

        kwargs["hint"] = bids.get("hint") or ""
        if kwargs["hint"] == "_dwi":
            kwargs["reference_volumes"] = b0_volumes(Path(item["src"]))
    qc = out / STATE_DIRNAME / QC_DIRNAME / f"item-{item['id']}" if d["qc"] else None
    res = deface_nifti(item["src"], tmp, modality=d["modality"], device=d["device"],
                       qc_dir=qc, check_orientation=d["check_orientation"], **kwargs)
    _place(tmp, out / item["target"], out)
    artifacts = _qc_artifacts(qc, out, "deface") if qc else []
    return {"status": "done", "output": item["target"],
            "details": {"deface": {"metrics": res.metrics, "qc": [a[2] for a in artifacts]}},
            "artifacts": artifacts}


def _run_sidecar(item: dict, settings: dict) -> dict:
    """A text file of a BIDS dataset: subjects relabelled, JSON and TSV scrubbed."""
    from defacing.bids import relabel_subjects
    from defacing.identity import find_identity
    from defacing.sidecars import scrub_json_file, scrub_tsv_file

    from ..errors import InputError

    out = Path(settings["out"])
    bids = item.get("bids") or {}
    action = bids.get("action", "")
    work = _work_dir(settings, item)
    tmp = work / Path(item["target"]).name
    details: dict[str, Any] = {"action": action}
    if action == "copy":
        shutil.copyfile(item["src"], tmp)
    elif action in ("json", "tsv", "text"):
        raw = Path(item["src"]).read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"text file not UTF-8: {exc}", item["src"]) from exc
        text, n = relabel_subjects(text, bids.get("labels") or {})
        details["relabelled"] = n
        relabelled = work / f"relabelled-{tmp.name}"
        relabelled.write_bytes(text.encode("utf-8") if n else raw)
        if action == "json":
            details["removed_keys"] = scrub_json_file(relabelled, tmp)
        elif action == "tsv":
            details["dates_removed"] = scrub_tsv_file(relabelled, tmp)
        else:
            os.replace(relabelled, tmp)
        why = find_identity(tmp.read_bytes().decode("utf-8", "replace"),
                            _dataset_tokens(settings, bids), labels=action == "text")
        if why:  # (a README naming the patient, a sidecar comment holding the name)
            raise InputError(why, item["src"])
    else:
        raise DeidError(f"no BIDS action {action!r} for a text file")
    _place(tmp, out / item["target"], out)
    return {"status": "done", "output": item["target"], "details": {"bids": details}}


def _dataset_tokens(settings: dict, bids: dict) -> tuple[str, ...]:
    """The identity values of a BIDS dataset's sidecars and tables (names, IDs, birth
    dates: :func:`defacing.identity.collect_values`), searched for in each of its released
    text files; the new subject labels are not. Built once per dataset and process."""
    root = bids.get("root")
    if not root:
        return ()
    cache = _state(settings).setdefault("bids_tokens", {})
    if root not in cache:
        from defacing.identity import collect_values, dataset_tokens, sidecar_files

        cache[root] = dataset_tokens(collect_values(sidecar_files(Path(root))),
                                     labels=(bids.get("labels") or {}).values())
    return cache[root]


def _slide_date_offset(item: dict, settings: dict) -> int | None:
    """Days to shift a slide's kept dates, as the header core shifts its patient's DICOM.

    ``None`` (dates removed) unless the profile keeps modified or full dates; full dates
    shift by 0 days. The offset is keyed by the patient's original key (the key the plan
    gave the pseudonym for), so a slide and the DICOM of the same patient move together.
    """
    deid = _deidentifier(settings)
    if "retain-longitudinal-full-dates" in deid.options:
        return 0
    if "retain-longitudinal-modified-dates" not in deid.options:
        return None
    st = _state(settings)
    if "original_of" not in st:  # pseudonym -> the first original key the plan gave it
        inverse: dict[str, str] = {}
        for original, pseudo in settings["subject_map"].items():
            inverse.setdefault(pseudo, original)
        st["original_of"] = inverse
    original = st["original_of"].get(item["patient"])
    if original is None:
        return None  # no patient key known: fail closed, dates removed
    return deid.offset_for(original).days


def _run_slide(item: dict, settings: dict) -> dict:
    """De-identify a whole-slide image (a TIFF-based file, or the instances of a DICOM slide)."""
    from wsi.api import SlideOptions, deidentify_slide

    out = Path(settings["out"])
    w = settings["wsi"]
    work = _work_dir(settings, item)
    opts = SlideOptions(label=w["label"], macro=w["macro"], pseudonym=item["target"],
                        ocr=w["ocr"], verify=w["verify"],
                        date_offset=_slide_date_offset(item, settings))
    if item["members"]:
        from wsi.dicomwsi import deidentify_series

        r = deidentify_series(item["members"], work, opts, _deidentifier(settings))
        if not r.ok:
            return {"status": "quarantined", "reason": r.reason or "DICOM slide failed"}
        folder = Path(r.output_dir)
        _check_pseudonym(min(folder.glob("*.dcm")), item["patient"])
        rel = f"slides/{folder.name}"
        _place(folder, out / rel, out)
        details = {"wsi": {"vendor": "dicom", "dropped": sorted({k for _, k in r.dropped}),
                           "label": "replaced" if r.replaced else "removed",
                           "removed": len(r.removed_values)}}
        return {"status": "done", "output": rel, "details": details,
                "identity": [["other", v] for v in r.removed_values]}
    r = deidentify_slide(item["src"], work, options=opts, quarantine_dir=work)
    if not r.ok:
        return {"status": "quarantined", "reason": r.reason or "slide failed"}
    rel = f"slides/{Path(r.output).name}"
    _place(Path(r.output), out / rel, out)
    rep = r.report
    details = {"wsi": {"vendor": r.vendor, "label": rep.label if rep else "",
                       "macro": rep.macro if rep else "",
                       "actions": list(rep.actions) if rep else [],
                       "removed": len(rep.removed_values) if rep else 0}}
    return {"status": "done", "output": rel, "details": details,
            "identity": [["other", v] for v in (rep.removed_values if rep else [])]}


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays, paths, tuples converted)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return str(value)
