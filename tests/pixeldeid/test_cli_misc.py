"""Small CLI and engine behaviours: empty sources, cleaned SR text, profiles listing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from pixeldeid._synth import make_ct_series
from pixeldeid.api import DeidConfig, Deidentifier
from pixeldeid.cli import main


def test_empty_source_folder_is_a_usage_error(tmp_path: Path, key_file: Path, capsys):
    (tmp_path / "in").mkdir()
    rc = main(["dicom", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
               "--key-file", str(key_file), "--no-progress"])
    assert rc == 2
    assert "no input files found" in capsys.readouterr().err


def _instance(sop_class: str, n: int, patient_id: str, name: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.99.{n}"
    ds.PatientID = patient_id
    ds.PatientName = name
    return ds


def test_sr_text_cleaned_to_nothing_keeps_a_value():
    ds = _instance("1.2.840.10008.5.1.4.1.1.88.11", 7, "QX77", "Ravenhurst^Odile")  # Basic Text SR
    item = Dataset()
    item.ValueType = "TEXT"
    item.RelationshipType = "CONTAINS"
    item.TextValue = "Ravenhurst 12/03/1961"
    ds.ContentSequence = Sequence([item])
    deid = Deidentifier(DeidConfig(options=("clean-structured-content",),
                                   key=b"0123456789abcdef-key"))
    deid.deidentify_dataset(ds)
    text = ds.ContentSequence[0].TextValue
    assert text == "REMOVED"


def test_profiles_command_lists_options(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    assert "retain-longitudinal-modified-dates" in out and "tcia-like" in out


def _pet() -> Dataset:
    ds = _instance("1.2.840.10008.5.1.4.1.1.128", 8, "PET77", "Quillon^Ada")  # PET Image Storage
    ds.SeriesDate, ds.SeriesTime = "20240305", "231500"
    ds.AcquisitionDate, ds.AcquisitionTime = "20240306", "000500"
    item = Dataset()
    item.RadiopharmaceuticalStartTime = "223000"
    item.RadiopharmaceuticalStartDateTime = "20240305223000"
    ds.RadiopharmaceuticalInformationSequence = Sequence([item])
    return ds


def _seconds(date: str, time: str) -> int:
    import datetime as dt

    return int(dt.datetime.strptime(date + time[:6], "%Y%m%d%H%M%S").timestamp())


def test_pet_intervals_survive_a_shift_across_midnight():
    ds = _pet()
    deid = Deidentifier(DeidConfig(options=("retain-longitudinal-modified-dates",),
                                   key=b"0123456789abcdef-key", date_offset_days=-400,
                                   date_offset_seconds=3 * 3600))
    deid.deidentify_dataset(ds)
    item = ds.RadiopharmaceuticalInformationSequence[0]
    # Series 23:15 -> 02:15 next day; acquisition 00:05 -> 03:05; injection 22:30 -> 01:30
    assert ds.SeriesTime == "021500" and ds.AcquisitionTime == "030500"
    assert item.RadiopharmaceuticalStartTime == "013000"
    series = _seconds(ds.SeriesDate, ds.SeriesTime)
    acq = _seconds(ds.AcquisitionDate, ds.AcquisitionTime)
    inj = _seconds(item.RadiopharmaceuticalStartDateTime[:8], item.RadiopharmaceuticalStartDateTime[8:])
    assert acq - series == 50 * 60  # interval across the original midnight kept
    assert series - inj == 45 * 60  # injection to series start kept (DT and TM agree)
    import datetime as dt

    expected = dt.datetime(2024, 3, 5, 23, 15) + dt.timedelta(days=-400, hours=3)
    assert ds.SeriesDate == expected.strftime("%Y%m%d")  # the carried day included


def test_site_and_trial_fields(tmp_path: Path, key_file: Path):
    import pydicom
    from corpus import make_ct_series

    make_ct_series(tmp_path / "in", 1)
    out = tmp_path / "out"
    assert main(["-q", "dicom", str(tmp_path / "in"), "-o", str(out), "--key-file", str(key_file),
                 "--site-id", "07", "--site-name", "Site 07", "--trial-sponsor", "ACME",
                 "--trial-protocol-id", "P-1", "--time-point", "BASELINE", "--prefix", "TRIAL",
                 "--no-progress"]) == 0
    ds = pydicom.dcmread(next(out.glob("*.dcm")))
    assert ds.InstitutionName == "Site 07"
    assert ds.ClinicalTrialSiteID == "07" and ds.ClinicalTrialSponsorName == "ACME"
    assert ds.ClinicalTrialProtocolID == "P-1" and ds.ClinicalTrialTimePointID == "BASELINE"
    assert ds.ClinicalTrialSubjectID == ds.PatientID == "TRIAL_001"


def test_residual_check_uses_the_tokens_of_the_dataset_it_encodes():
    import pytest

    from pixeldeid.errors import DeidError

    a = _instance("1.2.840.10008.5.1.4.1.1.2", 9, "QA1", "Zebedee^Quintus")
    a.Manufacturer = "Zebedee Imaging"  # kept by the profile: the residual check must catch it
    b = _instance("1.2.840.10008.5.1.4.1.1.2", 10, "QB2", "Ormerod^Lucia")
    deid = Deidentifier(DeidConfig(key=b"0123456789abcdef-key"))
    deid.deidentify_dataset(a)
    deid.deidentify_dataset(b)  # another patient in between must not change A's check
    with pytest.raises(DeidError, match="identity still present"):
        deid.encode(a)
    deid.encode(b)


@pytest.mark.parametrize(("extra", "match"), [
    (["--site-name", "Ward\\7"], "ClinicalTrialSiteName: .* backslash"),  # a value of VM 2
    (["--site-id", "07", "--trial-sponsor", "ACME"],
     "ClinicalTrialSiteID, ClinicalTrialSponsorName given without ClinicalTrialProtocolID"),  # Type 1 left empty
    (["--site-name", "North", "--trial-protocol-name", "Study"],
     "ClinicalTrialSiteName, ClinicalTrialProtocolName given without "
     "ClinicalTrialSponsorName and ClinicalTrialProtocolID"),
    (["--site-id", "S" * 65], "ClinicalTrialSiteID: .* longer than 64"),  # was cut to 64
    (["--time-point", "T1\tbaseline"], "ClinicalTrialTimePointID: .* control"),
    (["--trial-sponsor", "Hôpital Nord"], "ClinicalTrialSponsorName: .* non-ASCII"),
    (["--profile", "tcia-like", "--date-offset", "99999999"], "date offset 99999999 days"),
    (["--prefix", "bad prefix"], "pseudonym prefix 'bad prefix'"),
])
def test_supplied_values_that_cannot_be_written_are_usage_errors(
        tmp_path: Path, capsys, extra: list[str], match: str):
    """Refused before any file is read (each file was quarantined, or the value cut), and
    before a project key is made in OUT (no --key-file here)."""
    src = tmp_path / "in"
    make_ct_series(src, 1)
    out = tmp_path / "out"
    assert main(["dicom", str(src), "-o", str(out), "--no-progress", "--pixels", "off",
                 *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err)
    assert not out.exists()


def test_supplied_site_values_are_written_whole(tmp_path: Path, key_file: Path):
    src = tmp_path / "in"
    make_ct_series(src, 1)
    out = tmp_path / "out"
    site_id, description = "S" * 64, "baseline scan, " * 60  # LO at its limit, ST over 64
    assert main(["-q", "dicom", str(src), "-o", str(out), "--key-file", str(key_file),
                 "--no-progress", "--pixels", "off", "--site-id", site_id, "--site-name",
                 "North Clinic 7", "--time-point-description", description.strip(),
                 "--trial-sponsor", "ACME", "--trial-protocol-id", "P-1",
                 "--profile", "tcia-like", "--date-offset", "-73050"]) == 0
    (f,) = out.glob("*.dcm")
    ds = pydicom.dcmread(f)
    assert ds.ClinicalTrialSiteID == site_id
    assert ds.InstitutionName == ds.ClinicalTrialSiteName == "North Clinic 7"
    assert ds.ClinicalTrialTimePointDescription == description.strip()
    assert int(ds.StudyDate[:4]) < 1900  # shifted back 200 years, still a date


def test_pydicom_warnings_about_input_values_show_with_verbose_only(tmp_path: Path, key_file: Path):
    """pydicom warns about each odd value it reads (a UID of hex digits here); the CLI keeps
    them out of a batch's output unless asked (-v). Run as a process: pytest captures
    warnings in-process."""
    src = get_testdata_file("bad_sequence.dcm")

    def stderr(*flags: str) -> str:
        out = tmp_path / f"out{len(flags)}"
        r = subprocess.run([sys.executable, "-m", "pixeldeid", *flags, "dicom", src, "-o",
                            str(out), "--key-file", str(key_file), "--no-progress",
                            "--profile", "tcia-like"], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert "1 written" in r.stdout
        return r.stderr

    assert "Invalid value for VR UI" in stderr("-v")
    assert "Warning" not in stderr()


@pytest.mark.parametrize(("where", "match"), [
    ("out/map.csv", "export map .* is inside the output folder .* for release"),
    ("out", "export map .* is inside the output folder"),
    ("a-file/map.csv", "export map cannot be written there: Not a directory"),
    ("key:out/project.key", "key file .* is inside the output folder .* for release"),
])
def test_the_key_and_the_identity_map_never_go_into_the_release(
        tmp_path: Path, key_file: Path, capsys, where: str, match: str):
    """Refused before any work; the export map used to be written after the whole batch
    (a traceback when it could not be), wherever it was asked for, OUT included."""
    src = tmp_path / "in"
    make_ct_series(src, 1)
    (tmp_path / "a-file").write_text("x")
    args = ["dicom", str(src), "-o", str(tmp_path / "out"), "--no-progress", "--pixels", "off"]
    if where.startswith("key:"):
        (tmp_path / "out").mkdir()
        (tmp_path / where[4:]).write_bytes(key_file.read_bytes())
        args += ["--key-file", str(tmp_path / where[4:])]
    else:
        args += ["--key-file", str(key_file), "--export-map", str(tmp_path / where)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err)
    assert not list(tmp_path.glob("out/*.dcm")) and not (tmp_path / "out" / ".pixeldeid").exists()


def test_the_identity_map_may_go_into_the_state_folder(tmp_path: Path, key_file: Path):
    src = tmp_path / "in"
    make_ct_series(src, 1)
    target = tmp_path / "out" / ".pixeldeid" / "map.csv"
    assert main(["-q", "dicom", str(src), "-o", str(tmp_path / "out"), "--no-progress",
                 "--pixels", "off", "--key-file", str(key_file), "--export-map", str(target)]) == 0
    assert target.read_text().startswith("id_old,id_new,kind\n")


@pytest.mark.parametrize(("command", "flag", "what"), [
    ("dicom", "--map-csv", "map CSV"),
    ("dicom", "--subject-db", "subject database"),
    ("run", "--map-csv", "map CSV"),
    ("run", "--config", "map CSV"),  # the job file's subject_map
])
def test_the_subject_map_never_goes_into_the_release(
        tmp_path: Path, key_file: Path, capsys, command: str, flag: str, what: str):
    """A map CSV (original IDs) or subject database inside OUT is refused like the key file,
    before any work; under OUT/.pixeldeid/ it is allowed."""
    src = tmp_path / "in"
    make_ct_series(src, 1)
    out = tmp_path / "out"
    out.mkdir()
    target = out / ("subjects.sqlite" if flag == "--subject-db" else "subjects.csv")
    if flag != "--subject-db":
        target.write_text("id_old,id_new\nMRN12345,TRIAL7\n")
    extra = [flag, str(target)]
    if flag == "--config":
        (tmp_path / "job.yaml").write_text(f"subject_map: {target}\n")
        extra = [flag, str(tmp_path / "job.yaml")]
    quiet = ["--no-deface"] if command == "run" else []
    base = [command, str(src), "-o", str(out), "--key-file", str(key_file), "--no-progress",
            "--pixels", "off", *quiet]
    assert main([*base, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(f"{what} .* is inside the output folder .* for release", err)
    assert "MRN12345" not in err
    assert not list(out.rglob("*.dcm")) and not (out / ".pixeldeid").exists()
    if flag == "--map-csv":  # allowed in the state folder, which is never released
        (out / ".pixeldeid").mkdir()
        target.rename(out / ".pixeldeid" / "subjects.csv")
        assert main([*base, flag, str(out / ".pixeldeid" / "subjects.csv")]) == 0


@pytest.mark.parametrize("command", ["dicom", "deface", "wsi", "run"])
def test_an_output_folder_that_cannot_be_made_is_a_usage_error(tmp_path: Path, capsys, command):
    """A file where OUT should be: one line, exit 2 (deface and wsi ended in tracebacks)."""
    src = tmp_path / "in"
    make_ct_series(src, 1)
    (tmp_path / "taken").write_text("a file, not a folder")
    quiet = ["--no-progress"] if command in ("dicom", "run") else []  # the others: TTY only
    assert main([command, str(src), "-o", str(tmp_path / "taken"), *quiet]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create the output folder" in err
    assert (tmp_path / "taken").read_text() == "a file, not a folder"


@pytest.mark.parametrize("argv", [["dicom", "in", "-o", "out", "-j", "-3"],
                                  ["dicom", "in", "-o", "out", "-j", "two"],
                                  ["verify", "out", "-j", "0"]])
def test_a_worker_count_below_one_is_a_usage_error(tmp_path: Path, capsys, argv: list[str]):
    """`dicom -j -3` ran with one worker without a word (`run` refused it)."""
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / a) if a in ("in", "out") else a for a in argv])
    assert info.value.code == 2
    assert "-j/--jobs: must be a whole number of at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["verify", "report", "templates"])
def test_an_output_path_that_cannot_be_written_is_one_line(tmp_path: Path, key_file: Path,
                                                          capsys, command: str):
    """A file where a folder should be: `verify --json` failed after the whole verification,
    `report -o` and `templates import -o` at once, all three with a traceback."""
    src, out = tmp_path / "in", tmp_path / "out"
    make_ct_series(src, 1)
    assert main(["-q", "dicom", str(src), "-o", str(out), "--key-file", str(key_file),
                 "--no-progress", "--pixels", "off"]) == 0
    capsys.readouterr()
    (tmp_path / "taken").write_text("a file, not a folder")
    target = tmp_path / "taken" / "x"
    recipe = tmp_path / "tiny.recipe"
    recipe.write_text("FORMAT dicom\n\n%filter graylist\n\nLABEL Tiny US\n  contains Modality US\n"
                      "  coordinates 0,0,100,20\n")
    argv = {"verify": ["verify", str(out), "--against", str(src), "--no-ocr", "--no-dciodvfy",
                       "--no-progress", "--json", str(target)],
            "report": ["report", str(out), "-o", str(target), "--allow-outside", "--no-progress"],
            "templates": ["templates", "import", str(recipe), "-o", str(target)]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(target) in err[0] and "Not a directory" in err[0]
    assert ".pixeldeid-tmp" not in err[0]


@pytest.mark.parametrize("command", ["dicom", "run"])
def test_a_file_named_twice_by_the_sources_is_one_input(tmp_path: Path, key_file: Path,
                                                         capsys, command: str):
    """A folder and a file in it: `dicom` counted and quarantined the file twice, `run` ended
    in an sqlite3.IntegrityError traceback."""
    src = tmp_path / "in"
    files = make_ct_series(src, 2)
    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    out = tmp_path / "out"
    again = [str(files[0]), str(src / "broken.dcm"), str(src / ".." / "in")]
    assert main([command, str(src), *again, "-o", str(out), "--key-file", str(key_file),
                 "--no-progress", "--pixels", "off"]) == 1
    text = capsys.readouterr().out
    assert re.search(r"\b3 (input|item)\(s\)", text) and "1 quarantined" in text
    assert len(list((out / "quarantine").glob("*.reason.txt"))) == 1


def test_deface_and_wsi_release_a_file_named_twice_once(tmp_path: Path):
    """A folder and a file in it: the same slide was released as SLIDE-0001 and SLIDE-0002,
    the same volume under two names."""
    import numpy as np

    from defacing.batch import plan
    from tests.defacing.conftest import save_nifti
    from wsi.synth.aperio import make_aperio

    slide = make_aperio(tmp_path / "slides" / "case.svs", width=400, height=300).path
    assert main(["wsi", str(tmp_path / "slides"), str(slide), "-o", str(tmp_path / "w")]) == 0
    assert sorted(p.name for p in (tmp_path / "w").glob("*.svs")) == ["SLIDE-0001.svs"]
    head = tmp_path / "heads" / "noise.nii.gz"
    head.parent.mkdir()
    save_nifti(head, np.random.default_rng(0).random((40, 40, 40)).astype(np.float32),
               np.diag([3.0, 3.0, 3.0, 1.0]))
    jobs = plan([tmp_path / "heads", head, tmp_path / "heads" / ".." / "heads"], tmp_path / "d")
    assert [(j.kind, j.source) for j in jobs] == [("nifti", head)]


def test_a_file_that_cannot_be_decoded_gives_one_line_not_a_traceback(tmp_path):
    """pydicom logs a failed pixel decode at ERROR with its traceback and no file name: the
    default pixel stage printed two tracebacks for pydicom's own 12-bit JPEG-lossy.dcm.
    (A real process: pytest's own log capture would hide what a user sees.)"""
    from pydicom.data import get_testdata_file

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.dcm").write_bytes(Path(get_testdata_file("JPEG-lossy.dcm")).read_bytes())
    key = tmp_path / "k"
    key.write_bytes(bytes(range(32)))
    for jobs in ("1", "2"):
        r = subprocess.run([sys.executable, "-m", "pixeldeid", "dicom", str(src), "-o",
                            str(tmp_path / f"out{jobs}"), "--key-file", str(key), "-j", jobs,
                            "--no-progress"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        (line,) = [ln for ln in r.stderr.splitlines() if "a.dcm" in ln]
        assert "pixel data cannot be decoded" in line


@pytest.mark.parametrize("command", ["dicom", "deface"])
def test_a_newline_in_a_file_name_stays_on_one_line(tmp_path: Path, key_file: Path, capsys,
                                                     command: str):
    """A file named 'bad<newline>name' gave a two-line error and a reason file whose
    ``source:`` line broke in two: the name is shown with its control characters escaped."""
    from pixeldeid.cli import printable

    src = tmp_path / "in"
    src.mkdir()
    bad = src / ("bad\nname\x1b[31m" + (".dcm" if command == "dicom" else ".nii"))
    bad.write_bytes(b"not an image\n" * 20)
    out = tmp_path / "out"
    argv = ([command, str(bad), "-o", str(out), "--key-file", str(key_file), "--no-progress"]
            if command == "dicom" else [command, str(bad), "-o", str(out), "--device", "cpu"])
    assert main(argv) == 1
    shown = str(bad).replace("\n", "\\n").replace("\x1b", "\\x1b")
    err = capsys.readouterr().err
    assert "\x1b" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("quarantined:")]
    assert len(lines) == 1 and lines[0].startswith(f"quarantined: {shown}: "), err
    (rf,) = (out / "quarantine").glob("*.reason.txt")
    text = rf.read_text(encoding="utf-8")
    assert text.splitlines()[0] == f"source: {shown}"
    assert len(text.splitlines()) == 3 and "\x1b" not in text
    assert printable(bad) == shown


def test_a_reader_that_goes_away_is_no_error(monkeypatch):
    """`pixeldeid profiles | head -1` ended with "pixeldeid: error: Broken pipe", exit 2."""
    import sys

    from pixeldeid.cli import main

    class Gone:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            raise OSError("no descriptor")

    monkeypatch.setattr(sys, "stdout", Gone())
    assert main(["profiles"]) == 0
