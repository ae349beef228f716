"""pixeldeid report on slide and defacing outputs, with and without a run ledger."""

from __future__ import annotations

import re
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from pixeldeid.report import build_report
from tests.pixeldeid.report.test_report import _cells, _section
from tests.pixeldeid.verify.conftest import deidentified_slide, write_run_ledger


def test_slide_label_and_macro_before_and_after(tmp_path):
    synth, out, _ = deidentified_slide(tmp_path)
    write_run_ledger(out, items=[{"src": synth.path, "kind": "slide", "modality": "SM",
                                  "patient": "SUBJ_020", "stages": ["wsi"],
                                  "output": "SUBJ_020.svs",
                                  "details": {"wsi": {"label": "removed", "macro": "removed"}}}])
    shutil.copyfile(synth.path, out / "other.svs")  # not in the ledger: shown as it is
    html = build_report(out, progress=False).read_text()
    slides = _section(html, "slides")
    assert "Slide label and macro (2)" in slides
    alts = re.findall(r'alt="([^"]+)"', slides)
    assert alts == ["label before", "macro before", "label (output)", "macro (output)"]
    assert "label: removed, macro: removed; label: none in the output; macro: none in the " \
           "output" in slides
    assert ["wsi", "SM", "1"] in _cells(_section(html, "counts"))


def test_plain_deface_output_renders_grouped(tmp_path):
    out = tmp_path / "out"
    (out / "qc").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), out / "sub-01_T1w.nii.gz")
    for view in ("front", "side", "slices"):
        Image.fromarray(np.full((30, 60, 3), 90, np.uint8)).save(out / "qc" / f"sub-01_T1w_{view}.png")
    html = build_report(out, progress=False).read_text()
    deface = _section(html, "deface")
    assert "<code>sub-01_T1w</code>" in deface
    assert re.findall(r'alt="([^"]+)"', deface) == ["front", "side", "slices"]
    assert ["deface", "NIFTI", "1"] in _cells(_section(html, "counts"))
    assert "No run ledger" not in html and "no run ledger" in html


def test_plain_wsi_output_shows_source_label_and_macro(tmp_path):
    pytest.importorskip("openslide")
    from pixeldeid.cli import main
    from wsi.synth.aperio import make_aperio

    synth = make_aperio(tmp_path / "src" / "case.svs", width=720, height=480, levels=2)
    out = tmp_path / "out"
    assert main(["wsi", str(synth.path), "-o", str(out), "--pseudonym", "SUBJ_030"]) == 0
    html = build_report(out, progress=False).read_text()
    slides = _section(html, "slides")
    assert re.findall(r'alt="([^"]+)"', slides) == ["label (before)", "macro (before)"]
    assert "label: none in the output; macro: none in the output" in slides
