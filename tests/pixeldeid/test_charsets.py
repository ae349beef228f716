"""Text in other character sets: pydicom's 17 Specific Character Set files (Latin-1, Greek,
Arabic, Hebrew, Cyrillic, UTF-8, GB18030, ISO 2022 Japanese and Korean, items in another
set). Cleaned and kept text stays in the data set's character set, and the patient's name
is found in it, in any case and script (written without separators for CJK names)."""

from __future__ import annotations

import re
import shutil
import unicodedata
from pathlib import Path

import pydicom
import pytest
from conftest import outputs

from pixeldeid.textclean import full_width, is_token

TEXT_VRS = ("PN", "LO", "SH", "ST", "LT", "UT", "UC")


def _charset_files() -> list[str]:
    from pydicom.data import get_charset_files

    return sorted(Path(p).name for p in get_charset_files("chr*.dcm"))


CHARSET_FILES = _charset_files()


def _charset_file(name: str, dest: Path) -> Path:
    """A copy of pydicom's charset file ``name``, made a whole instance where it is not
    (some have no SOP Instance UID, or image attributes without Pixel Data)."""
    from pydicom.data import get_charset_files
    from pydicom.uid import RawDataStorage, generate_uid

    [src] = get_charset_files(name)
    dest.mkdir(parents=True, exist_ok=True)
    path = Path(shutil.copy(src, dest / "in.dcm"))
    ds = pydicom.dcmread(path)
    if "SOPInstanceUID" not in ds:
        ds.SOPClassUID = RawDataStorage  # no image: needs no pixel data
        ds.SOPInstanceUID = generate_uid(prefix=None)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "Rows" in ds and "PixelData" not in ds:
        ds.PixelData = bytes(ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1)
                             * (ds.BitsAllocated // 8))
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    ds.save_as(path)
    return path


def _name_parts(ds) -> list[str]:
    """The parts of the patient's name (the first Patient's Name, at any depth)."""
    pn = next((str(e.value) for e in ds.iterall() if e.tag == 0x00100010 and e.value), "")
    return [p for p in re.split(r"[\^=\s]+", pn) if is_token(p)]


def _texts(ds) -> str:
    return "\n".join(str(e.value) for e in ds.iterall() if e.VR in TEXT_VRS and e.value)


def test_the_charset_corpus_is_there() -> None:
    assert len(CHARSET_FILES) >= 17, CHARSET_FILES


@pytest.mark.parametrize("name", CHARSET_FILES)
def test_cleaned_and_kept_text_stay_in_the_character_set(tmp_path: Path, run, name: str) -> None:
    src = _charset_file(name, tmp_path / "in")
    ds = pydicom.dcmread(src)
    parts = _name_parts(ds) or ["Grossmann", "Jürgen"]
    if "PatientName" not in ds:
        ds.PatientName = "^".join(parts)
    # a phrase in the file's own script that is no part of the name: the longest name part
    # spelled backwards (non-ASCII wherever the file has non-ASCII names)
    kept = max(parts, key=lambda p: (not p.isascii(), len(p)))[::-1]
    assert not any(p in kept for p in parts)
    ds.StudyDescription = f"{kept} {' '.join(parts)}"      # C: the name goes, the rest stays
    ds.SeriesDescription = kept                              # C: nothing to remove
    ds.ImageComments = f"{''.join(parts[:2])} {kept}"        # a CJK name without separators
    ds.save_as(src)
    rc, out = run(src, "--profile", "tcia-like")
    files = outputs(out)
    assert rc == 0 and len(files) == 1, (rc, sorted(out.rglob("*.txt")))
    o = pydicom.dcmread(files[0])
    assert o.get("SpecificCharacterSet") == ds.get("SpecificCharacterSet")
    assert o.SeriesDescription == kept
    assert o.StudyDescription == kept
    assert o.ImageComments == kept
    texts = _texts(o)
    assert "\ufffd" not in texts
    assert not [p for p in parts if p in texts]


@pytest.mark.parametrize("name", ["chrGerm.dcm", "chrGreek.dcm", "chrX1.dcm", "chrX2.dcm",
                                  "chrH31.dcm", "chrI2.dcm"])
def test_residual_check_finds_the_name_in_the_character_set(tmp_path: Path, run,
                                                            name: str) -> None:
    """A name part in a kept attribute (Manufacturer is not in Table E.1-1) is found by the
    residual check in the file's own encoding, whatever its case, and the file is
    quarantined."""
    src = _charset_file(name, tmp_path / "in")
    ds = pydicom.dcmread(src)
    part = max(_name_parts(ds), key=lambda p: (not p.isascii(), len(p)))
    ds.Manufacturer = f"{part.upper()} 1"
    ds.save_as(src)
    rc, out = run(src)
    assert rc == 1 and outputs(out) == []
    [reason] = (out / "quarantine").rglob("*.reason.txt")
    assert "identity still present" in reason.read_text()


@pytest.mark.parametrize("staff", ["陈^大文", "김^철수", "山田^花子"])
def test_cjk_staff_names_are_cleaned_from_descriptors(tmp_path: Path, run, staff: str) -> None:
    """A removed person name (Referring Physician, Operators) in CJK: its one- and
    two-character parts and the joined name are cleaned from kept descriptors."""
    src = _charset_file("chrX1.dcm", tmp_path / "in")  # ISO_IR 192
    ds = pydicom.dcmread(src)
    family, given = staff.split("^")
    ds.ReferringPhysicianName = staff
    ds.OperatorsName = staff
    ds.StudyDescription = f"头部 {family}{given} {given} {family} 平扫"
    ds.save_as(src)
    rc, out = run(src, "--profile", "tcia-like")
    [written] = outputs(out)
    o = pydicom.dcmread(written)
    assert o.StudyDescription == "头部 平扫"
    assert "ReferringPhysicianName" not in o or staff not in str(o.ReferringPhysicianName)


def _utf8_ct(dest: Path, name: str, pid: str, **values) -> Path:
    """An ISO_IR 192 copy of pydicom's chrX1.dcm with this patient and these values."""
    src = _charset_file("chrX1.dcm", dest)
    ds = pydicom.dcmread(src)
    ds.PatientName, ds.PatientID = name, pid
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(src)
    return src


@pytest.mark.parametrize("spell", [full_width, lambda s: unicodedata.normalize("NFD", s),
                                   lambda s: s.replace("ü", "u")],
                         ids=["full-width", "decomposed", "accent-free"])
def test_other_spellings_of_the_name_are_cleaned_from_descriptors(tmp_path: Path, run,
                                                                   spell) -> None:
    """The patient's name and ID in full-width letters (ＬＥＡＫ), decomposed (``u`` and a
    combining diaeresis) or without accents are identity as written plainly: cleaned from
    descriptors, and absent from the output's bytes and its hierarchy folder names."""
    name, pid = "Zqmüller^Hansjörg", "ZQID0042"
    src = _utf8_ct(tmp_path / "in", name, pid,
                   StudyDescription=f"Kopf {spell('Zqmüller')} nativ",
                   SeriesDescription=f"{spell(pid)} Serie",
                   ImageComments=spell("Hansjörg Zqmüller"))
    rc, out = run(src, "--profile", "tcia-like", "--layout", "hierarchy")
    [written] = outputs(out)
    o = pydicom.dcmread(written)
    assert (o.StudyDescription, o.SeriesDescription) == ("Kopf nativ", "Serie")
    assert "ImageComments" not in o or not str(o.ImageComments).strip()
    data = written.read_bytes()
    for part in ("Zqmüller", "Hansjörg", pid):
        for form in {part, spell(part), unicodedata.normalize("NFD", part),
                     part.replace("ü", "u").replace("ö", "o")}:
            assert form.encode("utf-8") not in data, form
    assert "zqm" not in str(written.relative_to(out)).lower()


@pytest.mark.parametrize("planted", [
    full_width("ZQID0042"), unicodedata.normalize("NFD", "Zqmüller"),
    "Zqm\u200büller",                        # a zero-width space inside
    "Zqm\u00adüller",                        # a soft hyphen inside
    "Zqmu\u0301ller",                        # another accent
    full_width("Z") + "qmüller",             # partly full-width
    "ZQID\u0660\u0660\u0664\u0662",            # Arabic-Indic digits
], ids=["full-width", "decomposed", "zero-width", "soft-hyphen", "other-accent",
        "partly-full-width", "arabic-indic-digits"])
def test_the_residual_check_finds_other_spellings_in_kept_text(tmp_path: Path, run,
                                                                planted: str) -> None:
    """The patient's ID or name spelled otherwise (full-width, decomposed, with an
    invisible character or another accent, digits of another script) in an attribute
    Table E.1-1 does not list (Convolution Kernel, kept): the file is quarantined, not
    released."""
    src = _utf8_ct(tmp_path / "in", "Zqmüller^Hans", "ZQID0042", ConvolutionKernel=planted)
    rc, out = run(src)
    assert rc == 1 and outputs(out) == []
    [reason] = (out / "quarantine").rglob("*.reason.txt")
    assert "identity still present" in reason.read_text()
