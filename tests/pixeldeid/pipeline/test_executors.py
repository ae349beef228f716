"""The executor registry: names, "did you mean", the missing extra, unordered results."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixeldeid.errors import MissingDependencyError, ProfileError
from pixeldeid.pipeline import executors
from pixeldeid.pipeline.executors import available_executors, get_executor


def _square(item: dict, settings: dict) -> dict:
    return {"id": item["id"], "value": item["id"] ** 2 + settings["plus"]}


def test_unknown_executor_gets_did_you_mean() -> None:
    with pytest.raises(ProfileError, match="did you mean 'dask'"):
        get_executor("dsak")
    with pytest.raises(ProfileError, match="--scheduler needs --executor dask"):
        get_executor("local", 2, "tcp://localhost:8786")


def test_missing_dask_names_the_extra(monkeypatch) -> None:
    monkeypatch.setattr(executors.DaskExecutor, "is_available", classmethod(lambda cls: False))
    assert "dask" not in available_executors()
    with pytest.raises(MissingDependencyError, match=r"pixeldeid\[dask\]"):
        get_executor("dask", 2)


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_pool_returns_every_result(jobs: int) -> None:
    items = [{"id": i} for i in range(7)]
    with get_executor("local", jobs) as ex:
        got = {item["id"]: res["value"] for item, res in ex.map_unordered(_square, items,
                                                                            {"plus": 1})}
    assert got == {i: i * i + 1 for i in range(7)}


def _dies_on_3(item: dict, settings: dict) -> dict:
    import os

    if item["id"] == 3:
        os._exit(9)  # a crash in a decoder: the process is gone
    return {"id": item["id"], "status": "done"}


def test_a_dead_worker_loses_its_items_and_isolation_quarantines_the_killer() -> None:
    from pixeldeid.pipeline.executors import run_isolated

    items = [{"id": i} for i in range(6)]
    with get_executor("local", 2) as ex:
        got = {item["id"]: res["status"] for item, res in ex.map_unordered(_dies_on_3, items, {})}
    assert got[3] == "lost" and set(got) == set(range(6))
    assert run_isolated(_dies_on_3, {"id": 4}, {})["status"] == "done"
    res = run_isolated(_dies_on_3, {"id": 3}, {})
    assert res["status"] == "quarantined" and "died" in res["reason"]


def _run_with(dicom_stage, tmp_path, monkeypatch, jobs: str):
    """``pixeldeid run IN -o OUT -j jobs`` with ``dicom_stage`` as the DICOM stage (forked
    workers inherit it); returns (exit status, OUT, {source: (status, reason)})."""
    import sqlite3

    from pixeldeid.cli import main
    from pixeldeid.pipeline import stages

    from .conftest import KEY

    monkeypatch.setattr(stages, "_run_dicom", dicom_stage)
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    status = main(["run", str(tmp_path / "in"), "-o", str(out), "--key-file", str(key),
                   "-j", jobs, "--pixels", "off", "--no-progress"])
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    rows = {src: (st, reason) for src, st, reason in
            con.execute("SELECT src, status, reason FROM items")}
    con.close()
    return status, out, rows


def test_run_goes_on_when_an_input_crashes_its_worker(tmp_path, monkeypatch) -> None:
    import os
    import sqlite3

    from pixeldeid._synth import make_ct_series
    from pixeldeid.cli import main
    from pixeldeid.pipeline import stages


    files = make_ct_series(tmp_path / "in", 5, seed=9)
    crash = files[2].rename(files[2].with_name("crash.dcm"))
    original = stages._run_dicom

    def crashing(item, settings):
        if item["src"].endswith("crash.dcm"):
            os._exit(11)
        return original(item, settings)

    status, out, rows = _run_with(crashing, tmp_path, monkeypatch, "2")
    assert status == 1
    assert rows.pop(str(crash))[0] == "quarantined"
    assert {st for st, _ in rows.values()} == {"done"} and len(rows) == 4
    # a rerun skips it; --retry-quarantined tries it again (here: the crash is gone)
    monkeypatch.undo()
    argv = ["run", str(tmp_path / "in"), "-o", str(out), "--key-file", str(tmp_path / "k"), "-j", "2",
            "--pixels", "off", "--no-progress"]
    assert main(argv) == 1
    assert main([*argv, "--retry-quarantined"]) == 0
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    assert {st for (st,) in con.execute("SELECT status FROM items")} == {"done"}
    con.close()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_crash_early_in_a_long_run_costs_one_input(tmp_path, monkeypatch, capsys,
                                                      jobs: str) -> None:
    """More inputs than the workers' window: a worker died early, the pool broke, and the
    next item handed to it raised BrokenProcessPool out of the run (a traceback, the rest
    of the batch not done). With `-j 1` the items ran in the run's own process: the crash
    ended the run, and every rerun at the same input."""
    import os

    from pixeldeid._synth import make_ct_series
    from pixeldeid.pipeline import stages


    make_ct_series(tmp_path / "in", 24, seed=11)
    original = stages._run_dicom
    parent = os.getpid()
    marker = tmp_path / "crashed-on"

    def crashing(item, settings):  # the first item a worker takes kills every worker
        if os.getpid() != parent:
            try:
                fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                os.write(fd, item["src"].encode())
                os.close(fd)
            except FileExistsError:
                pass
            if marker.read_text() == item["src"]:
                os._exit(11)
        return original(item, settings)

    status, out, rows = _run_with(crashing, tmp_path, monkeypatch, jobs)
    assert status == 1 and "Traceback" not in capsys.readouterr().err
    rows = {src: st for src, (st, _reason) in rows.items()}
    assert rows.pop(marker.read_text()) == "quarantined"
    assert set(rows.values()) == {"done"} and len(rows) == 23
    assert len(list(out.rglob("*.dcm"))) == 23 + 1  # and the quarantined copy


def test_inputs_sharing_a_sop_instance_uid_run_in_order_in_a_worker(tmp_path, monkeypatch,
                                                                     capsys) -> None:
    """Later inputs with a SOP Instance UID seen before run one after another, in input
    order. They ran in the run's own process: one that crashed a decoder ended the run."""
    import os
    import shutil
    import sqlite3

    import pydicom

    from pixeldeid._synth import make_ct_series
    from pixeldeid.cli import main
    from pixeldeid.pipeline import stages

    from .conftest import KEY

    files = make_ct_series(tmp_path / "in" / "a", 4, seed=12)
    (tmp_path / "in" / "b").mkdir()
    same = shutil.copy(files[0], tmp_path / "in" / "b" / "same.dcm")  # the same bytes
    ds = pydicom.dcmread(files[1])
    ds.PixelData = bytes(len(ds.PixelData))  # another image
    ds.save_as(tmp_path / "in" / "b" / "other.dcm")  # the same UID, other content
    killer = shutil.copy(files[2], tmp_path / "in" / "b" / "killer.dcm")
    original = stages._run_dicom
    parent = os.getpid()

    def crashing(item, settings):
        if item["src"] == str(killer) and os.getpid() != parent:
            os._exit(11)
        return original(item, settings)

    monkeypatch.setattr(stages, "_run_dicom", crashing)
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "in"), "-o", str(out), "--key-file", str(key),
                 "--pixels", "off", "--no-progress"]) == 1
    assert "Traceback" not in capsys.readouterr().err
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    rows = {Path(src).name: (st, reason) for src, st, reason in
            con.execute("SELECT src, status, reason FROM items")}
    con.close()
    assert rows.pop(Path(same).name)[0] == "done"
    status, reason = rows.pop("other.dcm")
    assert status == "quarantined" and "SOP Instance UID" in reason
    status, reason = rows.pop("killer.dcm")
    assert status == "quarantined" and "died" in reason
    assert {st for st, _ in rows.values()} == {"done"} and len(rows) == 4


def test_one_run_at_a_time_per_output_folder(tmp_path) -> None:
    from pixeldeid.errors import DeidError
    from pixeldeid.pipeline.runner import _lock

    (tmp_path / ".pixeldeid").mkdir()
    held = _lock(tmp_path)
    try:
        with pytest.raises(DeidError, match="another `pixeldeid run`"):
            _lock(tmp_path)
    finally:
        held.close()
    _lock(tmp_path).close()  # free again


def test_workers_share_the_cores_out_among_their_ocr_sessions(monkeypatch) -> None:
    from pixeldeid.pipeline.executors import OCR_THREADS_ENV, ocr_threads

    monkeypatch.delenv(OCR_THREADS_ENV, raising=False)
    assert [ocr_threads(n, cores=8) for n in (1, 2, 3, 8, 16)] == ["8", "4", "2", "1", "1"]
    monkeypatch.setenv(OCR_THREADS_ENV, "3")  # the user's choice wins
    assert ocr_threads(2, cores=8) == "3"


def test_unreachable_scheduler_is_a_one_line_error(tmp_path, capsys) -> None:
    pytest.importorskip("distributed")
    import dask

    from pixeldeid._synth import make_ct_series
    from pixeldeid.cli import main

    make_ct_series(tmp_path / "in", 2, seed=1)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        status = main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--pixels",
                       "off", "--no-progress", "--executor", "dask", "--scheduler",
                       "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert status == 2
    assert "cannot reach the Dask scheduler" in err and "tcp://127.0.0.1:1" in err
    assert "Traceback" not in err
