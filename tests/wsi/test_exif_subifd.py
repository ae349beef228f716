"""An EXIF sub-IFD (camera owner, serial number, capture date) on a slide's first page:
Aperio and generic TIFF slides refused it, Philips, Leica and Ventana passed it through
unchanged (session 13 audit). Every vendor now refuses it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import tifffile

from wsi.api import deidentify_slide
from wsi.synth.leica import make_leica
from wsi.synth.philips import make_philips
from wsi.synth.ventana import make_ventana

OWNER = b"Owner Mary Roe-Exif 55443322\x00"


def _with_placeholder(monkeypatch) -> None:
    """The first page each generator writes gets a LONG tag 34664 (turned into the EXIF
    pointer 34665 once the sub-IFD is appended)."""
    real = tifffile.TiffWriter.write
    state = {"n": 0}

    def write(self, *a, **kw):
        if state["n"] == 0:
            kw["extratags"] = [*(kw.get("extratags") or []), (34664, 4, 1, 0, True)]
        state["n"] += 1
        return real(self, *a, **kw)

    monkeypatch.setattr(tifffile.TiffWriter, "write", write)


def _add_exif(path: Path) -> None:
    with tifffile.TiffFile(path) as tf:
        big = tf.is_bigtiff
        tag = tf.pages[0].tags[34664]
        value_at, entry_at = tag.valueoffset, tag.offset
    data = bytearray(path.read_bytes())
    if len(data) % 2:
        data += b"\0"
    start = len(data)
    entry, count, nxt = (20, 8, 8) if big else (12, 2, 4)
    ifd = bytearray(struct.pack("<Q" if big else "<H", 1))
    value = start + count + entry + nxt
    ifd += struct.pack("<HHQQ" if big else "<HHII", 42032, 2, len(OWNER), value)  # CameraOwnerName
    data += ifd + b"\0" * nxt + OWNER
    struct.pack_into("<Q" if big else "<I", data, value_at, start)
    struct.pack_into("<H", data, entry_at, 34665)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("maker", "name"), [(make_philips, "p.tiff"), (make_leica, "l.scn"),
                                             (make_ventana, "v.bif")])
def test_a_slide_with_an_exif_sub_ifd_is_refused(tmp_path, monkeypatch, maker, name):
    (tmp_path / "in").mkdir()
    with monkeypatch.context() as m:
        _with_placeholder(m)
        maker(tmp_path / "in" / name)  # (the generators return what they planted)
    path = tmp_path / "in" / name
    _add_exif(path)
    with tifffile.TiffFile(path) as tf:
        assert 34665 in tf.pages[0].tags
    r = deidentify_slide(path, tmp_path / "out", pseudonym="S-1")
    assert r.status == "quarantined" and "EXIF sub-IFD" in r.reason
    assert not any(p.suffix.lower() in (".tiff", ".scn", ".bif")
                   for p in (tmp_path / "out").rglob("*") if "quarantine" not in p.parts)
