"""Slide dates shift by the header core's keyed per-patient offset (or a fixed override)."""

from __future__ import annotations

import argparse
import datetime as dt

import openslide
import pydicom

from pixeldeid.dates import offset_for
from wsi import cli
from wsi.synth.aperio import make_aperio
from wsi.synth.dicomwsi import DEFAULT_PLANTED, make_dicom_wsi

KEY = b"0123456789abcdef0123456789abcdef"
PID = DEFAULT_PLANTED["PatientID"]


def _run(argv):
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return cli.run(p.parse_args(argv))


def _aperio_date(path) -> dt.date:
    return dt.datetime.strptime(openslide.OpenSlide(str(path)).properties["aperio.Date"],
                                "%m/%d/%y").date()


def test_slide_and_dicom_of_one_patient_shift_by_the_same_days(tmp_path, capsys):
    src = tmp_path / "in"
    s = make_aperio(src / "case.svs", width=400, height=300)
    make_dicom_wsi(src / "dcm")
    orig_study = dt.datetime.strptime(DEFAULT_PLANTED["StudyDate"], "%Y%m%d").date()
    keyf = tmp_path / "k.key"
    keyf.write_bytes(KEY)
    pmap = tmp_path / "map.csv"
    pmap.write_text(f"source,pseudonym,patient_id\ncase.svs,SUBJ-1,{PID}\n")
    out = tmp_path / "out"
    rc = _run([str(src), "-o", str(out), "--key-file", str(keyf), "--dates", "shift",
               "--pseudonym-map", str(pmap)])
    assert rc == 0, capsys.readouterr().err
    days = offset_for(KEY, PID).days
    assert days <= -365  # the core's keyed range, not a remove or zero shift
    orig = dt.datetime.strptime(s.info["date"], "%m/%d/%y").date()
    slide_shift = (_aperio_date(out / "SUBJ-1.svs") - orig).days
    dcms = [pydicom.dcmread(p) for p in out.rglob("*.dcm")]
    assert dcms
    dicom_shifts = {(dt.datetime.strptime(d.StudyDate, "%Y%m%d").date() - orig_study).days
                    for d in dcms if d.get("StudyDate")}
    assert dicom_shifts == {slide_shift}
    assert slide_shift == days


def test_other_patient_other_offset_and_override_wins(tmp_path):
    s1 = make_aperio(tmp_path / "a.svs", width=400, height=300)
    keyf = tmp_path / "k.key"
    keyf.write_bytes(KEY)
    orig = dt.datetime.strptime(s1.info["date"], "%m/%d/%y").date()
    got = {}
    for pid in ("P-A", "P-B"):
        o = tmp_path / pid
        assert _run([str(s1.path), "-o", str(o), "--key-file", str(keyf), "--dates", "shift",
                     "--patient-id", pid, "--pseudonym", "X"]) == 0
        got[pid] = (_aperio_date(o / "X.svs") - orig).days
        assert got[pid] == offset_for(KEY, pid).days
    assert got["P-A"] != got["P-B"]
    o = tmp_path / "fixed"
    assert _run([str(s1.path), "-o", str(o), "--key-file", str(keyf), "--dates", "shift",
                 "--patient-id", "P-A", "--pseudonym", "X", "--shift-days", "-5"]) == 0
    assert (_aperio_date(o / "X.svs") - orig).days == -5


def test_keyed_shift_without_patient_or_key_is_a_usage_error(tmp_path, capsys):
    s = make_aperio(tmp_path / "a.svs", width=400, height=300)
    before = s.path.read_bytes()
    assert _run([str(s.path), "-o", str(tmp_path / "o"), "--dates", "shift"]) == 2
    assert "patient" in capsys.readouterr().err
    assert _run([str(s.path), "--in-place", "--dates", "shift", "--patient-id", "P"]) == 2
    assert "--key-file" in capsys.readouterr().err
    assert s.path.read_bytes() == before


def test_key_is_created_in_the_output_folder_and_reused(tmp_path):
    s = make_aperio(tmp_path / "a.svs", width=400, height=300)
    out = tmp_path / "o"
    argv = [str(s.path), "-o", str(out), "--dates", "shift", "--patient-id", "P-A",
            "--pseudonym", "X"]
    assert _run(argv) == 0
    key = (out / ".pixeldeid" / "key").read_bytes().strip()
    orig = dt.datetime.strptime(s.info["date"], "%m/%d/%y").date()
    assert (_aperio_date(out / "X.svs") - orig).days == offset_for(key, "P-A").days
