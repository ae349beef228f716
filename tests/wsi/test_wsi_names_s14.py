"""``pixeldeid wsi`` slide names (session 14 review 3): a pseudonym holding the patient's
identity, reserved and temporary names, a patient ID given for a DICOM slide, a DICOM
folder named like a slide file, and a rerun into the same OUT."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytest.importorskip("openslide")
pydicom = pytest.importorskip("pydicom")

from pixeldeid.errors import DeidError  # noqa: E402
from wsi import cli, dicomwsi  # noqa: E402
from wsi.api import SlideOptions, output_name  # noqa: E402
from wsi.synth.aperio import make_aperio  # noqa: E402
from wsi.synth.dicomwsi import make_dicom_wsi  # noqa: E402

KEY = b"0123456789abcdef0123456789abcdef"


def _run(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return cli.run(p.parse_args([str(a) for a in argv]))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """in/caseA (DOE^JANE^Q, MRN00442211) and in/caseB (ROE^RICHARD, MRN2), a key."""
    make_dicom_wsi(tmp_path / "in" / "caseA", seed=1)
    make_dicom_wsi(tmp_path / "in" / "caseB", seed=2,
                   planted={"PatientID": "MRN2", "PatientName": "ROE^RICHARD"})
    (tmp_path / "k.key").write_bytes(KEY)
    return tmp_path


def _map(tmp_path: Path, text: str) -> Path:
    m = tmp_path / "map.csv"
    m.write_text("source,pseudonym,patient_id\n" + text, encoding="utf-8")
    return m


def _released(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and ".pixeldeid" not in p.parts] \
        if out.exists() else []


# -- 2. a pseudonym holding the patient's own identity -------------------------------------
@pytest.mark.parametrize("pseudo", ["DOE JANE MRN00442211", "jane-01", "P_MRN00442211",
                                    "S-19700412"])
def test_a_dicom_pseudonym_holding_the_patients_identity_is_refused(inputs, capsys, pseudo):
    """It was released as the folder name (o/DOE_JANE_MRN00442211/) and drawn into the
    replaced label; refused as pixeldeid dicom refuses it, the value never printed."""
    out = inputs / "o"
    assert _run([inputs / "in" / "caseA", "-o", out, "--label", "replace",
                 "--pseudonym", pseudo, "--key-file", inputs / "k.key"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pseudonym:" in err and "patient's own name" in err
    assert pseudo not in err and not _released(out)


def test_a_map_row_or_prefix_holding_the_identity_names_its_line(inputs, capsys):
    out = inputs / "o"
    m = _map(inputs, "caseA,SUBJ-7\ncaseB,Richard 2\n")
    assert _run([inputs / "in", "-o", out, "--pseudonym-map", m]) == 2
    err = capsys.readouterr().err
    assert "--pseudonym-map line 3:" in err and "Richard" not in err and not _released(out)
    assert _run([inputs / "in", "-o", out, "--prefix", "Roe"]) == 2
    assert "--prefix:" in capsys.readouterr().err and not _released(out)


def test_ordinary_pseudonyms_are_kept(tmp_path, capsys):
    """Not over-refused: words that are no identity, and a number that equals the
    patient's ID only by counting (PREFIX-0001, ID 0001: the number is no choice)."""
    make_dicom_wsi(tmp_path / "in" / "caseA", seed=1, planted={"PatientID": "0001"})
    make_dicom_wsi(tmp_path / "in" / "caseB", seed=2,
                   planted={"PatientID": "MRN2", "PatientName": "ROE^RICHARD"})
    m = _map(tmp_path, "caseB,CASE-JANUARY 2023\n")
    assert _run([tmp_path / "in", "-o", tmp_path / "o", "--pseudonym-map", m]) == 0, \
        capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").iterdir() if p.is_dir()) == [
        ".pixeldeid", "CASE-JANUARY_2023", "SLIDE-0001"]


def test_a_file_slide_pseudonym_holding_a_value_is_refused(tmp_path, capsys):
    make_aperio(tmp_path / "in" / "case.svs", width=400, height=300)
    argv = [tmp_path / "in", "-o", tmp_path / "o", "--value", "Jane Doe"]
    assert _run([*argv, "--pseudonym", "DOE-01"]) == 2
    assert "--pseudonym:" in capsys.readouterr().err and not _released(tmp_path / "o")
    assert _run([*argv, "--pseudonym", "S-0001"]) == 0
    assert (tmp_path / "o" / "S-0001.svs").is_file()


# -- 3/4. reserved and temporary names -----------------------------------------------------
@pytest.mark.parametrize("pseudo", ["quarantine", "Quarantine", ".pixeldeid", ".", "..",
                                    ".pixeldeid-tmp-A", ".hidden"])
def test_reserved_dicom_folder_names_are_refused_up_front(inputs, capsys, pseudo):
    """`quarantine` released the clean slide among other slides' identified originals; a
    `.pixeldeid-tmp-` folder was deleted by the next run; `..` failed after all the work."""
    out = inputs / "o"
    m = _map(inputs, f"caseA,{pseudo}\n")
    assert _run([inputs / "in", "-o", out, "--pseudonym-map", m]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pseudonym-map line 2:" in err and "reserved" in err
    assert not out.exists()


@pytest.mark.parametrize("pseudo", [".pixeldeid-tmp-A", ".x", "."])
def test_hidden_slide_file_names_are_refused(tmp_path, capsys, pseudo):
    src = tmp_path / "in" / "case.svs"
    make_aperio(src, width=400, height=300)
    with pytest.raises(DeidError, match="reserved"):
        output_name(src, SlideOptions(pseudonym=pseudo))
    assert _run([src, "-o", tmp_path / "o", "--pseudonym", pseudo]) == 2
    assert "--pseudonym:" in capsys.readouterr().err and not (tmp_path / "o").exists()
    # a file slide named quarantine.svs is no folder of pixeldeid's: fine
    assert output_name(src, SlideOptions(pseudonym="quarantine")) == "quarantine.svs"


def test_the_api_refuses_a_reserved_folder_before_any_work(inputs):
    slides, _ = dicomwsi.group_series([inputs / "in" / "caseA"])
    opts = SlideOptions(pseudonym="quarantine")
    r = dicomwsi.deidentify_series(slides[0], inputs / "o", opts,
                                   dicomwsi.make_deidentifier(KEY, opts))
    assert r.status == "quarantined" and "reserved" in r.reason
    assert list((inputs / "o" / "quarantine").glob("*.dcm"))  # the originals only
    assert all(pydicom.dcmread(f).PatientName == "DOE^JANE^Q"
               for f in (inputs / "o" / "quarantine").glob("*.dcm"))


# -- 5. a patient ID for a DICOM slide -----------------------------------------------------
def test_a_patient_id_for_a_dicom_slide_is_a_usage_error(inputs, capsys):
    """It was silently ignored: the dates were shifted by the header Patient ID's offset."""
    out = inputs / "o"
    base = ["-o", out, "--dates", "shift", "--key-file", inputs / "k.key"]
    assert _run([inputs / "in" / "caseA", *base, "--patient-id", "OTHERPATIENT"]) == 2
    assert "keyed by their header's Patient ID" in capsys.readouterr().err
    m = _map(inputs, f"caseA,P1\n{inputs / 'in' / 'caseB' / 'level-0.dcm'},P2,OTHER\n")
    assert _run([inputs / "in", *base, "--pseudonym-map", m]) == 2
    err = capsys.readouterr().err
    assert "--pseudonym-map line 3:" in err and "OTHER" not in err
    assert not _released(out)
    # without a patient ID the header's keys the offset, as before
    m = _map(inputs, "caseA,P1\ncaseB,P2\n")
    assert _run([inputs / "in", *base, "--pseudonym-map", m]) == 0


# -- 6. a folder named like a slide file; a rerun ------------------------------------------
@pytest.mark.parametrize("folder", ["P1.svs", "p1.SVS"])
def test_a_dicom_folder_named_like_a_slide_file_is_a_usage_error(inputs, capsys, folder):
    make_aperio(inputs / "in" / "file1.svs", width=400, height=300)
    m = _map(inputs, f"caseA,{folder}\nfile1.svs,P1\n")
    assert _run([inputs / "in", "-o", inputs / "o", "--pseudonym-map", m]) == 2
    err = capsys.readouterr().err
    assert "same output name" in err and "'P1'" in err and not _released(inputs / "o")


def test_a_rerun_into_the_same_out_skips_slides_already_done(inputs, capsys):
    """A rerun quarantined every DICOM slide ("output folder ... already exists") and
    copied its identified instances to OUT/quarantine."""
    out = inputs / "o"
    argv = [inputs / "in" / "caseA", inputs / "in" / "caseB", "-o", out]
    assert _run(argv) == 0
    before = {p: p.stat().st_mtime_ns for p in _released(out)}
    capsys.readouterr()
    assert _run(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.count("already done") == 2 and "2 clean, 0 quarantined" in captured.out
    assert {p: p.stat().st_mtime_ns for p in _released(out)} == before
    assert not (out / "quarantine").exists()
    # a folder holding another slide stays an error: the slide is quarantined
    assert _run([inputs / "in" / "caseB", inputs / "in" / "caseA", "-o", out]) == 1
    assert "already exists" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in _released(out) if "quarantine" not in p.parts} \
        == before
