"""Gather what the QC report shows from an output folder (run ledger optional)."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..api import MEDIA_DIRECTORY_SOP_CLASS
from ..paths import printable
from ..quarantine import QUARANTINE_DIRNAME
from ..verify.checks import REPORT_IMAGES, file_kind, iter_outputs
from ..verify.ledger import RUN_LEDGER_NAME, LedgerItem, RunLedger
from . import thumbs
from .inputs import InputAccount, ledger_path, read_input_account, scrub_reason
from .kanon import QUASI_IDENTIFIERS, KAnonymity, k_anonymity, patient_records

logger = logging.getLogger(__name__)

#: Free text shown first in the retained-text list.
MAIN_TEXT = ("StudyDescription", "SeriesDescription", "ProtocolName")
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
#: Text attributes that are structure, not free text (not listed).
NOT_FREE_TEXT = frozenset({
    "PatientID", "PatientName", "ClinicalTrialSubjectID", "DeidentificationMethod",
    "ImplementationVersionName", "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion",
    "LongCodeValue", "URNCodeValue", "MappingResource", "ContextIdentifier",
    "PrivateCreator", "SpecificCharacterSet", "TimezoneOffsetFromUTC", "ContextGroupVersion"})
#: Rows of the k-anonymity table, and patients named per row.
MAX_CLASS_ROWS = 1000
MAX_CLASS_PATIENTS = 20
#: Defacing QC folder of ``pixeldeid deface --qc`` (defacing.batch.QC_DIRNAME).
DEFACE_QC_DIRNAME = "qc"


@dataclass
class Picture:
    """An image of the report (``src`` relative to the report folder) with its caption."""

    src: str
    caption: str = ""


@dataclass
class Panel:
    """Before/after (or single) pictures of one output."""

    title: str
    pictures: list[Picture] = field(default_factory=list)
    note: str = ""


@dataclass
class ReportData:
    """Everything the template renders."""

    out: str
    ledger: bool = False
    method: list[tuple[str, str]] = field(default_factory=list)
    counts: list[dict] = field(default_factory=list)      # stage, modality, status counts
    statuses: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    quarantine: list[dict] = field(default_factory=list)
    redactions: list[Panel] = field(default_factory=list)   # outputs the pixel stage redacted
    #: at-risk outputs with no record of the pixel stage (as written: redacted or not)
    at_risk: list[Panel] = field(default_factory=list)
    strips: list[Panel] = field(default_factory=list)
    deface: list[Panel] = field(default_factory=list)
    slides: list[Panel] = field(default_factory=list)
    sample: list[Panel] = field(default_factory=list)
    retained_text: list[tuple[str, list[str]]] = field(default_factory=list)
    kanon: KAnonymity | None = None
    kanon_rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verify: dict | None = None          # the last `pixeldeid verify` result, when recorded
    verify_time: str = ""
    #: why the last verification does not cover the outputs now ('' when it does)
    verify_stale: str = ""
    #: the inputs as the ledger of ``pixeldeid dicom`` counts them (counts only, no names)
    inputs: InputAccount = field(default_factory=InputAccount)


def read_quarantine(out: Path) -> list[dict]:
    """The ``OUT/quarantine/*.reason.txt`` records: name, source, stage, reason."""
    qdir = out / QUARANTINE_DIRNAME
    rows = []
    for p in sorted(qdir.glob("*.reason.txt")) if qdir.is_dir() else []:
        rec = {"name": p.name[:-len(".reason.txt")], "source": "", "stage": "", "reason": ""}
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            rec["reason"] = f"(reason file unreadable: {exc.strerror})"
            rows.append(rec)
            continue
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("source", "stage", "reason"):
                rec[key.strip()] = value.strip()
        rows.append(rec)
    return rows


class _Images:
    """Writes report images under ``report/images`` with neutral numbered names."""

    def __init__(self, report_dir: Path, limit: int) -> None:
        self.dir = report_dir / REPORT_IMAGES
        self.n = 0
        self.limit = limit
        self.skipped = 0

    def room(self) -> bool:
        if self.n >= self.limit:
            self.skipped += 1
            return False
        return True

    def save(self, img, tag: str) -> str:
        self.n += 1
        name = f"{self.n:05d}-{tag}.png"
        thumbs.save_png(img, self.dir / name)
        return f"images/{name}"

    def copy(self, src: Path, tag: str, max_side: int = 480) -> str | None:
        """A scaled copy of a QC image (a plain copy when Pillow cannot read it)."""
        if not src.is_file():
            return None
        try:
            with Image.open(src) as im:
                return self.save(thumbs.thumbnail(im, max_side=max_side), tag)
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
        self.n += 1
        name = f"{self.n:05d}-{tag}{src.suffix.lower()}"
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, self.dir / name)
        return f"images/{name}"


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def has_anything(out: str | Path) -> bool:
    """Whether ``out`` holds something pixeldeid wrote: a run ledger, a quarantine folder
    or an output file (a mistyped folder must not give an empty report)."""
    from ..batch import STATE_DIRNAME

    out = Path(out)
    if (out / STATE_DIRNAME / RUN_LEDGER_NAME).is_file() or (out / QUARANTINE_DIRNAME).is_dir() \
            or ledger_path(out).is_file():
        return True
    return next(iter(iter_outputs(out)), None) is not None


def collect(out: str | Path, report_dir: str | Path, *, k: int = 5, max_images: int = 400,
            sample: int = 12, progress: Callable | None = None) -> ReportData:
    """Read ``out`` (and its run ledger when there is one) and write the report images.

    Parameters
    ----------
    out : path
        The output folder.
    report_dir : path
        Where the report goes (images are written to ``report_dir/images``).
    k : int
        Equivalence classes smaller than this are flagged.
    max_images : int
        At most this many images (thumbnails, strips, renders) are written.
    sample : int
        Thumbnails of this many DICOM outputs drawn at random (seeded: the same folder
        gives the same sample) for a human look at what is released.
    """
    out = Path(out)
    rdir = Path(report_dir)
    data = ReportData(str(out))
    images = _Images(rdir, max_images)
    ledger = RunLedger(out)
    try:
        data.ledger = ledger.present
        items = ledger.items()
        meta = ledger.meta()
        artifacts = ledger.artifacts()
    finally:
        ledger.close()
    by_output = {it.output.rstrip("/"): it for it in items if it.output}
    files = [p for p in iter_outputs(out) if not _inside(p, rdir)]
    headers = _read_outputs(out, files, progress)

    _method(data, meta, headers, out)
    _counts(data, items, headers, out)
    records = read_quarantine(out)
    data.inputs = read_input_account(out, records)
    _input_notes(data)
    _last_verify(data, out, files)
    # the report lies in OUT, next to the release: no input path or name in it (the
    # records in OUT/quarantine/ name the sources for the data holder)
    data.quarantine = [{"name": q["name"], "stage": q["stage"],
                        "reason": scrub_reason(q["reason"], q["source"])} for q in records]
    known = {q["source"] for q in records}
    for it in items:  # printable: a source name need not be UTF-8 (the records' form)
        if it.status == "quarantined" and printable(it.src) not in known:
            data.quarantine.append({"name": "", "stage": ",".join(it.stages),
                                    "reason": scrub_reason(it.reason, printable(it.src))
                                    or "(no reason recorded)"})
    _pixels(data, items, artifacts, headers, out, images, by_output)
    _deface(data, items, artifacts, out, images)
    _slides(data, items, artifacts, headers, out, images)
    _retained(data, headers, items)
    _sample(data, headers, images, sample)
    rows = [(h["patient"], h["qi"]) for h in headers if h.get("kind") == "dicom"
            and h.get("patient")]
    # patients released without DICOM headers (slides, NIfTI) are records with nothing retained
    rows += [(it.patient, {}) for it in items if it.status == "done" and it.patient]
    recs = patient_records(rows)
    data.kanon = k_anonymity(recs, k=k)
    listed = data.kanon.classes
    if len(listed) > MAX_CLASS_ROWS:  # the flagged (small) classes are the ones to see
        listed = [c for c in listed if c.size < k][-MAX_CLASS_ROWS:]
    for c in listed:
        shown = c.patients[:MAX_CLASS_PATIENTS]
        if c.size > len(shown):
            shown = [*shown, f"... {c.size - len(shown)} more"]
        data.kanon_rows.append({"values": c.values, "size": c.size, "small": c.size < k,
                                "patients": shown})
    if len(listed) < len(data.kanon.classes):
        data.notes.append(f"k-anonymity table: {len(data.kanon.classes) - len(listed)} "
                          f"equivalence classes not listed (the summary counts them all)")
    for h in headers:
        if h.get("error"):
            data.notes.append(f"{h['rel']}: unreadable {h['kind']} output ({h['error']}); run "
                              f"pixeldeid verify")
    if images.skipped:
        data.notes.append(f"{images.skipped} image(s) not shown: more than --max-images "
                          f"{max_images}")
    return data


def _read_outputs(out: Path, files: list[Path], progress) -> list[dict]:
    """One dict per output file: kind, rel, and for DICOM the header facts the report uses."""
    import pydicom

    rows = []
    it = progress(files) if progress else files
    for p in it:
        rel = p.relative_to(out).as_posix()
        kind = file_kind(p)
        row: dict = {"rel": rel, "kind": kind, "path": p}
        if kind == "dicom":
            try:  # pydicom converts values when they are read: a bad one raises there too
                ds = pydicom.dcmread(p, force=True, defer_size="4 KB")
                row.update(_dicom_facts(ds))
            except Exception as exc:  # noqa: BLE001 - shown as unreadable
                row["error"] = type(exc).__name__
        elif kind == "nifti":
            try:
                import nibabel as nib

                hdr = nib.load(str(p)).header
                row["descrip"] = bytes(hdr["descrip"].tobytes()).rstrip(b"\x00").decode(
                    "latin-1").strip()
            except Exception as exc:  # noqa: BLE001
                row["error"] = type(exc).__name__
        rows.append(row)
    return rows


def _dicom_facts(ds) -> dict:
    """The header facts of one DICOM output that the report shows."""
    from ..verify.ocr import pixels_at_risk

    if str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "")) == \
            MEDIA_DIRECTORY_SOP_CLASS:
        return {"kind": "dicomdir"}  # an index of the release, not an image
    method = ds.get("DeidentificationMethod")
    return {
        "modality": str(ds.get("Modality", "") or ""),
        "patient": str(ds.get("PatientID", "") or ""),
        "frames": int(ds.get("NumberOfFrames", 1) or 1),
        "qi": {a: _text(ds.get(a)) for a in QUASI_IDENTIFIERS if a in ds},
        "text": list(_free_text(ds)),
        "method": [method] if isinstance(method, str) else [str(v) for v in (method or [])],
        "codes": [str(c.get("CodeMeaning", "")) for c in
                  (ds.get("DeidentificationMethodCodeSequence") or [])],
        "longitudinal": str(ds.get("LongitudinalTemporalInformationModified", "") or ""),
        "at_risk": pixels_at_risk(ds),
    }


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return "\\".join(str(x) for x in v)
    return str(v)


def _free_text(ds, depth: int = 0):
    """``(attribute, value)`` of retained free text at any depth (private: by tag)."""
    for elem in ds:
        if elem.VR == "SQ":
            if depth < 4 and elem.keyword != "DeidentificationMethodCodeSequence":
                for item in elem.value or []:
                    yield from _free_text(item, depth + 1)
            continue
        if elem.VR not in TEXT_VRS or elem.keyword in NOT_FREE_TEXT:
            continue
        if elem.tag.is_private and elem.tag.element < 0x100:
            continue  # private creator
        name = elem.keyword or f"private ({elem.tag.group:04X},{elem.tag.element:04X})"
        v = _text(elem.value).strip()
        if v:
            yield name, v


def _method(data: ReportData, meta: dict, headers: list[dict], out: Path) -> None:
    rows: list[tuple[str, str]] = []
    if meta:
        for key in ("profile", "options", "ps315_release", "pixeldeid_version", "layout",
                    "created", "finished"):
            if meta.get(key):
                v = meta[key]
                if key == "options":
                    try:
                        v = ", ".join(json.loads(v)) or "(none)"
                    except (TypeError, ValueError):
                        pass
                rows.append((key.replace("_", " "), v))
        if meta.get("job"):
            rows.append(("job file (names local paths)", meta["job"]))
    methods = Counter(" | ".join(h["method"]) for h in headers if h.get("method"))
    for m, n in methods.most_common():
        rows.append(("De-identification Method (DICOM)", f"{m}  [{n} file(s)]"))
    codes = sorted({c for h in headers for c in h.get("codes", []) if c})
    if codes:
        rows.append(("De-identification Method codes (CID 7050)", "; ".join(codes)))
    longi = sorted({h["longitudinal"] for h in headers if h.get("longitudinal")})
    if longi:
        rows.append(("Longitudinal Temporal Information Modified", ", ".join(longi)))
    if not any(r[0] == "ps315 release" for r in rows):
        from ..standard import release

        rows.append(("PS3.15 release of this pixeldeid", release()))
    for name in (".pixeldeid/deface_report.json", "deface_report.json",
                 ".pixeldeid/wsi-report.csv", "wsi-report.csv"):
        if (out / name).is_file():  # (deface_report.json: OUT/.pixeldeid/, once OUT/)
            rows.append(("report file", name))
    data.method = rows


def _input_notes(data: ReportData) -> None:
    acc = data.inputs
    if acc.state == "unreadable":
        data.notes.append(f"pixeldeid dicom ledger {acc.problem}: inputs not counted (the "
                          f"outputs and the quarantine are shown as found)")
    if acc.damaged_aside:
        data.notes.append("a damaged pixeldeid dicom ledger was set aside (ledger.sqlite"
                          ".damaged): inputs finished before that are not counted")
    if acc.read and acc.outputs_missing:
        data.notes.append(f"{acc.outputs_missing} of {acc.outputs_recorded} output(s) recorded "
                          f"in the pixeldeid dicom ledger are no longer in the output folder")


def _last_verify(data: ReportData, out: Path, files: list[Path]) -> None:
    """The last ``pixeldeid verify`` result, and whether outputs changed after it."""
    from ..batch import STATE_DIRNAME
    from ..verify.cli import LAST_VERIFY_NAME

    p = out / STATE_DIRNAME / LAST_VERIFY_NAME
    if not p.is_file():
        return
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        data.notes.append(f"last verification unreadable ({type(exc).__name__})")
        return
    if isinstance(doc, dict):
        import datetime as _dt

        st = p.stat()
        data.verify = doc
        data.verify_time = _dt.datetime.fromtimestamp(st.st_mtime, _dt.timezone.utc
                                                      ).strftime("%Y-%m-%d %H:%M UTC")
        data.verify_stale = stale_verify(doc.get("files"), st.st_mtime_ns, files)


def stale_verify(checked: object, when_ns: int, files: list[Path]) -> str:
    """Why a verification of ``checked`` files at ``when_ns`` (ns since the epoch) does not
    cover ``files`` now: outputs written after it, or another number of files (outputs
    added or withdrawn); '' when it covers them."""
    newer = 0
    for f in files:
        try:
            newer += f.stat().st_mtime_ns > when_ns
        except OSError:
            continue
    why = [f"{newer} output file(s) written after it"] if newer else []
    if checked != len(files):
        why.append(f"{len(files)} file(s) to check now")
    return "; ".join(why)


def _counts(data: ReportData, items: list[LedgerItem], headers: list[dict], out: Path) -> None:
    table: dict[tuple[str, str], Counter] = defaultdict(Counter)
    if items:
        for it in items:
            for st in it.stages or ["(none)"]:
                table[(st, it.modality or "")][it.status] += 1
    else:
        stage_of = {"dicom": "header", "nifti": "deface", "tiff": "wsi"}
        for h in headers:
            if h["kind"] in stage_of:
                table[(stage_of[h["kind"]], h.get("modality", "") or h["kind"].upper())][
                    "done"] += 1
        for q in read_quarantine(out):
            table[(q["stage"] or "(unknown)", "")]["quarantined"] += 1
    statuses = sorted({s for c in table.values() for s in c},
                      key=lambda s: (["planned", "done", "skipped", "quarantined"] + [s]).index(s))
    data.statuses = statuses
    for (stage, modality), c in sorted(table.items()):
        data.counts.append({"stage": stage, "modality": modality or "(unknown)",
                            **{s: c.get(s, 0) for s in statuses}})
    tot: Counter = Counter()
    if items:
        tot.update(it.status for it in items)
    else:
        tot["outputs"] = sum(h["kind"] in ("dicom", "nifti", "tiff") for h in headers)
        tot["quarantined"] = len(read_quarantine(out))
    data.totals = dict(tot)


def _art_by_item(artifacts, stage: str | None = None) -> dict[int, list]:
    by: dict[int, list] = defaultdict(list)
    for a in artifacts:
        if stage is None or a.stage == stage:
            by[a.item].append(a)
    return by


def _copy_artifacts(arts, out: Path, images: _Images) -> list[Picture]:
    pics = []
    for a in arts:
        p = out / a.path
        if not _inside(p, out) or not images.room():
            continue
        src = images.copy(p, a.kind or "qc", 480 if a.kind == "render" else 320)
        if src:
            pics.append(Picture(src, a.caption or a.kind))
    return pics


def _pixels(data: ReportData, items, artifacts, headers, out: Path, images: _Images,
            by_output) -> None:
    arts = _art_by_item(artifacts, "pixels")
    shown: set[str] = set()      # outputs with before/after pictures
    stripped: set[str] = set()   # outputs with a recorded strip
    unchanged = 0                # read by the pixel stage, nothing redacted
    for it in items:
        px = it.details.get("pixels") if isinstance(it.details, dict) else None
        # read and left as it was (before = after): not a redaction
        redacted = not isinstance(px, dict) or bool(px.get("redacted"))
        unchanged += not redacted and it.status == "done"
        if it.id in arts:
            pics = _copy_artifacts([a for a in arts[it.id] if a.kind != "strip"], out,
                                   images) if redacted else []
            if pics:
                boxes = [b for b in ((px or {}).get("boxes") or []) if isinstance(b, dict)]
                data.redactions.append(Panel(it.output or f"item {it.id}", pics,
                                             note=_box_summary(boxes) if boxes else ""))
            strip_pics = _copy_artifacts([a for a in arts[it.id] if a.kind == "strip"], out, images)
            if strip_pics:
                data.strips.append(Panel(it.output or f"item {it.id}", strip_pics))
                stripped.add(it.output or "")
            if it.output:
                shown.add(it.output)
            continue
        if not redacted or not px or not it.output or it.status != "done":
            continue
        boxes = [b for b in (px.get("boxes") or []) if isinstance(b, dict)]
        if not boxes:
            continue
        panel = _rebuild_redaction(it, boxes, out, images)
        if panel is not None:
            data.redactions.append(panel)
            shown.add(it.output)
    for h in headers:  # cine strips of at-risk multi-frame outputs; other at-risk outputs
        if h.get("kind") != "dicom" or not h.get("at_risk"):  # without a record: as written
            continue
        item = by_output.get(h["rel"])
        if h.get("frames", 1) > 1 and h["rel"] not in stripped and images.room():
            try:
                idx = thumbs.strip_frames(h["frames"])
                frames, _ = thumbs.dicom_frames(h["path"], idx)
                src = images.save(thumbs.strip(list(frames)), "strip")
                data.strips.append(Panel(h["rel"], [Picture(src, f"output frames {idx}")]))
            except Exception as exc:  # noqa: BLE001 - undecodable: say so
                data.notes.append(f"{h['rel']}: frames not shown ({type(exc).__name__})")
        elif h["rel"] not in shown and item is None and images.room():
            try:
                frames, _ = thumbs.dicom_frames(h["path"], [0])
                src = images.save(thumbs.thumbnail(frames[0]), "after")
                data.at_risk.append(Panel(h["rel"], [Picture(src, "output, frame 0")],
                                          note="no run ledger record: output only"))
            except Exception as exc:  # noqa: BLE001
                data.notes.append(f"{h['rel']}: frame not shown ({type(exc).__name__})")
    if unchanged:
        data.notes.append(f"{unchanged} output(s) read by the burned-in text stage with nothing "
                          f"to redact: not shown among the redacted frames")


def _rebuild_redaction(it: LedgerItem, boxes: list[dict], out: Path,
                       images: _Images) -> Panel | None:
    frames = sorted({int(b["frame"]) for b in boxes if b.get("frame") is not None}) or [0]
    frames = frames[:4]
    pics: list[Picture] = []
    note = ""
    src = Path(it.src)
    for f in frames:
        fb = [b for b in boxes if b.get("frame") in (None, f)]
        if src.is_file() and images.room():
            try:
                img, _ = thumbs.dicom_frames(src, [f])
                pics.append(Picture(images.save(thumbs.thumbnail(img[0], fb), "before"),
                                    f"before, frame {f}"))
            except Exception as exc:  # noqa: BLE001
                note = f"source not decodable ({type(exc).__name__})"
        elif not src.is_file():
            note = "source no longer available: after only"
        if images.room():
            try:
                img, _ = thumbs.dicom_frames(out / it.output, [f])
                pics.append(Picture(images.save(thumbs.thumbnail(img[0], fb), "after"),
                                    f"after, frame {f}"))
            except Exception as exc:  # noqa: BLE001
                note = f"output not decodable ({type(exc).__name__})"
    if not pics:
        return None
    return Panel(it.output or "", pics, note=_box_summary(boxes) + (f"; {note}" if note else ""))


def _box_summary(boxes: list[dict]) -> str:
    labels = Counter(str(b.get("label", "")) for b in boxes)
    desc = ", ".join(f"{n} {lab or 'unlabelled'}" for lab, n in sorted(labels.items()))
    return f"{len(boxes)} box(es): {desc}"


def _deface(data: ReportData, items, artifacts, out: Path, images: _Images) -> None:
    seen: set[Path] = set()
    arts = _art_by_item(artifacts, "deface")
    for it in items:
        pics = _copy_artifacts(arts.get(it.id, []), out, images)
        seen.update((out / a.path).resolve() for a in arts.get(it.id, []))
        qc = (it.details.get("deface") or {}).get("qc", []) if isinstance(it.details, dict) else []
        for rel in qc:
            p = out / rel
            if p.suffix.lower() == ".png" and _inside(p, out) and p.resolve() not in seen \
                    and images.room():
                src = images.copy(p, "render")
                seen.add(p.resolve())
                if src:
                    pics.append(Picture(src, p.stem))
        if pics:
            data.deface.append(Panel(it.output or f"item {it.id}", pics))
    from ..batch import STATE_DIRNAME

    groups: dict[str, list[Path]] = defaultdict(list)
    # pixeldeid deface --qc: OUT/.pixeldeid/qc (OUT/qc before: renders of faces in the release)
    for qdir in (out / STATE_DIRNAME / DEFACE_QC_DIRNAME, out / DEFACE_QC_DIRNAME):
        for p in sorted(qdir.glob("*.png")) if qdir.is_dir() else []:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                groups[p.stem.rsplit("_", 1)[0]].append(p)
    for stem, ps in sorted(groups.items()):
        pics = []
        for p in ps:
            if images.room():
                src = images.copy(p, "render")
                if src:
                    pics.append(Picture(src, p.stem.rsplit("_", 1)[-1]))
        if pics:
            data.deface.append(Panel(stem, pics))


def _slide_assoc(path: Path) -> dict:
    try:
        import openslide

        s = openslide.OpenSlide(str(path))
    except Exception:  # noqa: BLE001 - not a slide or unreadable
        return {}
    try:
        return {k: s.associated_images[k].convert("RGB") for k in ("label", "macro")
                if k in s.associated_images}
    finally:
        s.close()


def _slides(data: ReportData, items, artifacts, headers, out: Path, images: _Images) -> None:
    arts = _art_by_item(artifacts, "wsi")
    covered: set[str] = set()
    for it in items:
        if it.kind != "slide" and "wsi" not in it.stages:
            continue
        pics = _copy_artifacts(arts.get(it.id, []), out, images)
        wsi = it.details.get("wsi") if isinstance(it.details, dict) else None
        note = ""
        if isinstance(wsi, dict):
            note = ", ".join(f"{k}: {wsi[k]}" for k in ("label", "macro") if k in wsi)
        if not pics and it.status == "done" and it.output:
            before = _slide_assoc(Path(it.src)) if Path(it.src).is_file() else {}
            after = _slide_assoc(out / it.output)
            for name in ("label", "macro"):
                for when, d in (("before", before), ("after", after)):
                    if name in d and images.room():
                        pics.append(Picture(images.save(thumbs.thumbnail(d[name]), name),
                                            f"{name} {when}"))
                if name not in after:
                    note += f"{'; ' if note else ''}{name}: none in the output"
        if it.output:
            covered.add(it.output)
        if pics or note:
            data.slides.append(Panel(it.output or f"item {it.id}", pics, note))
    sources = _wsi_report_sources(out)  # `pixeldeid wsi` names each output's source
    for h in headers:
        if h["kind"] != "tiff" or h["rel"] in covered:
            continue
        src = sources.get(h["rel"])
        before = _slide_assoc(src) if src is not None and src.is_file() else {}
        after = _slide_assoc(h["path"])
        pics = []
        for name in ("label", "macro"):
            for when, d in (("before", before), ("output", after)):
                if name in d and images.room():
                    pics.append(Picture(images.save(thumbs.thumbnail(d[name]), name),
                                        f"{name} ({when})"))
        notes = [f"{n}: none in the output" for n in ("label", "macro") if n not in after]
        if src is None:
            notes.append("source unknown: output only")
        elif not before and not src.is_file():
            notes.append("source no longer available: output only")
        data.slides.append(Panel(h["rel"], pics, "; ".join(notes)))


def _wsi_report_sources(out: Path) -> dict[str, Path]:
    """Output (relative to OUT) -> source slide, from ``OUT/.pixeldeid/wsi-report.csv``
    (``OUT/wsi-report.csv`` of older versions)."""
    import csv

    from ..batch import STATE_DIRNAME

    p = out / STATE_DIRNAME / "wsi-report.csv"
    if not p.is_file():
        p = out / "wsi-report.csv"
    found: dict[str, Path] = {}
    if not p.is_file():
        return found
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                o, s = row.get("output") or "", row.get("source") or ""
                if o and s and row.get("status") == "clean":
                    try:
                        found[Path(o).resolve().relative_to(out.resolve()).as_posix()] = Path(s)
                    except (ValueError, OSError):
                        continue
    except (OSError, csv.Error, UnicodeDecodeError):
        pass
    return found


def _sample(data: ReportData, headers: list[dict], images: _Images, n: int) -> None:
    import random

    pool = [h for h in headers if h.get("kind") == "dicom" and not h.get("error")]
    rng = random.Random(len(pool))
    for h in sorted(rng.sample(pool, min(n, len(pool))), key=lambda h: h["rel"]):
        if not images.room():
            break
        try:
            frames, nf = thumbs.dicom_frames(h["path"], [0])
            src = images.save(thumbs.thumbnail(frames[0], max_side=200), "sample")
            data.sample.append(Panel(h["rel"], [Picture(src, f"{h.get('modality', '')}, frame 0"
                                                        f" of {nf}")]))
        except Exception as exc:  # noqa: BLE001 - no pixels (SR, PR) or undecodable
            data.sample.append(Panel(h["rel"], [], note=f"no image ({type(exc).__name__})"))


def _retained(data: ReportData, headers: list[dict], items: list[LedgerItem]) -> None:
    by: dict[str, set[str]] = defaultdict(set)
    for h in headers:
        for name, v in h.get("text", []):
            by[name].add(v)
        if h.get("descrip"):
            by["NIfTI descrip"].add(h["descrip"])
    for it in items:
        px = it.details.get("pixels") if isinstance(it.details, dict) else None
        for b in (px or {}).get("boxes", []) if isinstance(px, dict) else []:
            if isinstance(b, dict) and b.get("label") == "safe" and b.get("text"):
                by["safe OCR text"].add(str(b["text"]))
    order = [k for k in MAIN_TEXT if k in by] + sorted(k for k in by if k not in MAIN_TEXT)
    data.retained_text = [(k, sorted(by[k])) for k in order]
