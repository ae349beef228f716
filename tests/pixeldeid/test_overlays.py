"""Overlay planes embedded in the pixel data's unused bits (retired PS3.5 8.1.2): an
annotation there escapes the removal of Overlay Data (60xx,3000) unless its bit is
cleared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import outputs
from corpus import make_ct_series, write_planted


def _ct_with_embedded_overlay(folder: Path, *, bit: int = 13, stored: int = 12,
                              group: int = 0x6000) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 12-bit CT slice (16 bits allocated) with a text-like block in overlay bit ``bit``;
    returns the path, the stored values and the overlay mask."""
    [path] = make_ct_series(folder, 1)
    ds = pydicom.dcmread(path)
    values = (ds.pixel_array.astype(np.int32) & ((1 << stored) - 1)).astype(np.uint16)
    mask = np.zeros(values.shape, bool)
    mask[20:34, 16:220] = True  # where a name would be written
    cells = values | (mask.astype(np.uint16) << bit)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = stored, stored - 1, 0
    ds.RescaleIntercept = 0
    ds.PixelData = cells.astype("<u2").tobytes()
    ds.add_new(group << 16 | 0x0010, "US", ds.Rows)
    ds.add_new(group << 16 | 0x0011, "US", ds.Columns)
    ds.add_new(group << 16 | 0x0022, "LO", "Name of Pt Quenby Ashdown")
    ds.add_new(group << 16 | 0x0040, "CS", "G")
    ds.add_new(group << 16 | 0x0050, "SS", [1, 1])
    ds.add_new(group << 16 | 0x0100, "US", 16)
    ds.add_new(group << 16 | 0x0102, "US", bit)
    ds.save_as(path)
    return path, values, mask


@pytest.mark.parametrize("fast", [True, False])
def test_embedded_overlay_bits_are_cleared(tmp_path: Path, run, fast: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if not fast:
        import pixeldeid.batch

        monkeypatch.setattr(pixeldeid.batch, "_fast_path_allowed", lambda *a: False)
    path, values, mask = _ct_with_embedded_overlay(tmp_path / "in")
    rc, out = run(path)
    [written] = outputs(out)
    assert rc == 0
    ds = pydicom.dcmread(written)
    cells = np.frombuffer(ds.PixelData, "<u2").reshape(values.shape)
    assert not (cells >> 12).any()  # no bit above the stored value is left, the overlay's
    assert np.array_equal(cells, values)  # the image itself is unchanged
    assert ds["PixelData"].VR == "OW"
    assert not [e for e in ds if e.tag.group == 0x6000]
    assert b"Quenby" not in written.read_bytes()


def test_embedded_overlay_in_a_stored_bit_or_compressed_data_is_refused(tmp_path: Path,
                                                                        run) -> None:
    inside, _, _ = _ct_with_embedded_overlay(tmp_path / "a", bit=13, stored=14)
    jpeg, _ = write_planted(tmp_path / "b" / "b.dcm", pixels="jpeg", seed=2)
    ds = pydicom.dcmread(jpeg)
    groups = {t.group for t in ds.keys() if t.group & 0xFF01 == 0x6000}
    assert groups
    for g in groups:
        if (g, 0x3000) in ds:
            del ds[g, 0x3000]  # the plane's data now lives in (compressed) pixel data bits
        ds.add_new(g << 16 | 0x0100, "US", 8)  # embedded: Overlay Bits Allocated 8
        ds.add_new(g << 16 | 0x0102, "US", 7)
    ds.save_as(jpeg)
    rc, out = run([inside, jpeg])
    assert rc == 1 and outputs(out) == []
    reasons = sorted(p.read_text() for p in (out / "quarantine").rglob("*.reason.txt"))
    assert len(reasons) == 2
    assert any("not an unused bit of the pixel data" in r for r in reasons), reasons
    assert any("not removable from encapsulated pixel data" in r for r in reasons), reasons


def test_a_plane_without_data_or_bit_is_removed(tmp_path: Path, run) -> None:
    """Planes whose data is nowhere: no bit position, or a 1-bit plane (bit 0) that lost
    its Overlay Data. Their attributes go; the pixel data is not touched."""
    [path] = make_ct_series(tmp_path / "in", 1)
    ds = pydicom.dcmread(path)
    before = ds.PixelData
    for g in (0x6002, 0x6004):
        ds.add_new(g << 16 | 0x0010, "US", ds.Rows)
        ds.add_new(g << 16 | 0x0011, "US", ds.Columns)
        ds.add_new(g << 16 | 0x0022, "LO", "Quenby Ashdown")
    ds.add_new(0x60040100, "US", 1)
    ds.add_new(0x60040102, "US", 0)
    ds.save_as(path)
    rc, out = run(path)
    [written] = outputs(out)
    o = pydicom.dcmread(written)
    assert rc == 0 and not [e for e in o if e.tag.group in (0x6002, 0x6004)]
    assert o.PixelData == before
