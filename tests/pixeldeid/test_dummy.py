"""Dummy values: valid for every VR under pydicom's strict validation, VM 1, no identity."""

from __future__ import annotations

import datetime
import io
import re

import pydicom
import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.valuerep import VR, validate_value

from pixeldeid.dummy import BINARY_VRS, DUMMY_VALUES, dummy_value
from pixeldeid.errors import DeidError

ALL_VRS = sorted(v.value for v in VR if " or " not in v.value)
MAX_LEN = {"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64,
           "LT": 10240, "PN": 64, "SH": 16, "ST": 1024, "TM": 14, "UI": 64}
# a private tag per VR so that every VR can be written explicitly
TAGS = {vr: 0x00091000 + i for i, vr in enumerate(ALL_VRS, start=1)}


@pytest.fixture
def strict():
    old_r, old_w = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    config.settings.writing_validation_mode = config.RAISE
    yield
    config.settings.reading_validation_mode, config.settings.writing_validation_mode = old_r, old_w


def test_table_covers_every_vr():
    assert set(DUMMY_VALUES) == set(ALL_VRS)


@pytest.mark.parametrize("vr", ALL_VRS)
def test_dummy_passes_pydicom_validation(vr, strict):
    value = dummy_value(vr)
    validate_value(vr, value, config.RAISE)
    elem = DataElement(TAGS[vr], vr, value)  # validates on assignment in RAISE mode
    assert elem.VM == (0 if vr in BINARY_VRS else 1)
    if vr in MAX_LEN:
        assert 0 < len(value) <= MAX_LEN[vr]
        assert "\\" not in value


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_all_dummies_round_trip_through_a_file(strict, transfer_syntax):
    ds = Dataset()
    ds.add_new(0x00090010, "LO", "PIXELDEID TEST")
    for vr in ALL_VRS:
        ds.add_new(TAGS[vr], vr, dummy_value(vr))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=transfer_syntax == ImplicitVRLittleEndian, little_endian=True)
    if transfer_syntax == ImplicitVRLittleEndian:
        return  # private VRs are lost without explicit VR; writing is what is checked
    back = pydicom.dcmread(io.BytesIO(buf.getvalue()), force=True)
    for vr in ALL_VRS:
        elem = back[TAGS[vr]]
        assert elem.VR == vr
        if vr == "SQ":
            assert list(elem.value) == []
        elif vr in BINARY_VRS:
            assert elem.value in (b"", None)
        elif vr in ("DS", "IS", "FL", "FD"):
            assert float(elem.value) == 0
        elif vr == "PN":
            assert str(elem.value) == "ANONYMOUS"
        else:
            assert elem.value == dummy_value(vr)


def test_formats_parse_as_dates_times_and_uids():
    assert datetime.datetime.strptime(dummy_value("DA"), "%Y%m%d").year == 1900
    assert datetime.datetime.strptime(dummy_value("DT"), "%Y%m%d%H%M%S").month == 1
    assert datetime.datetime.strptime(dummy_value("TM"), "%H%M%S").hour == 0
    assert pydicom.uid.UID(dummy_value("UI")).is_valid
    assert re.fullmatch(r"\d{3}[DWMY]", dummy_value("AS"))
    assert dummy_value("CS") == dummy_value("CS").upper()
    assert pydicom.valuerep.DA(dummy_value("DA")) == datetime.date(1900, 1, 1)


def test_original_content_never_reaches_the_dummy():
    assert dummy_value("PN", "QUIXMORE^Zebulon") == "ANONYMOUS"
    assert dummy_value("LO", "MRN7731") == "ANONYMIZED"
    assert dummy_value("OB", b"Quixmore") == b"\0" * 8
    assert dummy_value("OW", b"abc") == b"\0" * 4  # rounded up to even
    assert dummy_value("UN", memoryview(b"x")) == b"\0\0"
    assert dummy_value("OB") == b""


def test_sequence_dummy_is_a_fresh_empty_list():
    a, b = dummy_value("SQ"), dummy_value("SQ")
    assert a == [] and a is not b


@pytest.mark.parametrize("vr,expected", [("US or SS", 0), ("OB or OW", b""),
                                         ("US or SS or OW", 0), ("us", 0)])
def test_ambiguous_vrs(vr, expected):
    assert dummy_value(vr) == expected


@pytest.mark.parametrize("vr", ["XX", "", None, "P N"])
def test_unknown_vr_raises(vr):
    with pytest.raises(DeidError):
        dummy_value(vr)
