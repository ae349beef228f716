"""verify on pixels and slides: OCR of at-risk images, slide labels and macros."""

from __future__ import annotations

import shutil

import pytest

from pixeldeid.verify import IdentityValue, verify_output
from tests.pixeldeid.verify.conftest import copy_release, deidentified_slide, image_dataset, save


def test_ocr_reads_a_name_left_in_the_pixels(ct_release, tmp_path):
    ocr = pytest.importorskip("pixeldeid.burnedin.ocr")
    if "rapidocr" not in ocr.available_engines():
        pytest.skip("rapidocr not installed")
    out = copy_release(ct_release, tmp_path / "out")
    p = ct_release.patients[0]
    save(image_dataset("SUBJ_001", "SUBJ_001", rows=120, cols=360, font_size=24,
                       text=f"{p.family.upper()} {p.given.upper()}"), out / "sc_left.dcm")
    save(image_dataset("SUBJ_001", "SUBJ_001", modality="US", rows=120, cols=360, font_size=24,
                       text="LT KIDNEY"), out / "us_ok.dcm")
    r = verify_output(out, [ct_release.src], ocr="rapidocr", dciodvfy=False, progress=False)
    ocr_findings = [f for f in r.findings if f.check == "ocr"]
    assert ocr_findings and {f.file for f in ocr_findings} == {"sc_left.dcm"}
    assert {f.kind for f in ocr_findings} <= {"name"} and "frame 0" in ocr_findings[0].what
    assert sorted(r.ocr_verified) == ["sc_left.dcm", "us_ok.dcm"] and not r.not_ocr_verified
    assert {f.file for f in r.findings} == {"sc_left.dcm"}


def test_ocr_reads_text_only_a_second_window_shows(ct_release, tmp_path):
    """A 16-bit secondary capture with a name at -400 under a soft-tissue window (black)
    and a lung window (plain): verify read the first window only and passed it."""
    import numpy as np

    ocr = pytest.importorskip("pixeldeid.burnedin.ocr")
    if "rapidocr" not in ocr.available_engines():
        pytest.skip("rapidocr not installed")
    out = copy_release(ct_release, tmp_path / "out")
    p = ct_release.patients[0]
    ds = image_dataset("SUBJ_001", "SUBJ_001", rows=120, cols=360, font_size=24,
                       text=f"{p.family.upper()} {p.given.upper()}")
    ink = ds.pixel_array > 128
    a = np.random.default_rng(0).integers(-1000, -900, ink.shape).astype(np.int16)
    a[ink] = -400
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.WindowCenter, ds.WindowWidth = ["40", "-600"], ["400", "1500"]
    ds.PixelData = a.tobytes()
    save(ds, out / "sc_window.dcm")
    r = verify_output(out, [ct_release.src], ocr="rapidocr", dciodvfy=False, progress=False)
    hits = [f for f in r.findings if f.check == "ocr"]
    assert hits and {f.file for f in hits} == {"sc_window.dcm"}
    assert all("under window 2" in f.what for f in hits)


def test_slides_label_macro_and_metadata(tmp_path):
    synth, out, _ = deidentified_slide(tmp_path)
    from wsi.synth import ACCESSION, PATIENT

    values = [IdentityValue("name", PATIENT), IdentityValue("accession", ACCESSION)]
    r = verify_output(out, ocr=None, dciodvfy=False, progress=False, extra_values=values)
    assert r.clean and r.files == 1 and not r.not_ocr_verified
    shutil.copyfile(synth.path, out / "raw.svs")  # a slide that was never cleaned
    r = verify_output(out, ocr=None, dciodvfy=False, progress=False, extra_values=values)
    checks = {(f.check, f.kind) for f in r.findings if f.file == "raw.svs"}
    assert {("raw-bytes", "name"), ("raw-bytes", "accession"), ("tiff-tags", "name"),
            ("slide-properties", "accession"), ("slide-label", ""), ("slide-macro", "")} <= checks
    assert {f.file for f in r.findings} == {"raw.svs"}
    assert sorted(w.split(":")[0] for _, w in r.not_ocr_verified) == ["label image", "macro image"]


def test_against_reads_identity_from_source_slides(tmp_path):
    pytest.importorskip("openslide")
    from wsi.api import deidentify_slide
    from wsi.synth.aperio import make_aperio

    synth = make_aperio(tmp_path / "src" / "case.svs", width=720, height=480, levels=2)
    out = tmp_path / "out"
    assert deidentify_slide(synth.path, out, pseudonym="SUBJ_020").ok
    r = verify_output(out, [synth.path.parent], ocr=None, dciodvfy=False, progress=False)
    assert r.clean and r.values.get("other", 0) >= 4  # title, user, filename, barcode ...
    (out / "notes.txt").write_text("scanned by jsmith_operator")
    r = verify_output(out, [synth.path.parent], ocr=None, dciodvfy=False, progress=False)
    assert [(f.file, f.kind) for f in r.findings] == [("notes.txt", "other")]


def test_an_unusable_classifier_leaves_the_file_not_ocr_verified(ct_release, tmp_path,
                                                                  monkeypatch):
    """A wheel without its vocabulary: the classifier failed, every text read counted as
    no identity and a DOB and an MRN in the pixels were passed as clean."""
    ocr = pytest.importorskip("pixeldeid.burnedin.ocr")
    if "rapidocr" not in ocr.available_engines():
        pytest.skip("rapidocr not installed")
    from pixeldeid.burnedin import classify
    from pixeldeid.errors import ProfileError

    def missing(cls, modality=""):
        raise ProfileError("vocabulary folder not found")

    monkeypatch.setattr(classify.Vocabulary, "load", classmethod(missing))
    out = copy_release(ct_release, tmp_path / "out")
    save(image_dataset("SUBJ_001", "SUBJ_001", rows=120, cols=360, font_size=24,
                       text="DOB 03/14/1951"), out / "sc_dob.dcm")
    r = verify_output(out, [ct_release.src], ocr="rapidocr", dciodvfy=False, progress=False)
    assert "sc_dob.dcm" not in r.ocr_verified
    assert [w for f, w in r.not_ocr_verified if f == "sc_dob.dcm"] == [
        "burned-in text classifier unusable: vocabulary folder not found"]
    assert not r.clean
