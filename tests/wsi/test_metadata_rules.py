"""Tests of wsi.metadata_rules: allowlist, dates, XML helpers, scan needles."""

from __future__ import annotations

import base64

import pytest

from wsi import metadata_rules as mr


@pytest.mark.parametrize("key, kind", [
    ("DICOM_PIXEL_SPACING", "keep"), ("Magnification", "keep"), ("AppMag", "keep"),
    ("Z-layers", "keep"), ("ScanRes", "keep"), ("DICOM_MANUFACTURER", "keep"),
    ("DICOM_DEVICE_SERIAL_NUMBER", "remove"), ("PIM_DP_UFS_BARCODE", "remove"),
    ("UserName", "remove"), ("UnitNumber", "remove"), ("BaseName", "remove"),
    ("BuildDate", "date"), ("creationDate", "date"), ("DICOM_ACQUISITION_DATETIME", "date"),
    ("SomethingNobodyKnows", "remove"),
])
def test_classify_key(key, kind):
    assert mr.classify_key(key) == kind


def test_normalize_key_strips_vendor_prefixes_and_punctuation():
    assert mr.normalize_key("DICOM_PIXEL_SPACING") == "pixelspacing"
    assert mr.normalize_key("PIIM_DP_SCANNER_OPERATOR_ID") == "scanneroperatorid"
    assert mr.normalize_key("Z-layers") == "zlayers"


@pytest.mark.parametrize("value, days, expected", [
    ("20240301", -1, "20240229"),                                # DICOM DA, leap year
    ("20231231235959.123456", 1, "20240101235959.123456"),       # DICOM DT, year rollover
    ('"20171231" "20180105"', 1, '"20180101" "20180106"'),       # Philips quoted array
    ("2010-10-01T12:34:56.789Z", 31, "2010-11-01T12:34:56.789Z"),  # Leica ISO 8601
    ("12/31/2019 10:51:10 AM", 1, "01/01/2020 10:51:10 AM"),      # Ventana US
    ("12/29/09", 3, "01/01/10"),                                  # Aperio two-digit year
    ("2019:01:31 10:00:00", 1, "2019:02:01 10:00:00"),            # TIFF DateTime
    ("3/5/2021", 30, "4/4/2021"),                                 # unpadded fields stay unpadded
    ("31.12.2019", 1, "01.01.2020"),                              # European
])
def test_shift_date_value_keeps_format(value, days, expected):
    assert mr.shift_date_value(value, days) == expected


@pytest.mark.parametrize("value", ["1.6.6186", "0.000227273", "PHILIPS", "", "99/99/2020"])
def test_shift_date_value_refuses_non_dates(value):
    assert mr.shift_date_value(value, 5) is None


def test_clean_date_value_remove_shift_and_fail_closed():
    assert mr.clean_date_value("20240301", None) is None
    assert mr.clean_date_value("20240301", 10) == "20240311"
    assert mr.clean_date_value("last Tuesday", 10) is None  # unparsable date: removed
    assert mr.clean_date_value('"112108"', 10) == '"112108"'  # time of day only: kept when shifting
    assert mr.clean_date_value('"112108"', None) is None


def test_clean_mapping_keeps_allowlist_and_reports_removed():
    kept, removed = mr.clean_mapping(
        {"AppMag": "20", "MPP": "0.499", "User": "jdoe", "Date": "12/29/09", "Filename": "CMU-1"},
        shift_days=2)
    assert kept == {"AppMag": "20", "MPP": "0.499", "Date": "12/31/09"}
    assert set(removed) == {"jdoe", "12/29/09", "CMU-1"}


def test_split_xml_tail_and_parse():
    doc, tail = mr.split_xml_tail('<?xml version="1.0"?>\n<a x="1"><b/></a>\n<!-- DOE -->junk')
    assert doc.endswith("</a>") and "DOE" in tail and "junk" in tail
    assert mr.parse_xml(doc).tag == "a"
    doc, tail = mr.split_xml_tail('<iScan Magnification="40"/>tail')
    assert tail == "tail"
    with pytest.raises(ValueError):
        mr.split_xml_tail("no xml here")
    with pytest.raises(ValueError, match="DOCTYPE"):
        mr.parse_xml('<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>')
    with pytest.raises(ValueError, match="malformed"):
        mr.parse_xml("<a><b></a>")


def test_clean_xml_tree_fail_closed():
    root = mr.parse_xml('<r Magnification="40" UserName="jdoe" BuildDate="12/20/2017 10:20:30 AM">'
                        '<AOI0 Left="1" Secret="S-123"/><note>Jane Doe</note>tail-text'
                        '<drop x="1">inner</drop></r>')
    removed: list[str] = []
    mr.clean_xml_tree(root, 1, removed, keep_attrs={"Left"}, drop_elements={"drop"})
    assert root.attrib == {"Magnification": "40", "BuildDate": "12/21/2017 10:20:30 AM"}
    assert root.find("AOI0").attrib == {"Left": "1"}
    assert root.find("note").text is None and root.find("drop") is None
    for v in ("jdoe", "S-123", "Jane Doe", "tail-text", "inner", "12/20/2017 10:20:30 AM"):
        assert v in removed


def test_plan_tiff_tag_edits():
    edits, removed = mr.plan_tiff_tag_edits(
        [(0, {306: "2023:05:14 09:30:11", 315: "jdoe", 305: "Philips DP", 316: ""}),
         (1, {42016: "UID-XYZ"})], shift_days=None)
    assert (0, 306, "") in edits and (0, 315, "") in edits and (1, 42016, "") in edits
    assert all(code != 305 for _, code, _ in edits)  # Software is not identity
    assert set(removed) == {"2023:05:14 09:30:11", "jdoe", "UID-XYZ"}
    edits, _ = mr.plan_tiff_tag_edits([(0, {306: "2023:05:14 09:30:11"})], shift_days=1)
    assert edits == [(0, 306, "2023:05:15 09:30:11")]


def test_scan_needles_and_finalize():
    b64 = base64.b64encode(b"BARCODE-123").decode()
    needles = mr.scan_needles(['"ABC123" "XYZ789"', b64, "abc"])
    assert b"ABC123" in needles and b"XYZ789" in needles
    assert b"BARCODE-123" in needles  # decoded base64 barcode
    assert b"abc" not in needles  # too short to scan for
    out = mr.finalize_removed(["KEPT-VALUE", "GONE-VALUE"], kept_text="<a v='KEPT-VALUE'/>")
    assert out == ["GONE-VALUE"]


def test_large_value_needles_skip_the_header():
    import hashlib

    v = "HEADER" * 40 + "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(40))
    slices = mr.large_value_needles(v)
    assert slices and all(s in v for s in slices)
    assert all(v.index(s) >= len(v) // 2 for s in slices)


def test_plan_private_tag_blanking():
    tags = {270: (2, b"desc\x00"), 256: (3, b"\x00\x04"), 65001: (2, b"SERIAL-123\x00"),
            33723: (7, b"\x1c\x02iptc-name-Jane\x00"), 65002: (7, b"\x00\x00"),
            65003: (4, b"\x01\x00\x00\x00")}
    edits, removed = mr.plan_private_tag_blanking([(2, tags)], handled=(270,))
    assert edits == [(2, 33723), (2, 65001)]  # text/bytes only, not blank, not handled
    assert "SERIAL-123" in removed and "iptc-name-Jane" in removed


@pytest.mark.parametrize("text, clean", [
    ('<?xml version="1.0"?><E Ver="2"><I Width="1" Height="2"/></E>', True),
    ('<E Ver="2"><I Name="Doe"/></E>', False),           # attribute not on the allowlist
    ('<E Ver="2">Jane</E>', False),                       # text content
    ('<E Ver="2"><!-- Jane --></E>', False),              # comment
    ('<E Ver="2"/>tail', False),                          # text after the root
    ('<E Ver="2" BuildDate="1/2/2020"/>', False),         # a date is never passed through
])
def test_xml_needs_no_cleaning(text, clean):
    assert mr.xml_needs_no_cleaning(text, {"Ver", "Width", "Height"}) is clean
