"""Batch de-identification of DICOM files: inputs, workers, ledger, quarantine, summary.

A rerun over the same output folder skips files already finished (recorded in the
ledger ``OUT/.pixeldeid/ledger.sqlite``, keyed by a keyed hash of the input path, so the
ledger carries no input names) and never leaves partial files: each output is written to
a temporary name and linked into place in one step.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import errno
import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .api import DeidConfig, Deidentifier, patient_key, read_dicom
from .atomic import (
    BackgroundWriter,
    StagedFile,
    atomic_output,
    probe_writable,
    remove_stale_temporaries,
    write_exclusive,
)
from .dsvalues import peek
from .errors import DeidError, InputError, OutputError, shape_of
from .paths import each_path_once
from .quarantine import QUARANTINE_DIRNAME, quarantine, withdraw
from .uidstate import reconcile_overrides

logger = logging.getLogger(__name__)

STATE_DIRNAME = ".pixeldeid"
LAYOUTS = ("flat", "hierarchy", "dicomdir")


#: The quarantine reason of an input whose worker process died while it ran alone.
WORKER_DIED = ("its worker process died while handling it (killed, e.g. for memory, or a "
               "crash in a compiled decoder)")

#: What ends the batch as it should (an interrupt, an exit, a generator closed). Any other
#: BaseException of one input (pyo3's PanicException of a Rust decoder) costs that input.
PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)

#: quoted values (``b'PXID73319 '``, ``'...'``, ``"..."``) and runs of digits and dots
#: (IDs, dates, phone numbers, UIDs) in an exception's text
_DIGITS_TO_9 = str.maketrans("0123456789", "9" * 10)
_LITERALS = re.compile(r"""(?<!\w)b?'(?:[^'\\]|\\.)*'|b?"(?:[^"\\]|\\.)*"|\d[\d.]{4,}""")


@dataclass
class FileOutcome:
    """Result of one input file (``status``: written, identical, skipped, quarantined).

    ``stage`` names the stage that quarantined it (``header``, ``pixels``); ``details``
    holds JSON-able stage results without identity (``{"pixels": PixelResult.to_json()}``).
    """

    source: str
    status: str
    output: str | None = None
    reason: str = ""
    sop_instance_uid: str = ""
    mapping: dict[str, dict[str, str]] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    stage: str = "header"
    #: size, modification and status change times and inode of the input before it was
    #: read (:meth:`Ledger.signature`)
    signature: str = ""


@dataclass
class BatchSummary:
    """Counts and the quarantine list of a batch."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    input_errors: list[FileOutcome] = field(default_factory=list)
    #: finished inputs whose rows the export map lacks (they could not be made again)
    map_gaps: list[FileOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.all)

    @property
    def all(self) -> list[FileOutcome]:
        return self.outcomes + self.input_errors

    @property
    def quarantined(self) -> list[FileOutcome]:
        return [o for o in self.all if o.status == "quarantined"]

    @property
    def exit_status(self) -> int:
        return 1 if self.quarantined or self.map_gaps else 0

    def line(self, out_dir: str | os.PathLike) -> str:
        return (f"{len(self.all)} input(s): {self.count('written')} written, "
                f"{self.count('identical') + self.count('skipped')} already done, "
                f"{len(self.quarantined)} quarantined -> {out_dir}")


# -- inputs -------------------------------------------------------------------------
def iter_inputs(sources: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, str | None]]:
    """Yield (file, None) for each input file, or (path, reason) for what cannot be read.

    Directories are walked without following symbolic links to directories (no loops;
    such links are reported, not dropped); hidden state folders of pixeldeid are skipped.
    Files are yielded in sorted order, each path once (:func:`~pixeldeid.paths.each_path_once`).
    """
    yield from each_path_once(_walk_inputs(sources), lambda item: item[0])


def _walk_inputs(sources: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, str | None]]:
    for src in sources:
        p = Path(src)
        try:
            st = p.stat()
        except OSError as exc:
            yield p, f"cannot read: {exc.strerror}"
            continue
        if stat.S_ISREG(st.st_mode):
            yield p, None
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield p, "not a regular file or directory"
            continue
        yield from _walk_folder(p)


def _walk_folder(top: Path) -> Iterator[tuple[Path, str | None]]:
    """:func:`_walk_inputs` of a folder: depth first, each folder's files (sorted) before
    its subfolders (sorted), as ``os.walk`` goes; the entries' types come from the folder
    listing (no system call per regular file)."""
    stack = [os.fspath(top)]
    while stack:
        root = stack.pop()
        try:
            with os.scandir(root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:  # (a path too long for the system: as for a file)
            what = "cannot read" if exc.errno == errno.ENAMETOOLONG else "unreadable directory"
            yield Path(exc.filename or root), f"{what}: {exc.strerror}"
            continue
        files, dirs = [], []
        for e in entries:
            try:
                isdir = e.is_dir()  # (a link to a folder too, as os.walk sorts them)
            except OSError:
                isdir = False
            (dirs if isdir else files).append(e)
        # our own state, and the quarantine of an output folder (one with a state folder
        # beside it); a user's folders that happen to be named so are read
        ours = any(d.name == STATE_DIRNAME and _is_state_folder(d.path) for d in dirs)
        dirs = [d for d in dirs if not (ours and d.name in (STATE_DIRNAME, QUARANTINE_DIRNAME))]
        for e in files:
            f = Path(e.path)
            try:
                if e.is_symlink() and not f.exists():
                    yield f, _broken_link_reason(f)
                elif e.is_file():
                    yield f, None
                else:  # FIFO, socket, device: never read, never dropped silently
                    yield f, "not a regular file or directory"
            except OSError as exc:  # a path too long for the system: this entry only
                yield f, f"cannot read: {exc.strerror}"
        walk = []
        for d in dirs:
            try:
                linked = d.is_symlink()
            except OSError as exc:  # (not walked either)
                yield Path(d.path), f"cannot read: {exc.strerror}"
                continue
            if linked:  # not walked (no loops); say so instead of dropping it
                yield Path(d.path), ("symbolic link to a directory is not followed; give its "
                                     "target as a source")
            else:
                walk.append(d.path)
        stack.extend(reversed(walk))


def _is_state_folder(path: str) -> bool:
    """Whether the folder ``path`` (named ``.pixeldeid``) is the state of an output folder:
    it holds the project key's id that every pixeldeid run records first."""
    return os.path.isfile(os.path.join(path, KEY_ID_NAME))


def _broken_link_reason(link: Path) -> str:
    try:
        os.stat(link)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
    return "dangling symbolic link"


# -- key and ledger ---------------------------------------------------------------------
KEY_ID_NAME = "key-id"


def check_key(out_dir: Path, key: bytes, *, record: bool = True) -> None:
    """Refuse another project key on an output folder written with one (new UIDs and
    pseudonyms would sit beside the old ones: every instance twice). ``record``: note
    this key's id when the folder has none yet (not for a dry run)."""
    kid = hmac.new(key, b"pixeldeid output folder key id", hashlib.sha256).hexdigest()
    _check_stamp(out_dir, KEY_ID_NAME, kid,
                 "this output folder was written with another project key; give the same "
                 "--key-file, or another output folder", record=record)


def _check_stamp(out_dir: Path, name: str, value: str, refusal: str, *,
                 record: bool = True) -> None:
    """Record ``value`` in ``OUT/.pixeldeid/name``, or refuse when another one is there."""
    p = out_dir / STATE_DIRNAME / name
    if p.exists():
        if p.read_text(encoding="ascii", errors="replace").strip() != value:
            raise DeidError(refusal, str(out_dir))
        return
    if not record:
        return
    make_output_dir(p.parent)
    with atomic_output(p) as fh:
        fh.write(value.encode() + b"\n")


SETTINGS_ID_NAME = "settings-id"


def check_settings(out_dir: Path, config: DeidConfig, layout: str, *,
                   record: bool = True) -> None:
    """Refuse other output-changing settings on an output folder written before.

    A rerun skips finished inputs: with another profile, options, date offset, site or
    layout its outputs would silently stay as the first settings made them (a stricter
    profile asked for and not applied). Subject/UID maps may grow between batches and
    are not part of the check.
    """
    import json
    from dataclasses import asdict

    from .profiles import Profile, load_profile

    prof = config.profile if isinstance(config.profile, Profile) else load_profile(config.profile)
    prof = prof.with_options(config.options)
    desc = {"options": sorted(prof.options),
            "private_allowlist": sorted(map(repr, prof.private_allowlist)),
            "prefix": config.pseudonym_prefix or prof.pseudonym_prefix,
            "date_offset": [config.date_offset_days, config.date_offset_seconds],
            "site": asdict(config.site), "strip_jpeg_metadata": config.strip_jpeg_metadata,
            "residual_check": config.residual_check, "layout": layout}
    if _runs_decoders(config):
        # what changes the written pixels (not the QC folder)
        desc["pixels"] = {k: v for k, v in asdict(config.pixels).items() if k != "qc_dir"}
    sid = hmac.new(config.key, json.dumps(desc, sort_keys=True).encode(),
                   hashlib.sha256).hexdigest()
    _check_stamp(out_dir, SETTINGS_ID_NAME, sid,
                 "this output folder was written with other settings (profile, options, date "
                 "offset, site, layout or pixel settings); rerun with the same settings, or use another "
                 "output folder", record=record)


def load_or_create_key(key_file: str | os.PathLike | None, out_dir: Path) -> bytes:
    """Read the project key, or create one in ``OUT/.pixeldeid/key`` (mode 0600)."""
    if key_file:
        check_not_released(key_file, out_dir, "key file")
        try:
            key = Path(key_file).read_bytes().strip()
        except OSError as exc:
            raise DeidError(f"cannot read key file: {exc.strerror}", str(key_file)) from None
        if len(key) < 16:
            raise DeidError("project key must be at least 16 bytes", str(key_file))
        return key
    kp = out_dir / STATE_DIRNAME / "key"
    if kp.exists():
        return kp.read_bytes().strip()
    if (out_dir / STATE_DIRNAME / KEY_ID_NAME).exists():
        raise DeidError("this output folder was written with a --key-file; give the same "
                        "--key-file again (a new key would duplicate every instance)",
                        str(out_dir))
    make_output_dir(kp.parent)
    key = secrets.token_hex(32).encode()
    with atomic_output(kp) as fh:
        fh.write(key + b"\n")
    os.chmod(kp, 0o600)
    logger.warning("no --key-file given: created a new project key in %s; keep it (and keep it "
                   "secret) to give the same patients the same UIDs and pseudonyms later", kp)
    return key


def make_output_dir(path: Path) -> None:
    """Create an output folder; a :class:`DeidError` (usage error) when it cannot be."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DeidError("cannot create the output folder: a file is in the way",
                        str(path)) from None
    except OSError as exc:  # a file in the way, no permission: a usage error, not a crash
        raise DeidError(f"cannot create the output folder: {exc.strerror}", str(path)) from None


def open_state_db(path: Path, opener: Callable[[Path], sqlite3.Connection],
                  what: str) -> sqlite3.Connection:
    """Open a SQLite state file with ``opener``; a damaged one is moved to ``NAME.damaged``
    (its WAL files removed) and a fresh one opened in its place."""
    try:
        return opener(path)
    except sqlite3.DatabaseError as exc:
        aside = path.with_name(path.name + ".damaged")
        logger.warning("%s %s is damaged (%s); moved to %s, starting afresh", what, path, exc,
                       aside)
        os.replace(path, aside)
        for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if extra.exists():
                extra.unlink()
        return opener(path)


class Ledger:
    """SQLite record of finished inputs (hashed source path, size and mtime, output)."""

    def __init__(self, path: Path, key: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._key = key
        self._src_keys: dict[str, str] = {}
        self._rows: list[tuple] = []  # recorded, not yet written (commit writes them)
        # Only a record of finished work: a damaged file is set aside and rebuilt (finished
        # outputs are then found identical, not written twice).
        self._con = open_state_db(path, self._open, "ledger")

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        con = sqlite3.connect(path, timeout=60)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS files (src TEXT PRIMARY KEY, sig TEXT, "
                        "status TEXT, output TEXT, sop TEXT, reason TEXT)")
            # new SOP Instance UIDs of outputs withdrawn (their inputs changed) whose export
            # map rows are still to be removed: a run killed before it wrote the map leaves
            # them to the next one
            con.execute("CREATE TABLE IF NOT EXISTS withdrawn (sop TEXT PRIMARY KEY)")
        except sqlite3.DatabaseError:
            con.close()
            raise
        return con

    def src_key(self, path: str | os.PathLike) -> str:
        """Keyed hash of the absolute source path, links not resolved (computed once per
        path and run): an input and a link to it are two inputs with a row each, as
        :func:`~pixeldeid.paths.each_path_once` and the quarantine count them."""
        name = os.fspath(path)
        key = self._src_keys.get(name)
        if key is None:
            key = self._src_keys[name] = hmac.new(
                self._key, os.fsencode(os.path.abspath(name)), hashlib.sha256).hexdigest()
        return key

    @staticmethod
    def signature(path: Path) -> str:
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"

    def lookup(self, path: Path, out_dir: Path) -> tuple[str | None, str | None]:
        """What an earlier run left for ``path``: (its output, when it was finished and the
        output is still there; its earlier output, when the input has changed since: see
        :meth:`withdraw_changed`)."""
        key = self.src_key(path)
        row = self._con.execute("SELECT sig, status, output FROM files WHERE src=?",
                                (key,)).fetchone()
        if not row or row[1] not in ("written", "identical"):
            return None, None
        try:
            same = row[0] == self.signature(path)
        except OSError:
            return None, None
        if same:
            return (row[2] if row[2] and (out_dir / row[2]).exists() else None), None
        return None, row[2] or None

    def withdraw_changed(self, changed: dict[str, set[str]],
                         out_dir: Path) -> list[tuple[Path, str]]:
        """Remove the earlier outputs of changed inputs, ``{output: src keys of this run's
        changed inputs that produced it}``, that no other input also produced (an exact
        duplicate that did not change keeps it); return the files removed, each with its
        recorded new SOP Instance UID ('' when none).

        An input and a link to it produce one output and both change together: the
        output goes, so the corrected input is written, not held back as a duplicate.
        """
        gone = []
        for rel, keys in sorted(changed.items()):
            rows = self._con.execute("SELECT src, sop FROM files WHERE output=?",
                                     (rel,)).fetchall()
            target = out_dir / rel
            if {r[0] for r in rows} <= keys and target.is_file() and not target.is_symlink():
                sop = next((r[1] for r in rows if r[1]), "")
                if sop:  # recorded before the output goes (see _withdrawn_sops)
                    self._con.execute("INSERT OR IGNORE INTO withdrawn VALUES (?)", (sop,))
                    self._con.commit()
                target.unlink()
                gone.append((target, sop))
        return gone

    def recorded_sop(self, path: Path) -> str:
        """The new SOP Instance UID recorded for ``path`` ('' when none)."""
        row = self._con.execute("SELECT sop FROM files WHERE src=?",
                                (self.src_key(path),)).fetchone()
        return (row[0] or "") if row else ""

    def record(self, o: FileOutcome) -> None:
        """Record ``o`` under the input's signature from before it was read: an input that
        changes while it is worked on (or while its outcome waits in a worker's chunk) is
        then redone by the next run."""
        sig = o.signature
        if not sig:
            try:
                sig = self.signature(Path(o.source))
            except OSError:
                sig = ""
        self._rows.append((self.src_key(o.source), sig, o.status, o.output,
                           o.sop_instance_uid, o.reason))

    def commit(self) -> None:
        """Write the rows recorded since the last commit, in one transaction."""
        if self._rows:
            self._con.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                                  self._rows)
            self._rows = []
        self._con.commit()

    def close(self) -> None:
        self.commit()
        self._con.close()


# -- worker -----------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(config: DeidConfig, out_dir: str, layout: str, want_map: bool) -> None:
    _WORKER.clear()
    pixels = None
    if _runs_decoders(config):
        from .burnedin.stage import BurnedInStage

        pixels = BurnedInStage(config.pixels)
    deid = Deidentifier(config)
    fast = _fast_path_allowed(config, pixels)
    deriver = None
    if fast and os.environ.get("PIXELDEID_DERIVE", "1") != "0":
        from .derive import Deriver

        deriver = Deriver(deid)
    _WORKER.update(deid=deid, out=Path(out_dir), layout=layout, want_map=want_map,
                   pixels=pixels, fast=fast, deriver=deriver)


def _output_rel(ds, layout: str) -> str:
    if layout == "hierarchy":
        from .layout import hierarchy_path

        return str(hierarchy_path(ds))
    if layout == "dicomdir":
        return f"{STATE_DIRNAME}/staging/{peek(ds, 'SOPInstanceUID')}.dcm"
    return f"{peek(ds, 'SOPInstanceUID')}.dcm"


DUPLICATE_SOP = ("duplicate SOP Instance UID: another input already produced this instance "
                 "with different content")
NAME_COLLISION = ("output name collision: another instance (another SOP Instance UID) already "
                  "has this output name")
#: ``OUT/.pixeldeid/sops/<2 hex>/<new SOP Instance UID>``: the output name that holds each
#: SOP Instance UID (hierarchy layout, whose names are not the SOP Instance UID alone)
SOPS_DIRNAME = "sops"


def _write_output(out: Path, rel: str, sop: str, data, path: str, layout: str) -> str:
    """Write ``data`` to ``OUT/rel`` unless another input already took its name or its SOP
    Instance UID; return the :func:`~pixeldeid.atomic.write_exclusive` status.

    In the flat and dicomdir layouts the name is the SOP Instance UID. A hierarchy name
    also depends on Instance Number, descriptions and dates, so the SOP Instance UID is
    claimed apart from the name (:func:`_claim_sop`): two instances with one UID are
    never both released, whatever their names.

    Raises
    ------
    InputError
        Duplicate SOP Instance UID with other content, or a name held by another instance.
    """
    claimed = False
    if layout == "hierarchy":
        claimed = _claim_sop(out, rel, sop, path)
    status = write_exclusive(out / rel, data)
    if status != "conflict":
        return status
    if claimed:  # this input's claim goes with it: a rerun may find the name free
        with contextlib.suppress(OSError):
            _sop_claim_path(out, sop).unlink()
    if layout == "hierarchy" and _sop_of(out / rel) not in (sop, None):
        raise InputError(NAME_COLLISION, path)
    raise InputError(DUPLICATE_SOP, path)


def _sop_claim_path(out: Path, sop: str) -> Path:
    shard = hashlib.sha256(sop.encode()).hexdigest()[:2]
    return out / STATE_DIRNAME / SOPS_DIRNAME / shard / sop


def _claim_sop(out: Path, rel: str, sop: str, path: str) -> bool:
    """Record that ``sop`` is released as ``rel``; return whether this call made the claim.

    A claim naming another output that is still there means another input produced this
    instance with other content (the same content gives the same name):
    :class:`InputError`. A claim whose output is gone (withdrawn: its input changed or
    was quarantined) is taken over.
    """
    claim = _sop_claim_path(out, sop)
    status = write_exclusive(claim, rel.encode())
    if status != "conflict":
        return status == "written"
    try:
        held = claim.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        held = ""
    if held and (out / held).is_file():
        raise InputError(DUPLICATE_SOP, path)
    with atomic_output(claim) as fh:  # a stale claim: its output was withdrawn
        fh.write(rel.encode())
    return True


def _sop_of(path: Path) -> str | None:
    """The SOP Instance UID of an output file (None when it cannot be read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return str(ds.SOPInstanceUID).strip()
    except Exception:  # noqa: BLE001 - unreadable: reported as a duplicate (fail closed)
        return None


def _fast_path_allowed(config: DeidConfig, pixels) -> bool:
    """Whether files may go through the raw fast path (:mod:`pixeldeid.rawds`) first: header
    work only (no pixel stage) and no site values to write."""
    s = config.site
    return pixels is None and not any(
        (s.site_name, s.sponsor, s.protocol_id, s.protocol_name, s.site_id, s.time_point_id,
         s.time_point_description))


def process_file(path: str) -> FileOutcome:
    """De-identify one file into the output folder (runs in a worker)."""
    try:
        sig = Ledger.signature(Path(path))
    except OSError:
        sig = ""  # reading it fails too, and says why
    try:
        outcome = _process(path)
    except BaseException as exc:  # noqa: BLE001 - (unpicklable from a worker: a lost chunk)
        if isinstance(exc, PASS_THROUGH):
            raise
        logger.debug("unexpected error on %s", path, exc_info=exc)
        outcome = _failed(path, exc)
    outcome.signature = sig
    return outcome


def _process(path: str) -> FileOutcome:
    if _WORKER.get("fast"):
        from .rawds import Decline, read_raw

        deriver = _WORKER.get("deriver")
        if deriver is not None:  # the output of the previous instance of its series, adapted
            derived = deriver.derive(path)
            if derived is not None:
                try:
                    return _deidentify_file(derived, path, deidentified=True)
                except Decline as exc:
                    logger.debug("derived output of %s not written: %s", path, exc)
        try:
            ds = read_raw(path)
            outcome = _deidentify_file(ds, path)
        except Decline as exc:  # the ordinary path takes it (and reports any problem)
            logger.debug("fast path declined %s: %s", path, exc)
        else:
            if deriver is not None and outcome.status != "quarantined":
                deriver.adopt(ds)  # (de-identified and encoded: its write is another matter)
            return outcome
    return _deidentify_file(None, path)


def _deidentify_file(ds, path: str, *, deidentified: bool = False) -> FileOutcome:
    """De-identify ``ds`` (read from ``path`` here when None) into the output folder;
    ``deidentified``: ``ds`` is de-identified already (:mod:`pixeldeid.derive`)."""
    deid: Deidentifier = _WORKER["deid"]
    out: Path = _WORKER["out"]
    fast = ds is not None
    writes: _Writes | None = _WORKER.get("writes")
    if not fast and writes is not None:
        # the outputs written ahead go into place first (their order decides conflicts;
        # a failed one is redone now, as it would have been before this input)
        writes.barrier()
    try:
        try:
            if ds is None:
                ds = read_dicom(path)
        except InputError:
            # the -j N pre-pass numbers every patient with a readable header; do the same
            # here so -j 1 numbers patients alike when such a file is damaged further on
            head = _scan_header(path)
            if head is not None:
                deid.pseudonyms(head[0])
            raise
        # the patient as the pseudonyms know them: the Patient ID, else NAME:name:birth date
        original = {"patient": ds._pixeldeid_patient if deidentified else patient_key(ds)}
        details: dict = {}
        stage = _WORKER.get("pixels")
        pix = None
        if stage is not None:  # burned-in text, found with the ORIGINAL header's identity
            pix = _run_pixels(stage, ds, path)
            if isinstance(pix, FileOutcome):
                return pix
            details["pixels"] = pix.to_json()
        if not deidentified:
            deid.deidentify_dataset(ds, source=path)
        if pix is not None and pix.clean:  # (the pixels read after redaction, none left)
            deid.add_method_code(ds, "clean-pixel-data")
        data, _removed = deid.encode(ds, source=path)
        rel = _output_rel(ds, _WORKER["layout"])
        sop = str(peek(ds, "SOPInstanceUID"))
        if fast and writes is not None:  # written ahead, put into place in its turn
            return writes.defer(path, rel, sop, data, details,
                                lambda: _mapping(deid, ds, original))
        status = _write_output(out, rel, sop, data, path, _WORKER["layout"])
        return FileOutcome(path, status, rel, sop_instance_uid=sop,
                           mapping=_mapping(deid, ds, original), details=details)
    except BaseException as exc:  # noqa: BLE001 - one bad file must not stop the batch
        if isinstance(exc, PASS_THROUGH):
            raise
        if not fast:
            return _failed(path, exc)
        # the fast path reports nothing itself: the ordinary path redoes the file and
        # gives the outcome (a quarantine reason, or an output where only the fast path
        # was stuck)
        from .rawds import Decline

        if isinstance(exc, Decline):
            raise
        raise Decline(f"{type(exc).__name__}: {exc}") from exc


def _mapping(deid: Deidentifier, ds, original: dict[str, str]) -> dict[str, dict[str, str]]:
    """The old -> new pairs of a finished input for the export map (when one is asked for):
    its patient, and the UIDs first mapped since the last input's."""
    if not _WORKER["want_map"]:
        return {}
    return {"patient": {original["patient"]: str(peek(ds, "PatientID"))},
            "uid": deid.uids.drain()}


#: errors of writing that no input causes: the output's file system is full or read-only
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
#: the stage of an outcome whose output could not be written for one of OUTPUT_ERRNOS
OUTPUT_STAGE = "output"


def _failed(path: str, exc: BaseException) -> FileOutcome:
    """The quarantine outcome of an error of the ordinary path (one bad file must not
    stop the batch; an output folder that cannot be written stops it, see run_batch)."""
    if isinstance(exc, OSError) and exc.errno in OUTPUT_ERRNOS:
        return FileOutcome(path, "quarantined", reason=exc.strerror or str(exc),
                           stage=OUTPUT_STAGE)
    if isinstance(exc, DeidError):
        return FileOutcome(path, "quarantined", reason=exc.reason)
    if isinstance(exc, MemoryError):
        return FileOutcome(path, "quarantined", reason="out of memory while reading")
    logger.debug("unexpected error on %s", path, exc_info=exc)
    return FileOutcome(path, "quarantined", reason=unexpected_reason(exc))


def unexpected_reason(exc: BaseException, crashed: str = "a decoder crashed") -> str:
    """One line on an unexpected exception that repeats no header value: its type and its
    message with quoted values and digit runs replaced by their form
    (:func:`~pixeldeid.errors.shape_of`); pydicom quotes the raw value it could not convert.
    A BaseException that is no Exception (a Rust panic) is ``crashed: TYPE``."""
    name = type(exc).__name__
    if not isinstance(exc, Exception):
        return f"{crashed}: {name}"
    first = next(iter(str(exc).splitlines()), "")
    text = _LITERALS.sub(_form_of_literal, first)
    return f"{name}: {text}" if text else name


def _form_of_literal(m: re.Match) -> str:
    """The form of a :data:`_LITERALS` match: a VR or a struct format (2 characters at
    most) stays, as do the quotes."""
    lit = m.group()
    if lit[0].isdigit():
        return lit.translate(_DIGITS_TO_9)
    inner = lit.lstrip("b")[1:-1]
    return lit if len(inner) <= 2 else shape_of(inner)


def _run_pixels(stage, ds, path: str):
    """The burned-in text stage on ``ds``: its PixelResult, or the quarantine outcome."""
    from .burnedin.classify import IdentityValues

    try:
        return stage.process(ds, IdentityValues.from_dataset(ds), source=path)
    except DeidError as exc:
        return FileOutcome(path, "quarantined", reason=exc.reason, stage="pixels")
    except MemoryError:
        return FileOutcome(path, "quarantined", reason="out of memory in the pixel stage",
                           stage="pixels")
    except BaseException as exc:  # noqa: BLE001 - one bad file must not stop the batch
        if isinstance(exc, PASS_THROUGH):
            raise
        # (a Rust decoder's panic is a BaseException, and cannot go back from a worker)
        logger.debug("pixel stage failed on %s", path, exc_info=True)
        reason = (unexpected_reason(exc, crashed="a pixel decoder crashed")
                  if not isinstance(exc, Exception) else f"pixels: {unexpected_reason(exc)}")
        return FileOutcome(path, "quarantined", stage="pixels", reason=reason)


# -- writes in a background thread ------------------------------------------------------
#: ``PIXELDEID_WRITER_THREAD=0``: the fast path writes each output before the next input
#: is read, in the thread that de-identifies (for debugging; the outputs are the same)
WRITER_THREAD_ENV = "PIXELDEID_WRITER_THREAD"
#: outputs written by the background thread at most while the next input is de-identified
WRITE_AHEAD = 3
#: the status of an outcome whose output the background thread is still writing
PENDING = "pending"


def background_writes() -> bool:
    """Whether the fast path's outputs are written by a background thread
    (:data:`WRITER_THREAD_ENV`, on unless ``0``, ``off``, ``no`` or ``false``)."""
    return os.environ.get(WRITER_THREAD_ENV, "").strip().lower() not in ("0", "off", "no",
                                                                         "false")


@dataclass
class _Deferred:
    """An input in :class:`_Writes`: its outcome, and the arguments of the
    :func:`_write_output` that finishes it (None: the outcome is final)."""

    outcome: FileOutcome
    write: tuple | None = None

    def ready(self) -> bool:
        return self.write is None or self.write[3].ready()


class _Writes:
    """Outcomes of inputs handled one after another, the fast path's outputs written
    ahead by a :class:`~pixeldeid.atomic.BackgroundWriter` while the next input is
    de-identified.

    Each outcome is what the synchronous code gives: the background thread only fills
    temporary files (:class:`~pixeldeid.atomic.StagedFile`: it copies the pixel data);
    this thread puts them into place with :func:`_write_output` in input order (SOP
    claims and name conflicts as without the thread), and puts all of them into place
    before the ordinary path handles an input (:meth:`barrier`). A write that fails
    makes the ordinary path
    redo that input, as :func:`_process` does when the fast path declines. An outcome is
    handed on only once its output is in place (then the ledger records it).
    """

    def __init__(self, writer: BackgroundWriter) -> None:
        self.writer = writer
        self._queue: collections.deque[_Deferred] = collections.deque()
        self._redoing = False
        # UID pairs of a redone input that gave no output: the synchronous code drains
        # them with the next finished input's (export map rows)
        self._carry: dict[str, str] = {}

    def defer(self, path: str, rel: str, sop: str, data, details: dict,
              mapping: Callable[[], dict]) -> FileOutcome:
        """Write ``data`` ahead (:class:`~pixeldeid.atomic.StagedFile`; raises OSError as a
        write would) and queue the outcome of ``path``, pending until its output is put
        into place in its turn. ``mapping()`` gives the outcome's export map rows."""
        out: Path = _WORKER["out"]
        staged = StagedFile(out / rel, data, self.writer)
        try:
            outcome = FileOutcome(path, PENDING, rel, sop_instance_uid=sop, mapping=mapping(),
                                  details=details)
            self._queue.append(_Deferred(outcome, (out, rel, sop, staged, path,
                                                   _WORKER["layout"])))
        except BaseException:
            staged.discard()
            raise
        return outcome

    def add(self, outcome: FileOutcome) -> None:
        """Take the outcome of the next input (deferred by :meth:`defer`, or final)."""
        if not self._queue or self._queue[-1].outcome is not outcome:
            self._queue.append(_Deferred(outcome))

    def barrier(self) -> None:
        """Put every output written ahead into place (before this thread writes one)."""
        if self._redoing:  # the inputs queued come after the one redone
            return
        for item in self._queue:
            self._finish(item)

    def take(self, keep: int) -> Iterator[FileOutcome]:
        """Yield the finished outcomes in input order, finishing the oldest ones while
        more than ``keep`` are queued."""
        while self._queue and (len(self._queue) > keep or self._queue[0].ready()):
            item = self._queue[0]
            self._finish(item)
            self._queue.popleft()
            yield item.outcome

    def discard(self) -> None:
        """Drop what is queued (the batch stopped): no temporary file stays."""
        while self._queue:
            item = self._queue.popleft()
            if item.write is not None:
                item.write[3].discard()

    def _finish(self, item: _Deferred) -> None:
        """Make ``item``'s outcome final: its output put into place, else the input redone."""
        if item.write is not None:
            write, item.write = item.write, None
            try:
                item.outcome.status = _write_output(*write)
            except Exception as exc:  # noqa: BLE001 - the ordinary path redoes the input
                item.outcome = self._redo(item.outcome, exc)
            finally:
                write[3].discard()  # (nothing left when it was put into place)
        o = item.outcome
        if self._carry and o.status in ("written", "identical") and "uid" in o.mapping:
            o.mapping["uid"] = {**self._carry, **o.mapping["uid"]}
            self._carry = {}

    def _redo(self, fast: FileOutcome, exc: Exception) -> FileOutcome:
        path = fast.source
        logger.debug("fast path declined %s: %s: %s", path, type(exc).__name__, exc)
        self._redoing = True
        try:
            outcome = _deidentify_file(None, path)
        finally:
            self._redoing = False
        outcome.signature = fast.signature
        uids = fast.mapping.get("uid", {})
        if outcome.status in ("written", "identical") and "uid" in outcome.mapping:
            outcome.mapping["uid"] = {**uids, **outcome.mapping["uid"]}
        else:
            self._carry.update(uids)
        return outcome


def _start_writer() -> BackgroundWriter | None:
    """A background writer, or None when switched off or no thread can be started."""
    if not background_writes():
        return None
    try:
        return BackgroundWriter()
    except RuntimeError as exc:  # "can't start new thread": write in this thread
        logger.debug("no background writer: %s", exc)
        return None


def _outcomes(paths: list[str], *, background: bool = True) -> Iterator[FileOutcome]:
    """:func:`process_file` of each of ``paths``, in order, by the worker state of
    :func:`_init_worker`; the fast path's writes overlap the next inputs' work in a
    background thread (:class:`_Writes`) unless ``background`` is False or
    :func:`background_writes` says no. When the batch stops early (an exception, an
    interrupt, the generator closed) the copies not started are dropped, the one running
    finishes, the thread is joined and the temporary files are removed: no input is
    recorded without its output, and no partial file stays."""
    writer = None
    if background and _WORKER.get("fast") and len(paths) > 1:
        writer = _start_writer()
    if writer is None:
        for p in paths:
            yield process_file(p)
        return
    writes = _Writes(writer)
    _WORKER["writes"] = writes
    finished = False
    try:
        for p in paths:
            writes.add(process_file(p))
            yield from writes.take(WRITE_AHEAD)
        yield from writes.take(0)
        finished = True
    finally:
        _WORKER.pop("writes", None)
        try:
            writer.close(cancel=not finished)
        finally:
            writes.discard()


# -- batch ----------------------------------------------------------------------------
def run_batch(sources: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
              config: DeidConfig, *, layout: str = "flat", jobs: int = 1,
              export_map: str | os.PathLike | None = None, progress: bool | None = None,
              ) -> BatchSummary:
    """De-identify every DICOM file under ``sources`` into ``out_dir``.

    Bad inputs are quarantined with a reason and the batch goes on. Returns a summary
    whose ``exit_status`` is 0 when every input was cleaned and 1 otherwise.
    """
    from tqdm import tqdm

    if layout not in LAYOUTS:
        raise DeidError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    out = Path(out_dir)
    sources = list(sources)
    _check_not_inside(sources, out)
    if export_map is not None:
        check_export_map(export_map, out)
    if config.pseudonym_db is not None:
        check_not_released(config.pseudonym_db, out, "subject database")
    make_output_dir(out)
    out_real, out_abs = os.path.realpath(out), os.path.abspath(out)
    state = out / STATE_DIRNAME
    check_key(out, config.key)
    check_settings(out, config, layout)
    remove_stale_temporaries(out)  # (after the checks: a refused batch touches nothing)
    if config.pseudonym_db is None:
        config.pseudonym_db = state / "subjects.sqlite"
    # a damaged map, or a subject map that contradicts it: a usage error before any file
    _open_pseudonyms(config).close()
    # the UID overrides of earlier batches hold; a contradiction is a usage error
    config.uid_map_by_key = reconcile_overrides(out, config.key, config.uid_map)
    ledger = Ledger(state / "ledger.sqlite", config.key)
    summary = BatchSummary()
    todo: list[str] = []
    changed: dict[str, set[str]] = {}  # earlier output -> changed inputs that produced it
    folders: dict[str, str] = {}  # real paths of the folders of inputs
    for path, reason in iter_inputs(sources):
        try:
            real = _realpath(path, folders)
        except (OSError, RuntimeError):  # RuntimeError: a symbolic link loop (Python < 3.13)
            real = None
        if real is not None and _inside(real, out_real):
            if _inside(os.path.abspath(path), out_abs) or _sits_in(path, out_real):
                continue  # never read our own outputs (OUT is inside a source folder)
            reason = "a link to a file inside the output folder (not read)"
        if reason:
            rec = _quarantine(path, out, reason, "header", summary)
            summary.input_errors.append(FileOutcome(str(path), "quarantined", reason=rec.reason))
            continue
        done, stale = ledger.lookup(path, out)
        if done:
            sop = ledger.recorded_sop(path) if export_map is not None else ""
            summary.outcomes.append(FileOutcome(str(path), "skipped", done,
                                                sop_instance_uid=sop))
            continue
        if stale is not None:  # the input changed since an earlier run: withdraw, redo
            logger.info("input changed since its output was written; redoing %s", path)
            changed.setdefault(stale, set()).add(ledger.src_key(path))
        todo.append(str(path))
    withdrawn = ledger.withdraw_changed(changed, out)

    want_map = export_map is not None
    bar = tqdm(total=len(todo), unit="file", desc="dicom", leave=False,
               disable=None if progress is None else not progress)
    earlier_quarantine = (out / QUARANTINE_DIRNAME).is_dir()
    try:
        # closed here when the loop stops early (an interrupt, an error): the work stops
        # (a background writer is joined) before the ledger closes, not when the
        # traceback is freed
        with contextlib.closing(_execute(todo, config, out, layout, jobs, want_map)) as outcomes:
            for outcome in outcomes:
                if outcome.stage == OUTPUT_STAGE:  # no input's fault: stop, say where
                    raise _output_error(out, outcome.reason, summary)
                if outcome.status == "quarantined":
                    rec = _quarantine(outcome.source, out, outcome.reason, outcome.stage,
                                      summary)
                    outcome.reason = rec.reason
                elif earlier_quarantine and withdraw(outcome.source, out):
                    logger.info("cleaned now, its quarantine record removed: %s", outcome.source)
                summary.outcomes.append(outcome)
                ledger.record(outcome)
                bar.update()
                if len(summary.outcomes) % 200 == 0:
                    ledger.commit()
    finally:
        bar.close()
        try:
            ledger.close()
        except sqlite3.Error as exc:  # (a full disk) those inputs are redone by the next run
            logger.warning("%s: the run ledger could not be saved: %s", out, exc)

    if layout == "dicomdir":
        _finish_dicomdir(out, summary)
    if want_map:
        pending = {sop for _path, sop in withdrawn if sop} | _withdrawn_sops(
            state / "ledger.sqlite")
        summary.map_gaps = _export_map(Path(export_map), summary, config, pending)
        _forget_withdrawn(state / "ledger.sqlite", pending)
        summary.map_gaps += _unmapped_earlier(out, state / "ledger.sqlite", Path(export_map))
    return summary


def _withdrawn_sops(ledger: Path) -> set[str]:
    """The new SOP Instance UIDs of outputs withdrawn by this or an earlier run (killed
    before it wrote the export map) whose rows are still to leave the export map."""
    try:
        with contextlib.closing(sqlite3.connect(ledger, timeout=60)) as con:
            return {r[0] for r in con.execute("SELECT sop FROM withdrawn")}
    except sqlite3.Error as exc:
        logger.warning("%s: the withdrawn outputs could not be read: %s", ledger, exc)
        return set()


def _forget_withdrawn(ledger: Path, sops: set[str]) -> None:
    """Forget withdrawn ``sops`` whose export map rows are gone."""
    try:
        with contextlib.closing(sqlite3.connect(ledger, timeout=60)) as con:
            con.executemany("DELETE FROM withdrawn WHERE sop=?", [(s,) for s in sops])
            con.commit()
    except sqlite3.Error as exc:  # (the next map write removes them again)
        logger.warning("%s: the withdrawn outputs could not be updated: %s", ledger, exc)


def _unmapped_earlier(out: Path, ledger: Path, export_map: Path) -> list[FileOutcome]:
    """One outcome naming how many outputs of ``out`` that earlier batches wrote have no row
    in ``export_map`` (those batches ran without ``--export-map``, or with another map:
    the ledger keeps no input names to make their rows again); [] when none."""
    mapped = {new for (kind, _old), new in _read_export_map(export_map).items()
              if kind == "uid"}
    try:
        con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT DISTINCT sop, output FROM files WHERE status IN "
                               "('written', 'identical') AND sop != ''").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        logger.warning("%s: the run ledger could not be read to check the export map: %s",
                       out, exc)
        return []
    missing = {sop for sop, rel in rows if sop not in mapped and rel and (out / rel).exists()}
    if not missing:
        return []
    return [FileOutcome(str(out), "map-gap", reason=(
        f"{len(missing)} output(s) written by earlier batches have no rows in it (they ran "
        "without this --export-map): give their inputs again with it to add them"))]


def _output_error(out: Path, why: str, summary: BatchSummary) -> OutputError:
    """The error that stops a batch whose output folder cannot be written, with its
    summary so far."""
    exc = OutputError(f"{why}; the batch stopped after {summary.count('written')} "
                      f"written (a rerun into the same folder skips them and goes on)", str(out))
    exc.summary = summary
    return exc


def _quarantine(path, out: Path, reason: str, stage: str, summary: BatchSummary):
    """:func:`quarantine` ``path``; an output folder too full to take it stops the batch."""
    try:
        return quarantine(path, out, reason, stage=stage)
    except OSError as exc:
        if exc.errno in OUTPUT_ERRNOS:
            raise _output_error(out, exc.strerror or str(exc), summary) from None
        raise


def _realpath(path: Path, folders: dict[str, str]) -> str:
    """``os.path.realpath(path)``, the real paths of its folder kept in ``folders`` (one
    per folder, not one per file: a file that is not a link is its folder's real path
    and its name)."""
    if os.path.islink(path):
        return os.path.realpath(path)
    folder, name = os.path.split(os.fspath(path))
    real = folders.get(folder)
    if real is None:
        real = folders[folder] = os.path.realpath(folder or os.curdir)
    return os.path.join(real, name)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + os.sep)


def _sits_in(path: Path, out_real: str) -> bool:
    """Whether ``path`` itself (not a link) lies in the output folder, reached through a
    linked folder above it (SRC named by a link to the folder that holds OUT)."""
    try:
        if os.path.islink(path):
            return False
        folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    except (OSError, RuntimeError):
        return False
    return _inside(os.path.join(folder, os.path.basename(path)), out_real)


def check_not_released(path: str | os.PathLike, out: str | os.PathLike, what: str) -> None:
    """Refuse ``path`` (the project key, the identity map) inside the output folder, which is
    released as a whole, unless it is under ``OUT/.pixeldeid/`` (never released)."""
    try:
        p, o = Path(path).resolve(), Path(out).resolve()
    except (OSError, RuntimeError):
        return
    if p.is_relative_to(o) and not p.is_relative_to(o / STATE_DIRNAME):
        raise DeidError(f"{what} {path} is inside the output folder {out}, which is for release; "
                        f"keep it outside, or under {Path(out) / STATE_DIRNAME}")


def check_export_map(path: str | os.PathLike, out: str | os.PathLike) -> None:
    """Refuse an ``--export-map`` target that is in the release or cannot be written, before
    any work (it is written last, after the whole batch)."""
    check_not_released(path, out, "export map")
    check_output_file(path, "export map")
    _read_export_map(Path(path))  # an existing file is merged: it must be a map of ours


#: The header of an ``--export-map`` file.
EXPORT_MAP_HEADER = ("id_old", "id_new", "kind")


def _read_export_map(path: Path) -> dict[tuple[str, str], str]:
    """The rows of an existing ``--export-map`` file, {(kind, old): new} (empty when there
    is none).

    Raises
    ------
    DeidError
        The file is there but is not an export map of pixeldeid (it is never overwritten).
    """
    if not path.is_file():
        return {}
    from .paths import read_csv

    rows = read_csv(path, "export map")
    if not rows:
        return {}
    if tuple(c.strip() for c in rows[0]) != EXPORT_MAP_HEADER:
        raise DeidError("export map: the file there is not an export map (header "
                        f"{','.join(EXPORT_MAP_HEADER)}); its rows are merged into, so give "
                        "the earlier map of this output folder or a new file", str(path))
    out: dict[tuple[str, str], str] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != 3 or not all(row):
            raise DeidError(f"export map: line {n} is not id_old,id_new,kind", str(path))
        out[(row[2], row[0])] = row[1]
    return out


def check_output_file(path: str | os.PathLike, what: str) -> None:
    """Refuse (:class:`DeidError`) a file to be written at the end of a long command that
    cannot be written there: checked before the work, not after it."""
    p = Path(path)
    if p.is_dir():
        raise DeidError(f"{what}: a folder, not a file", str(p))
    try:
        probe_writable(p)
    except OSError as exc:
        raise DeidError(f"{what} cannot be written there: {exc.strerror}", str(p)) from None


def _check_not_inside(sources: list, out: Path) -> None:
    """Refuse a source that is the output folder or inside it: its files would all be
    skipped as our own outputs (a usage error, before anything is written)."""
    try:
        out_resolved = out.resolve()
    except (OSError, RuntimeError):
        return
    for src in sources:
        try:
            resolved = Path(src).resolve()
        except (OSError, RuntimeError):
            continue  # reported as unreadable by iter_inputs
        if resolved.is_relative_to(out_resolved):
            raise DeidError(f"source {src} is inside the output folder {out}; "
                            f"choose an output folder outside the sources")


def _execute(todo: list[str], config: DeidConfig, out: Path, layout: str, jobs: int,
             want_map: bool) -> Iterator[FileOutcome]:
    """Outcomes of ``todo`` in input order: in this process for header work with ``-j 1``,
    else in worker processes. The pixel stage always runs in a worker, also with ``-j 1``:
    a compiled decoder that crashes, or the kernel's OOM killer on a huge cine loop, then
    costs one input (quarantined, :data:`WORKER_DIED`), not the batch and every rerun."""
    isolate = _runs_decoders(config)
    if not todo:
        return
    if not isolate and (jobs <= 1 or len(todo) < 2):
        yield from _serial(todo, config, out, layout, want_map)
        return
    # pixel work takes far longer per file than handing a file to a worker: one at a time
    chunk = 1 if isolate else max(1, min(32, len(todo) // (jobs * 8) or 1))
    _open_pseudonyms(config).close()  # a damaged map is a usage error before any worker starts
    _warm_caches()
    initargs = (config, str(out), layout, want_map)
    pool = _pool(jobs, initargs)  # one pool reads the headers, then does the work
    try:
        heads, pool = _scan_headers(todo, pool, chunk)
        shared = _prepare_parallel(todo, heads, config)
    except BaseException:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        raise
    parallel = [p for p in todo if p not in shared]
    yield from _parallel(_chunks(parallel, chunk), initargs, jobs, pool)
    # inputs sharing a SOP Instance UID: in input order, so the same one wins as with -j 1
    in_order = [p for p in todo if p in shared]
    if in_order and isolate:  # one worker takes them one after another
        yield from _parallel(_chunks(in_order, 1), initargs, 1)
    elif in_order:
        yield from _serial(in_order, config, out, layout, want_map)


def _runs_decoders(config: DeidConfig) -> bool:
    """Whether the pixel stage runs (compiled image decoders and OCR engines)."""
    return config.pixels is not None and config.pixels.policy != "off"


def _pool(jobs: int, initargs: tuple) -> ProcessPoolExecutor:
    from .pipeline.executors import fork_context

    return ProcessPoolExecutor(max_workers=jobs, initializer=_init_pool_worker,
                               initargs=(writer_threads_fit(jobs), *initargs),
                               mp_context=fork_context())


def writer_threads_fit(jobs: int, cores: int | None = None) -> bool:
    """Whether each of ``jobs`` worker processes has a core to spare for its background
    writer thread. Without one the thread only takes turns with the workers (``-j 2`` on
    two cores ran 0.8-1.05x ``-j 1`` with the threads, 1.4x without)."""
    if cores is None:
        from .pipeline.executors import cpus

        cores = cpus()
    return 2 * jobs <= cores


def _init_pool_worker(background: bool, *initargs) -> None:
    from .pipeline.executors import die_with_parent

    die_with_parent()
    _init_worker(*initargs)
    _WORKER["background"] = background


def _scan_headers(todo: list[str], pool: ProcessPoolExecutor,
                  chunk: int) -> tuple[list[tuple[str, str] | None], ProcessPoolExecutor | None]:
    """:func:`_scan_header` of every input, by the workers of ``pool`` (by this process if
    a worker dies: then the pool returned is None)."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        return list(pool.map(_scan_header, todo, chunksize=chunk)), pool
    except BrokenProcessPool:
        pool.shutdown()
        return [_scan_header(p) for p in todo], None


def _chunks(paths: list[str], size: int) -> Iterator[list[str]]:
    return (paths[i:i + size] for i in range(0, len(paths), size))


def _process_chunk(paths: list[str]) -> list[FileOutcome]:
    return list(_outcomes(paths, background=_WORKER.get("background", True)))


def _parallel(chunks: Iterator[list[str]], initargs: tuple, jobs: int,
              pool: ProcessPoolExecutor | None = None) -> Iterator[FileOutcome]:
    """Run ``chunks`` on ``jobs`` worker processes (``pool``, else a new one), yielding
    outcomes chunk by chunk in input order, a bounded number of chunks in flight. When a
    worker process dies (killed for memory, a crash in a compiled decoder), the inputs of
    the chunks left unfinished are run again one at a time (:func:`_one_by_one`), and the
    batch goes on in a new pool."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    window = 2 * jobs
    chunks = iter(chunks)
    while True:
        unfinished: list[str] = []
        with pool or _pool(jobs, initargs) as pool:
            pending: collections.deque[tuple[Future, list[str]]] = collections.deque()
            not_sent: list[str] = []  # a chunk the broken pool refused
            while not not_sent:
                while len(pending) < window and (c := next(chunks, None)) is not None:
                    try:
                        pending.append((pool.submit(_process_chunk, c), c))
                    except BrokenProcessPool:
                        not_sent = c
                        break
                if not_sent or not pending:
                    break
                try:
                    done = pending[0][0].result()
                except BrokenProcessPool:
                    break
                except Exception as exc:  # noqa: BLE001 - its outcomes could not come back
                    done = _lost_chunk(pending[0][1], exc, initargs)
                pending.popleft()
                yield from done
            if not pending and not not_sent:
                return
            for fut, c in pending:  # chunks finished before the pool broke are kept
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    yield from fut.result()
                else:
                    unfinished += c
        pool = None
        # a dying pool stops its other workers too, some in the middle of a write
        remove_stale_temporaries(initargs[1])
        yield from _one_by_one(unfinished + not_sent, initargs)


def _one_by_one(paths: list[str], initargs: tuple) -> Iterator[FileOutcome]:
    """Run ``paths`` one at a time in a one-worker pool: an input whose worker dies is
    quarantined (that worker is replaced), the others are done as usual."""
    from concurrent.futures.process import BrokenProcessPool

    todo = collections.deque(paths)
    while todo:
        died = False
        with _pool(1, initargs) as pool:
            while todo and not died:
                path = todo.popleft()
                try:
                    done = pool.submit(_process_chunk, [path]).result()
                except BrokenProcessPool:
                    logger.warning("the worker process died while handling %s", path)
                    died = True
                    done = [FileOutcome(path, "quarantined", reason=WORKER_DIED, stage="worker")]
                except Exception as exc:  # noqa: BLE001 - its outcome could not come back
                    done = [_worker_failed(path, exc)]
                yield from done
        if died:  # (it may have died in a write; the pool is shut down: it is reaped too)
            remove_stale_temporaries(initargs[1])


def _lost_chunk(paths: list[str], exc: Exception, initargs: tuple) -> Iterable[FileOutcome]:
    """Outcomes of a chunk whose worker raised instead of handing them back (a result that
    cannot be pickled, e.g. a Rust decoder's PanicException: ``PicklingError``): one input
    is quarantined (stage ``worker``); several are run again one at a time, so that only
    the input at fault is."""
    if len(paths) == 1:
        return [_worker_failed(paths[0], exc)]
    return _one_by_one(paths, initargs)


def _worker_failed(path: str, exc: Exception) -> FileOutcome:
    """The quarantine outcome of an input whose worker raised ``exc`` instead of handing
    back its outcome."""
    logger.debug("the worker failed on %s", path, exc_info=exc)
    return FileOutcome(path, "quarantined", stage="worker",
                       reason=f"its worker failed on it: {unexpected_reason(exc)}")


def _warm_caches() -> None:
    """Load the PS3.15, IOD and vocabulary tables in the parent, so forked workers share them."""
    from .iodtypes import warm
    from .standard import rules, safe_private
    from .textclean import dicom_vocabulary

    rules()
    safe_private()
    dicom_vocabulary()
    warm()


def _serial(todo: list[str], config: DeidConfig, out: Path, layout: str,
            want_map: bool) -> Iterator[FileOutcome]:
    if not todo:
        return
    _init_worker(config, str(out), layout, want_map)
    try:
        yield from _outcomes(todo)
    finally:
        _WORKER["deid"].close()


def _scan_header(path: str) -> tuple[str, str] | None:
    """(patient key, SOP Instance UID) of an input, or None when unreadable (runs in a worker)."""
    from .rawds import Decline, scan_patient

    try:
        try:
            return scan_patient(path)
        except Decline:
            return _scan_header_pydicom(path)
    except BaseException as exc:  # noqa: BLE001 - the work on it quarantines it, not the batch
        if isinstance(exc, PASS_THROUGH):
            raise
        logger.debug("header scan failed on %s", path, exc_info=exc)
        return None


def _scan_header_pydicom(path: str) -> tuple[str, str] | None:
    """:func:`_scan_header` by pydicom's reader (files the raw scan does not take)."""
    import pydicom

    from .api import patient_key

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
            "PatientID", "PatientName", "PatientBirthDate", "SOPInstanceUID"])
        if "SOPInstanceUID" not in ds:
            return None
        # values are converted here, lazily: a damaged VR ('QI', a Patient ID as FD) raises
        return patient_key(ds), str(ds.SOPInstanceUID).strip()
    except Exception:  # noqa: BLE001 - the worker reports unreadable files
        return None


def _open_pseudonyms(config: DeidConfig):
    """The run's pseudonym map; one that cannot be opened is a :class:`DeidError` (usage
    error)."""
    from .profiles import Profile, load_profile
    from .pseudonyms import PseudonymMap

    profile = config.profile if isinstance(config.profile, Profile) else load_profile(config.profile)
    prefix = config.pseudonym_prefix or profile.pseudonym_prefix or "SUBJ"
    return PseudonymMap(config.pseudonym_db, config.key, prefix, config.subject_map)


def _prepare_parallel(todo: list[str], heads: list[tuple[str, str] | None],
                      config: DeidConfig) -> set[str]:
    """Make ``-j N`` give the outputs of ``-j 1``; return the inputs to run in order.

    Pseudonyms are numbered in order of first appearance, so the patients are numbered
    here in input order (workers would race for the numbers), from the headers the
    workers read (``heads``, one per input). Inputs that share a SOP Instance UID are
    returned: which of them is written must not depend on which worker comes first.
    """
    pseudonyms = _open_pseudonyms(config)
    by_sop: dict[str, list[str]] = {}
    try:
        for p, head in zip(todo, heads, strict=True):
            if head is not None:
                pseudonyms(head[0])
                by_sop.setdefault(head[1], []).append(p)
    finally:
        pseudonyms.close()
    return {p for paths in by_sop.values() if len(paths) > 1 for p in paths}


def _finish_dicomdir(out: Path, summary: BatchSummary) -> None:
    """Build the DICOMDIR file-sets from every staged instance (this run's and earlier runs');
    files and study folders of withdrawn instances are removed from the release."""
    from .layout import DicomdirLayout, prune_studies

    staging = out / STATE_DIRNAME / "staging"
    if not staging.is_dir():
        return
    by_output = {o.output: o for o in summary.outcomes if o.output}
    lay = DicomdirLayout(out)
    for f in sorted(staging.glob("*.dcm")):
        try:
            lay.add(f)  # hard-linked: staging stays complete, so every run rebuilds all
        except DeidError as exc:  # one instance that cannot be indexed: quarantine it only
            o = by_output.get(f.relative_to(out).as_posix())
            if o is None:
                logger.warning("left out of the DICOMDIR: %s: %s", f.name, exc.reason)
                continue
            rec = quarantine(o.source, out, f"DICOMDIR: {exc.reason}", stage="layout")
            o.status, o.reason, o.output = "quarantined", rec.reason, None
    lay.close()
    # what the rebuild no longer produces leaves the release: a withdrawn input's study
    prune_studies(out, lay.study_dirs)


def _export_map(path: Path, summary: BatchSummary, config: DeidConfig,
                withdrawn: set[str] = frozenset()) -> list[FileOutcome]:
    """Write the old -> new rows of every release of the output folder to ``path``.

    The rows already in ``path`` (earlier batches) are kept, this run's added (a value
    mapped anew wins), but for the SOP Instance UID rows of outputs ``withdrawn`` this
    run (new SOP Instance UIDs of outputs of changed inputs) that no output of this run
    has again. Inputs finished by an earlier run (skipped now) whose SOP Instance
    UID is not in the file yet (the earlier run was killed before it wrote the map, or
    wrote another file) are read again to give their rows (:func:`_mapping_again`).
    Returns those of them that could not be (the map lacks their rows).
    """
    # a temporary copy of the map that a killed run left beside it (original IDs in it)
    remove_stale_temporaries(path.parent, recursive=False, owned_only=True)
    rows = _read_export_map(path)
    mapped = {new for (kind, _old), new in rows.items() if kind == "uid"}
    again = [o for o in summary.outcomes
             if o.status == "skipped" and o.sop_instance_uid not in mapped]
    gaps = _mapping_again(again, config)
    for o in summary.outcomes:
        for kind, pairs in o.mapping.items():
            for old, new in pairs.items():
                if old and old != new:
                    rows[(kind, old)] = new
    gone = set(withdrawn) - {o.sop_instance_uid for o in summary.outcomes
                             if o.status in ("written", "identical", "skipped")}
    if gone:
        rows = {k: v for k, v in rows.items() if not (k[0] == "uid" and v in gone)}
    with atomic_output(path) as fh:
        text = _csv_text([EXPORT_MAP_HEADER] +
                         [(old, new, kind) for (kind, old), new in sorted(rows.items())])
        fh.write(text.encode("utf-8"))
    os.chmod(path, 0o600)
    return gaps


def _mapping_again(outcomes: list[FileOutcome], config: DeidConfig) -> list[FileOutcome]:
    """Fill the ``mapping`` of finished inputs by de-identifying them again in memory
    (nothing is written; UIDs and pseudonyms are a function of the key and the pseudonym
    map, so they come out as released). Return those that fail now, a reason each."""
    failed: list[FileOutcome] = []
    if not outcomes:
        return failed
    deid = Deidentifier(config)
    try:
        for o in outcomes:
            try:
                ds = read_dicom(o.source)
                original = patient_key(ds)
                deid.deidentify_dataset(ds, source=o.source)
            except Exception as exc:  # noqa: BLE001 - reported; the outputs stand
                why = exc.reason if isinstance(exc, DeidError) else unexpected_reason(exc)
                o.reason = f"its export map rows could not be made again: {why}"
                failed.append(o)
                continue
            o.mapping = {"patient": {original: str(peek(ds, "PatientID"))},
                         "uid": deid.uids.drain()}
    finally:
        deid.close()
    return failed


def _csv_text(rows: list[tuple[str, ...]]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()
