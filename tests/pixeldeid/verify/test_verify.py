"""pixeldeid verify: planted residual identity is found wherever it hides; clean outputs pass."""

from __future__ import annotations

import gzip
import json
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from pixeldeid import dciodvfy
from pixeldeid.cli import main
from pixeldeid.errors import InputError, MissingDependencyError
from pixeldeid.textclean import full_width
from pixeldeid.verify import IdentityValue, verify_output
from pixeldeid.verify.identity import date_spellings, id_spellings, name_spellings
from tests.pixeldeid.verify.conftest import (
    copy_release,
    image_dataset,
    save,
    write_run_ledger,
)


def _outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.dcm"))


def _run(args: list[str], capsys) -> tuple[int, str]:
    rc = main(["verify", *args, "--no-progress"])
    return rc, capsys.readouterr().out


def _assert_no_values(text: str, rel) -> None:
    for p in rel.patients:
        for v in (p.family, p.given, p.patient_id, p.birth_date, p.accession):
            assert v.lower() not in text.lower()


def test_spellings_of_names_ids_and_dates():
    s = name_spellings("QUIXMORE^Zebulon^Ambrose")
    assert {"quixmore", "zebulon", "quixmore^zebulon", "zebulon quixmore", "quixmore, zebulon",
            "z quixmore", "z. quixmore", "zebulon ambrose quixmore"} <= s
    assert "0012345" in id_spellings("0012345") and "12345" in id_spellings("0012345")
    assert {"mrn12345", "12345"} <= id_spellings("MRN0012345")
    d = date_spellings("19510829")
    assert {"19510829", "1951-08-29", "08/29/1951", "29.08.1951", "29-aug-1951",
            "aug 29, 1951"} <= d


def test_clean_release_passes_with_dciodvfy(ct_release, capsys):
    if not dciodvfy.is_available():
        pytest.skip("dciodvfy not installed")
    rc, out = _run([str(ct_release.out), "--against", str(ct_release.src), "--no-ocr"], capsys)
    assert rc == 0, out
    assert out.strip().endswith("clean") and "2 file(s) checked" in out


def test_name_in_header_found_and_never_printed(ct_release, tmp_path, capsys):
    out = copy_release(ct_release, tmp_path / "out")
    target = _outputs(out)[0]
    ds = pydicom.dcmread(target)
    p = ct_release.patients[1]  # another patient's name in this patient's file
    ds.ImageComments = f"reviewed with {p.given} {p.family.title()}"
    ds.save_as(target)
    js = tmp_path / "f.json"
    rc, text = _run([str(out), "--against", str(ct_release.src), "--no-ocr", "--no-dciodvfy",
                     "--json", str(js)], capsys)
    assert rc == 1
    data = json.loads(js.read_text())
    hdr = [f for f in data["findings"] if f["check"] == "dicom-header"]
    assert hdr and all(f["file"] == target.name and f["kind"] == "name" for f in hdr)
    assert any("(0020,4000) ImageComments" in f["what"] for f in hdr)
    assert {f["length"] for f in hdr} <= {len(p.family), len(p.given), len(p.name)}
    _assert_no_values(text + js.read_text(), ct_release)


def test_id_in_private_tag_found_without_leading_zeros(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    target = _outputs(out)[1]
    ds = pydicom.dcmread(target)
    block = ds.private_block(0x0029, "ACME REVIEW 1.0", create=True)
    block.add_new(0x10, "LO", "case 4711983 ok")  # the record says 0004711983
    ds.save_as(target)
    extra = [IdentityValue("id", "0004711983")]
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    hdr = [f for f in r.findings if f.check == "dicom-header"]
    assert len(hdr) == 1 and hdr[0].kind == "id" and hdr[0].length == 10
    assert "(0029,1010)" in hdr[0].what and "private" in hdr[0].what
    assert any(f.check == "raw-bytes" and f.kind == "id" for f in r.findings)
    assert r.exit_status == 1


def test_name_in_preamble_found_by_raw_bytes_only(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    target = _outputs(out)[0]
    data = bytearray(target.read_bytes())
    fam = ct_release.patients[0].family.upper().encode()
    data[10:10 + len(fam)] = fam
    target.write_bytes(bytes(data))
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert [(f.check, f.kind) for f in r.findings] == [("raw-bytes", "name")]
    assert "at 10" in r.findings[0].what


def test_birth_date_in_sidecar_and_zip_member(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    bd = ct_release.patients[0].birth_date
    (out / "sub-01.json").write_text(json.dumps({"note": f"dob {bd[6:]}.{bd[4:6]}.{bd[:4]}"}))
    pkg = out / "packages"
    pkg.mkdir()
    with zipfile.ZipFile(pkg / "SUBJ_001.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("SUBJ_001/notes.txt", f"acc {ct_release.patients[1].accession}\n" * 50)
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    got = {(f.file, f.check, f.kind) for f in r.findings}
    assert got == {("sub-01.json", "raw-bytes", "birth_date"),
                   ("packages/SUBJ_001.zip", "zip", "accession")}


def test_nifti_descrip_extension_and_damage(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    img = nib.Nifti1Image(np.zeros((6, 6, 4), np.int16), np.eye(4))
    nib.save(img, out / "clean.nii.gz")
    assert verify_output(out, [ct_release.src], ocr=None, dciodvfy=False,
                         progress=False).clean
    img.header["descrip"] = f"T1 {ct_release.patients[0].family}".encode()
    nib.save(img, out / "sub-01_T1w.nii.gz")
    img2 = nib.Nifti1Image(np.zeros((6, 6, 4), np.int16), np.eye(4))
    img2.header.extensions.append(nib.nifti1.Nifti1Extension(
        6, f"PatientID={ct_release.patients[1].patient_id}".encode()))
    nib.save(img2, out / "sub-02_T1w.nii")
    raw = gzip.compress(b"\x5c\x01\x00\x00" + b"\0" * 100)  # a header cut short
    (out / "broken.nii.gz").write_bytes(raw)
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    got = {(f.file, f.check, f.kind) for f in r.findings}
    assert ("sub-01_T1w.nii.gz", "nifti-header", "name") in got
    assert ("sub-02_T1w.nii", "nifti-header", "id") in got
    assert any(f.file == "broken.nii.gz" and f.check == "nifti-open" for f in r.findings)
    assert not any(f.file == "clean.nii.gz" for f in r.findings)


def test_utf16_text_in_tiff_found(ct_release, tmp_path):
    tifffile = pytest.importorskip("tifffile")
    out = copy_release(ct_release, tmp_path / "out")
    given = ct_release.patients[0].given
    tifffile.imwrite(out / "scan.tif", np.zeros((16, 16), np.uint8),
                     extratags=[(65000, "B", 0, f"by {given}".encode("utf-16-le"), True)])
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert any(f.file == "scan.tif" and f.check == "raw-bytes" and "utf-16-le" in f.what
               and f.kind == "name" for f in r.findings)


def test_dciodvfy_reports_only_errors_the_sources_lack(ct_release, tmp_path):
    if not dciodvfy.is_available():
        pytest.skip("dciodvfy not installed")
    out = copy_release(ct_release, tmp_path / "out")
    target = _outputs(out)[0]
    ds = pydicom.dcmread(target)
    del ds.ImageOrientationPatient  # Type 1 of the Image Plane Module
    ds.save_as(target)
    r = verify_output(out, [ct_release.src], ocr=None, progress=False)
    assert r.findings and {f.file for f in r.findings} == {target.name}
    assert {f.check for f in r.findings} == {"dciodvfy"}


def test_ledger_identity_and_missing_output(ct_release, tmp_path, capsys):
    out = copy_release(ct_release, tmp_path / "out")
    p0 = ct_release.patients[0]
    outs = _outputs(out)
    write_run_ledger(out, items=[
        {"src": "/nonexistent/a.dcm", "patient": "SUBJ_001", "modality": "CT", "output": outs[0].name},
        {"src": "/nonexistent/b.dcm", "patient": "SUBJ_001", "modality": "CT", "output": "gone.dcm"},
    ], identity=[("SUBJ_001", "name", p0.name), ("SUBJ_001", "id", p0.patient_id),
                 ("SUBJ_001", "birth_date", p0.birth_date)])
    rc, text = _run([str(out), "--no-ocr", "--no-dciodvfy"], capsys)
    assert rc == 1 and "gone.dcm: [ledger] output recorded as done is missing" in text
    (out / "gone.dcm").write_bytes(outs[1].read_bytes())
    rc, text = _run([str(out), "--no-ocr", "--no-dciodvfy"], capsys)
    assert rc == 0, text
    ds = pydicom.dcmread(outs[1])
    ds.StudyDescription = f"{p0.given[0]}. {p0.family}"
    ds.save_as(outs[1])
    rc, text = _run([str(out), "--no-ocr", "--no-dciodvfy"], capsys)
    assert rc == 1 and f"{outs[1].name}: [dicom-header] name value" in text


def test_no_identity_values_is_a_usage_error(ct_release, capsys):
    rc, _ = _run([str(ct_release.out), "--no-ocr"], capsys)
    assert rc == 2
    with pytest.raises(InputError, match="--against"):
        verify_output(ct_release.out, ocr=None)
    missing = ct_release.out.parent / "no-such-source"
    rc = main(["verify", str(ct_release.out), "--no-ocr", "--against", str(missing)])
    assert rc == 2
    assert "no-such-source: --against source not found" in capsys.readouterr().err


def test_at_risk_pixels_are_never_passed_silently(ct_release, tmp_path, monkeypatch):
    out = copy_release(ct_release, tmp_path / "out")
    save(image_dataset("SUBJ_009", "SUBJ_009", modality="US"), out / "us.dcm")
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert r.clean and [f for f, _ in r.not_ocr_verified] == ["us.dcm"]

    def missing(name="auto"):
        raise MissingDependencyError("OCR verification", "ocr", "rapidocr_onnxruntime")

    monkeypatch.setattr("pixeldeid.verify.ocr.get_engine", missing)
    r = verify_output(out, [ct_release.src], ocr="auto", dciodvfy=False, progress=False)
    assert not r.clean and r.exit_status == 1 and not r.findings
    assert r.not_ocr_verified == [("us.dcm", r.not_ocr_verified[0][1])]
    assert "pixeldeid[ocr]" in r.not_ocr_verified[0][1]
    # CT outputs are not at risk: never OCRed, never listed
    assert all(f == "us.dcm" for f, _ in r.not_ocr_verified)


def test_report_folder_quarantine_and_state_are_not_scanned(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    fam = ct_release.patients[0].family
    (out / "report").mkdir()
    (out / "report" / ".pixeldeid-report").write_text("")
    (out / "report" / "index.html").write_text(f"<p>{fam}</p>")
    (out / ".pixeldeid" / "notes.txt").write_text(fam)
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert r.clean and r.files == 2
    # named as not for release (verify "clean" must not read as "publish OUT as it is")
    assert r.not_for_release == [".pixeldeid/", "quarantine/", "report/"]
    (out / "README.txt").write_text(f"collection of {fam}")
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert [(f.file, f.kind) for f in r.findings] == [("README.txt", "name")]


def test_summary_names_the_folders_that_are_not_for_release(ct_release, capsys):
    """verify skipped OUT/quarantine/ (the original inputs) and OUT/.pixeldeid/ (the key)
    in silence; `verify OUT && publish OUT` published them."""
    rc, text = _run([str(ct_release.out), "--against", str(ct_release.src), "--no-ocr",
                     "--no-dciodvfy"], capsys)
    assert rc == 0 and text.strip().endswith("clean")
    note = [ln for ln in text.splitlines() if ln.startswith("note: ")]
    assert len(note) == 1 and ".pixeldeid/, quarantine/ not checked" in note[0]
    assert "never publish" in note[0]


def test_symbolic_links_are_findings_not_followed(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    secret = tmp_path / "secret.txt"
    secret.write_text(ct_release.patients[0].family)
    (out / "notes.txt").symlink_to(secret)
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert [(f.file, f.check) for f in r.findings] == [("notes.txt", "file-type")]


def test_unknown_ocr_engine_is_a_usage_error(ct_release, capsys):
    pytest.importorskip("pixeldeid.burnedin.ocr")
    rc = main(["verify", str(ct_release.out), "--against", str(ct_release.src), "--ocr",
               "rapidocer", "--no-progress"])
    assert rc == 2 and "did you mean 'rapidocr'" in capsys.readouterr().err


def test_short_words_in_pixel_data_are_chance_long_ones_are_not(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    p = ct_release.patients[0]
    ds = image_dataset("SUBJ_001", "SUBJ_001", modality="CT", seed=9)
    px = bytearray(ds.PixelData)
    part = p.given.lower()[:4].encode()  # 4 noise-like pixel values that spell a name part
    px[100:100 + len(part)] = part
    ds.PixelData = bytes(px)
    save(ds, out / "px.dcm")
    extra = [IdentityValue("name", p.given.lower()[:4])]
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    assert r.clean, [f.line() for f in r.findings]
    full = p.name.encode()  # the whole name in the pixel bytes is no accident
    px[2000:2000 + len(full)] = full
    ds.PixelData = bytes(px)
    save(ds, out / "px.dcm")
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    assert {(f.file, f.check, f.kind) for f in r.findings} == {("px.dcm", "raw-bytes", "name")}


def test_retained_institution_identity_is_not_a_finding(ct_release, tmp_path):
    from pixeldeid.api import Deidentifier

    out = copy_release(ct_release, tmp_path / "out")
    a, b = _outputs(out)
    for target in (a, b):
        ds = pydicom.dcmread(target)
        ds.InstitutionName = ct_release.patients[0].institution
        if target == a:  # kept on purpose, and the file says so
            Deidentifier.add_method_code(ds, "retain-institution-identity")
        ds.save_as(target)
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert {f.file for f in r.findings} == {b.name}
    assert {f.kind for f in r.findings} == {"institution"}
    assert r.retained_kinds == {a.name: ["institution"]}


def test_a_file_that_skipped_deidentification_is_a_finding(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    ds = image_dataset("SUBJ_001", "SUBJ_001")
    del ds.PatientIdentityRemoved
    save(ds, out / "raw_copy.dcm")
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert [(f.file, f.check) for f in r.findings] == [("raw_copy.dcm", "dicom-marking")]


def test_short_numeric_id_only_where_ids_live(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    target = _outputs(out)[0]
    ds = pydicom.dcmread(target)
    ds.InstanceNumber = 512  # Rows and Columns are 512 too (binary)
    ds.save_as(target)
    (out / "sub-01_bold.json").write_text(json.dumps({"RepetitionTime": 512}))
    extra = [IdentityValue("id", "0000512")]
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    assert r.clean, [f.line() for f in r.findings]
    ds.OtherPatientIDs = "512"
    ds.save_as(target)
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    assert [(f.check, f.kind) for f in r.findings] == [("dicom-header", "id")]
    assert "(0010,1000) OtherPatientIDs" in r.findings[0].what


def test_truncated_output_is_a_finding_without_dciodvfy(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    target = _outputs(out)[0]
    target.write_bytes(target.read_bytes()[:4000])
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert [(f.file, f.check) for f in r.findings] == [(target.name, "dicom-open")]
    assert "truncated" in r.findings[0].what


def test_against_reads_json_sidecars_of_nifti_sources(tmp_path):
    src, out = tmp_path / "bids", tmp_path / "out"
    (src / "sub-01" / "anat").mkdir(parents=True)
    (src / "sub-01" / "anat" / "sub-01_T1w.json").write_text(json.dumps(
        {"PatientName": "Featherstone^Clementine", "PatientID": "MRN0082211",
         "RepetitionTime": 2.3}))
    (out / "sub-01" / "anat").mkdir(parents=True)
    (out / "sub-01" / "anat" / "sub-01_T1w.json").write_text(json.dumps({"RepetitionTime": 2.3}))
    assert verify_output(out, [src], ocr=None, progress=False).clean
    (out / "sub-01" / "anat" / "sub-01_T1w.json").write_text(json.dumps(
        {"RepetitionTime": 2.3, "ProcedureStepDescription": "clementine featherstone"}))
    r = verify_output(out, [src], ocr=None, progress=False)
    assert {(f.file, f.kind) for f in r.findings} == {("sub-01/anat/sub-01_T1w.json", "name")}


def test_two_workers_find_what_one_finds(ct_release, tmp_path):
    out = copy_release(ct_release, tmp_path / "out")
    a, b = _outputs(out)
    ds = pydicom.dcmread(a)
    ds.ImageComments = ct_release.patients[0].family
    del ds.ImageOrientationPatient
    ds.save_as(a)
    (out / "notes.txt").write_text(ct_release.patients[1].accession)
    save(image_dataset("SUBJ_001", "SUBJ_001", modality="US"), out / "us.dcm")
    run = [verify_output(out, [ct_release.src], ocr=None, progress=False, jobs=j).to_json()
           for j in (1, 2)]
    assert run[0]["findings"] and run[0] == run[1]
    assert {f["check"] for f in run[0]["findings"]} >= {"dicom-header", "raw-bytes", "dciodvfy"}


def test_pixels_changed_outside_recorded_boxes_are_damage(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    ds = image_dataset("MRN0011223", "LOCKHART^Rosalind", rows=64, cols=96, text="LOCKHART")
    save(ds, src / "a.dcm")
    arr = np.frombuffer(ds.PixelData, np.uint8).reshape(64, 96).copy()
    arr[2:14, 2:50] = 0  # the recorded box, blacked out
    ds.PixelData = arr.tobytes()
    ds.PatientName = ds.PatientID = "SUBJ_001"
    save(ds, out / "a.dcm")
    box = {"frame": 0, "x0": 4, "y0": 4, "x1": 48, "y1": 12, "label": "identity"}
    write_run_ledger(out, items=[{"src": src / "a.dcm", "patient": "SUBJ_001", "modality": "SC",
                                  "stages": ["pixels", "header"], "output": "a.dcm",
                                  "details": {"pixels": {"boxes": [box]}}}],
                     identity=[("SUBJ_001", "name", "LOCKHART^Rosalind")])
    r = verify_output(out, ocr=None, dciodvfy=False, progress=False)
    assert r.clean, [f.line() for f in r.findings]
    arr[60, 90] ^= 0xFF  # one pixel far from any box
    ds.PixelData = arr.tobytes()
    save(ds, out / "a.dcm")
    r = verify_output(out, ocr=None, dciodvfy=False, progress=False)
    assert [(f.check, f.what) for f in r.findings] == [
        ("pixels", "1 pixel value(s) differ from the source outside the recorded redaction "
                   "boxes")]


def test_institution_word_counts_only_in_its_own_patients_files(ct_release, tmp_path, capsys):
    # "St Quixmore Infirmary" is SUBJ_001's institution; a "Quixmore syndrome" eponym in
    # SUBJ_002's file is no finding, in SUBJ_001's own file it is, and the full institution
    # name is a finding in anybody's file.
    out = copy_release(ct_release, tmp_path / "out")
    outs = _outputs(out)
    write_run_ledger(out, items=[
        {"src": "/nonexistent/a.dcm", "patient": "SUBJ_001", "modality": "CT", "output": outs[0].name},
        {"src": "/nonexistent/b.dcm", "patient": "SUBJ_002", "modality": "CT", "output": outs[1].name},
    ], identity=[("SUBJ_001", "institution", "St Quixmore Infirmary"),
                 ("SUBJ_001", "name", "Pettigrew^Ann")])
    args = [str(out), "--no-ocr", "--no-dciodvfy"]
    ds = pydicom.dcmread(outs[1])
    ds.AdmittingDiagnosesDescription = "Quixmore syndrome"
    ds.save_as(outs[1])
    rc, text = _run(args, capsys)
    assert rc == 0, text
    ds.AdmittingDiagnosesDescription = "seen at St Quixmore Infirmary"
    ds.save_as(outs[1])
    rc, text = _run(args, capsys)
    assert rc == 1 and f"{outs[1].name}: [dicom-header] institution value" in text
    ds0 = pydicom.dcmread(outs[0])
    ds0.AdmittingDiagnosesDescription = "Quixmore syndrome"
    ds0.save_as(outs[0])
    rc, text = _run(args, capsys)
    assert rc == 1 and f"{outs[0].name}: [dicom-header] institution value" in text


def test_non_ascii_names_found_in_any_case_and_cjk_names_unseparated(ct_release, tmp_path):
    """MÜLLER is found for Müller (bytes fold ASCII letters only), 王小明 and 小明 for
    王^小明, next to ASCII letters too (CT王小明)."""
    out = copy_release(ct_release, tmp_path / "out")
    a, b = _outputs(out)
    for target, text in ((a, "reviewed by MÜLLER"), (b, "CT王小明 follow-up")):
        ds = pydicom.dcmread(target)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageComments = text
        ds.save_as(target)
    extra = [IdentityValue("name", "Müller^Jürgen"), IdentityValue("name", "王^小明")]
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    found = {(f.file, f.check, f.length) for f in r.findings if f.kind == "name"}
    assert (a.name, "dicom-header", len("Müller^Jürgen")) in found, r.findings
    assert (a.name, "raw-bytes", len("Müller^Jürgen")) in found, r.findings
    assert (b.name, "dicom-header", len("王^小明")) in found, r.findings
    assert (b.name, "raw-bytes", len("王^小明")) in found, r.findings
    assert {"王小明", "小明"} <= name_spellings("王^小明")


def test_pseudonyms_of_a_dicom_run_are_not_identity(ct_release, tmp_path):
    """A source ID spelled like a pseudonym (SUBJ_001), or whose spelling is inside one,
    is no finding in the Patient ID that pixeldeid dicom wrote (the subject map of the
    output folder gives the pseudonyms); IDs keep their leading zeros unless a non-zero
    digit follows them (id00001 is not searched as 001)."""
    out = copy_release(ct_release, tmp_path / "out")
    assert (out / ".pixeldeid" / "subjects.sqlite").is_file()
    extra = [IdentityValue("id", "SUBJ_001"), IdentityValue("id", "id00001")]
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    assert not [f for f in r.findings if f.kind == "id"], r.findings
    assert id_spellings("id00001") == {"id00001"}
    assert id_spellings("MRN0012345") == {"mrn0012345", "mrn12345", "12345"}


def test_damaged_or_truncated_sources_are_named_not_mined(ct_release, tmp_path, capsys):
    """`verify --against` read sources with force=True: a damaged Patient Name length made
    "names" of the elements it swallowed (findings in clean outputs, exit 1), and a source
    cut inside a sequence ended the whole verification ("No tag to read", exit 2). Both
    are now named, their values left out, and the clean release verifies clean."""
    import io
    import struct

    from pydicom import examples

    from pixeldeid.cli import main

    bad = tmp_path / "bad"
    bad.mkdir()
    ds = examples.ct
    ds.PatientName = "AAAA^BBBB"
    buf = io.BytesIO()
    ds.save_as(buf)
    data = bytearray(buf.getvalue())
    i = data.find(b"AAAA^BBBB")
    struct.pack_into("<H", data, i - 2, 0xFFF0)  # the length runs over the next elements
    (bad / "pn_length.dcm").write_bytes(bytes(data))
    (bad / "cut.dcm").write_bytes(examples.get_path("ct").read_bytes()[:1000])
    r = verify_output(ct_release.out, [ct_release.src, bad], ocr=None, dciodvfy=False,
                      progress=False)
    assert not r.findings, [f.line() for f in r.findings]  # no "names" made of other bytes
    assert sorted(Path(p).name for p, _ in r.unreadable_sources) == ["cut.dcm", "pn_length.dcm"]
    # their patients' values were not searched for: the release is not verified clean
    assert not r.clean and r.exit_status == 1
    status = main(["verify", str(ct_release.out), "--against", str(ct_release.src), str(bad),
                   "--no-ocr", "--no-dciodvfy", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 1 and "pn_length.dcm: [source]" in out and "cut.dcm: [source]" in out
    summary = out.strip().splitlines()[-1]
    assert "clean" not in summary and "2 source(s) not read" in summary


def test_over_long_source_value_keeps_the_sources_identity(ct_release, tmp_path, capsys):
    """A plain-text value longer than its VR allows (a 66-character address, common in real
    exports) dropped every identity value of its source, and verify still said clean while
    that patient's name and ID were in an output."""
    src = tmp_path / "src"
    shutil.copytree(ct_release.src, src)
    first = sorted((src / "p0").glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.PatientAddress = "Flat 12, The Old Rectory, 221 Long Meadow Lane, Little Whinging XX"
    assert len(ds.PatientAddress) > 64
    ds.save_as(first)
    out = copy_release(ct_release, tmp_path / "out")
    p = ct_release.patients[0]
    for target in _outputs(out):
        d = pydicom.dcmread(target)
        d.ImageComments = f"{p.name} {p.patient_id}"
        d.save_as(target)
    r = verify_output(out, [src], ocr=None, dciodvfy=False, progress=False)
    assert not r.unreadable_sources
    kinds = {f.kind for f in r.findings if f.check == "dicom-header"}
    assert {"name", "id"} <= kinds and r.exit_status == 1
    rc, text = _run([str(out), "--against", str(src), "--no-ocr", "--no-dciodvfy"], capsys)
    assert rc == 1 and not text.strip().endswith("clean")
    _assert_no_values(text, ct_release)


def test_other_peoples_names_in_the_sources_are_searched(ct_release, tmp_path, capsys):
    """--against took the patient's names only: the original referring physician's and
    operator's names, and a person name deep in a sequence, put back verified clean."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    src = tmp_path / "src"
    shutil.copytree(ct_release.src, src)
    first = sorted((src / "p1").glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    reviewer = Dataset()
    reviewer.PersonName = "Quenby^Ottoline"
    ds.ContentSequence = Sequence([reviewer])
    ds.save_as(first)
    p = ct_release.patients[0]
    r = verify_output(ct_release.out, [src], ocr=None, dciodvfy=False, progress=False)
    assert r.clean, [f.line() for f in r.findings]  # the core removed them all
    out = copy_release(ct_release, tmp_path / "out")
    targets = _outputs(out)
    for target, text in zip(targets, (f"read by {p.referring.split('^')[0]}, "
                                      f"scanned by {p.operator.replace('^', ' ')}",
                                      "second read Dr Ottoline Quenby"), strict=True):
        d = pydicom.dcmread(target)
        d.ImageComments = text
        d.save_as(target)
    rc, text = _run([str(out), "--against", str(src), "--no-ocr", "--no-dciodvfy"], capsys)
    assert rc == 1
    for target in targets:
        assert f"{target.name}: [dicom-header] name value" in text
    for v in (p.referring.split("^")[0], p.operator.split("^")[0], "Quenby", "Ottoline"):
        assert v.lower() not in text.lower()


def test_identity_in_file_and_folder_names_is_found(ct_release, tmp_path, capsys):
    """Only file contents were searched: outputs renamed after the patient
    (``Smith_John_4711235.dcm``, a folder ``Smith John 4711235/``) verified clean."""
    out = copy_release(ct_release, tmp_path / "out")
    p = ct_release.patients[0]
    a, b = _outputs(out)
    a.rename(out / f"{p.family}_{p.given}_{p.patient_id}.dcm")
    folder = out / f"{p.family.title()} {p.given} {p.patient_id}"
    folder.mkdir()
    b.rename(folder / "IM0001.dcm")
    (out / "empty" / f"acc-{p.accession}").mkdir(parents=True)
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    names = {(f.file.split("/")[-1] == f.file, f.kind) for f in r.findings
             if f.check == "file-name"}
    assert names == {(True, "name"), (True, "id"), (False, "accession")}
    assert {f.what.split(" in the ")[1].split()[0] for f in r.findings
            if f.check == "file-name"} == {"file", "folder"}
    assert not [f for f in r.findings if f.check != "file-name"]
    rc, text = _run([str(out), "--against", str(ct_release.src), "--no-ocr", "--no-dciodvfy"],
                    capsys)
    assert rc == 1 and "[file-name] name value" in text


def _put_back_uids_and_dates(out: Path, src: Path) -> None:
    """Each output gets its source's Study/Series UIDs, a reference to its source SOP
    Instance UID and its unshifted service dates (outputs paired with sources by pixels)."""
    from pydicom.dataset import Dataset

    by_pixels = {}
    for s in src.rglob("*.dcm"):
        try:
            d = pydicom.dcmread(s)
            by_pixels[d.PixelData] = d
        except Exception:  # noqa: BLE001 - the broken source
            continue
    for target in _outputs(out):
        ds = pydicom.dcmread(target)
        s = by_pixels[ds.PixelData]
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "StudyDate", "SeriesDate",
                   "AcquisitionDate", "ContentDate"):
            if kw in s:
                setattr(ds, kw, s.data_element(kw).value)
        ref = Dataset()
        ref.ReferencedSOPClassUID = s.SOPClassUID
        ref.ReferencedSOPInstanceUID = s.SOPInstanceUID
        ds.ReferencedImageSequence = [ref]
        ds.save_as(target)


def test_original_uids_and_unshifted_dates_are_found(ct_release, tmp_path, capsys):
    """--against compared no UIDs or dates with the sources: original instance UIDs (own
    and referenced) and unshifted service dates put back verified clean."""
    out = copy_release(ct_release, tmp_path / "out")
    _put_back_uids_and_dates(out, ct_release.src)
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    for target in _outputs(out):
        mine = [f for f in r.findings if f.file == target.name]
        where = " ".join(f.what for f in mine if f.check == "dicom-header" and f.kind == "uid")
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "ReferencedSOPInstanceUID"):
            assert kw in where
        assert [f.check for f in mine].count("dates") == 1
    rc, text = _run([str(out), "--against", str(ct_release.src), "--no-ocr", "--no-dciodvfy"],
                    capsys)
    assert rc == 1 and "[dates] 4 service date(s)" in text
    for s in ct_release.src.rglob("*.dcm"):
        if s.name != "broken.dcm":
            d = pydicom.dcmread(s)
            assert d.StudyInstanceUID not in text and d.StudyDate not in text


def test_kept_uids_and_full_dates_of_the_retain_options_are_no_findings(ct_release, tmp_path):
    """A release made with the Retain UIDs and Retain Longitudinal Full Dates Options keeps
    the source's UIDs and dates on purpose: no finding."""
    from pixeldeid.api import DeidConfig
    from pixeldeid.batch import run_batch
    from tests.pixeldeid.verify.conftest import KEY

    out = tmp_path / "out"
    run_batch([ct_release.src], out, DeidConfig(key=KEY, options=(
        "retain-uids", "retain-longitudinal-full-dates")), progress=False)
    _put_back_uids_and_dates(out, ct_release.src)  # what they already hold
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert r.clean, [f.line() for f in r.findings]
    assert all("uid" in kinds for kinds in r.retained_kinds.values())


def _zip_bytes(text: str, *, flag: int = 0, method: int | None = None) -> bytes:
    """A one-member zip, its header patched as encrypted (``flag``) or to another
    compression ``method`` (9: Deflate64, which zipfile cannot read)."""
    import io
    import struct

    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("n.txt", text)
    d = bytearray(b.getvalue())
    c = d.find(b"PK\x01\x02")
    for off in (6, c + 8):
        struct.pack_into("<H", d, off, struct.unpack_from("<H", d, off)[0] | flag)
    if method is not None:
        for off in (8, c + 10):
            struct.pack_into("<H", d, off, method)
    return bytes(d)


def test_unreadable_zip_members_are_one_line_findings(ct_release, tmp_path, capsys):
    """An encrypted or Deflate64 member ended verify with a traceback."""
    out = copy_release(ct_release, tmp_path / "out")
    p = ct_release.patients[0]
    text = f"{p.given} {p.family} {p.patient_id} " * 20
    (out / "enc.zip").write_bytes(_zip_bytes(text, flag=1))
    (out / "d64.zip").write_bytes(_zip_bytes(text, method=9))
    rc, text = _run([str(out), "--against", str(ct_release.src), "--no-ocr", "--no-dciodvfy"],
                    capsys)
    assert rc == 1
    assert "enc.zip: [zip] member 1 of 1 cannot be read (encrypted): not checked" in text
    assert "d64.zip: [zip] member 1 of 1 cannot be read (NotImplementedError)" in text
    _assert_no_values(text, ct_release)


def test_text_files_in_utf16_latin1_and_cjk_encodings_are_searched(ct_release, tmp_path):
    """Text files were searched as UTF-8 only: Windows "Unicode" (UTF-16 with BOM) notes, a
    Latin-1 CSV and a Shift-JIS note verified clean."""
    out = copy_release(ct_release, tmp_path / "out")
    p = ct_release.patients[0]
    (out / "notes.txt").write_bytes(f"{p.given} {p.family}, MRN {p.patient_id}\r\n"
                                    .encode("utf-16"))
    (out / "subjects.csv").write_bytes("id,name\n1,Jürgen Müller\n".encode("latin-1"))
    (out / "memo.dat").write_bytes(b"\x00" * 5000 + "患者 山田太郎".encode("shift_jis"))
    extra = [IdentityValue("name", "Müller^Jürgen"), IdentityValue("name", "山田^太郎")]
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    got = {(f.file, f.kind, f.what.split(" (")[2].rstrip(")")) for f in r.findings}
    assert {("notes.txt", "name", "utf-16-le"), ("notes.txt", "id", "utf-16-le"),
            ("subjects.csv", "name", "cp1252"), ("memo.dat", "name", "shift_jis")} <= got
    assert not [f for f in r.findings if "utf-16-be" in f.what]  # one hit, not two
    assert {f.file for f in r.findings} == {"notes.txt", "subjects.csv", "memo.dat"}


def test_private_un_value_is_searched_in_the_datasets_character_set(ct_release, tmp_path):
    """A private element of unknown creator (UN) was searched as UTF-8 bytes only: the
    patient's name in the data set's own character set (ISO_IR 100, ISO 2022 IR 87)
    verified clean."""
    out = copy_release(ct_release, tmp_path / "out")
    a, b = _outputs(out)
    for target, charset, value in ((a, "ISO_IR 100", "MÜLLER^JÜRGEN".encode("latin-1")),
                                   (b, ["", "ISO 2022 IR 87"],
                                    "山田^太郎".encode("iso2022_jp"))):
        ds = pydicom.dcmread(target)
        ds.SpecificCharacterSet = charset
        ds.add_new(0x00990010, "LO", "UNKNOWN CREATOR")
        ds.add_new(0x00991001, "UN", value)
        ds.save_as(target)
    extra = [IdentityValue("name", "Müller^Jürgen"), IdentityValue("name", "山田^太郎")]
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    hdr = {f.file for f in r.findings if f.check == "dicom-header" and f.kind == "name"
           and "(0099,1001)" in f.what}
    assert hdr == {a.name, b.name}


def _to_jpeg(path: Path, com: bytes = b"", trailer: bytes = b"") -> None:
    """Rewrite an output as baseline JPEG in encapsulated Pixel Data, with a COM segment
    and bytes after the Sequence Delimitation Item when given."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(path)
    a = ds.pixel_array.astype(float)
    a = ((a - a.min()) / (np.ptp(a) or 1) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    j = buf.getvalue()
    if com:
        j = j[:2] + b"\xff\xfe" + (len(com) + 2).to_bytes(2, "big") + com + j[2:]
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for k in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if k in ds:
            del ds[k]
    ds.PixelData = encapsulate([j])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01"
    ds.save_as(path)
    if trailer:
        path.write_bytes(path.read_bytes() + trailer)


def test_jpeg_text_segments_and_bytes_after_pixel_data_are_text(ct_release, tmp_path):
    """Encapsulated Pixel Data counted as bulk to the end of the file, COM segments
    included: a surname and a 7-character ID there (shorter than 8 bytes) passed."""
    out = copy_release(ct_release, tmp_path / "out")
    extra = [IdentityValue("name", "Smith^John"), IdentityValue("id", "4711235")]
    a, b = _outputs(out)
    _to_jpeg(a, com=b"Pt Smith ID 4711235")
    _to_jpeg(b, trailer=b"4711235")
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    got = {(f.file, f.check, f.kind) for f in r.findings}
    assert {(a.name, "raw-bytes", "name"), (a.name, "raw-bytes", "id"),
            (b.name, "raw-bytes", "id")} <= got
    clean = copy_release(ct_release, tmp_path / "clean")
    for t in _outputs(clean):
        _to_jpeg(t)
    r = verify_output(clean, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=extra)
    assert not [f for f in r.findings if f.check == "raw-bytes"]


def test_bz2_xz_nested_zip_and_pdf_are_opened_or_findings(ct_release, tmp_path):
    """Only gzip was decompressed: a .bz2 note, a zip inside a zip and a PDF (Flate
    content stream) with the patient's name verified clean."""
    import bz2
    import gzip
    import io
    import lzma

    out = copy_release(ct_release, tmp_path / "out")
    p = ct_release.patients[0]
    note = f"{p.given} {p.family} MRN {p.patient_id}\n".encode() * 30
    (out / "notes.txt.bz2").write_bytes(bz2.compress(note))
    (out / "sidecar.json.xz").write_bytes(lzma.compress(note))
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("n.txt", note)
    with zipfile.ZipFile(out / "bundle.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("inner.zip", inner.getvalue())
    # a compressed member (a package's .nii.gz) is decompressed and searched
    with zipfile.ZipFile(out / "package.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.nii.gz", gzip.compress(note))
        z.writestr("b.json.bz2", bz2.compress(note))
    import zlib

    stream = zlib.compress(b"BT (" + note[:40] + b") Tj ET")
    (out / "report.pdf").write_bytes(b"%PDF-1.4\n1 0 obj <</Filter /FlateDecode /Length "
                                     + str(len(stream)).encode() + b">> stream\n" + stream
                                     + b"\nendstream endobj\n%%EOF\n")
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    got = {(f.file, f.check, f.kind) for f in r.findings}
    assert {("notes.txt.bz2", "raw-bytes", "name"), ("notes.txt.bz2", "raw-bytes", "id"),
            ("sidecar.json.xz", "raw-bytes", "name"), ("package.zip", "zip", "name")} <= got
    assert not [f for f in r.findings if f.file == "package.zip" and "not checked" in f.line()]
    lines = [f.line() for f in r.findings]
    assert "bundle.zip: [zip] member 1 of 1 cannot be read (a nested archive or document): " \
           "not checked" in lines
    assert "report.pdf: [file-type] a PDF document whose content cannot be searched: " \
           "not checked" in lines
    assert not r.clean


@pytest.mark.parametrize("how", ["full-width", "utf-16 in OB"])
def test_other_spellings_and_undeclared_utf16_are_found(ct_release, tmp_path, how):
    """The patient's name in full-width letters (a UTF-8 data set), or in UTF-16 inside a
    private OB value (no character set says so), passed verify as clean."""
    out = copy_release(ct_release, tmp_path / "out")
    target = _outputs(out)[0]
    ds = pydicom.dcmread(target)
    p = ct_release.patients[0]
    if how == "full-width":
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageComments = f"seen {full_width(p.family.upper())}"
    else:
        block = ds.private_block(0x0029, "ACME NOTES 1.0", create=True)
        block.add_new(0x10, "OB", f"note {p.family}".encode("utf-16-le"))
    ds.save_as(target)
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert r.exit_status == 1
    assert any(f.kind == "name" for f in r.findings)


def test_findings_mask_the_value_in_file_and_member_names(ct_release, tmp_path, capsys):
    """A finding names the file; where the name itself holds the value, the value is
    written as stars (it was printed, and kept in verify.json)."""
    out = copy_release(ct_release, tmp_path / "out")
    p = ct_release.patients[0]
    a, _b = _outputs(out)
    a.rename(out / f"{p.family}_{p.given}.dcm")
    with zipfile.ZipFile(out / "bundle.zip", "w") as zf:
        zf.writestr(f"{p.family}_notes.txt", f"id {p.patient_id}")
    js = tmp_path / "f.json"
    rc, text = _run([str(out), "--against", str(ct_release.src), "--no-ocr", "--no-dciodvfy",
                     "--json", str(js)], capsys)
    assert rc == 1 and "*" * len(p.family) in text
    _assert_no_values(text + js.read_text(), ct_release)


def test_a_vendor_sites_name_in_its_own_manufacturer_is_no_finding(tmp_path, key_file):
    """pydicom's MR_small: Institution Name TOSHIBA, Manufacturer TOSHIBA_MEC (kept by the
    profile). verify --against flagged the clean output (exit 1). (A word the site shares
    with its vendor cannot be told from the vendor's name: it is not searched for.)"""
    from pydicom.data import get_testdata_file

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "mr.dcm")
    out = tmp_path / "out"
    assert main(["-q", "dicom", str(src), "-o", str(out), "--key-file", str(key_file),
                 "--pixels", "off", "--no-progress"]) == 0
    r = verify_output(out, [src], ocr=None, dciodvfy=False, progress=False)
    assert r.exit_status == 0, r.findings
