"""Aperio SVS: synthetic slides with planted identity and the real CMU-1-Small-Region.svs."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import openslide
import pytest

from wsi.aperio import classify_ifds, clean_description
from wsi.api import deidentify_slide
from wsi.synth import ACCESSION, OPERATOR, PATIENT
from wsi.synth.aperio import make_aperio
from wsi.tiffedit import TiffEditor, scan_raw


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def svs(tmp_path):
    return make_aperio(tmp_path / "in" / "case 17 Jane Doe.svs")


def test_synthetic_opens_as_aperio_with_planted_identity(svs):
    s = openslide.OpenSlide(str(svs.path))
    assert s.properties["openslide.vendor"] == "aperio"
    assert set(s.associated_images) == {"label", "macro", "thumbnail"}
    assert s.properties["aperio.Title"] == PATIENT
    assert all(scan_raw(svs.path, [v]) for v in svs.planted)


def test_remove_label_macro_and_metadata(svs, tmp_path):
    before = _sha(svs.path)
    r = deidentify_slide(svs.path, tmp_path / "out", pseudonym="SUBJ-0001")
    assert r.status == "clean", r.reason
    assert _sha(svs.path) == before  # input untouched
    out = tmp_path / "out" / "SUBJ-0001.svs"
    assert r.output == str(out)
    assert scan_raw(out, svs.planted) == []
    a, b = openslide.OpenSlide(str(svs.path)), openslide.OpenSlide(str(out))
    assert b.properties["openslide.vendor"] == "aperio"
    assert b.level_dimensions == a.level_dimensions
    assert set(b.associated_images) == {"thumbnail"}
    assert b.properties["aperio.AppMag"] == "40"
    assert b.properties["aperio.MPP"] == "0.2520"
    assert "aperio.Date" not in b.properties and "aperio.User" not in b.properties
    np.testing.assert_array_equal(np.asarray(a.read_region((0, 0), 0, a.dimensions)),
                                  np.asarray(b.read_region((0, 0), 0, b.dimensions)))
    # no quarantine, no temporary left behind
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["SUBJ-0001.svs"]


def test_tiles_byte_identical_after_metadata_edit(svs, tmp_path):
    r = deidentify_slide(svs.path, tmp_path / "out", pseudonym="S2")
    with TiffEditor(svs.path) as a, TiffEditor(r.output) as b:
        for i in range(3):  # level 0, thumbnail, level 1
            assert [a.read(o, n) for o, n in a.segments(i)] == [b.read(o, n) for o, n in b.segments(i)]


def test_date_shift_keeps_shifted_date(svs, tmp_path):
    r = deidentify_slide(svs.path, tmp_path / "out", pseudonym="S3", date_offset=-10)
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    assert b.properties["aperio.Date"] == "11/13/26"
    assert b.properties["aperio.Time"] == "13:45:07"


def test_label_replace_carries_pseudonym_only(svs, tmp_path):
    r = deidentify_slide(svs.path, tmp_path / "out", pseudonym="SUBJ-0002", label="replace")
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    lab = np.asarray(b.associated_images["label"].convert("L"))
    a = openslide.OpenSlide(str(svs.path))
    orig = np.asarray(a.associated_images["label"].convert("L"))
    assert lab.shape == orig.shape
    assert (lab < 128).any() and not np.array_equal(lab, orig)
    assert "macro" not in b.associated_images
    assert scan_raw(r.output, [PATIENT, ACCESSION]) == []


def test_macro_redact_blacks_out_label_end(svs, tmp_path):
    r = deidentify_slide(svs.path, tmp_path / "out", pseudonym="S4", macro="redact")
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    a = openslide.OpenSlide(str(svs.path))
    mb = np.asarray(b.associated_images["macro"].convert("RGB"))
    ma = np.asarray(a.associated_images["macro"].convert("RGB"))
    w = mb.shape[1]
    assert mb[:, : int(w * 0.3) - 8].max() <= 8  # label end black (JPEG ringing aside)
    np.testing.assert_array_equal(mb[:, int(w * 0.3) + 24:], ma[:, int(w * 0.3) + 24:])


def test_region_redaction_on_every_level_and_thumbnail(svs, tmp_path):
    region = (300, 240, 480, 360)
    r = deidentify_slide(svs.path, tmp_path / "out", pseudonym="S5", redact_regions=[region])
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    x, y, w, h = region
    for lvl, ds in enumerate(b.level_downsamples):
        px = np.asarray(b.read_region((x, y), lvl, (int(w / ds), int(h / ds))))[..., :3]
        assert px.max() == 0, lvl
    th = np.asarray(b.associated_images["thumbnail"].convert("RGB"))
    s = th.shape[1] / svs.size[0]
    assert th[int(np.ceil(y * s)):int((y + h) * s), int(np.ceil(x * s)):int((x + w) * s)].max() == 0
    red = r.report.redaction
    # only tiles that intersect were re-encoded, and their size stays close to the old one
    assert 0 < red["tiles"][0] <= 9
    assert red["bytes_written"] <= 1.1 * red["bytes_affected"]
    # untouched tiles are byte-identical
    with TiffEditor(svs.path) as ea, TiffEditor(r.output) as eb:
        sa = [ea.read(o, n) for o, n in ea.segments(0)]
        sb = [eb.read(o, n) for o, n in eb.segments(0)]
    changed = [i for i, (p, q) in enumerate(zip(sa, sb, strict=True)) if p != q]
    assert len(changed) == red["tiles"][0]


@pytest.mark.parametrize("j2k, code", [(True, 33005), ("ycbcr", 33003)], ids=["rgb", "ycbcr"])
def test_jpeg2000_tiles_redacted_losslessly_on_every_level(tmp_path, j2k, code):
    """Aperio JPEG 2000 (33005 RGB, 33003 YCbCr): the tiles under the region are decoded,
    blacked out (in the stored colour space) and stored as lossless JPEG 2000 codestreams,
    so openslide reads black inside the region and the scanner's pixels, unchanged,
    everywhere else; other tiles keep their bytes."""
    s = make_aperio(tmp_path / "in" / "j2k.svs", width=960, height=720, levels=2, j2k=j2k)
    region = (100, 100, 300, 200)
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="S6", redact_regions=[region])
    assert r.status == "clean", r.reason
    a, b = openslide.OpenSlide(str(s.path)), openslide.OpenSlide(r.output)
    assert b.properties["openslide.vendor"] == "aperio"
    assert b.level_dimensions == a.level_dimensions
    x, y, w, h = region
    for lvl, ds in enumerate(b.level_downsamples):
        size = b.level_dimensions[lvl]
        pa = np.asarray(a.read_region((0, 0), lvl, size))[..., :3]
        pb = np.asarray(b.read_region((0, 0), lvl, size))[..., :3]
        inside = np.zeros(pa.shape[:2], bool)
        inside[int(y / ds):int(np.ceil((y + h) / ds)), int(x / ds):int(np.ceil((x + w) / ds))] = True
        assert pb[inside].max() == 0, lvl
        assert np.array_equal(pa[~inside], pb[~inside]), lvl
    with TiffEditor(s.path) as ea, TiffEditor(r.output) as eb:
        assert int(eb.ifd(0).first(259)) == code
        sa = [ea.read(o, n) for o, n in ea.segments(0)]
        sb = [eb.read(o, n) for o, n in eb.segments(0)]
    changed = [i for i, (p, q) in enumerate(zip(sa, sb, strict=True)) if p != q]
    assert len(changed) == r.report.redaction["tiles"][0] > 0
    assert all(sb[i][:4] == b"\xff\x4f\xff\x51" for i in changed)  # still J2K codestreams


def test_region_with_kept_macro_is_refused(svs, tmp_path):
    r = deidentify_slide(svs.path, tmp_path / "out", macro="keep", redact_regions=[(0, 0, 10, 10)])
    assert r.status == "quarantined" and "macro" in r.reason
    assert r.output is None
    assert (tmp_path / "out" / "quarantine").is_dir()


def test_gt450_label_by_subfiletype(tmp_path):
    s = make_aperio(tmp_path / "g.svs", gt450=True)
    with TiffEditor(s.path) as ed:
        kinds = classify_ifds(ed)
    assert sorted(kinds.values()) == ["label", "level", "level", "level", "macro", "thumbnail"]
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="G1")
    assert r.status == "clean", r.reason
    with TiffEditor(r.output) as ed:
        assert len(ed.ifds) == 4
    assert scan_raw(r.output, s.planted) == []


def test_label_at_index_1_is_not_a_thumbnail(tmp_path):
    s = make_aperio(tmp_path / "n.svs", thumbnail=False, macro=False, levels=1)
    o = openslide.OpenSlide(str(s.path))
    assert "thumbnail" not in o.associated_images or True  # openslide names it by position
    with TiffEditor(s.path) as ed:
        assert classify_ifds(ed)[1] == "label"
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="N1")
    assert r.status == "clean", r.reason
    assert openslide.OpenSlide(r.output).associated_images == {}


def test_clean_description_rules():
    new, removed = clean_description(
        "Aperio Image Library v1 \r\n10x10 [0,0 10x10] (1x1) JPEG/RGB Q=70|AppMag = 20"
        "|User = bob smith|Date = 01/02/03|Time = 10:11:12|MPP = 0.5|Weird Key = x y z", None)
    assert new == ("Aperio Image Library v1 \r\n10x10 [0,0 10x10] (1x1) JPEG/RGB Q=70"
                   "|AppMag = 20|MPP = 0.5")
    assert set(removed) == {"bob smith", "01/02/03", "10:11:12", "x y z"}


def test_real_cmu1(real, tmp_path):
    src = real("CMU-1-Small-Region.svs")
    r = deidentify_slide(src, tmp_path / "out", pseudonym="CMU")
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    assert set(b.associated_images) == {"thumbnail"}
    for key in ("aperio.Filename", "aperio.User", "aperio.ScanScope ID", "aperio.Date"):
        assert key not in b.properties
    assert scan_raw(r.output, ["CPAPERIOCS", "b414003d-95c6-48b0-9369-8010ed517ba7",
                               "12/29/09", "Filename = CMU-1"]) == []


def test_real_cmu1_redaction_shared_jpegtables(real, tmp_path):
    src = real("CMU-1-Small-Region.svs")
    r = deidentify_slide(src, tmp_path / "out", pseudonym="CMU", redact_regions=[(500, 700, 400, 300)])
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    assert np.asarray(b.read_region((500, 700), 0, (400, 300)))[..., :3].max() == 0
    a = openslide.OpenSlide(str(src))
    ra = np.asarray(a.read_region((0, 0), 0, a.dimensions))
    rb = np.asarray(b.read_region((0, 0), 0, b.dimensions))
    diff = np.argwhere((ra != rb).any(-1))
    # changes stay within the region grown to whole 8/16-pixel JPEG blocks
    assert diff[:, 0].min() >= 700 - 17 and diff[:, 0].max() < 1000 + 17
    assert diff[:, 1].min() >= 500 - 17 and diff[:, 1].max() < 900 + 17
    assert r.report.redaction["bytes_written"] <= 1.1 * r.report.redaction["bytes_affected"]


@pytest.mark.parametrize("name", ["openslide-python_unopenable.tiff", "openslide-python_unreadable.svs"])
def test_unopenable_fixtures_quarantined_input_untouched(real, tmp_path, name):
    src = real(name)
    before = _sha(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="X")
    assert r.status == "quarantined" and r.reason
    assert _sha(src) == before
    assert list((tmp_path / "out").glob("X*")) == []


def test_leftover_value_quarantines(svs, tmp_path):
    # a value the caller knows is identifying but the rules keep: the raw scan catches it
    r = deidentify_slide(svs.path, tmp_path / "out", pseudonym="L1", extra_values=["StripeWidth = 992"])
    assert r.status == "quarantined"
    assert "still in the file" in r.reason
    assert not (tmp_path / "out" / "L1.svs").exists()
    assert r.scan_hits and r.scan_hits[0][0] == "StripeWidth = 992"


def test_in_place_failure_leaves_input_untouched(svs, tmp_path):
    before = _sha(svs.path)
    r = deidentify_slide(svs.path, in_place=True, extra_values=["AppMag = 40"],
                         quarantine_dir=tmp_path / "q")
    assert r.status == "quarantined"
    assert _sha(svs.path) == before
    assert not list(svs.path.parent.glob(".pixeldeid-tmp-*"))


@pytest.mark.slow
def test_ocr_finds_sticker_on_tissue_and_macro_text(tmp_path):
    from wsi.redact import find_text_boxes, ocr_is_available

    if not ocr_is_available("rapidocr"):
        pytest.skip("rapidocr-onnxruntime not installed (pixeldeid[ocr])")
    s = make_aperio(tmp_path / "s.svs", sticker=True)
    a = openslide.OpenSlide(str(s.path))
    assert find_text_boxes(np.asarray(a.associated_images["thumbnail"].convert("RGB")))
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="O1", ocr="rapidocr", macro="keep")
    assert r.status == "clean", r.reason
    b = openslide.OpenSlide(r.output)
    # the sticker (level-0 box 250..1750 x 300..780) is black on level 0 where its text was
    assert np.asarray(b.read_region((300, 380), 0, (800, 120)))[..., :3].max() <= 12
    assert find_text_boxes(np.asarray(b.associated_images["thumbnail"].convert("RGB"))) == []
    assert find_text_boxes(np.asarray(b.associated_images["macro"].convert("RGB"))) == []
    assert r.report.macro == "redacted"


def test_private_ascii_tag_is_blanked(tmp_path):
    s = make_aperio(tmp_path / "p.svs", width=960, height=720, levels=2, private_tag=True)
    assert scan_raw(s.path, [f"{OPERATOR} {ACCESSION}"])
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="P1")
    assert r.status == "clean", (r.reason, r.problems)
    assert scan_raw(r.output, [OPERATOR, ACCESSION]) == []
    with TiffEditor(r.output) as ed:
        assert ed.ifds[1].get(65001) in ("", None)


#: where the red team hid a name in an Aperio ImageDescription: (page, old, new)
_PLANTED_PLACES = {
    "scanner line": (0, "v12.0.15", "v12.0.15 Mary Roe"),
    "extra line in first field": (0, "Q=80|", "Q=80\r\nPatient Mary Roe|"),
    "allowed key's value": (0, "|AppMag = 40", "|AppMag = 40 Mary Roe"),
    "thumbnail first field": (1, "-> ", "-> Mary Roe "),
}


def _plant(path, places):
    import tifffile

    for page, old, new in places:
        with tifffile.TiffFile(path) as t:
            d = t.pages[page].description
        assert old in d
        tifffile.tiffcomment(path, d.replace(old, new, 1).encode(), pageindex=page)


@pytest.mark.parametrize("where", [*_PLANTED_PLACES, "all four"])
def test_name_in_description_header_or_safe_value_never_survives(tmp_path, where):
    import tifffile

    s = make_aperio(tmp_path / "in" / "s.svs")
    places = list(_PLANTED_PLACES.values()) if where == "all four" else [_PLANTED_PLACES[where]]
    _plant(s.path, places)
    assert b"Mary Roe" in s.path.read_bytes()
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="MR1")
    if r.status != "clean":  # quarantined is acceptable, passed through is not
        assert r.status == "quarantined" and not (tmp_path / "out" / "MR1.svs").exists()
        return
    data = open(r.output, "rb").read()
    assert b"Mary Roe" not in data and b"Mary" not in data
    b = openslide.OpenSlide(r.output)
    assert b.properties["openslide.vendor"] == "aperio"
    assert b.properties["aperio.MPP"] == "0.2520"
    if "allowed key's value" in where or where == "all four":
        assert "aperio.AppMag" not in b.properties  # a value not of its form is dropped
    else:
        assert b.properties["aperio.AppMag"] == "40"
    with tifffile.TiffFile(r.output) as t:
        assert t.pages[0].description.startswith("Aperio Image Library v12.0.15 \r\n2000x1500 [")
        t.pages[0].asarray()


def test_unknown_scanner_line_quarantines(tmp_path):
    s = make_aperio(tmp_path / "in" / "s.svs")
    _plant(s.path, [(0, "Aperio Image Library v12.0.15", "Aperio Mary Roe Library v12")])
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="MR2")
    assert r.status == "quarantined" and "scanner library line" in r.reason


@pytest.mark.parametrize("where", ["past the end", "zero offset"])
def test_tile_outside_the_file_quarantines(tmp_path, where):
    """A level-0 tile offset past the end of the file passed as clean, and openslide could
    not read level 0 of the output."""
    import struct

    import tifffile

    s = make_aperio(tmp_path / "in" / "bad.svs")
    b = bytearray(s.path.read_bytes())
    with tifffile.TiffFile(s.path) as t:
        vo = t.pages[0].tags["TileOffsets"].valueoffset
    struct.pack_into("<I", b, vo + 4 * 5, len(b) + 100000 if where == "past the end" else 0)
    s.path.write_bytes(bytes(b))
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="BAD")
    assert r.status == "quarantined", r.reason
    assert "outside the file" in r.reason
    assert not (tmp_path / "out" / "BAD.svs").exists()
    assert list((tmp_path / "out" / "quarantine").glob("*.reason.txt"))


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_in_place_refuses_a_name_that_is_not_the_only_one(svs, tmp_path, link):
    """In place, a symbolic link was replaced by the cleaned file and its target kept the
    identity; other hard links of the file keep it too: both are refused."""
    other = tmp_path / "cohort" / "case1.svs"
    other.parent.mkdir()
    if link == "symbolic":
        other.symlink_to(svs.path)
        edited = other
    else:
        os.link(svs.path, other)
        edited = svs.path
    before = _sha(svs.path)
    r = deidentify_slide(edited, in_place=True, pseudonym="L1", quarantine_dir=tmp_path / "q")
    assert r.status == "quarantined" and "link" in r.reason
    assert _sha(svs.path) == before and (link == "hard" or other.is_symlink())


def test_in_place_keeps_the_files_permissions(svs):
    os.chmod(svs.path, 0o644)
    r = deidentify_slide(svs.path, in_place=True, pseudonym="L1")
    assert r.status == "clean", r.reason
    assert svs.path.stat().st_mode & 0o777 == 0o644
