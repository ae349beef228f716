"""Reruns, interruptions, workers and keys: inputs are never modified, outputs are atomic
and deterministic, a rerun finishes what is missing and nothing twice."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pydicom
import pytest

from pixeldeid._synth import make_ct_series
from pixeldeid.uids import UIDMapper
from tests.pixeldeid.conftest import OTHER_KEY, copy_corpus, outputs, tree_digest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: Distinct instances of several transfer syntaxes and IODs (no two share a SOP Instance UID).
FILES = ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "rtplan.dcm", "SC_rgb_jpeg_dcmtk.dcm",
         "JPEG2000.dcm", "emri_small.dcm", "liver.dcm", "test-SR.dcm", "image_dfl.dcm",
         "SC_rgb_rle_2frame.dcm", "JPEGLSNearLossless_08.dcm")


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """An input tree: half the files at the top, half in a nested folder."""
    src = tmp_path / "in"
    copy_corpus(FILES[:6], src)
    copy_corpus(FILES[6:], src / "series2" / "more")
    sops = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in src.rglob("*.dcm")}
    assert len(sops) == len(FILES)
    return src


def _summary(stdout: str) -> dict[str, int]:
    m = re.search(r"(\d+) input\(s\): (\d+) written, (\d+) already done, (\d+) quarantined", stdout)
    assert m, stdout
    return dict(zip(("inputs", "written", "done", "quarantined"), map(int, m.groups()), strict=True))


#: UIDs of definitions, not of instances: kept by design.
DEFINITION_UID_KEYWORDS = {"TransferSyntaxUID", "CodingSchemeUID", "ContextUID",
                           "MappingResourceUID", "ContextGroupExtensionCreatorUID"}


def _uids(path: Path, instances_only: bool = False) -> set[str]:
    """Every UI value of a file at any depth, file meta included."""
    ds = pydicom.dcmread(path)
    vals: set[str] = set()

    def walk(d):
        for e in d:
            if e.VR == "SQ":
                for it in e.value:
                    walk(it)
            elif e.VR == "UI" and e.value:
                if instances_only and (e.keyword.endswith("ClassUID")
                                       or e.keyword in DEFINITION_UID_KEYWORDS):
                    continue
                vals.update(map(str, e.value if e.VM > 1 else [e.value]))

    walk(ds.file_meta)
    walk(ds)
    return vals


def _instance_uids(files) -> set[str]:
    return {u for f in files for u in _uids(f, instances_only=True)}


def _sops(files) -> list[str]:
    return sorted(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files)


def test_inputs_never_modified_and_no_temporaries(inputs, run):
    before = tree_digest(inputs)
    mtimes = {p: p.stat().st_mtime_ns for p in inputs.rglob("*")}
    status, out = run(inputs, "--profile", "tcia-like")
    assert status == 0
    assert tree_digest(inputs) == before
    assert {p: p.stat().st_mtime_ns for p in inputs.rglob("*")} == mtimes
    assert len(outputs(out)) == len(FILES)
    assert not [p for p in out.rglob("*") if p.name.startswith(".pixeldeid-tmp-")]


def test_rerun_skips_finished_files(inputs, run, capsys):
    status, out = run(inputs)
    assert status == 0
    first = tree_digest(out)
    first_outputs = {p: p.stat().st_mtime_ns for p in outputs(out)}
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    assert status == 0
    s = _summary(capsys.readouterr().out)
    assert s == {"inputs": len(FILES), "written": 0, "done": len(FILES), "quarantined": 0}
    assert {k: v for k, v in tree_digest(out).items() if not k.startswith(".pixeldeid")} == \
        {k: v for k, v in first.items() if not k.startswith(".pixeldeid")}
    # skipped, not rewritten
    assert {p: p.stat().st_mtime_ns for p in outputs(out)} == first_outputs


def test_interrupted_run_finishes_each_input_once(inputs, run, capsys, key_file):
    all_files = sorted(inputs.rglob("*.dcm"))
    half = all_files[: len(all_files) // 2]
    status, out = run(half)
    assert status == 0
    assert len(outputs(out)) == len(half)
    # what a killed run leaves: a temporary file beside the outputs
    stale = out / ".pixeldeid-tmp-killed.dcm"
    stale.write_bytes(b"partial")
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    assert status == 0
    s = _summary(capsys.readouterr().out)
    assert s == {"inputs": len(FILES), "written": len(FILES) - len(half), "done": len(half),
                 "quarantined": 0}
    files = outputs(out)
    assert not stale.exists()
    mapper = UIDMapper(key_file.read_bytes().strip())
    expected = sorted(mapper(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID))
                      for p in all_files)
    assert _sops(files) == expected  # each input exactly once


def test_lost_ledger_rerun_gives_identical_outputs(inputs, run, capsys):
    """Killed after writing outputs but before recording them: the rerun redoes the work,
    finds the same bytes already there, and neither duplicates nor quarantines."""
    status, out = run(inputs)
    assert status == 0
    first = {p.name: p.read_bytes() for p in outputs(out)}
    for p in (out / ".pixeldeid").glob("ledger.sqlite*"):
        p.unlink()
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    assert status == 0
    s = _summary(capsys.readouterr().out)
    assert s["quarantined"] == 0 and s["written"] == 0 and s["done"] == len(FILES)
    assert {p.name: p.read_bytes() for p in outputs(out)} == first


EXTRA = 40


@pytest.mark.slow
def test_two_workers_give_identical_outputs(inputs, run):
    # many patients, so that workers racing for pseudonym numbers would show
    template = pydicom.dcmread(inputs / "CT_small.dcm")
    for i in range(EXTRA):
        template.PatientID = f"EXTRA{i:02d}"
        template.PatientName = f"Extra^Patient{i:02d}"
        template.SOPInstanceUID = f"{template.SOPInstanceUID.rsplit('.', 1)[0]}.9{i:02d}"
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.save_as(inputs / f"extra{i:02d}.dcm")
    status1, out1 = run(inputs, "-j", "1")
    status2, out2 = run(inputs, "-j", "2")
    assert status1 == status2 == 0
    d1 = {k: v for k, v in tree_digest(out1).items() if not k.startswith(".pixeldeid")}
    d2 = {k: v for k, v in tree_digest(out2).items() if not k.startswith(".pixeldeid")}
    assert len(d1) == len(FILES) + EXTRA
    assert d1 == d2


def test_same_key_same_uids_other_key_other_uids(inputs, run, tmp_path):
    _, out_a = run(inputs)
    _, out_b = run(inputs)  # another output folder, same key
    other = tmp_path / "other.key"
    other.write_bytes(OTHER_KEY)
    _, out_c = run(inputs, key=other)
    a, b, c = outputs(out_a), outputs(out_b), outputs(out_c)
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b, strict=True):
        assert _uids(pa) == _uids(pb)
    uids_a, uids_c = _instance_uids(a), _instance_uids(c)
    assert len(uids_a) >= 3 * len(FILES) // 2  # SOP, study, series, frame of reference...
    assert not uids_a & uids_c
    assert len(uids_c) == len(uids_a)
    # no original instance UID survives under either key
    originals = _instance_uids(sorted(inputs.rglob("*.dcm")))
    assert not (uids_a | uids_c) & originals


def test_outputs_under_input_folder_are_not_reread(inputs, run):
    """OUT inside a source folder: a rerun must not de-identify its own outputs."""
    out = inputs / "deid"
    status, _ = run(inputs, out=out)
    assert status == 0
    status, _ = run(inputs, out=out)
    assert status == 0
    assert len(outputs(out)) == len(FILES)
    shutil.rmtree(out)


@pytest.mark.slow
def test_killed_run_then_rerun(inputs, run, key_file, tmp_path, capsys):
    """SIGKILL a real run mid-way (a separate process), rerun: every input exactly once,
    no partial or temporary file, the rerun only does what was missing."""
    import signal
    import subprocess
    import sys
    import time

    template = pydicom.dcmread(inputs / "MR_small.dcm")
    for i in range(60):  # enough work that the kill lands mid-way
        template.SOPInstanceUID = f"{template.SOPInstanceUID.rsplit('.', 1)[0]}.8{i:02d}"
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.save_as(inputs / f"mr{i:02d}.dcm")
    total = len(FILES) + 60
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "pixeldeid", "dicom", str(inputs), "-o", str(out),
                             "--key-file", str(key_file), "--no-progress", "--pixels", "off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_dir() and len(outputs(out)) >= 5:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    first = len(outputs(out))
    if first == total:
        pytest.skip("the run finished before the kill: nothing was interrupted")
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    assert status == 0
    s = _summary(capsys.readouterr().out)
    assert s["inputs"] == total and s["quarantined"] == 0
    assert s["written"] + s["done"] == total
    assert s["written"] >= total - first
    files = outputs(out)
    mapper = UIDMapper(key_file.read_bytes().strip())
    expected = sorted(mapper(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID))
                      for p in inputs.rglob("*.dcm"))
    assert _sops(files) == expected
    assert not [p for p in out.rglob("*") if p.name.startswith(".pixeldeid-tmp-")]
    for f in files:  # every output complete: reads to the end, pixel data whole
        ds = pydicom.dcmread(f)
        if "PixelData" in ds and not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            assert len(ds.PixelData) >= ds.Rows * ds.Columns * ds.BitsAllocated // 8


def _flip_pixel(path: Path, sop: str | None = None) -> None:
    ds = pydicom.dcmread(path)
    arr = bytearray(ds.PixelData)
    arr[10] ^= 0x01
    ds.PixelData = bytes(arr)
    if sop:
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.save_as(path)


@pytest.mark.parametrize("new_sop", [False, True])
def test_rerun_redoes_a_changed_input(inputs, run, key_file, capsys, new_sop):
    """An input changed since the last run is redone; its earlier output is withdrawn, so
    the release holds exactly one, current, instance per input."""
    status, out = run(inputs)
    assert status == 0
    ct = inputs / "CT_small.dcm"
    _flip_pixel(ct, "1.2.3.4.5.6.7.8.9" if new_sop else None)
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    assert status == 0, capsys.readouterr().err
    s = _summary(capsys.readouterr().out)
    assert s == {"inputs": len(FILES), "written": 1, "done": len(FILES) - 1, "quarantined": 0}
    files = outputs(out)
    mapper = UIDMapper(key_file.read_bytes().strip())
    expected = sorted(mapper(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID))
                      for p in inputs.rglob("*.dcm"))
    assert _sops(files) == expected
    new = out / f"{mapper(str(pydicom.dcmread(ct).SOPInstanceUID))}.dcm"
    assert pydicom.dcmread(new).PixelData == pydicom.dcmread(ct).PixelData


@pytest.mark.parametrize("new_sop", [False, True])
def test_the_export_map_drops_the_sop_row_of_a_withdrawn_output(inputs, run, key_file, tmp_path,
                                                                 capsys, new_sop):
    """A changed input with another SOP Instance UID: its earlier output is withdrawn, and
    so is that output's row in the export map; the same UID again keeps its row."""
    export = tmp_path / "map.csv"
    status, out = run(inputs, "--export-map", str(export))
    assert status == 0
    ct = inputs / "CT_small.dcm"
    mapper = UIDMapper(key_file.read_bytes().strip())
    old_sop = str(pydicom.dcmread(ct, stop_before_pixels=True).SOPInstanceUID)
    _flip_pixel(ct, "1.2.3.4.5.6.7.8.9" if new_sop else None)
    status, _ = run(inputs, "--export-map", str(export), out=out)
    assert status == 0, capsys.readouterr().err
    rows = {(r["kind"], r["id_old"]): r["id_new"] for r in csv.DictReader(export.open())}
    released = set(_sops(outputs(out)))
    sop_rows = {new for (kind, old), new in rows.items()
                if kind == "uid" and new.startswith("2.25.") and mapper(old) == new
                and old in {old_sop, "1.2.3.4.5.6.7.8.9"}}
    assert sop_rows <= released  # no row names an instance the release no longer holds
    now = "1.2.3.4.5.6.7.8.9" if new_sop else old_sop
    assert rows[("uid", now)] == mapper(now) in released
    assert (("uid", old_sop) in rows) == (not new_sop)
    assert len(released) == len(FILES)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_input_changed_while_it_was_worked_on_is_redone(inputs, run, key_file, capsys,
                                                           monkeypatch, jobs):
    """The ledger took the input's size and time when the outcome was recorded (with
    -j 2 up to a whole chunk later): an input changed after it was read was recorded as
    finished with the output of its old content, and no rerun redid it."""
    import pixeldeid.batch as batch

    ct = inputs / "CT_small.dcm"
    original = batch._deidentify_file

    def and_then_changed(ds, path):
        outcome = original(ds, path)
        if path == str(ct) and not (inputs / "changed").exists():
            (inputs / "changed").mkdir()
            _flip_pixel(ct, None)  # written after this input was read
            st = ct.stat()
            os.utime(ct, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return outcome

    monkeypatch.setattr(batch, "_deidentify_file", and_then_changed)
    status, out = run(inputs, "-j", jobs)
    monkeypatch.undo()
    assert status == 0 and (inputs / "changed").exists()
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    s = _summary(capsys.readouterr().out)
    assert status == 0 and s["written"] == 1 and s["done"] == len(FILES) - 1
    files = [p for p in outputs(out)
             if str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
             == UIDMapper(key_file.read_bytes().strip())(str(pydicom.dcmread(ct).SOPInstanceUID))]
    assert len(files) == 1 and pydicom.dcmread(files[0]).PixelData == pydicom.dcmread(ct).PixelData


def test_rerun_changed_input_now_broken(inputs, run, capsys):
    status, out = run(inputs)
    assert status == 0
    ct = inputs / "CT_small.dcm"
    ct.write_bytes(ct.read_bytes()[:2000])
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    assert status == 1
    assert "truncated" in capsys.readouterr().err
    assert len(outputs(out)) == len(FILES) - 1  # the stale output is withdrawn


def test_rerun_changed_duplicate_keeps_the_other_output(inputs, run, capsys):
    """B was an exact copy of A (one output); B changes: A's output stays, B is a conflict."""
    a = inputs / "CT_small.dcm"
    b = inputs / "zz_copy_of_ct.dcm"
    b.write_bytes(a.read_bytes())
    status, out = run(inputs)
    assert status == 0
    before = {p.name: p.read_bytes() for p in outputs(out)}
    _flip_pixel(b)
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    assert status == 1
    assert f"quarantined: {b}: duplicate SOP Instance UID" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in outputs(out)} == before


@pytest.mark.parametrize("layout", [
    "hierarchy",
    "dicomdir",
])
def test_rerun_with_layouts(inputs, run, capsys, layout):
    """Reruns in the other layouts: same exit status, the same bytes, nothing written twice."""
    status1, out = run(inputs, "--layout", layout)
    first = {p.relative_to(out): p.read_bytes() for p in outputs(out)}
    capsys.readouterr()
    status2, _ = run(inputs, "--layout", layout, out=out)
    s = _summary(capsys.readouterr().out)
    assert status2 == status1
    assert s["written"] == 0
    assert {p.relative_to(out): p.read_bytes() for p in outputs(out)} == first
    if layout == "dicomdir":
        dicomdirs = [p for p in first if p.name == "DICOMDIR"]
        images = [p for p in first if p.name.startswith("IM_")]
        assert dicomdirs and len(images) == len(FILES) - s["quarantined"]
        indexed = set()
        for d in dicomdirs:
            fs = pydicom.fileset.FileSet(pydicom.dcmread(out / d))
            indexed |= {Path(i.path).resolve() for i in fs}
        assert indexed == {(out / p).resolve() for p in images}


@pytest.mark.slow
def test_two_workers_pick_the_same_duplicate(tmp_path, run, capsys):
    """Pairs of inputs sharing a SOP Instance UID with other pixels: -j 2 writes the same
    one of each pair as -j 1 (the first in input order) and quarantines the other."""
    src = tmp_path / "in"
    (ct,) = copy_corpus(["CT_small.dcm"], src)
    ds = pydicom.dcmread(ct)
    ds.save_as(src / "a_first.dcm")  # shifts the pairs against the workers' chunks
    ct.unlink()
    for i in range(16):
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for variant in (b"a", b"b"):
            arr = bytearray(ds.PixelData)
            arr[0] = variant[0]
            ds.PixelData = bytes(arr)
            ds.save_as(src / f"f{i:02d}{variant.decode()}.dcm")
    results = []
    for jobs in ("1", "2"):
        status, out = run(src, "-j", jobs)
        err = capsys.readouterr().err
        assert status == 1
        quarantined = sorted(ln.split(": ")[1] for ln in err.splitlines()
                             if ln.startswith("quarantined: "))
        assert quarantined == sorted(str(src / f"f{i:02d}b.dcm") for i in range(16))
        results.append({p.name: p.read_bytes() for p in outputs(out)})
    assert len(results[0]) == 17
    assert results[0] == results[1]


def test_damaged_ledger_is_rebuilt(inputs, run, capsys):
    status, out = run(inputs)
    assert status == 0
    first = {p.name: p.read_bytes() for p in outputs(out)}
    ledger = out / ".pixeldeid" / "ledger.sqlite"
    for p in ledger.parent.glob("ledger.sqlite-*"):
        p.unlink()
    ledger.write_bytes(b"this is not a database" * 10)
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    assert status == 0
    s = _summary(capsys.readouterr().out)
    assert s["done"] == len(FILES) and s["written"] == 0
    assert {p.name: p.read_bytes() for p in outputs(out)} == first


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_damaged_pseudonym_map_is_an_error(inputs, run, tmp_path, capsys, jobs):
    """The pseudonym map numbers the patients: it cannot be rebuilt, so nothing is done."""
    db = tmp_path / "subjects.sqlite"
    db.write_bytes(b"this is not a database" * 10)
    status, out = run(inputs, "--subject-db", str(db), "-j", jobs)
    assert status == 2
    assert "pseudonym map is damaged" in capsys.readouterr().err
    assert outputs(out) == []


def test_a_pseudonym_map_that_cannot_be_made_is_a_usage_error(inputs, run, tmp_path, capsys):
    """A file in the way of its folder: one line (it was a FileExistsError traceback)."""
    (tmp_path / "a-file").write_text("x")
    status, out = run(inputs, "--subject-db", str(tmp_path / "a-file" / "subjects.sqlite"))
    assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create the pseudonym map" in err
    assert outputs(out) == []


def test_other_key_on_the_same_output_folder_is_refused(inputs, run, tmp_path, capsys):
    """Another key (or none, which would generate one) would write every instance again
    under new UIDs and pseudonyms beside the first ones: refused, nothing written."""
    status, out = run(inputs)
    assert status == 0
    before = tree_digest(out)
    other = tmp_path / "other.key"
    other.write_bytes(OTHER_KEY)
    for key in (other, None):
        capsys.readouterr()
        status, _ = run(inputs, out=out, key=key)
        assert status == 2
        assert "key" in capsys.readouterr().err
        assert tree_digest(out) == before
    status, _ = run(inputs, out=out)  # the right key again: all done
    assert status == 0
    assert len(outputs(out)) == len(FILES)


@pytest.mark.parametrize("first, then", [
    (("--profile", "tcia-like"), ("--profile", "basic")),        # stricter asked, not applied
    (("--profile", "basic"), ("--option", "retain-uids")),
    (("--layout", "flat"), ("--layout", "hierarchy")),
    ((), ("--date-offset", "-400")),
])
def test_other_settings_on_the_same_output_folder_are_refused(inputs, run, capsys, first, then):
    """A rerun skips finished inputs, so other settings would silently not be applied."""
    status, out = run(inputs, *first)
    assert status == 0
    before = tree_digest(out)
    capsys.readouterr()
    status, _ = run(inputs, *then, out=out)
    assert status == 2
    assert "other settings" in capsys.readouterr().err
    assert tree_digest(out) == before
    status, _ = run(inputs, *first, out=out)  # the same settings again: all done
    assert status == 0


def test_equivalent_settings_are_the_same_settings(inputs, run, capsys):
    """tcia-like and basic with tcia-like's options resolve to the same options."""
    status, out = run(inputs, "--profile", "tcia-like")
    assert status == 0
    from pixeldeid.profiles import load_profile

    opts = [a for o in sorted(load_profile("tcia-like").options) for a in ("--option", o)]
    capsys.readouterr()
    status, _ = run(inputs, "--profile", "basic", *opts, out=out)
    assert status == 0
    assert _summary(capsys.readouterr().out)["done"] == len(FILES)


def test_two_workers_number_patients_alike_around_a_damaged_file(inputs, run, capsys):
    """A damaged file (readable header, pixels cut) of a new patient first in the batch:
    -j 1 and -j 2 give the same pseudonyms, so the same bytes."""
    raw = (inputs / "MR_small.dcm").read_bytes()
    (inputs / "MR_small.dcm").unlink()
    (inputs / "a_damaged.dcm").write_bytes(raw[: len(raw) - 3000])
    results = []
    for jobs in ("1", "2"):
        status, out = run(inputs, "-j", jobs)
        assert status == 1
        assert "a_damaged.dcm" in capsys.readouterr().err
        results.append({p.name: p.read_bytes() for p in outputs(out)})
    assert len(results[0]) == len(FILES) - 1
    assert results[0] == results[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers forked (Linux)")
@pytest.mark.parametrize(("pixels", "jobs"), [("off", "2"), ("auto", "2"), ("auto", "1")])
def test_an_input_that_kills_its_worker_is_quarantined_and_the_batch_goes_on(
        inputs, run, monkeypatch, capsys, pixels, jobs):
    """A worker killed while on one input (the kernel's OOM killer, a crash in a compiled
    codec) ended `-j 2` with a BrokenProcessPool traceback. Simulated with SIGKILL in the
    forked workers; the other inputs, also those of the dead worker's chunk, are written
    and equal a -j 1 run's. With the pixel stage on (the default), `-j 1` runs it in a
    worker too: it ran in the one process, so such an input ended the whole batch (and
    every rerun, at the same input)."""
    import pixeldeid.batch as batch

    shutil.copy(inputs / "CT_small.dcm", inputs / "series2" / "killer.dcm")
    ds = pydicom.dcmread(inputs / "series2" / "killer.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.99.7"
    ds.save_as(inputs / "series2" / "killer.dcm")
    status1, out1 = run(inputs, "--pixels", pixels, "-j", "1")
    capsys.readouterr()
    original = batch.process_file

    def dies_on_the_killer(path: str):
        if path.endswith("killer.dcm") and os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(path)

    parent = os.getpid()
    monkeypatch.setattr(batch, "process_file", dies_on_the_killer)
    status2, out2 = run(inputs, "--pixels", pixels, "-j", jobs)
    captured = capsys.readouterr()
    assert status1 == 0 and status2 == 1
    s = _summary(captured.out)
    # an input the dead pool had finished but not yet reported is run again: "already done"
    assert s["inputs"] == len(FILES) + 1 and s["quarantined"] == 1
    # at most the chunks in flight run again: 2 per worker, 1 input each here (13 inputs)
    assert s["written"] + s["done"] == len(FILES) and s["written"] >= len(FILES) - 4
    assert "killer.dcm: its worker process died while handling it" in captured.err
    (reason,) = (out2 / "quarantine").glob("*.reason.txt")
    assert "stage: worker" in reason.read_text()
    d1 = {k: v for k, v in tree_digest(out1).items() if not k.startswith(".pixeldeid")}
    d2 = {k: v for k, v in tree_digest(out2).items()
          if not k.startswith((".pixeldeid", "quarantine"))}
    killer_output = set(d1) - set(d2)
    assert len(killer_output) == 1 and len(d2) == len(FILES)
    assert d2 == {k: v for k, v in d1.items() if k not in killer_output}


def _map_rows(path: Path) -> set[tuple[str, ...]]:
    with path.open(newline="") as fh:
        rows = [tuple(r) for r in csv.reader(fh)]
    assert rows[0] == ("id_old", "id_new", "kind")
    return set(rows[1:])


def test_the_export_map_keeps_every_release_across_reruns(inputs, run, tmp_path, capsys):
    """A rerun with the same --export-map used to replace the map with that run's rows only
    (an empty map when nothing was left to do); a killed run never wrote it at all."""
    full = tmp_path / "full.csv"
    assert run(inputs, "--export-map", str(full))[0] == 0  # one whole run: every row
    every = _map_rows(full)
    assert {r[2] for r in every} == {"patient", "uid"}
    status, out = run(inputs)  # as a run killed before it wrote the map
    assert status == 0
    m = tmp_path / "map.csv"
    for _ in range(2):  # the resume (every input skipped), then nothing left to do
        capsys.readouterr()
        assert run(inputs, "--export-map", str(m), out=out)[0] == 0
        assert _summary(capsys.readouterr().out)["done"] == len(FILES)
        assert _map_rows(m) == every
    # a later batch into the same folder: its rows join the earlier ones
    later = make_ct_series(tmp_path / "later", 1, seed=7)[0]
    assert run(later.parent, "--export-map", str(m), out=out)[0] == 0
    rows = _map_rows(m)
    assert every < rows
    released = {str(pydicom.dcmread(p).SOPInstanceUID) for p in outputs(out)}
    assert len(released) == len(FILES) + 1 and released <= {r[1] for r in rows}
    assert any(r[0] == str(pydicom.dcmread(later).SOPInstanceUID) for r in rows)
    # a file there that is not an export map is refused, not overwritten
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n1,2\n")
    capsys.readouterr()
    assert run(inputs, "--export-map", str(other), out=out)[0] == 2
    assert "is not an export map" in capsys.readouterr().err
    assert other.read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("layout", ["flat", "hierarchy"])
def test_a_corrected_input_with_a_link_to_it_is_redone(tmp_path, run, capsys, layout):
    """An input and a link to it shared one ledger row (keyed by the resolved path): the
    link's 'identical' replaced the input's 'written', the corrected input's output was not
    withdrawn, and the rerun released the OLD pixels and quarantined the new ones."""
    src = tmp_path / "in"
    (ct,) = copy_corpus(["CT_small.dcm"], src)
    (src / "z_link.dcm").symlink_to("CT_small.dcm")
    status, out = run(src, "--layout", layout)
    assert status == 0
    _flip_pixel(ct)
    capsys.readouterr()
    status, _ = run(src, "--layout", layout, out=out)
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert _summary(captured.out) == {"inputs": 2, "written": 1, "done": 1, "quarantined": 0}
    (only,) = outputs(out)
    assert pydicom.dcmread(only).PixelData == pydicom.dcmread(ct).PixelData


def test_a_rewrite_that_keeps_size_and_modification_time_is_redone(inputs, run, key_file,
                                                                    capsys):
    """``cp -p``, ``rsync -a`` or an unpacked corrected delivery give an input other bytes of
    the same length under its old modification time: still a changed input."""
    status, out = run(inputs)
    ct = inputs / "CT_small.dcm"
    st = ct.stat()
    data = bytearray(ct.read_bytes())
    data[-2:] = bytes([data[-2] ^ 0xFF, data[-1] ^ 0xFF])  # the last pixel, same length
    ct.write_bytes(bytes(data))
    os.utime(ct, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ct.stat().st_size == st.st_size and ct.stat().st_mtime_ns == st.st_mtime_ns
    capsys.readouterr()
    status, _ = run(inputs, out=out)
    assert status == 0 and _summary(capsys.readouterr().out)["written"] == 1
    mapper = UIDMapper(key_file.read_bytes().strip())
    new = out / f"{mapper(str(pydicom.dcmread(ct, stop_before_pixels=True).SOPInstanceUID))}.dcm"
    assert pydicom.dcmread(new).PixelData == pydicom.dcmread(ct).PixelData


def test_the_export_map_drops_a_withdrawn_row_after_an_interrupted_run(
        inputs, run, key_file, tmp_path, capsys, monkeypatch):
    """The run that withdrew an output is interrupted before it writes the export map:
    the next run still takes the withdrawn instance's row out."""
    from pixeldeid import batch

    export = tmp_path / "map.csv"
    status, out = run(inputs, "--export-map", str(export))
    ct = inputs / "CT_small.dcm"
    mapper = UIDMapper(key_file.read_bytes().strip())
    old_new = mapper(str(pydicom.dcmread(ct, stop_before_pixels=True).SOPInstanceUID))
    _flip_pixel(ct, "1.2.3.4.5.6.7.8.9")

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(batch, "_execute", interrupted)
        assert run(inputs, "--export-map", str(export), out=out)[0] == 130
    assert not (out / f"{old_new}.dcm").exists()  # withdrawn before the interrupt
    status, _ = run(inputs, "--export-map", str(export), out=out)
    assert status == 0, capsys.readouterr().err
    news = {r["id_new"] for r in csv.DictReader(export.open()) if r["kind"] == "uid"}
    assert old_new not in news and mapper("1.2.3.4.5.6.7.8.9") in news


def test_stale_temporaries_of_a_live_process_are_kept(tmp_path):
    """A second batch into the same folder (even one refused) must not delete what a
    running one is writing; a dead process's leftovers go."""
    import subprocess

    from pixeldeid.atomic import TMP_PREFIX, _temporary_name, remove_stale_temporaries

    mine = tmp_path / f"{TMP_PREFIX}{_temporary_name()}.dcm"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    gone = tmp_path / "sub" / f"{TMP_PREFIX}p{dead}-abcdef0.dcm"
    unowned = tmp_path / f"{TMP_PREFIX}xyz.csv"  # another writer's (tempfile.mkstemp)
    for p in (mine, gone, unowned):
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, owned_only=True) == 1 and not gone.exists()
    assert mine.exists() and unowned.exists()
    assert remove_stale_temporaries(tmp_path, recursive=False) == 1 and not unowned.exists()
    assert mine.exists()


def test_workers_exit_when_the_batch_process_is_killed(tmp_path):
    """A SIGKILLed parent never shuts its pool down: its workers must not wait forever (a
    ``pixeldeid dicom ... | tee log`` would never end)."""
    import subprocess
    import time

    script = (
        "import os, sys, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from pixeldeid.pipeline.executors import die_with_parent, fork_context\n"
        "pool = ProcessPoolExecutor(1, mp_context=fork_context(), initializer=die_with_parent)\n"
        "print(pool.submit(os.getpid).result(), flush=True)\n"
        "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    for _ in range(100):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its killed parent by 10 s")
