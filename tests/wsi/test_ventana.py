"""Ventana BIF: synthetic slides with planted identity, de-identified and verified."""

from __future__ import annotations

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")
tifffile = pytest.importorskip("tifffile")

from pixeldeid.errors import InputError  # noqa: E402
from tests.wsi.conftest import assert_same_pixels, sha  # noqa: E402
from wsi.api import deidentify_slide  # noqa: E402
from wsi.synth.ventana import make_ventana  # noqa: E402
from wsi.tiffedit import scan_raw  # noqa: E402
from wsi.ventana import clean_xmp  # noqa: E402


@pytest.mark.parametrize("label_description", ["Label_Image", "Label Image"])
def test_remove_label_image_and_clean_xmp(tmp_path, label_description):
    src = tmp_path / "case.bif"
    planted = make_ventana(src, label_description=label_description)
    s = openslide.OpenSlide(str(src))
    assert s.properties["openslide.vendor"] == "ventana"
    assert set(s.associated_images) == {"macro", "thumbnail"}
    assert {v for v, _ in scan_raw(src, list(planted.values()))} == set(planted.values())
    before = sha(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="V-0001", date_offset=5)
    assert r.status == "clean", (r.reason, r.problems)
    assert sha(src) == before
    out = openslide.OpenSlide(r.output)
    assert out.properties["openslide.vendor"] == "ventana"
    assert set(out.associated_images) == {"thumbnail"}
    for key in ("BaseName", "UnitNumber", "UserName", "Barcode1D", "Barcode2D", "SlideAnnotation"):
        assert f"ventana.{key}" not in out.properties
    assert out.properties["ventana.BuildDate"] == "12/25/2017 10:20:30 AM"
    assert out.properties["openslide.objective-power"] == "40"
    assert out.properties["openslide.mpp-x"] == "0.25"
    assert scan_raw(r.output, list(planted.values())) == []
    assert_same_pixels(src, r.output)
    # the label image IFD stays (it carries the XMP) but is a blank image now
    with tifffile.TiffFile(r.output) as tf:
        page = tf.pages[0]
        assert page.description == "Blank"
        assert int(page.asarray().min()) >= 250
    # tile geometry from the level-0 EncodeInfo is unchanged
    for k in ("openslide.region[0].width", "openslide.region[0].height"):
        assert out.properties[k] == s.properties[k]


def test_dates_removed_without_offset(tmp_path):
    src = tmp_path / "case.bif"
    make_ventana(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="V2")
    assert r.status == "clean", r.reason
    out = openslide.OpenSlide(r.output)
    assert "ventana.BuildDate" not in out.properties and "ventana.ScanDate" not in out.properties


def test_keep_macro_when_asked(tmp_path):
    src = tmp_path / "case.bif"
    make_ventana(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="V3", label="keep", macro="keep")
    assert r.status == "clean", r.reason
    assert "macro" in openslide.OpenSlide(r.output).associated_images


def test_clean_xmp_rules():
    raw = (b'<?xml version="1.0" encoding="utf-8"?><iScan Magnification="20" UserName="jdoe" '
           b'Z-layers="1"><AOI0 Left="1" Top="2" Note="S-99"/></iScan>\x00')
    new, removed = clean_xmp(raw, None)
    assert b"jdoe" not in new and b"S-99" not in new and b'Magnification="20"' in new
    assert {"jdoe", "S-99"} <= set(removed)
    with pytest.raises(InputError):
        clean_xmp(b"<iScan Magnification='1'", None)


def test_not_a_bif_is_refused(tmp_path):
    from wsi import ventana
    from wsi.api import SlideOptions

    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.zeros((64, 64, 3), np.uint8), tile=(32, 32))
    before = sha(p)
    with pytest.raises(InputError, match="iScan"):
        ventana.deidentify(p, SlideOptions())
    assert sha(p) == before


def test_region_redaction_unlinks_thumbnail(tmp_path):
    src = tmp_path / "case.bif"
    make_ventana(src)
    region = (100, 100, 300, 200)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="R1", redact_regions=[region])
    assert r.status == "clean", (r.reason, r.problems)
    out = openslide.OpenSlide(r.output)
    assert set(out.associated_images) == set()
    x, y, w, h = region
    for lvl, ds in enumerate(out.level_downsamples):
        inner = out.read_region((x + 16, y + 16), lvl, (int((w - 32) / ds), int((h - 32) / ds)))
        assert np.asarray(inner)[..., :3].max() <= 2, f"level {lvl}"


def test_unrecognized_ifd_is_not_released(tmp_path):
    src = tmp_path / "extra.bif"
    planted = make_ventana(src)
    with tifffile.TiffWriter(src, append=True) as tw:
        tw.write(np.zeros((8, 8), np.uint8), metadata=None, software=False,
                 description="Scanner snapshot", extratags=[(65001, "s", 0, planted["UnitNumber"], True)])
    r = deidentify_slide(src, tmp_path / "out", pseudonym="X1")
    assert r.status == "clean", (r.reason, r.problems)
    assert any("unrecognized" in a for a in r.report.actions)
    assert scan_raw(r.output, [planted["UnitNumber"], "Scanner snapshot"]) == []


def test_truncated_input_is_quarantined_untouched(tmp_path):
    src = tmp_path / "bad.bif"
    make_ventana(src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 3])
    before = sha(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="BAD")
    assert r.status == "quarantined" and r.reason
    assert sha(src) == before
    assert not list((tmp_path / "out").glob("BAD*"))
