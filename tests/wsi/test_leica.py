"""Leica SCN: synthetic slides with planted identity, de-identified and verified."""

from __future__ import annotations

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")

from pixeldeid.errors import InputError  # noqa: E402
from tests.wsi.conftest import assert_same_pixels as _same_pixels  # noqa: E402
from tests.wsi.conftest import sha  # noqa: E402
from wsi.api import deidentify_slide  # noqa: E402
from wsi.leica import clean_leica_xml  # noqa: E402
from wsi.synth.leica import LEICA_XMLNS, make_leica  # noqa: E402
from wsi.tiffedit import TiffEditor, scan_raw  # noqa: E402


@pytest.mark.parametrize("macro_after_first", [False, True])
def test_remove_macro_and_clean_xml(tmp_path, macro_after_first):
    src = tmp_path / "case.scn"
    planted = make_leica(src, macro_after_first=macro_after_first)
    s = openslide.OpenSlide(str(src))
    assert s.properties["openslide.vendor"] == "leica"
    assert s.properties["leica.barcode"] == planted["barcode"]
    assert "macro" in s.associated_images
    assert {v for v, _ in scan_raw(src, list(planted.values()))} == set(planted.values())
    before = sha(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="L-0001", date_offset=-3)
    assert r.status == "clean", (r.reason, r.problems)
    assert sha(src) == before
    out = openslide.OpenSlide(r.output)
    assert out.properties["openslide.vendor"] == "leica"
    assert set(out.associated_images) == set()
    assert "leica.barcode" not in out.properties and "openslide.barcode" not in out.properties
    assert out.properties["leica.creation-date"] == "2023-05-11T09:30:11.123Z"
    assert out.properties["leica.objective"] == "20"
    assert out.properties["openslide.mpp-x"] == s.properties["openslide.mpp-x"]
    assert scan_raw(r.output, list(planted.values())) == []
    assert_same_pixels(src, r.output)
    with TiffEditor(r.output) as ed:
        assert len(ed.ifds) == 3  # the macro's two IFDs left the chain
        assert 'ifd="2"' in ed.ifds[0].description and 'ifd="3"' not in ed.ifds[0].description


def test_dates_removed_without_offset(tmp_path):
    src = tmp_path / "case.scn"
    make_leica(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="L2")
    assert r.status == "clean", r.reason
    assert "leica.creation-date" not in openslide.OpenSlide(r.output).properties


def test_slide_without_macro(tmp_path):
    src = tmp_path / "nomacro.scn"
    planted = make_leica(src, macro=False)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="L3")
    assert r.status == "clean", (r.reason, r.problems)
    assert r.report.macro == "absent"
    assert scan_raw(r.output, [planted["barcode"], planted["serial"]]) == []


def test_clean_leica_xml_rules():
    xml = (f'<?xml version="1.0"?><scn xmlns="{LEICA_XMLNS}"><collection name="Doe" sizeX="10" '
           'sizeY="10"><barcode>QUJDREVG</barcode><image name="x"><view sizeX="10" sizeY="10" '
           'offsetX="0" offsetY="0"/><pixels><dimension ifd="3" sizeX="5" sizeY="5"/></pixels>'
           '</image></collection></scn>trailing')
    out, removed, macro_ifds = clean_leica_xml(xml, None)
    assert macro_ifds == [3]
    assert "Doe" not in out and "QUJDREVG" not in out and "trailing" not in out
    assert {"Doe", "QUJDREVG", "ABCDEF", "trailing"} <= set(removed)
    assert f'xmlns="{LEICA_XMLNS}"' in out
    with pytest.raises(InputError):
        clean_leica_xml("<scn><collection>", None)
    with pytest.raises(InputError, match="scn"):
        clean_leica_xml("<other/>", None)


def test_region_redaction_in_collection_coordinates(tmp_path):
    src = tmp_path / "case.scn"
    make_leica(src)
    a = openslide.OpenSlide(str(src))
    bx, by = int(a.properties["openslide.bounds-x"]), int(a.properties["openslide.bounds-y"])
    region = (bx + 100, by + 50, 300, 200)  # inside the main image, which is offset
    r = deidentify_slide(src, tmp_path / "out", pseudonym="R1", redact_regions=[region])
    assert r.status == "clean", (r.reason, r.problems)  # verify compared pixels outside
    out = openslide.OpenSlide(r.output)
    x, y, w, h = region
    for lvl, ds in enumerate(out.level_downsamples):
        inner = out.read_region((x + 16, y + 16), lvl, (int((w - 32) / ds), int((h - 32) / ds)))
        assert np.asarray(inner)[..., :3].max() <= 2, f"level {lvl}"
    before = np.asarray(a.read_region((bx, by), 0, (64, 32)))
    assert np.array_equal(before, np.asarray(out.read_region((bx, by), 0, (64, 32))))


def test_unreferenced_ifd_is_not_released(tmp_path):
    import tifffile

    src = tmp_path / "extra.scn"
    planted = make_leica(src)
    with tifffile.TiffWriter(src, append=True, bigtiff=True) as tw:
        tw.write(np.zeros((8, 8), np.uint8), metadata=None, software=False,
                 extratags=[(65001, "s", 0, planted["serial"], True)])
    r = deidentify_slide(src, tmp_path / "out", pseudonym="X1")
    assert r.status == "clean", (r.reason, r.problems)
    assert any("unreferenced" in a for a in r.report.actions)
    with TiffEditor(r.output) as ed:
        assert len(ed.ifds) == 3
    assert scan_raw(r.output, [planted["serial"]]) == []


def test_macro_in_ifd0_is_blanked(tmp_path):
    import tifffile

    src = tmp_path / "m0.scn"
    planted = make_leica(src, macro_first=True)
    assert "macro" in openslide.OpenSlide(str(src)).associated_images
    r = deidentify_slide(src, tmp_path / "out", pseudonym="M0")
    assert r.status == "clean", (r.reason, r.problems)
    assert not openslide.OpenSlide(r.output).associated_images
    assert scan_raw(r.output, list(planted.values())) == []
    with tifffile.TiffFile(r.output) as tf:
        assert len(tf.pages) == 4  # blank IFD 0 (holds the XML) + 3 main levels
        assert int(tf.pages[0].asarray().min()) >= 250
        assert 'ifd="0"' not in tf.pages[0].description
    assert_same_pixels(src, r.output)


@pytest.mark.parametrize("damage", ["truncate", "bad_xml"])
def test_damaged_input_is_quarantined_untouched(tmp_path, damage):
    src = tmp_path / "bad.scn"
    make_leica(src)
    data = bytearray(src.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 4]
    else:  # break the XML (openslide no longer detects Leica; we must not guess)
        i = data.find(b"<collection")
        data[i:i + 11] = b"<collection"[::-1]
    src.write_bytes(bytes(data))
    before = sha(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="BAD")
    assert r.status == "quarantined" and r.reason
    assert sha(src) == before
    assert not list((tmp_path / "out").glob("BAD*"))


def assert_same_pixels(a_path, b_path):
    _same_pixels(a_path, b_path, bounds=True)
