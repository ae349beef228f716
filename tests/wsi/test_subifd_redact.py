"""OME-TIFF pyramids whose reduced levels are SubIFDs (tag 330): regions redacted on every
level, other tiles byte-identical, SubIFDs of removed pages zeroed."""

from __future__ import annotations

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")
tifffile = pytest.importorskip("tifffile")

from tests.wsi.conftest import sha  # noqa: E402
from wsi.api import deidentify_slide  # noqa: E402
from wsi.redact import map_regions  # noqa: E402
from wsi.synth import ACCESSION, PATIENT, text_image, tissue  # noqa: E402
from wsi.tiffedit import SUB_BASE, TiffEditor  # noqa: E402

TILE = 128
REGION = (200, 150, 260, 180)  # level-0 x, y, w, h


def write_ome_pyramid(path, compression: str, *, label: bool = False, n_sub: int = 2):
    """An OME-TIFF as tifffile writes pyramids: level 0 in the chain, reductions in SubIFDs
    (and a stripped label page, not a level, with its own SubIFD reduction)."""
    img = tissue(768, 1024)
    with tifffile.TiffWriter(path, ome=True) as tw:
        opts = dict(tile=(TILE, TILE), compression=compression, photometric="rgb")
        tw.write(img, subifds=n_sub, metadata={"Name": f"{ACCESSION} {PATIENT}"}, **opts)
        for k in range(1, n_sub + 1):
            tw.write(np.ascontiguousarray(img[:: 2 ** k, :: 2 ** k]), subfiletype=1, **opts)
        if label:
            lab = text_image(256, 384, [PATIENT, ACCESSION])
            strips = dict(rowsperstrip=32, compression=compression, photometric="rgb")
            tw.write(lab, subifds=1, metadata={"Name": "label"}, **strips)
            tw.write(np.ascontiguousarray(lab[::2, ::2]), subfiletype=1, **strips)
    return img


def level_ifds(ed: TiffEditor) -> list[int]:
    return [0, *ed.subifds_of(0)]


def touched(ed: TiffEditor, i: int) -> set[int]:
    """Tiles of IFD ``i`` under the mapped region."""
    d = ed.ifd(i)
    h, w = d.shape
    across = -(-w // TILE)
    ((x0, y0, x1, y1),) = map_regions([REGION], ed.ifd(0).shape, d.shape)
    return {r * across + c for r in range(y0 // TILE, (y1 - 1) // TILE + 1)
            for c in range(x0 // TILE, (x1 - 1) // TILE + 1)}


@pytest.mark.parametrize("compression", ["zlib", "jpeg"])
def test_region_redacted_on_every_subifd_level(tmp_path, compression):
    src = tmp_path / "pyr.ome.tif"
    write_ome_pyramid(src, compression)
    before = sha(src)
    with TiffEditor(src) as ed:
        assert len(ed.subifds) == 2 and all(i >= SUB_BASE for i in ed.subifds_of(0))
    r = deidentify_slide(src, tmp_path / "out", pseudonym="OME-1", redact_regions=[REGION])
    assert r.status == "clean", (r.reason, r.problems)
    assert sha(src) == before
    assert openslide.OpenSlide(r.output).properties["openslide.vendor"] == "generic-tiff"
    with TiffEditor(src) as a, TiffEditor(r.output) as b:
        ids = level_ifds(b)
        assert ids == level_ifds(a) and len(ids) == 3
        for i in ids:
            hit = touched(b, i)
            assert r.report.redaction["tiles"][i] == len(hit)
            for k in range(len(b.segments(i))):  # untouched tiles: the same bytes
                if k not in hit:
                    assert a.read_segment(i, k) == b.read_segment(i, k), (i, k)
    with tifffile.TiffFile(r.output) as tf:
        levels = tf.series[0].levels
        assert len(levels) == 3
        for k, lv in enumerate(levels):
            arr = lv.asarray()
            x, y, w, h = (v // 2 ** k for v in REGION)
            inner = arr[y + 1:y + h - 1, x + 1:x + w - 1]
            assert inner.max() <= (0 if compression == "zlib" else 8), k


def test_removed_page_takes_its_subifds_with_it(tmp_path):
    src = tmp_path / "lab.ome.tif"
    write_ome_pyramid(src, "zlib", label=True, n_sub=1)
    with TiffEditor(src) as ed:
        assert len(ed.ifds) == 2
        (lab_sub,) = ed.subifds_of(1)
        tiles = [ed.read_segment(lab_sub, k) for k in range(len(ed.segments(lab_sub)))]
    r = deidentify_slide(src, tmp_path / "out", pseudonym="OME-2")
    assert r.status == "clean", (r.reason, r.problems)
    data = open(r.output, "rb").read()
    with TiffEditor(r.output) as ed:
        assert len(ed.ifds) == 1 and len(ed.subifds) == 1  # level 0's reduction stays
    assert not any(len(t) > 64 and t in data for t in tiles)  # the label's reduction is zeroed


@pytest.mark.parametrize("macro", ["remove", "redact"])
def test_tiled_ome_macro_series_is_not_a_level(tmp_path, macro):
    """A tiled page without the reduced-resolution bit is no openslide level: a tiled OME
    macro series is removed (its tiles zeroed) or kept with its label end blacked out."""
    from wsi.generic import MACRO_LABEL_FRACTION

    src = tmp_path / "mac.ome.tif"
    img = tissue(512, 768)
    mac = tissue(256, 512, seed=2)
    mac[:, :120] = text_image(256, 120, [PATIENT[:6], ACCESSION])
    with tifffile.TiffWriter(src, ome=True) as tw:
        opts = dict(tile=(TILE, TILE), compression="zlib", photometric="rgb")
        tw.write(img, subifds=1, metadata={"Name": "slide"}, **opts)
        tw.write(np.ascontiguousarray(img[::2, ::2]), subfiletype=1, **opts)
        tw.write(mac, metadata={"Name": "macro"}, **opts)
    assert openslide.OpenSlide(str(src)).level_count == 1  # openslide ignores page 1
    with TiffEditor(src) as ed:
        tiles = [ed.read_segment(1, k) for k in range(len(ed.segments(1)))]
    r = deidentify_slide(src, tmp_path / "out", pseudonym="OME-3", macro=macro)
    assert r.status == "clean", (r.reason, r.problems)
    data = open(r.output, "rb").read()
    with tifffile.TiffFile(r.output) as tf:
        if macro == "remove":
            assert len(tf.pages) == 1 and r.report.macro == "removed"
            assert not any(t in data for t in tiles)
        else:
            assert len(tf.pages) == 2 and r.report.macro == "redacted"
            after = tf.pages[1].asarray()
            end = int(round(mac.shape[1] * MACRO_LABEL_FRACTION))
            assert after[:, :end].max() == 0  # deflate: exact
            np.testing.assert_array_equal(after[:, end:], mac[:, end:])


def test_text_tags_of_subifds_are_cleaned(tmp_path):
    """Artist and private ASCII tags, in the chain and in SubIFDs, are blanked."""
    from wsi.tiffedit import scan_raw

    src = tmp_path / "tags.ome.tif"
    img = tissue(512, 512)
    with tifffile.TiffWriter(src, ome=True) as tw:
        opts = dict(tile=(TILE, TILE), compression="zlib", photometric="rgb")
        tw.write(img, subifds=1, metadata={"Name": "slide"},
                 extratags=[(65002, "s", 0, f"MRN {PATIENT}", True)], **opts)
        tw.write(np.ascontiguousarray(img[::2, ::2]), subfiletype=1,
                 extratags=[(315, "s", 0, PATIENT, True), (65001, "s", 0, ACCESSION, True)],
                 **opts)
    assert scan_raw(src, [PATIENT, ACCESSION])
    r = deidentify_slide(src, tmp_path / "out", pseudonym="OME-4")
    assert r.status == "clean", (r.reason, r.problems)
    assert scan_raw(r.output, [PATIENT, ACCESSION]) == []
    with TiffEditor(r.output) as ed:
        assert len(ed.subifds) == 1 and ed.subifds[0].get(315) in (None, "")
