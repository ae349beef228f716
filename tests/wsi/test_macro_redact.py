"""``--macro redact`` for every vendor: the macro stays, its label end is black, the rest of
it unchanged, and none of the planted identity is left in the raw bytes."""

from __future__ import annotations

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")

from tests.wsi.conftest import sha  # noqa: E402
from wsi.api import MACRO_REMOVE_ONLY, SlideOptions, deidentify_slide  # noqa: E402
from wsi.tiffedit import scan_raw  # noqa: E402

#: columns past the blacked-out label end that may change (whole JPEG MCUs, chroma upsampling)
EDGE = 24


def check_macro(before: np.ndarray, after: np.ndarray, fraction: float, *, exact: bool = True):
    """Label end black, the rest identical (``exact``) or within JPEG re-encoding error."""
    assert before.shape == after.shape
    w = before.shape[1]
    end = int(round(w * fraction))
    assert after[:, :end - 8].max() <= 8, "label end not blacked out"  # block edges blend
    assert before[:, :end].max() > 128  # there was something to black out
    rest_a = before[:, end + EDGE:].astype(int)
    rest_b = after[:, end + EDGE:].astype(int)
    if exact:
        np.testing.assert_array_equal(rest_a, rest_b)
    else:
        assert np.abs(rest_a - rest_b).mean() < 2.0


def macro_of(path) -> np.ndarray:
    return np.asarray(openslide.OpenSlide(str(path)).associated_images["macro"].convert("RGB"))


def run_vendor(src, tmp_path, planted, fraction, vendor, *, exact=True):
    before_sha = sha(src)
    before = macro_of(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="M-1", macro="redact")
    assert r.status == "clean", (r.reason, r.problems)
    assert sha(src) == before_sha
    assert r.report.macro == "redacted"
    assert not any("not redacted" in a for a in r.report.actions)
    b = openslide.OpenSlide(r.output)
    assert b.properties["openslide.vendor"] == vendor
    assert "macro" in b.associated_images
    check_macro(before, macro_of(r.output), fraction, exact=exact)
    assert scan_raw(r.output, planted) == []
    return r


def test_no_vendor_removes_instead_of_redacting():
    assert not MACRO_REMOVE_ONLY


@pytest.mark.parametrize("form", ["ifd+xml", "xml", "ifd"])
def test_philips(tmp_path, form):
    from wsi.philips import MACRO_LABEL_FRACTION
    from wsi.synth.philips import make_philips
    from wsi.tiffedit import TiffEditor

    src = tmp_path / "p.tiff"
    planted = make_philips(src, width=512, height=384, levels=2,
                           macro_ifd=form != "xml", xml_images=form != "ifd")
    r = run_vendor(src, tmp_path, list(planted.values()), MACRO_LABEL_FRACTION, "philips")
    with TiffEditor(r.output) as ed:
        xml = ed.ifds[0].description
        assert ("MACROIMAGE" in xml) == (form != "ifd")
        assert "LABELIMAGE" not in xml
        assert any((d.description or "") == "Macro" for d in ed.ifds) == (form != "xml")
    if form == "xml":  # the re-embedded JPEG decodes to the same macro as openslide shows
        import base64
        import re

        import imagecodecs

        b64 = re.search(r'Name="PIM_DP_IMAGE_DATA"[^>]*>([^<]+)<', xml).group(1)
        np.testing.assert_array_equal(imagecodecs.jpeg8_decode(base64.b64decode(b64)),
                                      macro_of(r.output))


@pytest.mark.parametrize("description", ["Label_Image", "Label Image"])
def test_ventana_label_image(tmp_path, description):
    from wsi.synth.ventana import make_ventana
    from wsi.ventana import MACRO_LABEL_FRACTION

    src = tmp_path / "v.bif"
    planted = make_ventana(src, width=512, height=384, levels=2, label_description=description)
    r = run_vendor(src, tmp_path, list(planted.values()), MACRO_LABEL_FRACTION, "ventana")
    assert r.report.label == "removed"
    # macro="remove" still removes it
    r2 = deidentify_slide(src, tmp_path / "out2", pseudonym="M-2", macro="remove")
    assert r2.status == "clean" and "macro" not in openslide.OpenSlide(r2.output).associated_images


@pytest.mark.parametrize("layout", ["last", "first"])
def test_leica(tmp_path, layout):
    from wsi.leica import MACRO_LABEL_FRACTION
    from wsi.synth.leica import make_leica

    src = tmp_path / "l.scn"
    planted = make_leica(src, width=512, height=384, levels=2, macro_first=layout == "first")
    r = run_vendor(src, tmp_path, list(planted.values()), MACRO_LABEL_FRACTION, "leica")
    assert openslide.OpenSlide(r.output).level_dimensions == \
        openslide.OpenSlide(str(src)).level_dimensions


@pytest.mark.parametrize("ome", [False, True], ids=["tiff", "ome"])
def test_generic_macro_page(tmp_path, ome):
    import tifffile

    from wsi.generic import MACRO_LABEL_FRACTION
    from wsi.synth.generic import make_generic

    s = make_generic(tmp_path / "g.tif", width=768, height=512, ome=ome, macro=True)
    k = s.info["macro_ifd"]
    before = tifffile.imread(s.path, key=k)
    r = deidentify_slide(s.path, tmp_path / "out", pseudonym="G-1", macro="redact")
    assert r.status == "clean", (r.reason, r.problems)
    assert r.report.macro == "redacted"
    assert openslide.OpenSlide(r.output).properties["openslide.vendor"] == "generic-tiff"
    with tifffile.TiffFile(r.output) as tf:
        assert len(tf.pages) == k + 1  # levels and the macro; the label page is gone
        after = tf.pages[k].asarray()
        if ome:
            assert 'Name="macro"' in tf.pages[0].description
        else:
            assert tf.pages[k].description == "macro"
    check_macro(before, after, MACRO_LABEL_FRACTION)
    assert scan_raw(r.output, s.planted) == []


@pytest.mark.parametrize("jpeg", [False, True], ids=["native", "jpeg"])
def test_dicom_overview(tmp_path, jpeg):
    import pydicom

    from wsi import dicomwsi
    from wsi.synth.dicomwsi import make_dicom_wsi

    src = tmp_path / "in"
    planted = make_dicom_wsi(src, overview_jpeg=jpeg)
    before = macro_of(src / "level-0.dcm")
    opts = SlideOptions(pseudonym="DM-1", macro="redact")
    (r,) = dicomwsi.deidentify_paths([src], tmp_path / "out", opts,
                                     dicomwsi.make_deidentifier(b"k" * 32, opts))
    assert r.status == "clean", (r.reason, r.problems)
    assert [k for _, k in r.dropped] == ["label"] and len(r.redacted) == 1
    level0 = [o for o in r.outputs if pydicom.dcmread(o, stop_before_pixels=True).ImageType[2]
              == "VOLUME"][0]
    b = openslide.OpenSlide(level0)
    assert set(b.associated_images) == {"macro"}
    check_macro(before, macro_of(level0), dicomwsi.OVERVIEW_LABEL_FRACTION, exact=not jpeg)
    for o in r.outputs:
        assert scan_raw(o, [v for k, v in planted.items() if not k.startswith("uid_")]) == []
    ov = [pydicom.dcmread(o) for o in r.outputs]
    ov = [d for d in ov if d.ImageType[2] == "OVERVIEW"][0]
    assert ov.SpecimenLabelInImage == "NO"
    assert ov.file_meta.TransferSyntaxUID == (pydicom.uid.JPEGBaseline8Bit if jpeg
                                              else pydicom.uid.ExplicitVRLittleEndian)


@pytest.mark.slow
def test_ocr_text_on_a_kept_philips_xml_macro(tmp_path):
    """``macro="keep"`` with OCR: the text found on the base64 macro is blacked out (the
    label end itself is not, as nothing asked for it)."""
    from wsi.redact import find_text_boxes, ocr_is_available
    from wsi.synth.philips import make_philips

    if not ocr_is_available("rapidocr"):
        pytest.skip("rapidocr-onnxruntime not installed (pixeldeid[ocr])")
    src = tmp_path / "p.tiff"
    make_philips(src, width=512, height=384, levels=2, macro_ifd=False)
    before = macro_of(src)
    boxes = find_text_boxes(before)
    assert boxes
    r = deidentify_slide(src, tmp_path / "out", pseudonym="M-3", macro="keep", ocr="rapidocr")
    assert r.status == "clean", (r.reason, r.problems)
    assert r.report.macro == "redacted"
    after = macro_of(r.output)
    assert find_text_boxes(after) == []
    for x0, y0, x1, y1 in boxes:
        assert after[y0 + 2:y1 - 2, x0 + 2:x1 - 2].max() <= 12
    assert after[:, 150:].mean() > 100  # the tissue beyond the text is still there


def test_macro_left_unredacted_is_caught_by_verification(tmp_path, monkeypatch):
    """Fail closed: a vendor module that kept the macro without blacking out its label end
    (here: a label fraction of zero) gets the slide quarantined by the verification."""
    import wsi.ventana
    from wsi.synth.ventana import make_ventana

    monkeypatch.setattr(wsi.ventana, "MACRO_LABEL_FRACTION", 0.0)
    src = tmp_path / "v.bif"
    make_ventana(src, width=512, height=384, levels=2)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="M-4", macro="redact")
    assert r.status == "quarantined"
    assert "macro label end not blacked out" in r.reason
    assert not list((tmp_path / "out").glob("*.bif"))
