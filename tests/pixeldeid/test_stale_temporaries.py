"""Temporaries of a killed writer are removed by the next clean-up even when its pid lives
on (a container's runs are all pid 1; a worker that died is a zombie until it is reaped),
and those of a live writer never are: a temporary is locked while its writer lives."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import pytest

from pixeldeid import atomic, batch
from pixeldeid.api import DeidConfig
from pixeldeid.atomic import TMP_PREFIX, remove_stale_temporaries
from tests.pixeldeid.conftest import ct_small_variant

needs_locks = pytest.mark.skipif(atomic.fcntl is None, reason="no file locks here")


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(TMP_PREFIX + "*"))


def _forked_writer(out: Path, prefix: str | None) -> tuple[int, str]:
    """A child process that writes half an output into a named temporary in ``out`` (its
    name starting ``p<pid>-`` as given by ``prefix``, else its own) and waits; (pid,
    temporary name)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            if prefix is not None:
                atomic._NAMES.update(pid=os.getpid(), prefix=prefix)
            atomic._NO_UNNAMED.add("")
            t = atomic._Temporary(out / "a.dcm")
            os.write(t.fd, b"DICM partial output REAL-MRN-4471")
            os.write(write, os.path.basename(t.name).encode())
            os.close(write)
            signal.pause()
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        name = fh.read().decode()
    return pid, name


def _kill_unreaped(pid: int) -> None:
    """SIGKILL the child and wait until it has exited, leaving it a zombie (not reaped)."""
    os.kill(pid, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    os.kill(pid, 0)  # (a zombie: its pid still answers)


def _reap(pid: int) -> None:
    """Kill and reap the child (twice is harmless)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        pass


@needs_locks
@pytest.mark.parametrize("reused", ["ours", "one"])
def test_a_killed_writers_temporary_goes_though_its_pid_lives_on(tmp_path, reused):
    """The killed run's temporary bears a pid that is alive at the rerun: the rerun's own
    (containers) or pid 1. While its writer runs it is kept; once the writer is dead (even
    a zombie, not yet reaped) the next clean-up removes it."""
    out = tmp_path / "out"
    out.mkdir()
    pid_in_name = os.getpid() if reused == "ours" else 1
    pid, name = _forked_writer(out, f"p{pid_in_name}-0123456789ab-")
    try:
        assert remove_stale_temporaries(out) == 0  # a live writer: kept
        assert _temporaries(out) == [name]
        _kill_unreaped(pid)
        assert remove_stale_temporaries(out) == 1
        assert _temporaries(out) == []
    finally:
        _reap(pid)


@needs_locks
def test_a_dead_workers_temporary_goes_while_it_is_a_zombie(tmp_path):
    """A worker that died in a write is a zombie until its pool reaps it; the clean-up
    right after its death must not take it for a live writer."""
    out = tmp_path / "out"
    out.mkdir()
    pid, name = _forked_writer(out, None)
    try:
        assert name.startswith(f"{TMP_PREFIX}p{pid}-")
        assert remove_stale_temporaries(out) == 0
        _kill_unreaped(pid)
        assert remove_stale_temporaries(out) == 1 and _temporaries(out) == []
    finally:
        _reap(pid)


def test_only_this_processes_own_temporaries_are_its_own(tmp_path):
    """A temporary bearing this process's pid but another token is an earlier run's (the
    same pid in a container): it goes; one this process made stays."""
    mine = tmp_path / f"{TMP_PREFIX}{atomic._temporary_name()}.dcm"
    earlier = tmp_path / f"{TMP_PREFIX}p{os.getpid()}-0123456789ab-0.dcm"
    map_copy = tmp_path / f"{TMP_PREFIX}p{os.getpid()}-0123456789ab-1.csv"
    mine.write_bytes(b"x")
    earlier.write_bytes(b"partial output")
    map_copy.write_text("kind,id_old,id_new\nid,REAL-MRN-4471,SUBJ_0001\n")
    assert remove_stale_temporaries(tmp_path, recursive=False, owned_only=True) == 2
    assert _temporaries(tmp_path) == [mine.name]


def test_a_temporary_being_written_survives_another_processes_clean_up(tmp_path):
    """atomic_output keeps its temporary locked until it has its name: a clean-up of another
    run (here a forked process, its pid alive) leaves it alone, and the output is whole."""
    target = tmp_path / "map.csv"
    with atomic.atomic_output(target) as fh:
        fh.write(b"kind,id_old,id_new\n")
        pid = os.fork()
        if pid == 0:
            try:
                n = remove_stale_temporaries(tmp_path)
            finally:
                os._exit(10 + n)
        assert os.waitpid(pid, 0)[1] >> 8 == 10
        fh.write(b"id,REAL-MRN-4471,SUBJ_0001\n")
    assert target.read_bytes() == b"kind,id_old,id_new\nid,REAL-MRN-4471,SUBJ_0001\n"
    assert _temporaries(tmp_path) == []


@needs_locks
def test_a_writer_gives_up_a_name_a_clean_up_took_first(tmp_path):
    """Between a temporary's creation and its lock, another run's clean-up may lock it and
    remove it: the writer then takes another name."""
    name = str(tmp_path / f"{TMP_PREFIX}p1-0123456789ab-0.dcm")
    fd = os.open(name, atomic._TMP_FLAGS, 0o600)
    try:
        with atomic._stale(Path(name)) as stale:  # the clean-up holds its lock
            assert stale
            assert not atomic._hold(fd, name)
        os.unlink(name)
        assert not atomic._hold(fd, name)  # gone before the lock
    finally:
        os.close(fd)
    fd, other = atomic._mkstemp(str(tmp_path), ".dcm")
    os.close(fd)
    assert other != name and os.path.exists(other)


@needs_locks
def test_no_temporary_is_left_when_a_worker_dies_in_a_write(tmp_path, monkeypatch):
    """Named temporaries (NFS, CIFS): a worker killed after writing an output's temporary,
    before linking it, leaves nothing in the output folder once the batch is done; the
    other inputs are written."""
    src = tmp_path / "in"
    for i in range(4):
        ct_small_variant(src / f"{i}.dcm", f"1.2.826.0.1.3680043.9.7.{i}")
    parent, handling = os.getpid(), [""]
    process_file, link = batch.process_file, atomic._link_named

    def remembered(path: str):
        handling[0] = path
        return process_file(path)

    def dies_linking(name: str, path: Path) -> None:
        if os.getpid() != parent and handling[0].endswith("2.dcm"):
            os.kill(os.getpid(), signal.SIGKILL)  # its temporary written, not linked
        link(name, path)

    monkeypatch.setattr(atomic, "_NO_UNNAMED", {""})
    monkeypatch.setattr(batch, "process_file", remembered)
    monkeypatch.setattr(atomic, "_link_named", dies_linking)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = batch.run_batch([src], tmp_path / "out", DeidConfig(key=b"k" * 32),
                                  jobs=2, progress=False)
    status = {Path(o.source).name: o.status for o in summary.all}
    assert status == {"0.dcm": "written", "1.dcm": "written", "2.dcm": "quarantined",
                      "3.dcm": "written"}
    assert _temporaries(tmp_path / "out") == []
