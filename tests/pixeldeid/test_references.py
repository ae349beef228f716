"""UIDs are replaced consistently: every reference between instances still resolves."""

from __future__ import annotations

import csv
from pathlib import Path

import pydicom
import pytest
from corpus import make_ct_series

from pixeldeid.cli import main
from pixeldeid.uids import UIDMapper


def _uids(ds) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for elem in ds.iterall():
        if elem.VR == "UI" and elem.value:
            vals = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
            out.setdefault(elem.keyword, set()).update(str(v) for v in vals)
    return out


XA = "1.2.840.10008.5.1.4.1.1.12.1"  # X-Ray Angiographic Image: Referenced Image Sequence 1C


def _as_xa(path: Path) -> None:
    """Make the instance at ``path`` an X-Ray Angiographic image (its references kept)."""
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = XA
    ds.save_as(path)


def test_references_resolve_after_deid(tmp_path: Path, key_file: Path):
    """Referenced and Source Image Sequence are X/Z/U* (PS3.15 E.1.1): removed where the
    IOD makes them Type 3 (CT), kept with every UID replaced as its target's where it
    requires them (XA: Referenced Image Sequence, Type 1C)."""
    src = tmp_path / "in"
    paths = make_ct_series(src, 6)
    for p in paths[3:]:
        _as_xa(p)
    inputs = [pydicom.dcmread(p) for p in sorted(src.rglob("*.dcm"))]
    out = tmp_path / "out"
    export = tmp_path / "map.csv"
    assert main(["-q", "dicom", str(src), "-o", str(out), "--key-file", str(key_file),
                 "--export-map", str(export), "--no-progress", "--pixels", "off"]) == 0
    outputs = [pydicom.dcmread(p) for p in sorted(out.glob("*.dcm"))]
    assert len(outputs) == len(inputs) == 6
    sops = {str(d.SOPInstanceUID) for d in outputs}
    studies = {str(d.StudyInstanceUID) for d in outputs}
    series = {str(d.SeriesInstanceUID) for d in outputs}
    fors = {str(d.FrameOfReferenceUID) for d in outputs}
    assert len(studies) == len(series) == len(fors) == 1
    old_uids = set().union(*(set().union(*_uids(d).values()) for d in inputs))
    new_all = set().union(*(set().union(*_uids(d).values()) for d in outputs))
    # no original instance UID survives; class UIDs (1.2.840.10008.*) do
    survivors = {u for u in old_uids & new_all if not u.startswith("1.2.840.10008.")}
    assert not survivors
    for d in outputs:
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.2", XA)
        assert len(str(d.SOPInstanceUID)) <= 64 and str(d.SOPInstanceUID).startswith("2.25.")
        assert "SourceImageSequence" not in d  # Type 3 in both IODs
        assert ("ReferencedImageSequence" in d) == (d.SOPClassUID == XA)
        for seq_kw in ("ReferencedImageSequence", "SourceImageSequence"):
            for item in d.get(seq_kw, []):
                ref = str(item.ReferencedSOPInstanceUID)
                # a reference to an instance of the batch points at its new UID
                assert ref in sops or ref not in {str(i.SOPInstanceUID) for i in inputs}
    # the mapper is a pure function of (key, uid): references map like their targets
    mapper = UIDMapper(key_file.read_bytes().strip())
    by_old = {str(i.SOPInstanceUID): mapper(str(i.SOPInstanceUID)) for i in inputs}
    assert set(by_old.values()) == sops
    for i, o in zip(sorted(inputs, key=lambda d: mapper(str(d.SOPInstanceUID))),
                    sorted(outputs, key=lambda d: str(d.SOPInstanceUID)), strict=True):
        if i.SOPClassUID == XA:
            old_refs = [str(it.ReferencedSOPInstanceUID) for it in i.ReferencedImageSequence]
            new_refs = [str(it.ReferencedSOPInstanceUID) for it in o.ReferencedImageSequence]
            assert old_refs and new_refs == [mapper(r) for r in old_refs]
    rows = list(csv.DictReader(export.open()))
    assert {r["kind"] for r in rows} == {"patient", "uid"}
    assert any(r["id_old"] == str(inputs[0].StudyInstanceUID) and r["id_new"] in studies for r in rows)


def test_map_csv_supplies_exact_values(tmp_path: Path, key_file: Path):
    src = tmp_path / "in"
    make_ct_series(src, 2)
    first = pydicom.dcmread(sorted(src.rglob("*.dcm"))[0])
    m = tmp_path / "m.csv"
    m.write_text(f"id_old,id_new\n{first.PatientID},MIDI_0042\n"
                 f"{first.StudyInstanceUID},1.2.826.0.1.3680043.10.99.7\n")
    out = tmp_path / "out"
    assert main(["-q", "dicom", str(src), "-o", str(out), "--key-file", str(key_file),
                 "--map-csv", str(m), "--no-progress", "--pixels", "off"]) == 0
    for p in out.glob("*.dcm"):
        d = pydicom.dcmread(p)
        assert d.PatientID == "MIDI_0042"
        assert d.StudyInstanceUID == "1.2.826.0.1.3680043.10.99.7"


def test_a_partial_subject_map_never_merges_two_patients(tmp_path: Path, key_file: Path):
    """An unmapped patient must not be allocated the pseudonym the map gives another."""
    src = tmp_path / "in"
    make_ct_series(src / "a", 1, seed=1)
    make_ct_series(src / "b", 1, seed=2)
    first = pydicom.dcmread(next((src / "a").glob("*.dcm")))
    m = tmp_path / "m.csv"
    m.write_text(f"id_old,id_new\n{first.PatientID},SUBJ_001\n")
    out = tmp_path / "out"
    assert main(["-q", "dicom", str(src), "-o", str(out), "--key-file", str(key_file),
                 "--map-csv", str(m), "--no-progress", "--pixels", "off"]) == 0
    by_study = {str(d.StudyInstanceUID): d.PatientID
                for d in map(pydicom.dcmread, out.glob("*.dcm"))}
    assert len(by_study) == 2
    assert sorted(by_study.values()) == ["SUBJ_001", "SUBJ_002"]


def test_a_map_that_cannot_be_read_is_a_usage_error(tmp_path: Path, key_file: Path, capsys):
    src = tmp_path / "in"
    make_ct_series(src, 1)
    m = tmp_path / "m.csv"
    m.write_bytes(b"id_old,id_new\nP1,M\xfcller\n")  # Latin-1, not UTF-8
    out = tmp_path / "out"
    assert main(["dicom", str(src), "-o", str(out), "--key-file", str(key_file),
                 "--map-csv", str(m), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8" in err and str(m) in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["dicom", "run"])
def test_a_later_subject_map_never_splits_a_patient(tmp_path: Path, key_file: Path, capsys,
                                                    command: str):
    """A patient who has SUBJ_001 in OUT from an earlier batch, given another pseudonym by
    a later --map-csv: refused naming the CSV line (not the ID), before any file."""
    make_ct_series(tmp_path / "b1", 1, seed=1)
    first = pydicom.dcmread(next((tmp_path / "b1").glob("*.dcm")))
    later = tmp_path / "b2" / "later.dcm"
    later.parent.mkdir()
    first.SOPInstanceUID = first.SOPInstanceUID + ".9"  # another instance of that study
    first.save_as(later)
    out = tmp_path / "out"
    base = [command, "-o", str(out), "--key-file", str(key_file), "--no-progress",
            "--pixels", "off", *(["--no-deface"] if command == "run" else [])]
    assert main([*base, str(tmp_path / "b1")]) == 0
    capsys.readouterr()
    before = sorted(p.relative_to(out) for p in out.rglob("*") if ".pixeldeid" not in p.parts)
    m = tmp_path / "m.csv"
    m.write_text(f"id_old,id_new\nOTHER,TRIAL8\n{first.PatientID},TRIAL7\n")
    assert main([*base, str(tmp_path / "b2"), "--map-csv", str(m)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{m}: line 3:" in err and "SUBJ_001" in err
    assert str(first.PatientID) not in err
    after = sorted(p.relative_to(out) for p in out.rglob("*") if ".pixeldeid" not in p.parts)
    assert after == before
    # the pseudonym already recorded, supplied again, is no contradiction
    m.write_text(f"id_old,id_new\n{first.PatientID},SUBJ_001\n")
    assert main([*base, str(tmp_path / "b2"), "--map-csv", str(m)]) == 0
    assert {pydicom.dcmread(p).PatientID for p in out.rglob("*.dcm")
            if ".pixeldeid" not in p.parts} == {"SUBJ_001"}


def test_the_export_map_names_patients_without_a_patient_id(tmp_path: Path, key_file: Path):
    """Patients told apart by name and birth date get a row each (NAME:name:birth date),
    which --map-csv takes back."""
    src = tmp_path / "in"
    for n, birth in enumerate(("19600101", "19610202")):
        f = make_ct_series(src / str(n), 1, seed=n + 1)[0]
        ds = pydicom.dcmread(f)
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = "", "Doe^Jane", birth
        ds.save_as(f)
    export = tmp_path / "map.csv"
    assert main(["-q", "dicom", str(src), "-o", str(tmp_path / "out"), "--key-file",
                 str(key_file), "--export-map", str(export), "--no-progress",
                 "--pixels", "off"]) == 0
    rows = {(r["id_old"], r["id_new"]) for r in csv.DictReader(export.open())
            if r["kind"] == "patient"}
    assert rows == {("NAME:Doe^Jane:19600101", "SUBJ_001"), ("NAME:Doe^Jane:19610202", "SUBJ_002")}
    m = tmp_path / "m.csv"
    m.write_text("id_old,id_new\nNAME:Doe^Jane:19610202,TRIAL7\n")
    assert main(["-q", "dicom", str(src), "-o", str(tmp_path / "out2"), "--key-file",
                 str(key_file), "--map-csv", str(m), "--no-progress", "--pixels", "off"]) == 0
    assert {str(pydicom.dcmread(p).PatientID) for p in (tmp_path / "out2").glob("*.dcm")} == {
        "SUBJ_001", "TRIAL7"}


def _another_instance(src: Path, dest: Path, suffix: str) -> Path:
    """A copy of ``src`` as another instance of its series (new SOP Instance UID)."""
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = ds.SOPInstanceUID + suffix
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return dest


def _released_studies(out: Path) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID)
            for p in out.rglob("*.dcm") if ".pixeldeid" not in p.parts}


@pytest.mark.parametrize("command", ["dicom", "run"])
def test_uid_overrides_hold_in_later_batches(tmp_path: Path, key_file: Path, capsys,
                                             command: str):
    """A study given its new UID by --map-csv keeps it in a later batch into the same
    output folder without the map; a later map that gives it another UID is refused
    before any file, naming the UID."""
    [first] = make_ct_series(tmp_path / "b1", 1, seed=3)
    study = str(pydicom.dcmread(first).StudyInstanceUID)
    _another_instance(first, tmp_path / "b2" / "x.dcm", ".8")
    _another_instance(first, tmp_path / "b3" / "y.dcm", ".9")
    out = tmp_path / "out"
    base = [command, "-o", str(out), "--key-file", str(key_file), "--no-progress",
            "--pixels", "off", *(["--no-deface"] if command == "run" else [])]
    m = tmp_path / "m.csv"
    m.write_text(f"id_old,id_new\n{study},1.2.826.0.1.3680043.10.99.1\n")
    assert main([*base, str(tmp_path / "b1"), "--map-csv", str(m)]) == 0
    assert main([*base, str(tmp_path / "b2")]) == 0  # no map this time
    assert _released_studies(out) == {"1.2.826.0.1.3680043.10.99.1"}
    capsys.readouterr()
    before = sorted(p.relative_to(out) for p in out.rglob("*") if ".pixeldeid" not in p.parts)
    m.write_text(f"id_old,id_new\n{study},1.2.826.0.1.3680043.10.99.2\n")
    assert main([*base, str(tmp_path / "b3"), "--map-csv", str(m)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and study in err and "1.2.826.0.1.3680043.10.99.1" in err
    assert "would be split" in err
    if command == "run":  # a dry run says so too
        assert main([*base, str(tmp_path / "b3"), "--map-csv", str(m), "--dry-run"]) == 2
        assert "would be split" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")
                  if ".pixeldeid" not in p.parts) == before


@pytest.mark.parametrize("command", ["dicom", "run"])
def test_a_later_override_of_a_released_uid_is_refused(tmp_path: Path, key_file: Path, capsys,
                                                       command: str):
    """A study released under the key's UID, then given another by a later --map-csv: its
    next instances would form another study. Refused; an override of a UID not in the
    release is taken."""
    [first] = make_ct_series(tmp_path / "b1", 1, seed=4)
    ds = pydicom.dcmread(first)
    study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
    _another_instance(first, tmp_path / "b2" / "x.dcm", ".8")
    out = tmp_path / "out"
    base = [command, "-o", str(out), "--key-file", str(key_file), "--no-progress",
            "--pixels", "off", *(["--no-deface"] if command == "run" else [])]
    assert main([*base, str(tmp_path / "b1")]) == 0
    capsys.readouterr()
    released = UIDMapper(key_file.read_bytes().strip())(series)
    m = tmp_path / "m.csv"
    m.write_text(f"id_old,id_new\n{series},1.2.826.0.1.3680043.10.99.3\n")
    assert main([*base, str(tmp_path / "b2"), "--map-csv", str(m)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and series in err and released in err
    assert len([p for p in out.rglob("*.dcm") if ".pixeldeid" not in p.parts]) == 1
    # a UID the release does not hold yet may be given its value
    m.write_text(f"id_old,id_new\n{study}.77,1.2.826.0.1.3680043.10.99.4\n")
    assert main([*base, str(tmp_path / "b2"), "--map-csv", str(m)]) == 0
    assert len(_released_studies(out)) == 1


def test_a_later_override_of_a_referenced_uid_is_refused(tmp_path: Path, key_file: Path,
                                                        capsys):
    """A UID the release holds only as a reference (an instance not in it): an override
    given later would leave the released reference pointing elsewhere."""
    [first] = make_ct_series(tmp_path / "b1", 1, seed=5)
    ds = pydicom.dcmread(first)
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.55.1"
    ds.ReferencedImageSequence = pydicom.Sequence([item])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = XA  # (kept there: Type 1C)
    ds.save_as(first)
    _another_instance(first, tmp_path / "b2" / "x.dcm", ".8")
    out = tmp_path / "out"
    base = ["dicom", "-o", str(out), "--key-file", str(key_file), "--no-progress",
            "--pixels", "off"]
    assert main([*base, str(tmp_path / "b1")]) == 0
    capsys.readouterr()
    m = tmp_path / "m.csv"
    m.write_text("id_old,id_new\n1.2.826.0.1.3680043.10.55.1,1.2.826.0.1.3680043.10.99.5\n")
    assert main([*base, str(tmp_path / "b2"), "--map-csv", str(m)]) == 2
    assert "released it as" in capsys.readouterr().err


def test_uid_override_record_refuses_contradictions(tmp_path: Path):
    from pixeldeid.errors import DeidError
    from pixeldeid.uids import keyed_uid
    from pixeldeid.uidstate import OVERRIDES_NAME, reconcile_overrides

    key = b"k" * 32
    out = tmp_path / "out"
    nothing = lambda out: set()  # noqa: E731 - an empty release
    first = reconcile_overrides(out, key, {"1.2.3": "2.25.1"}, nothing)
    assert first == {keyed_uid(key, "1.2.3"): "2.25.1"}
    record = out / ".pixeldeid" / OVERRIDES_NAME
    assert "1.2.3\n" not in record.read_text() and ",1.2.3," not in record.read_text()
    # the same override again, and a new one beside it: both in force
    both = reconcile_overrides(out, key, {"1.2.3": "2.25.1", "1.2.4": "2.25.2"}, nothing)
    assert both == {keyed_uid(key, "1.2.3"): "2.25.1", keyed_uid(key, "1.2.4"): "2.25.2"}
    assert reconcile_overrides(out, key, {}, nothing) == both  # a batch without a map
    with pytest.raises(DeidError, match="which another UID already has"):
        reconcile_overrides(out, key, {"1.2.5": "2.25.2"}, nothing)
    with pytest.raises(DeidError, match="which another UID already has"):
        reconcile_overrides(out, key, {"1.2.6": "2.25.9"}, lambda out: {"2.25.9"})
    with pytest.raises(DeidError, match="gave it 2.25.1"):
        reconcile_overrides(out, key, {"1.2.3": "2.25.7"}, nothing)
    record.write_text("garbage\n")
    with pytest.raises(DeidError, match="damaged"):
        reconcile_overrides(out, key, {}, nothing)


@pytest.mark.parametrize(("sop_class", "path", "keyword", "code"), [
    ("1.2.840.10008.5.1.4.1.1.2", (), "SourceImageSequence", "X"),         # CT: Type 3
    (XA, (), "ReferencedImageSequence", "U"),                              # XA: Type 1C
    ("1.2.840.10008.5.1.4.1.1.2.1", ("SharedFunctionalGroupsSequence",),   # Enhanced CT:
     "ReferencedImageSequence", "Z"),                                      # Type 2
    ("1.2.840.10008.5.1.4.1.1.11.1", ("ReferencedSeriesSequence",),        # GSPS: Type 1
     "ReferencedImageSequence", "U"),
    ("1.2.3.4.5.6.7", (), "SourceImageSequence", "U"),                     # unknown IOD
])
def test_reference_sequences_follow_their_type(sop_class, path, keyword, code):
    """PS3.15 E.1.1: X/Z/U* is "X unless Z or replacement of contained instance UIDs (U) is
    required to maintain IOD conformance (Type 3 versus Type 2 versus Type 1 sequences
    containing UID references)". It was U everywhere (Type 3 sequences kept)."""
    from pixeldeid.iodtypes import attribute_type, resolve_compound

    assert resolve_compound("X/Z/U*", attribute_type(sop_class, path, keyword)) == code


def test_references_listed_in_common_instance_reference_are_kept(tmp_path: Path,
                                                                  key_file: Path):
    """A Type 3 Referenced Image Sequence is X, but not where the Common Instance Reference
    Module lists the instances it references: removed, the module would list references
    the instance no longer makes (dciodvfy: "ReferencedSeriesSequence present but Instance
    does not reference Instances"), as in a Segmentation whose per-frame sources went."""
    [path] = make_ct_series(tmp_path / "in", 1, seed=9)
    ds = pydicom.dcmread(path)
    [ref] = ds.ReferencedImageSequence
    series = pydicom.Dataset()
    series.SeriesInstanceUID = "1.2.826.0.1.3680043.10.55.2"
    series.ReferencedInstanceSequence = pydicom.Sequence([pydicom.Dataset()])
    series.ReferencedInstanceSequence[0].ReferencedSOPClassUID = ref.ReferencedSOPClassUID
    series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
    ds.ReferencedSeriesSequence = pydicom.Sequence([series])
    ds.save_as(path)
    out = tmp_path / "out"
    assert main(["-q", "dicom", str(path), "-o", str(out), "--key-file", str(key_file),
                 "--no-progress", "--pixels", "off"]) == 0
    [o] = [pydicom.dcmread(p) for p in out.glob("*.dcm")]
    mapper = UIDMapper(key_file.read_bytes().strip())
    new = mapper(str(ref.ReferencedSOPInstanceUID))
    assert o.ReferencedImageSequence[0].ReferencedSOPInstanceUID == new
    listed = o.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert listed.ReferencedSOPInstanceUID == new
    assert "SourceImageSequence" in o  # (X/Z/U* too)
