"""Every file in ../shared/data/wsi, plus damaged copies of the real slides."""

from __future__ import annotations

import hashlib

import openslide
import pytest

from wsi.api import VENDORS, deidentify_slide, detect_vendor, vendor_module
from wsi.tiffedit import TiffEditor

pytestmark = pytest.mark.shared


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("name,vendor", [
    ("CMU-1-Small-Region.svs", "aperio"),
    ("test3-DAPI-2-(387).ndpi", "hamamatsu"),
    ("openslide-python_small.svs", "aperio"),
    ("openslide-python_boxes.tiff", "generic-tiff"),
])
def test_real_slide_round_trip(real, tmp_path, name, vendor):
    src = real(name)
    before = _sha(src)
    assert detect_vendor(src) == vendor
    r = deidentify_slide(src, tmp_path / "out", pseudonym="R1")
    assert r.status == "clean", r.reason
    assert _sha(src) == before
    b = openslide.OpenSlide(r.output)
    assert b.properties["openslide.vendor"] == vendor
    assert "label" not in b.associated_images and "macro" not in b.associated_images


@pytest.mark.parametrize("name", ["CMU-1-Small-Region.svs", "test3-DAPI-2-(387).ndpi"])
@pytest.mark.parametrize("damage", ["truncated", "ifd-offset", "tile-offset"])
def test_damaged_real_slides_quarantined(real, tmp_path, name, damage):
    src = real(name)
    data = bytearray(src.read_bytes())
    with TiffEditor(src) as ed:
        if damage == "truncated":
            data = data[: ed.ifds[-1].offset + 4]
        elif damage == "ifd-offset":
            f = ed.ifds[0].next_field_offset
            data[f:f + 4] = (len(data) + 12345).to_bytes(4, "little")
        else:
            tag = ed.ifds[0].tags[324 if ed.ifds[0].is_tiled else 273]
            if tag.inline:
                data[tag.value_offset:tag.value_offset + 4] = (len(data) - 10).to_bytes(4, "little")
            else:
                data[tag.value_offset:tag.value_offset + 4] = (len(data) - 10).to_bytes(4, "little")
    src.write_bytes(bytes(data))
    before = _sha(src)
    r = deidentify_slide(src, tmp_path / "out", pseudonym="D1")
    assert r.status == "quarantined", r.reason
    assert r.reason
    assert _sha(src) == before
    assert not (tmp_path / "out" / ("D1" + src.suffix)).exists()
    assert list((tmp_path / "out" / "quarantine").glob("*.reason.txt"))


def test_unknown_vendor_clear_error(tmp_path):
    p = tmp_path / "x.tif"
    import numpy as np
    import tifffile

    tifffile.imwrite(p, np.zeros((32, 32), np.uint8))  # stripped, not a slide
    r = deidentify_slide(p, tmp_path / "out")
    assert r.status == "quarantined" and "unknown slide format" in r.reason


def test_missing_vendor_module_clear_error(monkeypatch):
    monkeypatch.setitem(VENDORS, "mirax", "wsi.mirax_not_there")
    with pytest.raises(ValueError, match="not available"):
        vendor_module("mirax")
    with pytest.raises(ValueError, match="no de-identifier"):
        vendor_module("sakura")


def test_dicom_pair_dispatched(real, tmp_path):
    src = real("dicom-boxes/openslide-python_boxes_0.dcm")
    assert detect_vendor(src) == "dicom"
    r = deidentify_slide(src, tmp_path / "out", pseudonym="DCM")
    assert r.vendor == "dicom"
    assert r.status in ("clean", "quarantined") and (r.ok or r.reason)
