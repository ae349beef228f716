"""Killed with SIGKILL in the middle of a run, the next run finishes the job: no partial
files, no duplicates, nothing lost, the same bytes as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixeldeid.cli import main

from .conftest import KEY, tree


def _done(out: Path) -> int:
    db = out / ".pixeldeid" / "run.sqlite"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM items WHERE status='done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _wait_for_lock(out: Path, seconds: float = 30) -> None:
    """Wait until no process holds the run lock of ``out`` (killed workers are gone)."""
    import fcntl

    deadline = time.monotonic() + seconds
    with open(out / ".pixeldeid" / "run.lock", "a+b") as fh:
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                assert time.monotonic() < deadline, "killed workers still hold the run lock"
                time.sleep(0.05)
                continue
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_kill_9_mid_run_then_rerun_completes_identically(tmp_path: Path, jobs: str) -> None:
    from pixeldeid._synth import make_ct_series

    src = tmp_path / "in"
    for seed in range(3):
        make_ct_series(src / f"p{seed}", 16, seed=seed)
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pixeldeid", "run", str(src), "-o", str(out), "--key-file",
           str(key), "--no-progress", "--zip", "--pixels", "off", "-j", jobs]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while _done(out) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, at once
    finally:
        proc.wait()
    killed_at = _done(out)
    assert 0 < killed_at < 48, "the run was not interrupted mid-way"
    _wait_for_lock(out)  # the killed workers exit a moment after their parent


    assert main(cmd[3:]) == 0
    assert not list(out.rglob(".pixeldeid-tmp-*"))
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    rows = con.execute("SELECT status, output FROM items").fetchall()
    con.close()
    assert len(rows) == 48 and {s for s, _ in rows} == {"done"}
    assert len({o for _, o in rows}) == 48  # no duplicates
    released = [k for k in tree(out) if k.endswith(".dcm")]
    assert len(released) == 48

    clean = tmp_path / "clean"
    assert main([*cmd[3:6], str(clean), *cmd[7:]]) == 0
    assert tree(out) == tree(clean)
