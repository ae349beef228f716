"""Shared vendor steps: the rollback-guarded edit and the generic TIFF tag cleaning."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from wsi.api import VendorReport
from wsi.tiffclean import clean_tiff_tags, edit_in_place
from wsi.tiffedit import TiffEditor, scan_raw


def _tiff(path):
    img = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    tifffile.imwrite(path, img, tile=(32, 32), photometric="rgb", metadata=None,
                     extratags=[(315, 2, None, "Dr Jane Doe", True),  # Artist
                                (306, 2, None, "2024:03:01 10:11:12", True),  # DateTime
                                (65000, 2, None, "SCANNER-SN-778123", True)])  # private
    return img


def test_failed_edit_is_rolled_back_to_the_same_bytes(tmp_path):
    p = tmp_path / "a.tif"
    _tiff(p)
    before = p.read_bytes()

    def run(ed, rep):
        clean_tiff_tags(ed, None, rep)
        ed.set_ascii(0, 315, "x" * 500)  # grows: appended and repointed
        raise ValueError("vendor step failed")

    with pytest.raises(ValueError, match="vendor step failed"):
        edit_in_place(p, run)
    assert p.read_bytes() == before


def test_tags_cleaned_and_removed_values_finalized(tmp_path):
    p = tmp_path / "a.tif"
    img = _tiff(p)

    def run(ed: TiffEditor, rep: VendorReport) -> str:
        rep.removed_values += clean_tiff_tags(ed, None, rep)
        rep.removed_values.append("KEPT-3.0")
        return "<kept>KEPT-3.0</kept>"

    rep = edit_in_place(p, run)
    assert "Dr Jane Doe" in rep.removed_values
    assert any("SCANNER-SN-778123" in v for v in rep.removed_values)
    assert "KEPT-3.0" not in rep.removed_values  # equal to kept text: not scanned for
    assert any("private" in a for a in rep.actions) and any("generic" in a for a in rep.actions)
    assert scan_raw(p, ["Dr Jane Doe", "SCANNER-SN-778123", "2024:03:01"]) == []
    np.testing.assert_array_equal(tifffile.imread(p), img)


def test_dates_shifted_when_asked(tmp_path):
    p = tmp_path / "a.tif"
    _tiff(p)
    edit_in_place(p, lambda ed, rep: clean_tiff_tags(ed, -3, rep) and None)
    with tifffile.TiffFile(p) as tf:
        assert tf.pages[0].tags["DateTime"].value == "2024:02:27 10:11:12"
