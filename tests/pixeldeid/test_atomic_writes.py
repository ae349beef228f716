"""Atomic writes (pixeldeid.atomic.write_exclusive, StagedFile) into unnamed temporary files
(Linux O_TMPFILE) and into named ones (other systems and file systems) give the same
outputs and statuses; a file system that refuses to link an unnamed file falls back to a
named one; a process killed in the middle of a write leaves nothing in the folder."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

import pytest
from corpus import make_ct_series

from pixeldeid import atomic
from pixeldeid.api import DeidConfig
from pixeldeid.batch import run_batch
from pixeldeid.rawds import FileSlice, file_stamp
from tests.pixeldeid.conftest import tree_digest

unnamed_supported = pytest.mark.skipif(
    not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"),
    reason="no unnamed temporary files (O_TMPFILE) on this system")


@pytest.fixture(params=["unnamed", "named"])
def kind(request, monkeypatch) -> str:
    """Which temporary files the writes use (``named``: as where O_TMPFILE is missing)."""
    if request.param == "unnamed" and not hasattr(os, "O_TMPFILE"):
        pytest.skip("no O_TMPFILE on this system")
    monkeypatch.setattr(atomic, "_NO_UNNAMED", set() if request.param == "unnamed" else {""})
    return request.param


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _parts(tmp_path: Path) -> tuple[atomic.FileParts, bytes]:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 300)
    st = src.stat()
    tail = FileSlice(str(src), st.st_size, file_stamp(st), 100, 70000)
    return atomic.FileParts([b"head", tail, b"end"]), b"head" + src.read_bytes()[100:70100] + b"end"


def test_statuses_and_contents(tmp_path, kind):
    parts, expected = _parts(tmp_path)
    out = tmp_path / "out" / "sub"  # made by the first write
    assert atomic.write_exclusive(out / "a.dcm", parts) == "written"
    assert (out / "a.dcm").read_bytes() == expected
    assert atomic.write_exclusive(out / "a.dcm", parts) == "identical"
    assert atomic.write_exclusive(out / "a.dcm", b"other bytes") == "conflict"
    assert (out / "a.dcm").read_bytes() == expected  # a conflict writes nothing
    assert atomic.write_exclusive(out / "b.dcm", b"plain", durable=True) == "written"
    with atomic.BackgroundWriter() as writer:
        staged = atomic.StagedFile(out / "c.dcm", parts, writer)
        assert not (out / "c.dcm").exists()  # nothing visible before it is linked
        assert atomic.write_exclusive(out / "c.dcm", staged) == "written"
        again = atomic.StagedFile(out / "c.dcm", parts, writer)
        assert bytes(again) == expected
        assert atomic.write_exclusive(out / "c.dcm", again) == "identical"
        other = atomic.StagedFile(out / "c.dcm", atomic.FileParts([b"x", parts.chunks[1]]),
                                  writer)
        assert atomic.write_exclusive(out / "c.dcm", other) == "conflict"
        dropped = atomic.StagedFile(out / "d.dcm", parts, writer)
        dropped.discard()
    assert (out / "c.dcm").read_bytes() == expected
    assert _entries(out) == ["a.dcm", "b.dcm", "c.dcm"]  # no temporary name left
    assert (out / "a.dcm").stat().st_mode & 0o777 == 0o600  # as mkstemp made them before


@unnamed_supported
def test_a_folder_that_refuses_unnamed_links_gets_named_temporaries(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_NO_UNNAMED", set())
    calls = []

    def refuse(fd, path):
        calls.append(path)
        raise OSError(errno.EPERM, "not here", str(path))

    monkeypatch.setattr(atomic, "_link_unnamed", refuse)
    parts, expected = _parts(tmp_path)
    out = tmp_path / "out"
    assert atomic.write_exclusive(out / "a.dcm", parts) == "written"
    assert atomic.write_exclusive(out / "b.dcm", parts) == "written"
    assert [p.name for p in calls] == ["a.dcm"]  # the folder is remembered
    assert str(out) in atomic._NO_UNNAMED
    assert (out / "a.dcm").read_bytes() == (out / "b.dcm").read_bytes() == expected
    assert _entries(out) == ["a.dcm", "b.dcm"]


@unnamed_supported
def test_a_file_system_without_unnamed_files_gets_named_temporaries(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_NO_UNNAMED", set())
    real_open = os.open

    def no_tmpfile(path, flags, *a, **k):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported", path)
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(atomic.os, "open", no_tmpfile)
    out = tmp_path / "out"
    assert atomic.write_exclusive(out / "a.dcm", b"data") == "written"
    assert str(out) in atomic._NO_UNNAMED
    assert _entries(out) == ["a.dcm"] and (out / "a.dcm").read_bytes() == b"data"


@unnamed_supported
def test_a_process_killed_in_a_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_NO_UNNAMED", set())
    out = tmp_path / "out"
    out.mkdir()
    pid = os.fork()
    if pid == 0:  # the child: half a file written, then killed before it is linked
        try:
            t = atomic._Temporary(out / "a.dcm")
            os.write(t.fd, b"partial" * 1000)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert _entries(out) == []


def test_a_batch_writes_the_same_outputs_either_way(tmp_path, monkeypatch):
    """Two workers, one output folder: unnamed and named temporaries give the same release."""
    src = tmp_path / "src"
    for k in range(2):
        make_ct_series(src / f"s{k}", 6, seed=80 + k)
    digests = []
    for no_unnamed in (set(), {""}):
        monkeypatch.setattr(atomic, "_NO_UNNAMED", set(no_unnamed))
        out = tmp_path / f"out{len(digests)}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = run_batch([src], out, DeidConfig(key=b"k" * 32), jobs=2, progress=False)
        assert summary.exit_status == 0 and summary.count("written") == 12
        digests.append({k: v for k, v in tree_digest(out).items()
                        if not k.startswith(".pixeldeid")})
        assert not [p for p in out.rglob("*") if p.name.startswith(atomic.TMP_PREFIX)]
    assert digests[0] == digests[1] and len(digests[0]) == 12
