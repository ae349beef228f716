"""The fast path's outputs written ahead by a background thread (batch._Writes,
atomic.BackgroundWriter, atomic.StagedFile) give exactly what writing each output at once
gives: the same files, outcomes, quarantine reasons and export map; a write that fails in
the thread costs a redo of that input only; an interrupt leaves no temporary file and no
thread, and a rerun finishes the batch."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import warnings
from pathlib import Path

import pydicom
import pytest
from corpus import make_ct_series

from pixeldeid import atomic, batch, rawds
from pixeldeid.api import DeidConfig
from pixeldeid.batch import run_batch
from tests.pixeldeid.conftest import ct_small_variant, tree_digest

KEY = b"k" * 32


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Three CT series (fast path), files the fast path declines (a character set it
    does not take: the ordinary path takes them) and pairs of inputs that share a SOP
    Instance UID, so the order of the writes decides which one is released."""
    root = tmp_path_factory.mktemp("bg-src")
    for k in range(3):
        make_ct_series(root / f"s{k}", 7, seed=60 + k)
    [base] = make_ct_series(tmp_path_factory.mktemp("bg-base"), 1, seed=69)
    ordinary = {"SpecificCharacterSet": "ISO_IR 148"}  # rawds declines it (pydicom reads it)
    uid = "1.2.826.0.1.3680043.9.7.{}".format
    # the ordinary path's input first, then a fast one with the same SOP and other pixels
    _variant(base, root / "dup" / "a1.dcm", uid(1), 1, **ordinary)
    _variant(base, root / "dup" / "a2.dcm", uid(1), 2)
    # a fast one first, then an ordinary one (it must wait for the fast one's write)
    _variant(base, root / "dup" / "b1.dcm", uid(2), 1)
    _variant(base, root / "dup" / "b2.dcm", uid(2), 2, **ordinary)
    # exact duplicates: the second is "identical"
    _variant(base, root / "dup" / "c1.dcm", uid(3), 3)
    shutil.copy(root / "dup" / "c1.dcm", root / "dup" / "c2.dcm")
    _variant(base, root / "z_ordinary.dcm", uid(4), 0, **ordinary)
    return root


def _variant(base: Path, dest: Path, sop: str, pixel: int, **values) -> Path:
    """A 512 x 512 CT slice (its pixel data past the fast path's first read: copied file
    to file by the writer thread) with another SOP Instance UID and first pixel byte."""
    return ct_small_variant(dest, sop, pixel=pixel, base=base, **values)


def _batch(src: Path, out: Path, monkeypatch, *, thread: bool, layout: str = "flat",
           jobs: int = 1, slow: float = 0.0, live: list[int] | None = None):
    """run_batch with the writer thread on or off; (summary, export map text, staged).

    ``slow``: the writer thread takes that many more seconds per output (the next inputs
    are then handled while it writes); ``live``: [staged files not yet put into place or
    discarded, the most at once]."""
    staged: list[str] = []
    live = [0, 0] if live is None else live
    real_init, real_discard, real_rest = (atomic.StagedFile.__init__,
                                          atomic.StagedFile.discard, atomic._write_rest)

    def counting(self, path, *a, **k):
        staged.append(str(path))
        real_init(self, path, *a, **k)
        live[0] += 1
        live[1] = max(live)

    def discard(self):
        if not self._discarded:
            live[0] -= 1
        real_discard(self)

    def write_rest(*a):
        time.sleep(slow)
        return real_rest(*a)

    with monkeypatch.context() as m:
        m.setenv(batch.WRITER_THREAD_ENV, "1" if thread else "0")
        m.setattr(atomic.StagedFile, "__init__", counting)
        m.setattr(atomic.StagedFile, "discard", discard)
        if slow:
            m.setattr(atomic, "_write_rest", write_rest)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = run_batch([src], out, DeidConfig(key=KEY), layout=layout, jobs=jobs,
                                export_map=out.with_suffix(".map.csv"), progress=False)
    return summary, out.with_suffix(".map.csv").read_text(), staged


def _released(out: Path) -> dict[str, str]:
    """Digests of everything in the output folder but the state folder (outputs,
    quarantine copies and reasons, DICOMDIR)."""
    return {k: v for k, v in tree_digest(out).items() if not k.startswith(".pixeldeid")}


def _outcomes(summary, root: Path) -> list[tuple]:
    return [(os.path.relpath(o.source, root), o.status, o.output, o.reason)
            for o in summary.all]


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(atomic.TMP_PREFIX)]


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pixeldeid-writer"]


@pytest.mark.parametrize("layout", ["flat", "hierarchy"])
def test_outputs_identical_with_and_without_the_writer_thread(sources, tmp_path, monkeypatch,
                                                              layout):
    sync, sync_map, none = _batch(sources, tmp_path / "sync", monkeypatch, thread=False,
                                  layout=layout)
    live = [0, 0]
    bg, bg_map, staged = _batch(sources, tmp_path / "bg", monkeypatch, thread=True,
                                layout=layout, slow=0.01, live=live)
    assert not none and len(staged) >= 21  # the thread wrote the CT series at least
    staged_names = {Path(p).name for p in staged}
    sops = {str(pydicom.dcmread(sources / "dup" / f, stop_before_pixels=True).SOPInstanceUID)
            for f in ("a1.dcm", "b2.dcm")}
    assert len(staged) == 21 + 4 and not any(s.split(".dcm")[0] in sops for s in staged_names)
    assert _outcomes(bg, sources) == _outcomes(sync, sources)
    by_name = {Path(o.source).name: o for o in bg.all}
    assert by_name["a1.dcm"].status == "written" and by_name["a2.dcm"].status == "quarantined"
    assert by_name["b1.dcm"].status == "written" and by_name["b2.dcm"].status == "quarantined"
    assert by_name["c2.dcm"].status == "identical"
    assert _released(tmp_path / "bg") == _released(tmp_path / "sync")
    assert bg_map == sync_map and bg.exit_status == sync.exit_status == 1
    assert not _temporaries(tmp_path / "bg") and not _writer_threads()
    assert live == [0, batch.WRITE_AHEAD + 1]  # bounded; none left behind


@pytest.mark.parametrize("cores", [4, 2])
def test_two_workers_write_ahead_alike(sources, tmp_path, monkeypatch, cores):
    """Each -j 2 worker writes ahead too when it has a core to spare for its writer
    thread (4 cores), not when the two workers take both (2 cores); the outputs are
    those of -j 1 without the thread either way."""
    from pixeldeid.pipeline import executors

    started = tmp_path / "writers"
    started.mkdir()
    real_start = batch._start_writer

    def start_writer():  # also in the worker processes (forked: they see this patch)
        (started / str(os.getpid())).touch()
        return real_start()

    src = tmp_path / "src"  # with the files of ``sources``, enough for chunks of 2 inputs
    shutil.copytree(sources, src)
    make_ct_series(src / "more", 24, seed=70)
    sync, sync_map, _ = _batch(src, tmp_path / "sync", monkeypatch, thread=False)
    monkeypatch.setattr(executors, "cpus", lambda: cores)
    monkeypatch.setattr(batch, "_start_writer", start_writer)
    par, par_map, _ = _batch(src, tmp_path / "par", monkeypatch, thread=True, jobs=2)
    assert sorted(_outcomes(par, src)) == sorted(_outcomes(sync, src))
    assert _released(tmp_path / "par") == _released(tmp_path / "sync") and par_map == sync_map
    workers = {p.name for p in started.iterdir()} - {str(os.getpid())}  # not -j 1's part
    assert bool(workers) == (cores >= 4)


def test_writer_threads_fit_only_with_a_core_to_spare_per_worker():
    assert batch.writer_threads_fit(1, cores=2) and batch.writer_threads_fit(4, cores=8)
    assert not batch.writer_threads_fit(2, cores=2) and not batch.writer_threads_fit(5, cores=9)


def _failing_copy(monkeypatch, victim: str, times: int | None) -> list[str]:
    """Make the writer thread's copy fail for the input ``victim`` (``times`` times, or
    always); return the names it failed for."""
    real = atomic._write_rest
    failed: list[str] = []

    def write_rest(fd, rest, durable):
        sources = [os.readlink(f"/proc/self/fd/{item[0]}") for item in rest
                   if not isinstance(item, bytes)]
        assert threading.current_thread().name == "pixeldeid-writer"
        if any(Path(s).name == victim for s in sources) and (times is None
                                                             or len(failed) < times):
            failed.append(victim)
            os.write(fd, b"half a copy")  # a partial file that must never be released
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, rest, durable)

    monkeypatch.setattr(atomic, "_write_rest", write_rest)
    return failed


def test_a_copy_that_fails_in_the_thread_is_redone(sources, tmp_path, monkeypatch):
    sync, _, _ = _batch(sources / "s1", tmp_path / "sync", monkeypatch, thread=False)
    failed = _failing_copy(monkeypatch, "IM00003.dcm", times=1)
    bg, _, _ = _batch(sources / "s1", tmp_path / "bg", monkeypatch, thread=True)
    assert failed == ["IM00003.dcm"]
    assert [o.status for o in bg.outcomes] == ["written"] * 7  # redone by the ordinary path
    ref = {Path(o.source).name: o.output for o in sync.outcomes}
    for o in bg.outcomes:
        a, b = tmp_path / "bg" / o.output, tmp_path / "sync" / ref[Path(o.source).name]
        assert a.read_bytes() == b.read_bytes(), o.source
    assert not _temporaries(tmp_path / "bg")


def test_a_write_that_keeps_failing_quarantines_that_input_only(sources, tmp_path,
                                                                monkeypatch):
    """The copy fails in the thread, then the ordinary path's write fails too (a disk
    error at that name): that input is quarantined with a one-line reason, the batch
    goes on, nothing partial is released, and a rerun writes it."""
    victim = "IM00005.dcm"
    failed = _failing_copy(monkeypatch, victim, times=None)
    real_write = batch.write_exclusive
    outputs_of_victim: list[Path] = []

    def write_exclusive(path, data, **kw):
        if isinstance(data, bytes) and outputs_of_victim and Path(path) in outputs_of_victim:
            raise OSError(errno.EIO, "Input/output error", str(path))
        return real_write(path, data, **kw)

    real_stage = atomic.StagedFile.__init__

    def stage(self, path, data, *a, **k):
        if any(Path(getattr(c, "path", "")).name == victim
               for c in getattr(data, "chunks", [])):
            outputs_of_victim.append(Path(path))
        real_stage(self, path, data, *a, **k)

    monkeypatch.setattr(batch, "write_exclusive", write_exclusive)
    with monkeypatch.context() as m:
        m.setattr(atomic.StagedFile, "__init__", stage)
        m.setenv(batch.WRITER_THREAD_ENV, "1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = run_batch([sources / "s2"], tmp_path / "out", DeidConfig(key=KEY),
                                progress=False)
    assert failed == [victim]
    [q] = summary.quarantined
    assert Path(q.source).name == victim
    assert q.reason.startswith("OSError: [Errno 5] Input/output error") and "\n" not in q.reason
    assert summary.count("written") == 6
    reason = (tmp_path / "out" / "quarantine").glob("*.reason.txt")
    assert victim in next(reason).read_text()
    assert not outputs_of_victim[0].exists() and not _temporaries(tmp_path / "out")
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = run_batch([sources / "s2"], tmp_path / "out", DeidConfig(key=KEY),
                          progress=False)
    assert again.count("written") == 1 and again.count("skipped") == 6
    assert pydicom.dcmread(outputs_of_victim[0]).PixelData == \
        pydicom.dcmread(sources / "s2" / victim).PixelData


def test_an_input_changed_after_it_was_parsed_is_redone_from_its_new_content(
        tmp_path, monkeypatch):
    """The input's size and time are checked before its pixel data is copied: an input
    changed after the fast path parsed it (its pixel data now further on) is redone by
    the ordinary path from its new content: never the old header with the bytes found at
    the old offset."""
    src = tmp_path / "in"
    files = make_ct_series(src, 5, seed=70)
    victim = files[2]
    real = rawds.read_raw

    def read_then_changed(path, *a, **k):
        ds = real(path, *a, **k)
        if Path(path) == victim and not (tmp_path / "changed").exists():
            (tmp_path / "changed").mkdir()
            new = pydicom.dcmread(victim)
            new.SeriesDescription = "a longer description than before " * 4
            arr = bytearray(new.PixelData)
            arr[-1] ^= 0xFF
            new.PixelData = bytes(arr)
            new.save_as(victim)
        return ds

    monkeypatch.setattr(rawds, "read_raw", read_then_changed)
    monkeypatch.setenv(batch.WRITER_THREAD_ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = run_batch([src], tmp_path / "out", DeidConfig(key=KEY), progress=False)
    assert (tmp_path / "changed").exists() and summary.count("written") == 5
    monkeypatch.undo()
    reference, _, _ = _batch(src, tmp_path / "ref", monkeypatch, thread=False)
    [o] = [o for o in summary.outcomes if o.source == str(victim)]
    assert (tmp_path / "out" / o.output).read_bytes() == (tmp_path / "ref" / o.output).read_bytes()
    assert _released(tmp_path / "out") == _released(tmp_path / "ref")
    assert not _temporaries(tmp_path / "out")


@pytest.mark.parametrize("where", ["in the work", "in the batch loop"])
def test_an_interrupt_leaves_no_temporary_file_and_a_rerun_finishes(sources, tmp_path,
                                                                    monkeypatch, where):
    sync, _, _ = _batch(sources, tmp_path / "sync", monkeypatch, thread=False)
    out = tmp_path / "out"
    calls = []
    if where == "in the work":  # while the thread has outputs to write
        real = rawds.read_raw

        def interrupted(path, *a, **k):
            calls.append(path)
            if len(calls) == 10:
                raise KeyboardInterrupt
            return real(path, *a, **k)

        monkeypatch.setattr(rawds, "read_raw", interrupted)
    else:  # in run_batch's loop, outside the generator that owns the thread
        real = batch.Ledger.record

        def interrupted(self, o):
            calls.append(o)
            if len(calls) == 8:
                raise KeyboardInterrupt
            return real(self, o)

        monkeypatch.setattr(batch.Ledger, "record", interrupted)
    monkeypatch.setenv(batch.WRITER_THREAD_ENV, "1")
    with pytest.raises(KeyboardInterrupt) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_batch([sources], out, DeidConfig(key=KEY), progress=False,
                  export_map=out.with_suffix(".map.csv"))
    # while the interrupt is still being handled (its traceback holds run_batch's frame)
    # and before a rerun cleans up: nothing half-written, the thread gone
    assert not _temporaries(out) and not _writer_threads()
    del info
    done = _released(out)
    reference = _released(tmp_path / "sync")
    assert done and all(reference.get(k) == v for k, v in done.items())  # whole files
    monkeypatch.undo()
    monkeypatch.setenv(batch.WRITER_THREAD_ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = run_batch([sources], out, DeidConfig(key=KEY), progress=False,
                          export_map=out.with_suffix(".map.csv"))
    assert _released(out) == reference
    assert again.count("skipped") >= 5 and again.exit_status == 1
    assert sorted(o.reason for o in again.quarantined) == \
        sorted(o.reason for o in sync.quarantined)


def test_background_writer_runs_jobs_in_order_and_drops_the_rest_when_cancelled():
    gate, started = threading.Event(), threading.Event()
    ran: list[int] = []

    def job(i: int) -> int:
        started.set()
        gate.wait(5)
        ran.append(i)
        if i == 1:
            raise OSError(errno.EIO, "broken")
        return i

    writer = atomic.BackgroundWriter()
    jobs = [writer.submit(job, i) for i in range(3)]
    gate.set()
    assert jobs[0].result() == 0 and jobs[2].result() == 2
    with pytest.raises(OSError, match="broken"):
        jobs[1].result()
    assert ran == [0, 1, 2]
    gate.clear()
    started.clear()
    later = [writer.submit(job, i) for i in range(3, 6)]
    assert started.wait(5)  # job 3 runs (and waits for the gate)
    threading.Timer(0.2, gate.set).start()
    writer.close(cancel=True)  # the job running finishes, the others never start
    assert not writer._thread.is_alive()
    assert ran[-1] == 3 and 4 not in ran and 5 not in ran
    assert later[1].cancelled and later[2].cancelled
    with pytest.raises(OSError):
        later[2].result()
