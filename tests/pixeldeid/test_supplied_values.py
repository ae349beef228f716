"""What the operator supplies (a map CSV, a prefix, a shared pseudonym map, options) must
not open a way around the checks (session 13 audit): a short or name-like pseudonym that
exempted identity from the residual search, pseudonyms that name OUT's own folders or
merge two patients' folders, two patients given one pseudonym, a pseudonym map shared
under another key, options that claim work the command does not do, an export map that
silently lacks earlier batches, and verify of an empty folder."""

from __future__ import annotations

import csv
from pathlib import Path

import pydicom
import pytest

from pixeldeid.cli import main
from pixeldeid.layout import subject_component
from tests.pixeldeid.test_unlisted_places import _ct

MRN = "MRN8406493"


def _input(root: Path, name: str = "a.dcm", **values) -> Path:
    values.setdefault("PatientID", MRN)
    ds = _ct(**values)
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _map(tmp_path: Path, *rows: tuple[str, str]) -> Path:
    p = tmp_path / "map.csv"
    p.write_text("id_old,id_new\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return p


def _released(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.dcm") if not {"quarantine", ".pixeldeid"} & set(p.parts)]


def test_a_short_pseudonym_exempts_nothing_from_the_residual_search(tmp_path, run):
    """Pseudonym ``3`` used to exempt every identity token holding a 3 (the MRN in Body
    Part Examined, an attribute the table does not list, was released)."""
    src = _input(tmp_path / "in", BodyPartExamined=MRN)
    status, out = run(src, "--map-csv", str(_map(tmp_path, (MRN, "3"))))
    assert status == 1 and not _released(out)
    [reason] = out.rglob("*.reason.txt")
    assert "identity still present" in reason.read_text()


@pytest.mark.parametrize("how", ["map", "prefix"])
def test_a_pseudonym_holding_the_patients_name_is_not_released(tmp_path, run, how):
    src = _input(tmp_path / "in", PatientName="Montgomery^Alice")
    extra = (["--map-csv", str(_map(tmp_path, (MRN, "MONTGOMERY")))] if how == "map"
             else ["--prefix", "MONTGOMERY"])
    status, out = run(src, *extra)
    assert status == 1 and not _released(out)
    [reason] = out.rglob("*.reason.txt")
    assert "pseudonym given to this patient holds the patient's own name" in reason.read_text()


def test_mapping_an_id_to_itself_keeps_it_on_purpose(tmp_path, run):
    src = _input(tmp_path / "in")
    status, out = run(src, "--map-csv", str(_map(tmp_path, (MRN, MRN))))
    [written] = _released(out)
    assert status == 0 and pydicom.dcmread(written).PatientID == MRN


@pytest.mark.parametrize(("value", "folder"), [
    ("SUBJ_001", "SUBJ_001"), ("quarantine", "_quarantine"), ("Report", "_Report"),
    ("packages", "_packages"), ("P.1", None), ("P/1", None)])
def test_subject_folders_never_name_outs_own_folders_nor_merge_patients(value, folder):
    got = subject_component(value)
    if folder is not None:
        assert got == folder
    else:
        assert got.startswith("P_1_") and len(got) == len("P_1_") + 4
    assert subject_component("P.1") != subject_component("P/1")


def test_a_reserved_pseudonym_is_released_where_verify_looks(tmp_path, run):
    src = _input(tmp_path / "in")
    status, out = run(src, "--map-csv", str(_map(tmp_path, (MRN, "quarantine"))),
                      "--layout", "hierarchy")
    [written] = _released(out)
    assert status == 0 and written.relative_to(out).parts[0] == "_quarantine"


def test_two_patients_given_one_pseudonym_is_refused_naming_the_line(tmp_path, run, capsys):
    src = _input(tmp_path / "in")
    status, out = run(src, "--map-csv", str(_map(tmp_path, ("A1", "SAME"), ("B2", "SAME"))))
    err = capsys.readouterr().err
    assert status == 2 and "line 3: new patient ID 'SAME' is also given on line 2" in err
    assert not out.exists()


def test_a_pseudonym_map_shared_under_another_key_is_refused(tmp_path, run, capsys):
    src = _input(tmp_path / "in")
    db = tmp_path / "subjects.sqlite"
    other = tmp_path / "other.key"
    other.write_bytes(b"another-project-key-0123456789ab")
    assert run(src, "--subject-db", str(db))[0] == 0
    assert run(src, "--subject-db", str(db))[0] == 0  # the same key: the same patients
    status, _ = run(src, "--subject-db", str(db), key=other)
    assert status == 2 and "made with another project key" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--option", "retain-uids", "--map-csv", "MAP"], "retain-uids keeps every UID"),
    (["--option", "clean-recognizable-visual-features"], "pixeldeid dicom does not do"),
    (["--option", "clean-pixel-data", "--pixels", "auto", "--ocr", "none"],
     "no OCR engine would do"),
])
def test_options_that_claim_work_not_done_are_usage_errors(tmp_path, run, capsys, extra,
                                                           message):
    src = _input(tmp_path / "in")
    uid = str(pydicom.dcmread(src).StudyInstanceUID)
    extra = [str(_map(tmp_path, (uid, "1.2.3.4"))) if e == "MAP" else e for e in extra]
    status, out = run(src, *extra)
    assert status == 2 and message in capsys.readouterr().err and not out.exists()


def test_an_export_map_first_asked_for_later_says_what_it_lacks(tmp_path, run, capsys):
    out = tmp_path / "out"
    first = _input(tmp_path / "b1", PatientID="P1")
    second = _input(tmp_path / "b2", PatientID="P2")
    assert run(first, out=out)[0] == 0
    status, _ = run(second, "--export-map", str(tmp_path / "m.csv"), out=out)
    err = capsys.readouterr().err
    assert status == 1 and "1 output(s) written by earlier batches have no rows" in err
    rows = list(csv.reader((tmp_path / "m.csv").open()))
    assert [r[:2] for r in rows if r[2] == "patient"] == [["P2", "SUBJ_002"]]
    # given again with the map, the earlier input adds its rows: nothing lacks any more
    status, _ = run(first, "--export-map", str(tmp_path / "m.csv"), out=out)
    assert status == 0


def test_verify_of_a_folder_without_outputs_is_no_clean_release(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    src = _input(tmp_path / "in")
    status = main(["verify", str(tmp_path / "empty"), "--against", str(src), "--no-ocr",
                   "--no-dciodvfy", "--no-progress"])
    assert status == 1 and "NOT VERIFIED" in capsys.readouterr().err


def test_profiles_lists_every_option_that_option_accepts(capsys):
    assert main(["profiles"]) == 0
    text = capsys.readouterr().out
    assert "clean-pixel-data" in text and "clean-recognizable-visual-features" in text


def test_a_usage_error_naming_a_path_stays_one_line(tmp_path, capsys):
    status = main(["dicom", str(tmp_path), "-o", str(tmp_path / "o"), "--key-file",
                   str(tmp_path / "bad\nname\x1b[31m.key"), "--pixels", "off"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "\x1b" not in err


def test_a_patient_id_equal_to_the_pseudonyms_number_is_no_clash(tmp_path, run):
    """IDs 001, 002...: the patient with ID 001 gets SUBJ_001 by counting, not by choice."""
    for n in (1, 2, 3):
        _input(tmp_path / "in", f"{n}.dcm", PatientID=f"{n:03d}")
    status, out = run(tmp_path / "in")
    assert status == 0 and len(_released(out)) == 3


def test_a_map_giving_one_patient_anothers_real_id_is_refused(tmp_path, run, capsys):
    """Rows MRN-A -> MRN-B, MRN-B -> ZETA released patient A under patient B's real MRN
    (session 14 audit); without the second row, patient B's files come to the batch with
    their real ID equal to A's pseudonym: quarantined, naming the map's line, and the run
    exits 1 (A's files, written before or after, still carry B's ID: the exit status and
    the reason are what tell the operator)."""
    a = _input(tmp_path / "in", "a.dcm", PatientID="MRN-A-1001", PatientName="Alpha^Ann")
    _input(tmp_path / "in", "b.dcm", PatientID="MRN-B-2002", PatientName="Beta^Bob")
    chained = _map(tmp_path, ("MRN-A-1001", "MRN-B-2002"), ("MRN-B-2002", "ZETA"))
    status, out = run(a.parent, "--map-csv", str(chained))
    err = capsys.readouterr().err
    assert status == 2 and "line 2" in err and "line 3" in err and not _released(out)
    status, out = run(a.parent, "--map-csv", str(_map(tmp_path, ("MRN-A-1001", "MRN-B-2002"))))
    assert status == 1
    [reason] = out.rglob("*.reason.txt")
    assert "pseudonym the subject map gives another patient (line 2)" in reason.read_text()


def test_map_rows_dotted_patient_ids_and_quoted_values(tmp_path, run):
    """A dotted Patient ID (123.456.789) was read as a UID row ("'ANON01' is not a valid
    UID"; first arc 0, 1 or 2 only) and ``MRN, "BETA"`` gave Patient ID '"BETA"'."""
    src = _input(tmp_path / "in", PatientID="123.456.789")
    status, out = run(src, "--map-csv", str(_map(tmp_path, ("123.456.789", "ANON01"))))
    assert status == 0
    assert [pydicom.dcmread(p).PatientID for p in _released(out)] == ["ANON01"]
    m = tmp_path / "quoted.csv"
    m.write_text('id_old,id_new\n123.456.789 , "BETA"\n')
    status, out = run(src, "--map-csv", str(m))
    assert status == 0
    assert [pydicom.dcmread(p).PatientID for p in _released(out)] == ["BETA"]


def test_a_new_pseudonym_map_is_owner_only_and_a_shared_one_keeps_its_mode(tmp_path):
    """OUT/.pixeldeid/subjects.sqlite was world-readable (0644): keyed hashes that confirm
    an identity to whoever has the key. A map given with --subject-db that exists keeps
    its mode (a team may share it)."""
    import os
    import stat

    from pixeldeid.pseudonyms import PseudonymMap

    old = os.umask(0o022)
    try:
        new = tmp_path / "new" / "subjects.sqlite"
        m = PseudonymMap(new, b"k" * 32)
        m("MRN1")
        m.close()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in new.parent.iterdir()}
        assert modes and set(modes.values()) == {0o600}, modes
        shared = tmp_path / "shared.sqlite"
        PseudonymMap(shared, b"k" * 32).close()
        shared.chmod(0o660)
        PseudonymMap(shared, b"k" * 32).close()
        assert stat.S_IMODE(shared.stat().st_mode) == 0o660
    finally:
        os.umask(old)
