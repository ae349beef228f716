"""verify's safety net after audit s14: every cine frame counted, DICOM without preamble,
compressed data inside elements, address/phone/2-digit-year spellings, short ID numbers."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw

from pixeldeid.verify import verify_output
from pixeldeid.verify.identity import (
    IdentityValue,
    address_spellings,
    date_spellings,
    id_spellings,
    phone_spellings,
    spellings,
    terms_for,
)
from pixeldeid.verify.ocr import OCR_ALL_FRAMES, frames_to_read
from pixeldeid.verify.scan import Matcher
from tests.pixeldeid.verify.conftest import copy_release, image_dataset, save


@dataclass
class _Box:
    text: str


class _InkReader:
    """An OCR engine that reads ``text`` wherever the top-left corner holds white ink
    (the frames a name was drawn into), nothing elsewhere; records how many images it read."""

    def __init__(self, text: str) -> None:
        self.text, self.read = text, 0

    def read_batch(self, images):
        self.read += len(images)
        return [[_Box(self.text)] if (np.asarray(img)[2:20, 2:90] > 200).sum() > 20 else []
                for img in images]


def _cine(frames: int, name_on: int, text: str):
    """A US cine (speckle, no overlay) with ``text`` drawn on frame ``name_on`` only."""
    ds = image_dataset("SUBJ_001", "SUBJ_001", modality="US", frames=frames, rows=64, cols=128)
    rng = np.random.default_rng(1)
    arr = (40 + 20 * rng.random((frames, 64, 128))).astype(np.uint8)
    img = Image.fromarray(arr[name_on])
    ImageDraw.Draw(img).text((4, 4), text, fill=255)
    arr[name_on] = np.asarray(img)
    ds.PixelData = arr.tobytes()
    return ds


def _engine(monkeypatch, text: str) -> _InkReader:
    reader = _InkReader(text)
    monkeypatch.setattr("pixeldeid.verify.ocr.get_engine", lambda name="auto": reader)
    return reader


def test_cine_name_on_a_frame_other_than_first_middle_last_is_read(ct_release, tmp_path,
                                                                   monkeypatch):
    """9 frames, the name on frame 2: only frames 0, 4 and 8 were read and the file was
    listed as OCR-verified."""
    p = ct_release.patients[0]
    out = copy_release(ct_release, tmp_path / "out")
    save(_cine(9, 2, f"{p.family} {p.given}"), out / "cine.dcm")
    reader = _engine(monkeypatch, f"{p.family.upper()} {p.given.upper()}")
    r = verify_output(out, [ct_release.src], ocr="auto", dciodvfy=False, progress=False)
    hits = [f for f in r.findings if f.check == "ocr"]
    assert hits and all("frame 2" in f.what for f in hits) and hits[0].kind == "name"
    assert r.ocr_verified == ["cine.dcm"] and not r.ocr_partial and reader.read >= 9


def test_long_cine_says_how_many_frames_were_read(ct_release, tmp_path, monkeypatch):
    """60 frames: a sample and the frames where text appears (cine analysis of every frame)
    are read; the file is never listed as OCR-verified, and says k of n frames."""
    p = ct_release.patients[0]
    n = 60
    name_on = next(f for f in range(1, n - 1) if f not in frames_to_read(n))
    out = copy_release(ct_release, tmp_path / "out")
    save(_cine(n, name_on, f"{p.family} {p.given}"), out / "cine.dcm")
    _engine(monkeypatch, f"{p.family.upper()} {p.given.upper()}")
    r = verify_output(out, [ct_release.src], ocr="auto", dciodvfy=False, progress=False)
    assert [f for f in r.findings if f.check == "ocr" and f"frame {name_on}" in f.what]
    assert "cine.dcm" not in r.ocr_verified
    assert [f for f, _ in r.ocr_partial] == ["cine.dcm"]
    assert f"of {n} frames read" in r.ocr_partial[0][1]
    # without the cine analysis no frame is known unchanged: not OCR-verified (exit 1)
    monkeypatch.setattr("pixeldeid.verify.ocr.cine_change_frames", lambda ds, n: None)
    r = verify_output(out, [ct_release.src], ocr="auto", dciodvfy=False, progress=False)
    assert not r.ocr_verified and not r.ocr_partial and r.exit_status == 1
    assert [f for f, _ in r.not_ocr_verified] == ["cine.dcm"]
    assert f"{OCR_ALL_FRAMES} of {n} frames read" in r.not_ocr_verified[0][1]


def test_frames_to_read_reads_every_frame_of_a_short_cine_and_bounds_a_long_one():
    assert frames_to_read(9) == list(range(9))
    assert frames_to_read(OCR_ALL_FRAMES) == list(range(OCR_ALL_FRAMES))
    long = frames_to_read(1000, changes=[501, 502])
    assert {0, 999, 501, 502} <= set(long) and len(long) <= OCR_ALL_FRAMES + 2
    clock = frames_to_read(1000, changes=range(1000))  # a clock ticking in every frame
    assert 0 < len(clock) <= 96


def test_dicom_without_preamble_is_checked_as_dicom(ct_release, tmp_path):
    """Another patient's identified data set, written without preamble and file meta: it
    was 'other' (raw bytes only), clean, exit 0."""
    out = copy_release(ct_release, tmp_path / "out")
    ds = image_dataset("H99887766", "BLOGGS^FRED", modality="CT")
    del ds.PatientIdentityRemoved
    ds.StudyDate = "20210405"
    save(ds, tmp_path / "full.dcm")
    bare = pydicom.dcmread(tmp_path / "full.dcm")
    bare.preamble = None
    bare.file_meta = pydicom.dataset.FileMetaDataset()
    bare.save_as(out / "extra.dcm", enforce_file_format=False, implicit_vr=False,
                 little_endian=True)
    assert (out / "extra.dcm").read_bytes()[:2] == b"\x08\x00"
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    checks = {f.check for f in r.findings if f.file == "extra.dcm"}
    assert {"dicom-open", "dicom-marking"} <= checks and r.exit_status == 1
    assert any("no DICM preamble" in f.what for f in r.findings)


def test_text_and_binary_files_are_not_taken_for_bare_dicom(tmp_path):
    from pixeldeid.verify.checks import file_kind

    (tmp_path / "a.bin").write_bytes(b"\x08\x00\x05\x00" + bytes(range(256)) * 4)
    (tmp_path / "b.dat").write_bytes(b"TR/TE 2000/10, 12.5 mm\n")
    assert file_kind(tmp_path / "a.bin") == "other" and file_kind(tmp_path / "b.dat") == "other"


def _pdf(text: bytes) -> bytes:
    stream = zlib.compress(b"BT /F1 12 Tf 72 712 Td (" + text + b") Tj ET")
    pdf = (b"%PDF-1.4\n1 0 obj<</Length " + str(len(stream)).encode()
           + b"/Filter/FlateDecode>>stream\n" + stream + b"\nendstream endobj\n%%EOF\n")
    return pdf + b"\0" * (len(pdf) % 2)


def _even(b: bytes) -> bytes:
    return b + b"\0" * (len(b) % 2)


def test_compressed_data_inside_elements_is_searched_or_named(ct_release, tmp_path):
    p = ct_release.patients[0]
    name = f"{p.family.upper()}^{p.given.upper()}".encode()
    blob = b'PATNAME "' + name + b'"\nPATID "' + p.patient_id.encode() + b'"\n'
    out = copy_release(ct_release, tmp_path / "out")
    ds = image_dataset("SUBJ_001", "SUBJ_001", modality="CT")
    ds.add_new(0x00420011, "OB", _pdf(b"Patient: " + name))
    ds.add_new(0x00420012, "LO", "application/pdf")
    ds.add_new(0x00250010, "LO", "GEMS_SERS_01")
    ds.add_new(0x0025101B, "OB", _even(gzip.compress(blob)))
    ds.add_new(0x00290010, "LO", "SIEMENS CSA HEADER")
    ds.add_new(0x00291010, "OB", _even(zlib.compress(blob)))
    ds.add_new(0x00291020, "OB", _even(zlib.compress(b"TR/TE 2000/10 slice 12.5 mm" * 40)))
    save(ds, out / "ct.dcm")
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    lines = [f.what for f in r.findings if f.file == "ct.dcm"]
    assert any("a PDF document in (0042,0011) EncapsulatedDocument" in w
               and "not checked" in w for w in lines)
    for tag in ("(0025,101B)", "(0029,1010)"):
        found = {w.split()[0] for w in lines if tag in w and "decompressed" in w}
        assert found == {"name", "id"}, (tag, lines)
    assert not [w for w in lines if "(0029,1020)" in w]  # clinical text inside: no finding


def test_id_number_alone_only_when_distinctive_and_never_in_code_values(ct_release, tmp_path):
    """CT_small's Other Patient ID ABCD1234 made verify search '1234' everywhere: 21
    findings on pydicom's untouched test-SR (Code Value 1234.0)."""
    assert id_spellings("ABCD1234") == {"abcd1234"} and id_spellings("RJ120") == {"rj120"}
    assert {"mrn4471923", "4471923"} == id_spellings("MRN4471923")
    out = copy_release(ct_release, tmp_path / "out")
    ds = image_dataset("SUBJ_001", "SUBJ_001", modality="CT")
    code = pydicom.Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "4711", "99X", "finding"
    ds.ConceptNameCodeSequence = [code]
    save(ds, out / "sr.dcm")
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False,
                      extra_values=[IdentityValue("id", "ABCD1234"), IdentityValue("id", "4711")])
    assert r.clean, [f.line() for f in r.findings]
    # the finding names the spelling that matched
    ds.ImageComments = f"MRN {ct_release.patients[0].patient_id[3:]}"
    save(ds, out / "sr.dcm")
    r = verify_output(out, [ct_release.src], ocr=None, dciodvfy=False, progress=False)
    assert any("its digits alone" in f.what for f in r.findings if f.check == "dicom-header")


def test_address_phone_and_two_digit_year_spellings():
    a = address_spellings("12 Wexcombe Lane, Tarnby")
    assert {"12 wexcombe lane", "wexcombe", "tarnby"} <= a and "lane" not in a
    assert "little" not in address_spellings("63 Wheatfield Road, Little Whinging")
    ph = phone_spellings("555-0199-321")
    assert {"5550199321", "(555) 0199 321", "555 0199 321"} <= ph
    assert phone_spellings("12") == {"12"}  # too short for digits alone
    d = date_spellings("19480317")
    assert {"17-mar-48", "17/03/48", "03/17/48", "17.03.48"} <= d and "170348" not in d
    # ledger values come as "other": a street address and a phone by their shape
    assert "wexcombe" in spellings("other", "12 Wexcombe Lane, Tarnby")
    assert spellings("other", "3 liver sections") == {"3 liver sections"}


@pytest.mark.parametrize("text", [
    b"home visit 12 Wexcombe Lane", b"Wexcombe Lane, Tarnby", b"call (555) 0199 321",
    b"call 5550199321", b"DOB 17-MAR-48"])
def test_address_phone_and_date_forms_are_found(text):
    terms = terms_for([IdentityValue("address", "12 Wexcombe Lane, Tarnby"),
                       IdentityValue("phone", "555-0199-321"),
                       IdentityValue("birth_date", "19480317")])
    assert Matcher(terms).find(text)


@pytest.mark.parametrize("text", [
    b"TR/TE 2000/10", b"slice 12.5 mm, 120 kVp", b"Omnipaque 350", b"lane 3 of the table",
    b"AX T2 FLAIR 17/03", b"dose 17.03 mGy", b"Little finger, left", b"scan 1948 frames",
    b"SIEMENS SOMATOM Definition AS+"])
def test_ordinary_clinical_text_is_no_finding(text):
    terms = terms_for([IdentityValue("address", "63 Wheatfield Road, Little Whinging"),
                       IdentityValue("phone", "555-0199-321"),
                       IdentityValue("birth_date", "19480317"),
                       IdentityValue("id", "ABCD1234"), IdentityValue("id", "RJ120")])
    assert not Matcher(terms).find(text), text


def test_unshifted_dates_of_an_sr_are_found_by_its_content_tree(tmp_path):
    """An SR has no pixel data to pair it with its source: its real Study and Content
    Date passed."""
    from pydicom.data import get_testdata_file

    from pixeldeid.api import DeidConfig
    from pixeldeid.batch import run_batch
    from tests.pixeldeid.verify.conftest import KEY

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    sr = pydicom.dcmread(get_testdata_file("test-SR.dcm"))
    sr.PatientName, sr.PatientID = "QUIXBURY^ZELDA", "MRN4471923"
    sr.StudyDate = sr.ContentDate = "20210405"
    sr.save_as(src / "sr.dcm")
    run_batch([src], out, DeidConfig(key=KEY), progress=False)
    r = verify_output(out, [src], ocr=None, dciodvfy=False, progress=False)
    assert r.clean, [f.line() for f in r.findings]
    (f,) = out.rglob("*.dcm")
    ds = pydicom.dcmread(f)
    ds.StudyDate = ds.ContentDate = "20210405"
    ds.save_as(f)
    r = verify_output(out, [src], ocr=None, dciodvfy=False, progress=False)
    assert [x.check for x in r.findings] == ["dates"] and "ContentDate" in r.findings[0].what
