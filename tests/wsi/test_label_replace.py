"""``label="replace"``: a synthesized pseudonym label where the format has a label image
(Philips XML LABELIMAGE), a stated no-op where it has none (NDPI, Ventana, Leica)."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

openslide = pytest.importorskip("openslide")

from wsi.api import deidentify_slide  # noqa: E402
from wsi.philips import label_jpeg  # noqa: E402
from wsi.synth.hamamatsu import make_ndpi  # noqa: E402
from wsi.synth.leica import make_leica  # noqa: E402
from wsi.synth.philips import make_philips  # noqa: E402
from wsi.synth.ventana import make_ventana  # noqa: E402
from wsi.tiffedit import scan_raw  # noqa: E402


def _label(path) -> np.ndarray:
    return np.asarray(openslide.OpenSlide(str(path)).associated_images["label"].convert("L"),
                      dtype=np.int16)


def test_philips_label_is_replaced_by_one_showing_the_pseudonym(tmp_path):
    src = tmp_path / "p.tiff"
    planted = make_philips(src, width=512, height=384, levels=2)
    before = _label(src)
    outs = {}
    for name in ("SLIDE-0009", "SLIDE-0010"):
        r = deidentify_slide(src, tmp_path / name, pseudonym=name, label="replace")
        assert r.status == "clean", (r.reason, r.problems)
        assert r.report.label == "replaced"
        assert scan_raw(r.output, list(planted.values())) == []
        outs[name] = _label(r.output)
    want = np.asarray(Image.open(io.BytesIO(label_jpeg("SLIDE-0009"))).convert("L"), np.int16)
    got = outs["SLIDE-0009"]
    assert got.shape == want.shape
    err = np.abs(got - want).mean()
    assert err < 2  # the pseudonym label, not a blank or the original
    assert before.shape != want.shape or np.abs(before - want).mean() > 3 * err + 2
    assert np.abs(outs["SLIDE-0009"] - outs["SLIDE-0010"]).max() > 100  # text differs


@pytest.mark.parametrize("vendor", ["hamamatsu", "ventana", "leica"])
def test_replace_without_a_label_image_says_so(vendor, tmp_path, caplog):
    src = tmp_path / ("s.ndpi" if vendor == "hamamatsu" else "s.bif" if vendor == "ventana"
                      else "s.scn")
    if vendor == "hamamatsu":
        make_ndpi(src, width=512, height=384)
    elif vendor == "ventana":
        make_ventana(src, width=512, height=384, levels=2)
    else:
        make_leica(src, width=512, height=384, levels=2)
    with caplog.at_level(logging.WARNING, logger="wsi.api"):
        r = deidentify_slide(src, tmp_path / "out", pseudonym="S-1", label="replace")
    assert r.status == "clean", (r.reason, r.problems)
    assert r.vendor == vendor
    assert r.report.label != "replaced"
    assert any("no separate label image" in a for a in r.report.actions)
    assert "no separate label image" in caplog.text
    assert "label" not in openslide.OpenSlide(r.output).associated_images


def test_help_states_which_vendors_redact_the_macro():
    import argparse

    from wsi import cli

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    text = " ".join(p.format_help().split())
    assert "redact: every vendor" in text
    for v in ("Philips", "Ventana", "Leica", "DICOM OVERVIEW"):
        assert v in text
