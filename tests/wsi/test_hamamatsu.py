"""Hamamatsu NDPI: synthetic NDPI with planted identity and the real test3-DAPI-2-(387).ndpi."""

from __future__ import annotations

import hashlib

import numpy as np
import openslide
import pytest

from wsi.api import deidentify_slide
from wsi.hamamatsu import clean_property_map
from wsi.synth.hamamatsu import PROPERTY_MAP, make_ndpi
from wsi.tiffedit import TiffEditor, scan_raw


@pytest.fixture
def ndpi(tmp_path):
    return make_ndpi(tmp_path / "in" / "S24-001234.ndpi")


def test_synthetic_ndpi_opens_with_planted_identity(ndpi):
    s = openslide.OpenSlide(str(ndpi.path))
    assert s.properties["openslide.vendor"] == "hamamatsu"
    assert "macro" in s.associated_images
    assert s.properties["hamamatsu.NDP.S/N"] == "SN-7788990"
    with TiffEditor(ndpi.path) as ed:
        assert ed.is_ndpi
        offs = {d.tags[65449].value_offset for d in ed.ifds}
        assert len(offs) == 1  # one shared property map
    assert all(scan_raw(ndpi.path, [v]) for v in ndpi.planted)


def test_ndpi_deidentified(ndpi, tmp_path):
    before = hashlib.sha256(ndpi.path.read_bytes()).hexdigest()
    r = deidentify_slide(ndpi.path, tmp_path / "out", pseudonym="SUBJ-9")
    assert r.status == "clean", r.reason
    assert hashlib.sha256(ndpi.path.read_bytes()).hexdigest() == before
    assert scan_raw(r.output, ndpi.planted) == []
    a, b = openslide.OpenSlide(str(ndpi.path)), openslide.OpenSlide(r.output)
    assert b.properties["openslide.vendor"] == "hamamatsu"
    assert b.level_dimensions == a.level_dimensions
    assert "macro" not in b.associated_images
    assert b.properties["hamamatsu.Reference"] == ""
    assert b.properties["hamamatsu.Objective.Lens.Magnificant"] == "20.0"
    assert "hamamatsu.Created" not in b.properties and "hamamatsu.NDP.S/N" not in b.properties
    for lvl in range(b.level_count):
        w, h = b.level_dimensions[lvl]
        np.testing.assert_array_equal(np.asarray(a.read_region((0, 0), lvl, (w, h))),
                                      np.asarray(b.read_region((0, 0), lvl, (w, h))))
    # level JPEGs untouched byte for byte
    with TiffEditor(ndpi.path) as ea, TiffEditor(r.output) as eb:
        for i in range(3):
            assert ea.read_segment(i, 0) == eb.read_segment(i, 0)


def test_ndpi_text_tags_no_rule_knows_are_zeroed(tmp_path):
    """An NDPI ImageDescription and a private ASCII tag (65500) held an accession number
    and a name: NDPI files were cleaned by the property-map rules only and released them."""
    extra = {270: "Case S24-55120 for Harrowgate Quentin", 65500: "operator qharrowgate"}
    src = make_ndpi(tmp_path / "in" / "x.ndpi", levels=2, extra_text=extra)
    assert all(scan_raw(src.path, [v]) for v in extra.values())
    r = deidentify_slide(src.path, tmp_path / "out", pseudonym="SUBJ-9")
    assert r.status == "clean", r.reason
    assert scan_raw(r.output, [*src.planted, "S24-55120", "Harrowgate", "qharrowgate"]) == []
    b = openslide.OpenSlide(r.output)
    assert b.properties["openslide.vendor"] == "hamamatsu"
    assert b.level_dimensions == openslide.OpenSlide(str(src.path)).level_dimensions


def test_ndpi_date_shift(ndpi, tmp_path):
    r = deidentify_slide(ndpi.path, tmp_path / "out", pseudonym="S", date_offset=30)
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    assert b.properties["hamamatsu.Created"] == "2024/06/22"
    assert b.properties["tiff.DateTime"] == "2024:07:01 10:11:12"


def test_ndpi_macro_redact(ndpi, tmp_path):
    r = deidentify_slide(ndpi.path, tmp_path / "out", pseudonym="S", macro="redact")
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    m = np.asarray(b.associated_images["macro"].convert("RGB"))
    a = np.asarray(openslide.OpenSlide(str(ndpi.path)).associated_images["macro"].convert("RGB"))
    cut = int(m.shape[1] * 0.27)
    assert m[:, : cut - 16].max() <= 8
    np.testing.assert_array_equal(m[:, cut + 24:], a[:, cut + 24:])


def test_ndpi_region_redaction_whole_level_jpeg(ndpi, tmp_path):
    # the synthetic levels have no restart markers: each level is one interval
    r = deidentify_slide(ndpi.path, tmp_path / "out", redact_regions=[(300, 200, 400, 300)])
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    for lvl, ds in enumerate(b.level_downsamples):
        w, h = int(400 / ds), int(300 / ds)
        if w and h:
            assert np.asarray(b.read_region((300, 200), lvl, (w, h)))[..., :3].max() == 0, lvl
    assert ndpi.path.stat().st_size == __import__("os").path.getsize(r.output)  # in place
    r2 = deidentify_slide(ndpi.path, tmp_path / "out2", macro="keep", redact_regions=[(0, 0, 9, 9)])
    assert r2.status == "quarantined" and "macro" in r2.reason


def test_real_ndpi_restart_interval_redaction(real, tmp_path):
    src = real("test3-DAPI-2-(387).ndpi")
    region = (1000, 1500, 700, 400)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="RN", redact_regions=[region])
    assert r.status == "clean", r.reason
    a, b = openslide.OpenSlide(str(src)), openslide.OpenSlide(r.output)
    red = r.report.redaction
    assert red["tiles"][0] == 51  # 8-pixel restart-interval rows touched at level 0
    assert red["bytes_written"] <= 1.1 * red["bytes_affected"]
    for lvl, ds in enumerate(b.level_downsamples):
        x, y, w, h = region
        ra = np.asarray(a.read_region((0, 0), lvl, a.level_dimensions[lvl]))
        rb = np.asarray(b.read_region((0, 0), lvl, b.level_dimensions[lvl]))
        y0, y1 = int(np.ceil(y / ds)), int((y + h) / ds)
        x0, x1 = int(np.ceil(x / ds)), int((x + w) / ds)
        assert rb[y0:y1, x0:x1, :3].max() == 0, lvl
        diff = np.argwhere((ra != rb).any(-1))
        assert diff[:, 0].min() >= y / ds - 9 and diff[:, 0].max() <= (y + h) / ds + 9, lvl
        assert diff[:, 1].min() >= x / ds - 9 and diff[:, 1].max() <= (x + w) / ds + 9, lvl
    with TiffEditor(src) as ea, TiffEditor(r.output) as eb:
        for i in range(4):  # offsets and MCU starts unchanged: edits were in place
            assert ea.segments(i) == eb.segments(i)
            assert ea.ifds[i].get(65426) == eb.ifds[i].get(65426)


def test_property_map_rules():
    new, removed = clean_property_map(PROPERTY_MAP, None)
    assert "Product=C13210-01\r\n" in new and "Objective.Lens.Magnificant=20.0" in new
    for bad in ("Created", "NDP.S/N", "Macro.S/N", "Operator", "Shading", "SerialNumber"):
        assert bad not in new
    assert {"SN-7788990", "MS-5566771", "Jane Q Doe", "SHD-99127", "2024/05/30"} <= set(removed)


def test_real_ndpi(real, tmp_path):
    src = real("test3-DAPI-2-(387).ndpi")
    r = deidentify_slide(src, tmp_path / "out", pseudonym="REAL-1")
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    assert b.properties["openslide.vendor"] == "hamamatsu"
    assert b.associated_images == {}
    assert "hamamatsu.NDP.S/N" not in b.properties
    # serials and dates gone everywhere, including the nested shading blob
    assert scan_raw(r.output, ["950291", "950410", "2017/01/27", "2011/05/23",
                               "2017:02:07 13:06:43"]) == []
    with TiffEditor(r.output) as ed:
        assert len(ed.ifds) == 4
        assert ed.ifds[0].get(271) == "Hamamatsu"


@pytest.mark.slow
def test_ndpi_over_4gb_offsets(tmp_path):
    """IFDs and values past 4 GB (sparse filler): parsed with the high offset words, edited."""
    import os

    import tifffile

    from wsi.api import SlideOptions
    from wsi.hamamatsu import deidentify

    s = make_ndpi(tmp_path / "big.ndpi", width=512, height=384, filler=(1 << 32) + (64 << 20))
    if os.stat(s.path).st_blocks * 512 > (1 << 30):
        pytest.skip("file system does not keep sparse files sparse")
    with TiffEditor(s.path) as ed:
        assert ed.is_ndpi and ed.first_ifd > (1 << 32)
        assert ed.ifds[0].tags[282].value_offset > (1 << 32)
        assert ed.ifds[0].get(282) == (43826, 1)
        assert ed.segments(0)[0][0] > (1 << 32)  # strip offset with its high word
    o = openslide.OpenSlide(str(s.path))
    assert o.properties["openslide.vendor"] == "hamamatsu"
    before = np.asarray(o.read_region((0, 0), 0, (128, 128)))
    o.close()
    # macro redacted in place-appended past 4 GB (high word written), then removed
    rep = deidentify(s.path, SlideOptions(macro="redact"))
    assert rep.macro == "redacted"
    o = openslide.OpenSlide(str(s.path))
    m = np.asarray(o.associated_images["macro"].convert("RGB"))
    assert m[:, : int(m.shape[1] * 0.27) - 16].max() <= 8
    np.testing.assert_array_equal(np.asarray(o.read_region((0, 0), 0, (128, 128))), before)
    o.close()
    rep = deidentify(s.path, SlideOptions())
    assert rep.macro == "removed"
    with tifffile.TiffFile(s.path) as tf:
        assert len(tf.pages) == 3
        assert "NDP.S/N" not in tf.pages[0].tags[65449].value
    # the values before the filler were edited in place; nothing planted survives there
    with open(s.path, "rb") as fh:
        head = fh.read(1 << 20)
    assert all(v.encode() not in head for v in s.planted)
