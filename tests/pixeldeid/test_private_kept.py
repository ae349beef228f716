"""Safe and allowlisted private elements are kept only as what the table lists (session 14
audit): text in a kept number, a person name, a sequence hidden in a text element, a VR of
another kind, site words in kept text, an allowlisted element whose VR nothing tells, look-
alike creators and illegal allowlist groups; and table gaps: attributes Table E.1-1 does
not list that name people or the hospital, Z on a Type 1 attribute."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.tag import Tag

from tests.pixeldeid.test_unlisted_places import _ct, _deid, _item_bytes

TCIA = ("--profile", "tcia-like")


def _raw(ds: Dataset, tag: int, vr: str | None, value: bytes) -> None:
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, vr is None, True)


def _released(data: bytes | None) -> Dataset:
    assert data is not None
    return pydicom.dcmread(DicomBytesIO(data))


def test_text_in_a_safe_private_number_quarantines(tmp_path, run):
    """GEMS_ACQU_01 Table Speed (DS) holding a name was released under tcia-like, while
    the same text in a standard kept number quarantines."""
    ds = _ct()
    ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
    _raw(ds, 0x00191023, "DS", b"DRJONES1")
    status, out, data = _deid(tmp_path, run, ds, *TCIA)
    assert status == 1 and data is None
    [reason] = out.rglob("*.reason.txt")
    assert "text in a number" in reason.read_text()


@pytest.mark.parametrize(("vr", "value"), [("PN", b"QUIMBLETON^JANE "),
                                           ("OB", b"QUIMBLETON^JANE ")])
def test_a_safe_private_element_of_another_kind_of_vr_goes(tmp_path, run, vr, value):
    """GEMS_ACQU_01 (0019,xx9E) is LO in Table E.3.10-1: written as PN (a person's name)
    or OB it was kept as it was."""
    ds = _ct()
    ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
    _raw(ds, 0x0019109E, vr, value)
    status, _, data = _deid(tmp_path, run, ds, *TCIA)
    assert status == 0 and b"QUIMBLETON" not in data
    assert 0x0019109E not in _released(data)


def test_a_safe_text_element_stored_as_un_holding_a_sequence_is_walked(tmp_path, run):
    """(0019,xx9E) stored as UN whose bytes are an item: released as bytes, an accession
    number and a referring physician inside (implicit VR items read as a sequence)."""
    inner = Dataset()
    inner.AccessionNumber, inner.ReferringPhysicianName = "PLNTACC77", "PLNTREFDOC^Hugo"
    ds = _ct()
    ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
    _raw(ds, 0x0019109E, "UN", _item_bytes(inner, True))
    status, _, data = _deid(tmp_path, run, ds, *TCIA)
    # walked (identity gone), or quarantined as text with control bytes: never released
    assert (status, data) == (1, None) or (
        status == 0 and b"PLNTACC77" not in data and b"PLNTREFDOC" not in data)


def test_site_words_leave_kept_safe_private_text(tmp_path, run):
    """The institution's words and the Study ID in a safe LO were released verbatim; the
    same text in an unlisted standard attribute is cleaned."""
    ds = _ct(InstitutionName="Mercyvale General Hospital", StudyID="STX88421")
    ds.add_new(0x00190010, "LO", "GEMS_ACQU_01")
    ds.add_new(0x0019109E, "LO", "MERCYVALE STX88421 FSE")
    status, _, data = _deid(tmp_path, run, ds, *TCIA)
    assert status == 0
    low = data.lower()
    assert b"mercyvale" not in low and b"stx88421" not in low
    assert "FSE" in str(_released(data)[0x0019109E].value)


def _allow_profile(tmp_path: Path, *entries: str) -> Path:
    p = tmp_path / "allow.yaml"
    p.write_text("name: allow\noptions: [retain-safe-private, "
                 "retain-longitudinal-modified-dates]\nprivate_allowlist:\n"
                 + "".join(f"  - {e}\n" for e in entries))
    return p


def test_an_allowlisted_sequence_in_implicit_vr_is_walked(tmp_path, run):
    """An allowlisted (0041,xx06) sequence in an implicit VR file kept no VR and was copied
    unwalked: an accession number in its item was released."""
    inner = Dataset()
    inner.AccessionNumber = "PLNTACC77"
    inner.StudyDate = "20190102"
    ds = _ct()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.add_new(0x00410010, "LO", "ACME Corp")
    _raw(ds, 0x00411006, None, _item_bytes(inner, True))
    _raw(ds, 0x00411003, None, b"20170523")  # a DA nothing types: not kept
    prof = _allow_profile(tmp_path, "{creator: ACME Corp, group: 0x0041, element: 0x06}",
                          "{creator: ACME Corp, group: 0x0041, element: 0x03}")
    status, _, data = _deid(tmp_path, run, ds, "--profile", str(prof))
    assert status == 0
    assert b"PLNTACC77" not in data and b"20190102" not in data and b"20170523" not in data
    out = _released(data)
    assert 0x00411006 in out and 0x00411003 not in out


def test_allowlist_groups_outside_the_private_range_are_refused(tmp_path, run, capsys):
    prof = _allow_profile(tmp_path, "{creator: ACME, group: 65535, element: 1}")
    status, _, _ = _deid(tmp_path, run, _ct(), "--profile", str(prof))
    err = capsys.readouterr().err
    assert status == 2 and "65535" in err and "group" in err


@pytest.mark.parametrize("creator", ["GEMS_ACQU_01\t", "GEMS_ACQU_01\u00a0", "GEMS  ACQU_01"])
def test_look_alike_creators_keep_nothing(tmp_path, run, creator):
    ds = _ct()
    ds.add_new(0x00190010, "LO", creator)
    ds.add_new(0x0019109E, "LO", "PLNTSEQNAME")
    status, _, data = _deid(tmp_path, run, ds, *TCIA)
    assert status == 0 and b"PLNTSEQNAME" not in data


def test_attributes_the_table_misses_that_name_people_or_the_hospital_go(tmp_path, run):
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "ST_MARYS_HOSPITAL_MRN"
    issuer.UniversalEntityID = "2.16.840.1.113883.3.999.1"
    issuer.UniversalEntityIDType = "ISO"
    ds = _ct(ContactDisplayName="Mary Quincy (mother) 555-0101",
             SOPAuthorizationComment="authorised by Mary Quincy")
    ds.AssigningFacilitySequence = [issuer]
    status, _, data = _deid(tmp_path, run, ds, "--profile", "basic")
    assert status == 0
    for leaked in (b"Quincy", b"ST_MARYS", b"113883.3.999"):
        assert leaked not in data, leaked


def test_z_on_a_type_1_attribute_gives_a_dummy(tmp_path, run):
    """RT Accessory Holder Slot ID is Z in Table E.1-1 and Type 1 in an RT Patient Position
    Acquisition Instruction: it was emptied, and the output invalid."""
    slot = Dataset()
    slot.RTAccessoryHolderSlotID = "SLOT-A"
    slot.RTAccessoryHolderSlotDistance = 10.0
    slot.RTAccessoryHolderSlotExistenceFlag = "YES"
    holder = Dataset()
    holder.RTAccessoryHolderSlotSequence = [slot]
    sop = "1.2.840.10008.5.1.4.1.1.481.25"
    ds = _ct(sop=sop)
    ds.RTAccessoryHolderDefinitionSequence = [holder]
    status, _, data = _deid(tmp_path, run, ds, "--profile", "basic")
    assert status == 0
    value = _released(data).RTAccessoryHolderDefinitionSequence[0] \
        .RTAccessoryHolderSlotSequence[0].RTAccessoryHolderSlotID
    assert value and value != "SLOT-A"



def test_a_private_element_without_its_creator_goes(tmp_path, run):
    """An orphan private element (no creator in its block) under Retain Safe Private: the
    creator check of the kept-VR rules raised AttributeError and quarantined the file."""
    ds = _ct()
    ds.add_new(0x00091010, "LO", "PLNTORPHAN")
    status, _, data = _deid(tmp_path, run, ds, *TCIA)
    assert status == 0 and b"PLNTORPHAN" not in data


@pytest.mark.parametrize("implicit", [False, True])
def test_a_safe_element_the_table_lists_with_two_vrs_is_kept(tmp_path, run, implicit):
    """Philips (2001,xx7D) is "OW/OB" in Table E.3.10-1: written as OB it was removed, and
    in an implicit VR file the table's "OW/OB" was set as its VR and the file quarantined."""
    ds = _ct()
    if implicit:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    _raw(ds, 0x2001107D, None if implicit else "OB", bytes(range(16)))
    status, _, data = _deid(tmp_path, run, ds, *TCIA)
    assert status == 0
    assert bytes(_released(data)[0x2001107D].value) == bytes(range(16))
