"""``pixeldeid run`` end to end on a mixed collection with hostile inputs."""

from __future__ import annotations

import json
import shutil
import sqlite3
import zipfile
from pathlib import Path

import pydicom
import pytest

from pixeldeid.cli import main

from .conftest import KEY, OTHER_KEY, inputs_digest, tree


def _run(src: Path, out: Path, key: Path, *extra: str) -> int:
    if "--pixels" not in extra:  # OCR of every CT slice is the burned-in text tests' work
        extra = (*extra, "--pixels", "off")
    return main(["run", str(src), "-o", str(out), "--key-file", str(key), "--no-progress",
                 *extra])


def _rows(out: Path, query: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{out / '.pixeldeid' / 'run.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def work(collection: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("run")
    key = base / "project.key"
    key.write_bytes(KEY)
    before = inputs_digest(collection)
    out = base / "ref"
    status = _run(collection, out, key, "--zip", "-j", "1")
    return {"base": base, "key": key, "out": out, "status": status, "before": before,
            "tree": tree(out)}


def _status_of(out: Path) -> dict[str, tuple[str, str]]:
    return {Path(src).name: (status, reason or "")
            for src, status, reason in _rows(out, "SELECT src, status, reason FROM items")}


def test_good_items_done_hostile_inputs_quarantined_with_reasons(work, collection) -> None:
    out = work["out"]
    assert work["status"] == 1
    st = _status_of(out)
    for name in ("truncated.dcm", "huge_private_declared.dcm", "deep_nesting.dcm", "bomb.zip",
                 "notes.pdf", "loop"):
        assert st[name][0] == "quarantined", name
        assert st[name][1], name
    assert "nesting" in st["deep_nesting.dcm"][1]
    assert "symbolic link loop" in st["loop"][1]
    assert "unsupported" in st["bomb.zip"][1]
    # a real (8 MB) private element is removed by the profile, the image is released
    assert st["huge_private_real.dcm"][0] == "done"
    done = _rows(out, "SELECT kind, output FROM items WHERE status='done'")
    kinds = sorted(k for k, _ in done)
    assert kinds.count("dicom") == 3 + 4 + 1 + 1  # two CT series, huge_private_real, US
    if (collection / "slide").exists():
        assert kinds.count("slide") == 1
    for _kind, rel in done:
        assert (out / rel).exists()
    for rel in (r for k, r in done if k == "dicom"):
        ds = pydicom.dcmread(out / rel)
        assert ds.PatientIdentityRemoved == "YES"
        assert not any(e.tag.is_private for e in ds)
    # every quarantined input has its copy and reason file
    reasons = list((out / "quarantine").glob("*.reason.txt"))
    assert len(reasons) == sum(s == "quarantined" for s, _ in st.values())


def test_inputs_are_unchanged(work, collection) -> None:
    assert inputs_digest(collection) == work["before"]


def test_ledger_holds_plan_identity_and_meta(work) -> None:
    out = work["out"]
    meta = dict(_rows(out, "SELECT key, value FROM meta"))
    for k in ("job", "profile", "options", "ps315_release", "pixeldeid_version", "created",
              "finished", "layout", "sources"):
        assert meta.get(k), k
    assert json.loads(meta["job"])["zip_per_subject"] is True
    patients = {p for (p,) in _rows(out, "SELECT DISTINCT patient FROM items WHERE status='done'")}
    ident = _rows(out, "SELECT patient, kind, value FROM identity")
    from pixeldeid._synth import make_patient

    doe = make_patient(1)
    values = {(k, v) for _, k, v in ident}
    assert ("id", doe.patient_id) in values
    assert any(k == "name" and doe.family.upper() in v.upper() for k, v in values)
    assert {p for p, _, _ in ident} <= patients
    # stages are JSON lists in order; hashed group keys, not original UIDs
    for stages, study in _rows(out, "SELECT stages, study FROM items WHERE kind='dicom'"):
        assert json.loads(stages)[-1] == "header"
        assert not study or "." not in study


def test_dicom_outputs_equal_those_of_pixeldeid_dicom(work, collection) -> None:
    other = work["base"] / "dicom-cmd"
    main(["dicom", str(collection), "-o", str(other), "--key-file", str(work["key"]),
          "--no-progress", "--pixels", "off"])
    mine = {k: v for k, v in work["tree"].items() if k.endswith(".dcm") and "/" not in k}
    theirs = {k: v for k, v in tree(other).items() if k.endswith(".dcm") and "/" not in k}
    assert mine and mine == theirs


def test_second_run_does_no_work_and_changes_nothing(work, collection) -> None:
    out = work["out"]
    finished = _rows(out, "SELECT id, finished FROM items ORDER BY id")
    assert _run(collection, out, work["key"], "--zip") == 1
    assert tree(out) == work["tree"]
    assert _rows(out, "SELECT id, finished FROM items ORDER BY id") == finished


def test_other_key_or_settings_on_the_same_output_are_refused(work, collection, capsys) -> None:
    out = work["out"]
    other = work["base"] / "other.key"
    other.write_bytes(OTHER_KEY)
    assert _run(collection, out, other) == 2
    assert "another project key" in capsys.readouterr().err
    assert _run(collection, out, work["key"], "--no-deface") == 2
    assert "other settings" in capsys.readouterr().err
    assert tree(out) == work["tree"]


def test_packages_hold_released_outputs_only(work) -> None:
    out = work["out"]
    zips = sorted((out / "packages").glob("*.zip"))
    by_patient: dict[str, set[str]] = {}
    for patient, rel in _rows(out, "SELECT patient, output FROM items WHERE status='done'"):
        by_patient.setdefault(patient, set()).add(rel)
    assert [z.stem for z in zips] == sorted(by_patient)
    for z in zips:
        with zipfile.ZipFile(z) as zf:
            names = zf.namelist()
            assert set(names) == by_patient[z.stem]
            for n in names:
                assert zf.read(n) == (out / n).read_bytes()


@pytest.mark.parametrize("how", [("-j", "2"), ("-j", "2", "--executor", "dask")],
                         ids=["local-j2", "dask-localcluster"])
def test_parallel_and_dask_give_the_same_bytes(work, collection, how) -> None:
    out = work["base"] / "par-".__add__("-".join(how).replace("-", ""))
    if out.exists():
        shutil.rmtree(out)
    assert _run(collection, out, work["key"], "--zip", *how) == 1
    assert tree(out) == work["tree"]


def test_dask_cluster_by_scheduler_address_gives_the_same_bytes(work, collection) -> None:
    """A site's own cluster (``--scheduler tcp://HOST:PORT``): here a separately started
    cluster of two worker processes, reached by its address like any remote one."""
    distributed = pytest.importorskip("distributed")

    out = work["base"] / "par-scheduler"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        assert _run(collection, out, work["key"], "--zip", "--executor", "dask",
                    "--scheduler", address) == 1
    assert tree(out) == work["tree"]
