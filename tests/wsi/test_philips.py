"""Philips TIFF: synthetic slides with planted identity, de-identified and verified."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")

from pixeldeid.errors import InputError  # noqa: E402
from tests.wsi.conftest import assert_same_pixels, sha  # noqa: E402
from wsi.api import deidentify_slide  # noqa: E402
from wsi.philips import clean_philips_xml  # noqa: E402
from wsi.synth.philips import make_philips  # noqa: E402
from wsi.tiffedit import scan_raw  # noqa: E402


@pytest.fixture
def slide(tmp_path):
    src = tmp_path / "in" / "case.tiff"
    src.parent.mkdir()
    planted = make_philips(src)
    return src, planted


def test_synthetic_slide_carries_the_planted_identity(slide):
    src, planted = slide
    s = openslide.OpenSlide(str(src))
    assert s.properties["openslide.vendor"] == "philips"
    assert {"label", "macro"} <= set(s.associated_images)
    assert s.properties["philips.DICOM_DEVICE_SERIAL_NUMBER"] == planted["serial"]
    found = {v for v, _ in scan_raw(src, list(planted.values()))}
    assert found == set(planted.values())  # the scan can see every planted value


def test_remove_label_macro_and_shift_dates(slide, tmp_path):
    src, planted = slide
    before = sha(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="SLIDE-0001", date_offset=-30)
    assert r.status == "clean", (r.reason, r.problems)
    assert Path(r.output).name == "SLIDE-0001.tiff"
    assert sha(src) == before
    out = openslide.OpenSlide(r.output)
    assert out.properties["openslide.vendor"] == "philips"
    assert set(out.associated_images) == set()
    assert out.properties["philips.DICOM_ACQUISITION_DATETIME"] == "20230414093011.000000"
    assert out.properties["philips.DICOM_DATE_OF_LAST_CALIBRATION"] == '"20230302"'
    assert "philips.DICOM_DEVICE_SERIAL_NUMBER" not in out.properties
    assert "philips.PIIM_DP_SCANNER_OPERATOR_ID" not in out.properties
    assert out.properties["openslide.mpp-x"] == "0.25"
    assert scan_raw(r.output, list(planted.values())) == []
    assert_same_pixels(src, r.output)
    assert r.report.label == "removed" and r.report.macro == "removed"
    assert "blanked 1 private/unknown text tags" in r.report.actions  # serial in tag 65001


def test_dates_removed_without_offset(slide, tmp_path):
    src, planted = slide
    r = deidentify_slide(src, tmp_path / "out", pseudonym="P2")
    assert r.status == "clean", r.reason
    out = openslide.OpenSlide(r.output)
    assert not [k for k in out.properties if "DATE" in k and k.startswith("philips.")]
    assert scan_raw(r.output, ["20230514", "20230401"]) == []


def test_replace_label_with_pseudonym(slide, tmp_path):
    src, planted = slide
    r = deidentify_slide(src, tmp_path / "out", pseudonym="SLIDE-0009", label="replace")
    assert r.status == "clean", (r.reason, r.problems)
    out = openslide.OpenSlide(r.output)
    assert set(out.associated_images) == {"label"}
    assert out.associated_images["label"].size == (240, 96)
    assert scan_raw(r.output, list(planted.values())) == []


def test_bigtiff(tmp_path):
    src = tmp_path / "big.tiff"
    planted = make_philips(src, bigtiff=True, width=768, height=512, levels=2)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="B1")
    assert r.status == "clean", (r.reason, r.problems)
    assert scan_raw(r.output, list(planted.values())) == []
    assert_same_pixels(src, r.output)


def test_unknown_identity_place_is_caught_by_the_scan(tmp_path):
    """A planted copy the cleaner does not know about (a JPEG comment inside a kept
    tile) quarantines the slide."""
    from wsi.tiffedit import TiffEditor

    src = tmp_path / "leaky.tiff"
    planted = make_philips(src)
    with TiffEditor(src, "r+") as ed:
        tile = ed.read_segment(1, 0)
        com = planted["serial"].encode()
        ed.replace_tile(1, 0, tile[:2] + b"\xff\xfe" + (len(com) + 2).to_bytes(2, "big") + com
                        + tile[2:])
    before = sha(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="L1")
    assert r.status == "quarantined"
    assert any(v == planted["serial"] for v, _ in r.scan_hits)
    assert r.output is None and not (tmp_path / "out" / "L1.tiff").exists()
    assert sha(src) == before


def test_unrecognized_page_is_not_released(tmp_path):
    import tifffile

    src = tmp_path / "extra.tiff"
    planted = make_philips(src)
    with tifffile.TiffWriter(src, append=True) as tw:
        tw.write(np.zeros((8, 8), np.uint8), metadata=None, software=False,
                 extratags=[(65001, "s", 0, planted["serial"], True)])
    r = deidentify_slide(src, tmp_path / "out", pseudonym="X1")
    assert r.status == "clean", (r.reason, r.problems)
    assert any("unrecognized image" in a for a in r.report.actions)
    assert len(tifffile.TiffFile(r.output).pages) == 3
    assert scan_raw(r.output, [planted["serial"]]) == []


def test_truncated_input_is_quarantined_untouched(slide, tmp_path):
    src, _ = slide
    data = src.read_bytes()
    bad = tmp_path / "trunc.tiff"
    bad.write_bytes(data[: len(data) // 3])
    before = sha(bad)
    r = deidentify_slide(bad, tmp_path / "out", pseudonym="T1")
    assert r.status == "quarantined" and r.reason
    assert sha(bad) == before
    assert not (tmp_path / "out" / "T1.tiff").exists()


def test_clean_xml_drops_tail_and_refuses_bad_documents():
    xml = ('<?xml version="1.0" ?><DataObject ObjectType="DPUfsImport">'
           '<Attribute Name="PIM_DP_SCANNED_IMAGES"><Array>'
           '<DataObject ObjectType="DPScannedImage">'
           '<Attribute Name="PIM_DP_IMAGE_TYPE">WSI</Attribute>'
           '<Attribute Name="PIIM_DP_SCANNER_OPERATOR_ID">op-jdoe</Attribute>'
           '</DataObject></Array></Attribute></DataObject>\n<!-- Jane Doe -->')
    out, removed, summary = clean_philips_xml(xml, None)
    assert "Jane Doe" not in out and "op-jdoe" not in out and out.endswith("</DataObject>")
    assert "op-jdoe" in removed and summary["tail"] > 0
    with pytest.raises(InputError, match="DPUfsImport"):
        clean_philips_xml('<DataObject ObjectType="Other"/>', None)
    with pytest.raises(InputError, match="exactly one WSI"):
        clean_philips_xml('<DataObject ObjectType="DPUfsImport"/>', None)
    with pytest.raises(InputError, match="malformed"):
        clean_philips_xml('<DataObject ObjectType="DPUfsImport"><Attribute></DataObject>', None)


def test_region_redaction_on_every_level(slide, tmp_path):
    src, planted = slide
    region = (100, 100, 300, 200)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="R1", redact_regions=[region])
    assert r.status == "clean", (r.reason, r.problems)  # verify compared pixels outside
    assert r.report.redaction["tiles"][0] == 4  # only the tiles that intersect
    out = openslide.OpenSlide(r.output)
    x, y, w, h = region
    for lvl, ds in enumerate(out.level_downsamples):
        # interior of the region, away from the JPEG blocks it cuts through
        inner = out.read_region((x + 16, y + 16), lvl, (int((w - 32) / ds), int((h - 32) / ds)))
        assert np.asarray(inner)[..., :3].max() <= 2, f"level {lvl} not blacked out"
    assert scan_raw(r.output, list(planted.values())) == []


def test_redaction_refused_when_macro_kept(slide, tmp_path):
    src, _ = slide
    r = deidentify_slide(src, tmp_path / "out", pseudonym="R2", macro="keep",
                         redact_regions=[(0, 0, 10, 10)])
    assert r.status == "quarantined" and "macro" in r.reason


def test_in_place(slide, tmp_path):
    src, planted = slide
    ref = tmp_path / "ref.tiff"
    ref.write_bytes(src.read_bytes())
    r = deidentify_slide(src, in_place=True, pseudonym="IP1", date_offset=3)
    assert r.status == "clean", (r.reason, r.problems)
    assert Path(r.output) == src
    assert scan_raw(src, list(planted.values())) == []
    assert openslide.OpenSlide(str(src)).properties["openslide.vendor"] == "philips"
    assert not openslide.OpenSlide(str(src)).associated_images
    assert_same_pixels(ref, src)
