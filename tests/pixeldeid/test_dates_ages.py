"""Dates, times and ages the first versions let through or damaged (session 13 audit):
dates written as text in descriptors, ages over 89 at any depth, dates in kept private
elements, DT ranges ending in a bare year, years before 1000 and shifts out of the
calendar, the placeholder birth date, sequences stored as UN, and a fixed offset of 0."""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from pixeldeid import dates
from pixeldeid.api import DeidConfig, Deidentifier
from pixeldeid.errors import DeidError, ProfileError
from pixeldeid.textclean import clean_text
from tests.pixeldeid.test_unlisted_places import _ct, _deid

KEY = b"0123456789abcdef-key"


@pytest.mark.parametrize("text", [
    "CT 2017-05-23T10:00", "20200314T1000", "2020-03-14T08:00:00.5+01:00",
    "Mar 14 2017", "May 23, 2017", "March 14th 2020", "Mar-14-2020", "23rd May 2017",
    "2017 May 23", "2020 03 14", "14 03 2020", "March 2020", "2020-03", "03/2020",
    "pt 92 y/o", "92yo", "95 years old", "age 92", "aged: 101", "age 95Y", "Age: 092Y",
    "F 095Y", "pt 95 y", "101 Y",
    # forms the session 14 review found kept: age and sex or months, a month's name
    # between slashes, underscores, Unicode dashes (hyphen, en dash, minus, full-width),
    # spaced slashes, a comma after the month, CJK dates
    "97yoF", "92yF", "92YF", "92Y6M", "pt 092Y 6M", "101 years old", "23/May/2017",
    "recon_2017_05_23", "recon_23_05_2017_axial", "born 1st_May_2017", "23\u201005\u20102017",
    "23\u201305\u20132017", "23\u221205\u22122017", "\uff12\uff13\uff0d\uff10\uff15\uff0d\uff12\uff10\uff11\uff17",
    "23 / 05 / 2017", "2017 - 05 - 23", "May, 23 2017", "2017\u5e745\u670823\u65e5",
    "2017\ub144 5\uc6d4 23\uc77c", "2017\u5e7405\u6708",
])
def test_dates_and_old_ages_written_as_text_are_removed(text):
    out = clean_text(f"follow-up {text} compare", [])
    assert not any(ch.isdigit() for ch in out), out
    assert out.startswith("follow-up") and out.endswith("compare")


@pytest.mark.parametrize("text", [
    "5 yr follow-up", "T1 3D SAG", "MPRAGE 1.2 mm", "WB 2 mm 90Y", "Y-90 SPECT", "DWI b1000",
    "512 x 512", "Series 3 of 10", "PET 90 min", "MAR reduction 2010", "Apr dose 10 mCi",
    "MARROW 2000", "TR 2000.10", "Bone MARGIN 1950 HU", "T2 MAYO", "WB 90 Y",
    # sequence parameters, coordinates and spaced numbers the session 14 review saw cut
    "PD TSE TR/TE 2000/10", "T1 SE TR/TE 1900/12 FS", "TE/TR 10/2000", "WW/WL 2000/11",
    "ROI centre X 120 Y 95 mm", "X 95 Y 120", "shift 105 Y, 20 X", "angle 130 Y axis",
    "seed pos 1 4 1800", "MPR 3 5 2000 slices", "Pixel 0.5/0.5/1.0", "collimation 1.2/16",
    "Sr-90 Y-90 microspheres", "Tc-99m MDP", "HU \u22121000 to 3000",
    "DLP 120\u2013150 mGy cm", "PET 92 MBq", "series_1_2_3",
])
def test_descriptor_text_that_is_no_date_stays(text):
    assert clean_text(text, []) == text


def test_dt_range_ending_in_a_bare_year_shifts_both_ends():
    off = dates.DateOffset(-2555, 3600)
    assert dates.shift_datetime("2017-2018", off) == "2010-2011"
    assert dates.shift_datetime("20170523-2018", off) == "20100525-2011"
    # a real UTC offset is still one
    assert dates.shift_datetime("20170523101112-0500", off) == "20100525111112-0500"


def test_years_before_1000_are_zero_padded_and_shifts_out_of_the_calendar_refused():
    assert dates.shift_date("10000105", dates.DateOffset(-400)) == "09981201"
    assert dates.shift_datetime("1005", dates.DateOffset(-2555)) == "0998"
    with pytest.raises(DeidError, match="shifted out of the years 0001-9999"):
        dates.shift_date("00010105", dates.DateOffset(-10))
    with pytest.raises(DeidError, match="shifted out"):
        dates.shift_datetime("99991231235959", dates.DateOffset(2, 0))


def test_a_fixed_offset_of_zero_is_refused():
    with pytest.raises(ProfileError, match="offset 0"):
        DeidConfig(key=KEY, date_offset_days=0)
    DeidConfig(key=KEY, date_offset_days=-7)


def _request(age: str) -> Dataset:
    item = Dataset()
    item.PatientAge = age
    item.SelectorASValue = age
    return item


@pytest.mark.parametrize("profile", ["tcia-like", "limited-dataset"])
def test_ages_over_89_are_clipped_at_any_depth(profile):
    ds = _ct(PatientAge="103Y")
    ds.ReferencedRequestSequence = [_request("103Y")]
    ds.ReferencedRequestSequence[0].ReferencedRequestSequence = [_request("1300M")]
    deid = Deidentifier(DeidConfig(profile=profile, key=KEY))
    out = deid.deidentify_dataset(ds)
    assert out.PatientAge == "090Y"
    item = out.ReferencedRequestSequence[0]
    assert (item.PatientAge, item.SelectorASValue) == ("090Y", "090Y")
    # 1300 months is 108 years: a malformed age (4 digits) cannot be read and is emptied
    assert item.ReferencedRequestSequence[0].PatientAge in ("", None)


def _private_dates(ds: Dataset) -> None:
    block = ds.private_block(0x0019, "ZQX DATES", create=True)
    block.add_new(0x01, "DA", "20170523")
    block.add_new(0x02, "TM", "101112")
    block.add_new(0x03, "DT", "20170523101112")


def _profile_file(tmp_path: Path, options: list[str]) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text("name: priv\noptions: [" + ", ".join(options) + "]\n"
                 "private_allowlist:\n" + "".join(
                     f"  - {{creator: ZQX DATES, group: 0x0019, element: 0x{e:02X}}}\n"
                     for e in (1, 2, 3)))
    return p


@pytest.mark.parametrize("dated", [True, False])
def test_kept_private_dates_are_shifted_or_removed_like_any_date(tmp_path, run, dated):
    ds = _ct()
    _private_dates(ds)
    options = ["retain-safe-private"] + (["retain-longitudinal-modified-dates"] if dated else [])
    status, _, data = _deid(tmp_path, run, ds, "--profile", str(_profile_file(tmp_path, options)))
    assert status == 0 and data is not None
    assert b"20170523" not in data and b"101112" not in data
    out = pydicom.dcmread(DicomBytesIO(data))
    block = out.private_block(0x0019, "ZQX DATES")
    if dated:  # shifted by the patient's offset, as Study Date/Time (20200101 101010) are
        assert out.StudyDate != "20200101"
        days = (dates._parse_da(out.StudyDate) - dates._parse_da("20200101")).days
        # (the Study Date also carries a day when the Study Time's shift crosses midnight)
        assert block[0x01].value in {dates.shift_date("20170523", dates.DateOffset(d))
                                     for d in (days, days - 1)}
        assert len(block[0x02].value) == 6 and len(block[0x03].value) == 14
    else:  # removed (or emptied) as an unlisted date is under the Basic Profile
        for e in (1, 2, 3):
            assert (0x0019, 0x1000 + e) not in out or not out[0x0019, 0x1000 + e].value


def test_the_placeholder_birth_date_is_no_residual_identity(tmp_path, run):
    """19000101 is both "birth date unknown" and the dummy date D writes: the Date of an
    SR DATE content item became 19000101 and the residual check quarantined every such
    file."""
    ds = _ct(PatientBirthDate="19000101")
    item = Dataset()
    item.RelationshipType, item.ValueType, item.Date = "CONTAINS", "DATE", "20170523"
    ds.ContentSequence = [item]
    status, out, data = _deid(tmp_path, run, ds)
    assert status == 0 and data is not None, list(out.rglob("*.reason.txt"))


def _with_un_sequence(path: Path) -> None:
    """Radiopharmaceutical Information Sequence stored as UN of undefined length, its item
    in implicit VR (PS3.5 6.2.2), as a gateway with an older dictionary writes it."""
    item = Dataset()
    item.RadiopharmaceuticalStartTime = "101010"
    item.RadionuclideTotalDose = "370000000"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, item)
    body = fp.getvalue()
    seq = (struct.pack("<HH", 0x0054, 0x0016) + b"UN\0\0" + b"\xff" * 4
           + b"\xfe\xff\x00\xe0" + struct.pack("<I", len(body)) + body
           + b"\xfe\xff\xdd\xe0\0\0\0\0")
    data = path.read_bytes()
    at = data.index(b"\xe0\x7f\x10\x00")
    path.write_bytes(data[:at] + seq + data[at:])


def test_a_sequence_stored_as_un_is_read_not_quarantined(tmp_path, run):
    src = tmp_path / "in" / "pet.dcm"
    src.parent.mkdir(parents=True)
    _ct(Modality="PT", SeriesTime="100000").save_as(src, enforce_file_format=True)
    _with_un_sequence(src)
    status, out = run(src, "--profile", "tcia-like")
    [written] = [p for p in out.rglob("*.dcm") if "quarantine" not in p.parts]
    assert status == 0
    ds = pydicom.dcmread(written)
    item = ds.RadiopharmaceuticalInformationSequence[0]
    assert item.RadionuclideTotalDose == 370000000
    # shifted with the Series Time: the interval survives
    assert item.RadiopharmaceuticalStartTime != "101010"


def test_a_sequence_whose_item_vr_is_damaged_is_still_quarantined(tmp_path, run):
    """The same implicit item under a sequence stored as SQ is damage, not UN."""
    src = tmp_path / "in" / "pet.dcm"
    src.parent.mkdir(parents=True)
    _ct(Modality="PT").save_as(src, enforce_file_format=True)
    _with_un_sequence(src)
    data = src.read_bytes()
    src.write_bytes(data.replace(b"\x54\x00\x16\x00UN\0\0", b"\x54\x00\x16\x00SQ\0\0", 1))
    status, out = run(src)
    assert status == 1
    [reason] = out.rglob("*.reason.txt")
    assert "switches to implicit VR" in reason.read_text()
