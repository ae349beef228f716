"""Generic tiled TIFF and OME-TIFF slides."""

from __future__ import annotations

import numpy as np
import openslide
import pytest

from wsi.api import deidentify_slide
from wsi.generic import clean_ome_xml, pyramid_ifds
from wsi.synth.generic import _ome_xml, make_generic, make_ome
from wsi.tiffedit import TiffEditor, scan_raw


@pytest.mark.parametrize("maker", [make_generic, make_ome], ids=["tiff", "ome"])
def test_generic_deidentified(tmp_path, maker):
    s = maker(tmp_path / "in" / "slide.tif")
    a = openslide.OpenSlide(str(s.path))
    assert a.properties["openslide.vendor"] == "generic-tiff"
    assert all(scan_raw(s.path, [v]) for v in s.planted)
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="GEN-1")
    assert r.status == "clean", r.reason
    assert scan_raw(r.output, s.planted) == []
    b = openslide.OpenSlide(r.output)
    assert b.properties["openslide.vendor"] == "generic-tiff"
    assert b.level_dimensions == a.level_dimensions
    with TiffEditor(r.output) as ed:
        assert len(ed.ifds) == len(pyramid_ifds(ed)) == 3  # the hidden label page is gone
        assert ed.ifds[0].get(315) in (None, "")
    np.testing.assert_array_equal(np.asarray(a.read_region((0, 0), 1, a.level_dimensions[1])),
                                  np.asarray(b.read_region((0, 0), 1, b.level_dimensions[1])))


def test_ome_xml_kept_structure():
    new, removed = clean_ome_xml(_ome_xml(100, 80), 10, "P1")
    assert 'SizeX="100"' in new and 'PhysicalSizeX="0.25"' in new
    assert "Experimenter" not in new and "StructuredAnnotations" not in new
    assert "<AcquisitionDate>2025-03-14T05:06:07</AcquisitionDate>" in new
    assert 'Name="P1"' in new
    assert any("Jane Q Doe" in v for v in removed)


def test_generic_lzw_redaction(tmp_path):
    s = make_generic(tmp_path / "z.tif", compression="zlib", label=False)
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="Z", redact_regions=[(260, 260, 300, 200)])
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    a = openslide.OpenSlide(str(s.path))
    for lvl, ds in enumerate(b.level_downsamples):
        x0, y0 = int(np.ceil(260 / ds)), int(np.ceil(260 / ds))
        w, h = int(300 / ds) - 1, int(200 / ds) - 1
        assert np.asarray(b.read_region((260, 260), lvl, (w, h)))[..., :3].max() == 0, lvl
        del x0, y0
    # lossless codec: everything outside the region is identical
    ra = np.asarray(a.read_region((0, 0), 0, a.dimensions))
    rb = np.asarray(b.read_region((0, 0), 0, b.dimensions))
    mask = np.ones(ra.shape[:2], bool)
    mask[260:460, 260:560] = False
    np.testing.assert_array_equal(ra[mask], rb[mask])


def test_real_boxes_tiff(real, tmp_path):
    src = real("openslide-python_boxes.tiff")
    r = deidentify_slide(src, tmp_path / "out", pseudonym="BOX", redact_regions=[(64, 64, 64, 64)])
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    assert np.asarray(b.read_region((64, 64), 0, (64, 64)))[..., :3].max() == 0
    assert r.report.redaction["tiles"][0] == 1


def test_exif_subifd_refused(tmp_path):
    import tifffile

    from wsi.synth import tissue

    img = tissue(512, 512)
    p = tmp_path / "exif.tif"
    with tifffile.TiffWriter(p) as tw:  # tifffile will not write 34665: write 65000, rename
        tw.write(img, tile=(256, 256), compression="zlib", metadata=None,
                 extratags=[(65000, 4, 1, 8, True)])
    with TiffEditor(p) as ed:
        entry = ed.ifds[0].tags[65000].entry_offset
    data = bytearray(p.read_bytes())
    data[entry:entry + 2] = (34665).to_bytes(2, "little")  # an EXIF sub-IFD pointer
    p.write_bytes(bytes(data))
    r = deidentify_slide(p, tmp_path / "out")
    assert r.status == "quarantined" and "EXIF" in r.reason


def test_icc_profile_text_is_blanked_in_place(tmp_path):
    """A scanner's ICC profile (TIFF tag 34675) is kept for its colour transform; its
    description and copyright are text anyone can set: replaced by spaces, same size."""
    from tests.pixeldeid.test_iccprofile import _build, _desc_v2, _srgb, _text

    icc = _build(_srgb(), {b"desc": _desc_v2(b"Profile of Zorbaxton Quilleran", "Zorbaxton",
                                             b"Zorbaxton"),
                           b"cprt": _text(b"(c) Brindlefold Infirmary")})
    s = make_generic(tmp_path / "in" / "slide.tif", icc=icc, label=False)
    assert scan_raw(s.path, ["Zorbaxton", "Brindlefold"])
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="GEN-1")
    assert r.status == "clean", r.reason
    assert scan_raw(r.output, ["Zorbaxton", "Brindlefold"]) == []
    with TiffEditor(r.output) as ed:
        kept = ed.ifds[0].tags[34675].raw
    assert len(kept) == len(icc) and kept[:128] == icc[:128]
