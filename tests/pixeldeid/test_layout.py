"""Output naming: flat, hierarchy (HIRO 1) and DICOMDIR file-sets (HIRO 2)."""

from __future__ import annotations

import copy
import os
import re
from pathlib import PurePosixPath

import pydicom
import pytest
from pydicom.fileset import FileSet

from pixeldeid import dciodvfy
from pixeldeid.errors import DeidError
from pixeldeid.layout import DicomdirLayout, clean_component, flat_name, hierarchy_path
from tests.pixeldeid.conftest import dciodvfy_errors
from tests.pixeldeid.corpus import ct_slice_dataset, make_planted_dataset, write_dataset

SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _deidentified(ds, subject="SUBJ-0001"):
    """A crude stand-in for the engine's output: pseudonym ID, identity removed."""
    ds.PatientID = subject
    ds.PatientName = ""
    ds.StudyDate = "20200102"
    for kw in ("StudyTime", "AccessionNumber", "StudyID"):
        if kw in ds:
            ds.data_element(kw).value = ""
    ds.StudyDescription = "CT CHEST/ABD ../../etc"
    ds.SeriesDescription = "Axial 1.25 mm: soft tissue\\bone"
    return ds


def _names(path: PurePosixPath) -> list[str]:
    return list(path.parts)


def test_flat_name_is_the_sop_instance_uid():
    ds = ct_slice_dataset(0, 1, seed=4)
    assert flat_name(ds) == PurePosixPath(f"{ds.SOPInstanceUID}.dcm")


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
@pytest.mark.parametrize("uid", ["", "../../etc/passwd", "1.2.3/4", "1.2." + "9" * 70, None])
def test_invalid_uid_is_never_a_path(uid):
    ds = ct_slice_dataset(0, 1)
    if uid is None:
        del ds.SOPInstanceUID
    else:
        ds.SOPInstanceUID = uid
    with pytest.raises(DeidError):
        flat_name(ds)
    with pytest.raises(DeidError):
        hierarchy_path(ds)


def test_hierarchy_path_format():
    ds = _deidentified(ct_slice_dataset(6, 10, seed=4))
    p = hierarchy_path(ds)
    assert len(p.parts) == 4
    subject, study, series, inst = p.parts
    assert subject == "SUBJ-0001"
    assert re.fullmatch(r"study_20200102_[0-9a-f]{6}_CT_CHEST_ABD_etc", study)
    assert re.fullmatch(r"CT3_Axial_1_25_mm_soft_tissue_bone_[0-9a-f]{3}", series)
    assert re.fullmatch(r"00007_[0-9a-f]{16}\.dcm", inst)
    assert all(SAFE.match(c) for c in p.parts)
    # the same study and series give the same folders, other instances other files
    q = hierarchy_path(_deidentified(ct_slice_dataset(7, 10, seed=4)))
    assert q.parent == p.parent and q.name != p.name


def test_hierarchy_path_missing_values_are_na():
    ds = ct_slice_dataset(0, 1, seed=4)
    for kw in ("PatientID", "StudyDate", "StudyDescription", "Modality", "SeriesNumber",
               "SeriesDescription", "InstanceNumber"):
        delattr(ds, kw)
    subject, study, series, inst = hierarchy_path(ds).parts
    assert subject == "NA" and study.startswith("study_NA_") and study.endswith("_NA")
    assert series.startswith("NANA_NA_") and inst.startswith("NA_")


@pytest.mark.parametrize("value,expected", [
    ("Größmann Jürgen", "Gromann_Jurgen"), ("..", "NA"), ("", "NA"), (None, "NA"),
    ("a/b\\c:d*e?f", "a_b_c_d_e_f"), ("CON", "_CON"), ("x" * 200, "x" * 64),
    ("__-lead-__", "lead"), ("山田", "NA"),
])
def test_clean_component(value, expected):
    assert clean_component(value) == expected


def test_no_planted_identity_in_output_names(tmp_path):
    ds, planted = make_planted_dataset(seed=3, pixels="native")
    # the engine replaces UIDs and removes identity; only descriptions are kept here on
    # purpose, cleaned, to show what reaches a name is just the de-identified dataset
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(ds, kw, pydicom.uid.generate_uid(prefix=None))
    _deidentified(ds, subject="ZXQ7")
    # read back from a file whose name is full of identity
    src = write_dataset(ds, tmp_path / "Größmann_QX-88213-PID" / "Jürgen_19570923.dcm")
    back = pydicom.dcmread(src)
    names = " ".join(_names(hierarchy_path(back)) + _names(flat_name(back)))
    with DicomdirLayout(tmp_path / "out") as layout:
        out = layout.add(back)
    names += " " + str(out.relative_to(tmp_path / "out"))
    for s in [*planted, "QX-88213", "Größmann", "Gromann", "Jurgen", "19570923"]:
        assert s not in names, s
    assert "20200102" in names


def _series(seed, n, subject):
    return [_deidentified(ct_slice_dataset(i, n, seed=seed), subject) for i in range(n)]


def test_dicomdir_layout_reads_back_with_fileset(tmp_path):
    root = tmp_path / "out"
    data = {("S1", 1): _series(1, 3, "S1"), ("S1", 2): _series(2, 2, "S1"),
            ("S2", 3): _series(3, 4, "S2")}
    data[("S1", 2)][1].StudyDate = ""  # a missing date: same study folder, valid record
    with DicomdirLayout(root) as layout:
        for dss in data.values():
            for ds in dss:
                layout.add(ds)
        assert len(layout) == 9
    dirs = sorted(root.rglob("DICOMDIR"))
    assert len(dirs) == 3
    assert {d.relative_to(root).parts[0] for d in dirs} == {"S1", "S2"}
    found = {}
    for d in dirs:
        assert re.fullmatch(r"study_[0-9a-f]{6}_(\d{8}|NA)", d.parent.name)
        dd = pydicom.dcmread(d)
        assert dd.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
        fs = FileSet(dd)
        for inst in fs:
            rel = inst.node._record.ReferencedFileID
            assert list(rel)[0] == "DICOM" and re.fullmatch(r"IM_\d{5}", list(rel)[1])
            loaded = inst.load()
            assert loaded.SOPInstanceUID == inst.SOPInstanceUID
            found[loaded.SOPInstanceUID] = loaded.PatientID
            assert loaded.pixel_array.shape == (512, 512)
    expected = {ds.SOPInstanceUID: ds.PatientID for dss in data.values() for ds in dss}
    assert found == expected


def test_reserved_but_unwritten_instances_are_left_out(tmp_path):
    layout = DicomdirLayout(tmp_path)
    dss = _series(5, 3, "S9")
    paths = [layout.reserve(ds) for ds in dss]
    for ds, p in zip(dss[:2], paths[:2], strict=True):
        write_dataset(ds, p)
    (d,) = layout.close()
    assert layout.close() == []
    fs = FileSet(pydicom.dcmread(d))
    assert sorted(i.SOPInstanceUID for i in fs) == sorted(ds.SOPInstanceUID for ds in dss[:2])
    with pytest.raises(DeidError):
        layout.add(dss[2])


@pytest.mark.parametrize("move", [False, True])
def test_add_staged_files_by_path(tmp_path, move):
    staging = tmp_path / "staging"
    dss = _series(7, 3, "S7")
    staged = [write_dataset(ds, staging / f"{ds.SOPInstanceUID}.dcm") for ds in dss]
    with DicomdirLayout(tmp_path / "out") as layout:
        paths = [layout.add(p, move=move) for p in staged]
    assert all(p.is_file() for p in paths)
    assert [p.exists() for p in staged] == [not move] * 3
    (d,) = (tmp_path / "out").rglob("DICOMDIR")
    fs = FileSet(pydicom.dcmread(d))
    assert sorted(i.load().SOPInstanceUID for i in fs) == sorted(ds.SOPInstanceUID for ds in dss)
    assert paths[0].read_bytes() == write_dataset(dss[0], tmp_path / "again.dcm").read_bytes()
    with pytest.raises(DeidError):
        DicomdirLayout(tmp_path / "o2").add(tmp_path / "missing.dcm")


def test_duplicate_instance_rejected(tmp_path):
    layout = DicomdirLayout(tmp_path)
    ds = _deidentified(ct_slice_dataset(0, 1, seed=8))
    layout.add(ds)
    with pytest.raises(DeidError, match="duplicate"):
        layout.add(ds)


@pytest.mark.skipif(not dciodvfy.is_available(), reason="dciodvfy not installed")
def test_dicomdir_passes_dciodvfy(tmp_path):
    with DicomdirLayout(tmp_path) as layout:
        for ds in _series(6, 2, "S3"):
            layout.add(ds)
    (d,) = tmp_path.rglob("DICOMDIR")
    errors = [f.message for f in dciodvfy.run_dciodvfy(d) if f.severity == "Error"]
    assert errors == []


def _document(kind, src):
    """An SR or key object document (with a CT it references) written under ``src``."""
    import highdicom as hd
    import numpy as np
    from pydicom.sr.codedict import codes

    from pixeldeid._synth import make_ct_series

    cts = [pydicom.dcmread(p) for p in make_ct_series(src / "ct", 1, seed=11)]
    if kind in ("test-SR.dcm", "reportsi.dcm"):
        from tests.pixeldeid.conftest import corpus_file
        pydicom.dcmread(corpus_file(kind)).save_as(src / "doc.dcm")
        return
    common = dict(evidence=cts, series_instance_uid=hd.UID(), series_number=60,
                  sop_instance_uid=hd.UID(), instance_number=1, manufacturer="M")
    if kind == "kos":
        doc = hd.ko.KeyObjectSelectionDocument(
            content=hd.ko.KeyObjectSelection(document_title=codes.DCM.Manifest,
                                             referenced_objects=cts, description="key"),
            **common)
    else:  # a VERIFIED Comprehensive 3D SR, two verifications, the latest listed first
        sr = hd.sr
        observer = sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=sr.PersonObserverIdentifyingAttributes(
                name="Doe^John"))
        group = sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=sr.TrackingIdentifier(uid=hd.UID(), identifier="l1"),
            referenced_region=sr.ImageRegion(
                graphic_type=sr.GraphicTypeValues.POINT, graphic_data=np.array([[10.0, 10.0]]),
                source_image=sr.SourceImageForRegion.from_source_image(cts[0])),
            finding_type=codes.SCT.Lesion)
        report = sr.MeasurementReport(
            observation_context=sr.ObservationContext(observer_person_context=observer),
            procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=[group])
        doc = sr.Comprehensive3DSR(content=report, is_complete=True, is_verified=True,
                                   verifying_observer_name="Doe^Jane",
                                   verifying_organization="Org", **common)
        first = doc.VerifyingObserverSequence[0]
        first.VerificationDateTime = "20210305101010"
        earlier = copy.deepcopy(first)
        earlier.VerificationDateTime = "20200101120000"
        doc.VerifyingObserverSequence.append(earlier)
    doc.save_as(src / "doc.dcm")


@pytest.mark.parametrize("kind", ["test-SR.dcm", "reportsi.dcm", "verified", "kos"])
def test_dicomdir_document_records_pass_dciodvfy(tmp_path, run, kind):
    """pydicom's SR DOCUMENT / KEY OBJECT DOC record copied the whole content tree
    (CONTAINS, HAS OBS CONTEXT items; references with no evidence) and a VERIFIED report's
    record had no Verification DateTime: dciodvfy errors the inputs did not have. The
    record keeps only the root's HAS CONCEPT MOD items (PS3.3 F.5.26, F.5.27) and the
    latest Verification DateTime."""
    pytest.importorskip("highdicom")
    src = tmp_path / "in"
    _document(kind, src)
    status, out = run(src, "--layout", "dicomdir", "--pixels", "off")
    assert status == 0
    dirs = sorted(out.rglob("DICOMDIR"))
    assert dirs
    records = {}
    for d in dirs:
        for r in pydicom.dcmread(d).DirectoryRecordSequence:
            records.setdefault(r.DirectoryRecordType, []).append((d, r))
    assert "IMAGE" in records
    ((d, rec),) = records["KEY OBJECT DOC" if kind == "kos" else "SR DOCUMENT"]
    out_doc = pydicom.dcmread(d.parent.joinpath(*rec.ReferencedFileID))
    types = [i.RelationshipType for i in rec.get("ContentSequence", [])]
    assert set(types) <= {"HAS CONCEPT MOD"}
    root_mods = [i for i in out_doc.ContentSequence if i.RelationshipType == "HAS CONCEPT MOD"]
    assert len(types) == len(root_mods)
    if kind == "verified":
        assert types  # highdicom's language of content: kept
    if kind != "kos" and out_doc.VerificationFlag == "VERIFIED":
        # the latest of the (de-identified, date-shifted) verifications
        latest = out_doc.VerifyingObserverSequence[0].VerificationDateTime
        assert rec.VerificationDateTime == latest
        assert all(i.VerificationDateTime <= latest for i in out_doc.VerifyingObserverSequence)
    if kind in ("test-SR.dcm", "verified"):
        assert "VerificationDateTime" in rec
    for d in dirs:  # last: skips when dciodvfy is not installed
        assert dciodvfy_errors(d) == [], d


def test_latest_verification_datetime_compares_in_utc():
    from pixeldeid.layout import _latest_verification

    ds = pydicom.Dataset()
    ds.VerifyingObserverSequence = [pydicom.Dataset() for _ in range(4)]
    values = ["20210305101010+0100", "20210305093000-0200", "2021", ""]
    for item, value in zip(ds.VerifyingObserverSequence, values, strict=True):
        item.VerificationDateTime = value
    assert _latest_verification(ds) == "20210305093000-0200"  # 11:30 UTC
    assert _latest_verification(pydicom.Dataset()) is None


# -- batch layouts: one SOP Instance UID, one released instance ---------------------------
def _ct_variant(dest, sop, instance, pixel):
    """CT_small.dcm with another SOP Instance UID, Instance Number and first pixel byte."""
    from tests.pixeldeid.conftest import ct_small_variant

    return ct_small_variant(dest, sop, pixel=pixel, InstanceNumber=instance)


def _released_sops(out):
    from tests.pixeldeid.conftest import outputs

    return [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in outputs(out)
            if p.name != "DICOMDIR"]


@pytest.mark.parametrize("layout", ["flat", "hierarchy", "dicomdir"])
def test_one_sop_instance_uid_with_two_contents_is_released_once(tmp_path, run, capsys, layout):
    """hierarchy released both instances (names hold the Instance Number, so the name check
    saw two names): the second must be quarantined in every layout, with flat's reason."""
    src = tmp_path / "in"
    _ct_variant(src / "a.dcm", "1.2.3.4.7.1", 1, 0)
    second = _ct_variant(src / "b.dcm", "1.2.3.4.7.1", 2, 50)
    status, out = run(src, "--layout", layout)
    err = capsys.readouterr().err
    assert status == 1
    assert f"{second}: duplicate SOP Instance UID: another input already produced" in err
    assert len(_released_sops(out)) == 1
    capsys.readouterr()
    status, _ = run(src, "--layout", layout, out=out)  # a rerun says the same
    assert status == 1 and len(_released_sops(out)) == 1


def test_hierarchy_names_of_distinct_instances_do_not_collide(tmp_path, run, key_file, capsys):
    """Two instances of one series with Instance Number 1 whose new SOP UIDs share the 5
    hex digits of the old names: the second was quarantined as a duplicate SOP UID."""
    from pixeldeid.layout import uid_hash
    from pixeldeid.uids import UIDMapper

    mapper = UIDMapper(key_file.read_bytes().strip())
    seen: dict[str, str] = {}
    for i in range(100_000):  # birthday search: about 1500 tries for 20 bits
        old = f"1.2.826.0.1.3680043.9.9999.{i}"
        h = uid_hash(mapper(old), 5)
        if h in seen:
            pair = (seen[h], old)
            break
        seen[h] = old
    src = tmp_path / "in"
    for n, sop in enumerate(pair):
        _ct_variant(src / f"f{n}.dcm", sop, 1, n)
    status, out = run(src, "--layout", "hierarchy")
    assert status == 0, capsys.readouterr().err
    assert sorted(_released_sops(out)) == sorted(mapper(s) for s in pair)


def test_hierarchy_rerun_after_a_changed_instance_number(tmp_path, run, capsys):
    """An input corrected with another Instance Number (another name, same SOP Instance
    UID) is redone: its earlier output is withdrawn, its SOP claim goes to the new name."""
    src = tmp_path / "in"
    a = _ct_variant(src / "a.dcm", "1.2.3.4.7.2", 1, 0)
    status, out = run(src, "--layout", "hierarchy")
    assert status == 0
    _ct_variant(a, "1.2.3.4.7.2", 5, 0)
    status, _ = run(src, "--layout", "hierarchy", out=out)
    assert status == 0, capsys.readouterr().err
    from tests.pixeldeid.conftest import outputs

    (only,) = outputs(out)
    assert only.name.startswith("00005_")


def _dicomdir_release(out):
    """(instance files on disk, files the DICOMDIRs reference) of a DICOMDIR-layout OUT."""
    from tests.pixeldeid.conftest import outputs

    files = {p.resolve() for p in outputs(out) if p.name != "DICOMDIR"}
    indexed = set()
    for d in out.rglob("DICOMDIR"):
        indexed |= {out.joinpath(d.parent, *r.ReferencedFileID).resolve()
                    for r in pydicom.dcmread(d).DirectoryRecordSequence
                    if "ReferencedFileID" in r}
    return files, indexed


def test_dicomdir_rerun_leaves_no_file_of_a_withdrawn_input(tmp_path, run, capsys):
    """One of three instances of a study became unreadable: the rebuilt DICOMDIR listed
    two, but DICOM/IM_00003 stayed in the release (a second link to another instance)."""
    src = tmp_path / "in"
    for i in range(3):
        _ct_variant(src / f"f{i}.dcm", f"1.2.3.4.8.{i}", i + 1, i)
    status, out = run(src, "--layout", "dicomdir")
    assert status == 0
    (src / "f0.dcm").write_bytes(b"not DICOM any more")
    status, _ = run(src, "--layout", "dicomdir", out=out)
    assert status == 1
    files, indexed = _dicomdir_release(out)
    assert len(files) == 2 and files == indexed


def test_dicomdir_rerun_removes_the_study_an_input_left(tmp_path, run, capsys):
    """An input corrected into another study: the old study folder (its DICOMDIR and the
    withdrawn instance) stayed in the release, the instance twice under one SOP UID."""
    src = tmp_path / "in"
    _ct_variant(src / "a.dcm", "1.2.3.4.9.1", 1, 0)
    b = _ct_variant(src / "b.dcm", "1.2.3.4.9.2", 2, 1)
    ds = pydicom.dcmread(b)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4.9.200", "1.2.3.4.9.200.1"
    ds.save_as(b)
    status, out = run(src, "--layout", "dicomdir")
    assert status == 0 and len(list(out.rglob("DICOMDIR"))) == 2
    ds.StudyInstanceUID = pydicom.dcmread(src / "a.dcm").StudyInstanceUID
    ds.SeriesInstanceUID = pydicom.dcmread(src / "a.dcm").SeriesInstanceUID
    ds.save_as(b)
    st = b.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    status, _ = run(src, "--layout", "dicomdir", out=out)
    assert status == 0, capsys.readouterr().err
    files, indexed = _dicomdir_release(out)
    assert len(files) == 2 and files == indexed
    assert len(list(out.rglob("DICOMDIR"))) == 1
    assert sorted(_released_sops(out)) == sorted(set(_released_sops(out)))
