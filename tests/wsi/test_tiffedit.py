"""Tests of the in-place TIFF editor on files written by tifffile and on the real slides."""

from __future__ import annotations

import base64
import shutil

import numpy as np
import pytest
import tifffile

from pixeldeid.errors import InputError
from wsi.tiffedit import TiffEditor, scan_raw, value_forms

SECRET = "Patient=Jane Q Doe|MRN=S12-3456"


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 3) % 256, (y * 5) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
    return img ^ rng.integers(0, 8, img.shape, dtype=np.uint8)


def _make(path, *, bigtiff=False, byteorder="<", compression="zlib"):
    img = _image(256, 320)
    with tifffile.TiffWriter(path, bigtiff=bigtiff, byteorder=byteorder) as tw:
        tw.write(img, tile=(64, 64), compression=compression, description=SECRET,
                 metadata=None)
        tw.write(img[::2, ::2], tile=(64, 64), compression=compression,
                 description="level 1", metadata=None, subfiletype=1)
        tw.write(img[:100, :120], compression=compression, description="label " + SECRET,
                 metadata=None, rowsperstrip=16)
        tw.write(img[:50, :60], compression=compression, description="macro", metadata=None)
    return img


@pytest.fixture(params=[("classic", "<"), ("bigtiff", "<"), ("classic", ">")],
                ids=["classic-le", "bigtiff", "classic-be"])
def sample(request, tmp_path):
    kind, bo = request.param
    p = tmp_path / "s.tif"
    img = _make(p, bigtiff=kind == "bigtiff", byteorder=bo)
    return p, img


def test_parse_matches_tifffile(sample):
    path, _ = sample
    with TiffEditor(path) as ed, tifffile.TiffFile(path) as tf:
        assert len(ed.ifds) == len(tf.pages)
        for d, page in zip(ed.ifds, tf.pages, strict=True):
            assert d.offset == page.offset
            assert set(d.tags) == {t.code for t in page.tags}
            for t in page.tags:
                mine = d.tags[t.code]
                assert mine.count == t.count and mine.type == int(t.dtype)
                if t.code == 270:
                    assert mine.value == t.value
            assert [o for o, _ in ed.segments(d.index)] == list(page.dataoffsets)


def test_shrink_in_place_zero_pads(sample):
    path, img = sample
    with TiffEditor(path, "r+") as ed:
        tag = ed.ifds[0].tags[270]
        off, n = tag.value_offset, tag.nbytes
        ed.set_ascii(0, 270, "clean description")
        assert ed.ifds[0].tags[270].value_offset == off
        assert ed.read(off, n) == b"clean description\x00" + b"\x00" * (n - 18)
    with tifffile.TiffFile(path) as tf:
        assert tf.pages[0].description == "clean description"
        np.testing.assert_array_equal(tf.pages[0].asarray(), img)


def test_grow_appends_and_zeroes_old(sample):
    path, img = sample
    size0 = path.stat().st_size
    with TiffEditor(path, "r+") as ed:
        old = ed.ifds[1].tags[270]
        long_text = "x" * 300
        ed.set_ascii(1, 270, long_text)
        new = ed.ifds[1].tags[270]
        assert new.value_offset >= size0 and new.value_offset % 8 == 0
        if not old.inline:
            assert ed.read(old.value_offset, old.nbytes) == b"\x00" * old.nbytes
    with tifffile.TiffFile(path) as tf:
        assert tf.pages[1].description == long_text
        np.testing.assert_array_equal(tf.pages[0].asarray(), img)


def test_unlink_zeroes_ifd_values_and_strips(sample):
    path, img = sample
    with TiffEditor(path) as ed:
        label = ed.ifds[2]
        segs = ed.segments(2)
        desc = label.tags[270]
    assert scan_raw(path, ["label " + SECRET])
    with TiffEditor(path, "r+") as ed:
        n = ed.unlink_ifd(2)
        assert len(ed.ifds) == 3
        assert n >= sum(c for _, c in segs)
        for o, c in segs:
            assert ed.read(o, c) == b"\x00" * c
        assert ed.read(label.offset, label.size) == b"\x00" * label.size
        assert ed.read(desc.value_offset, desc.nbytes) == b"\x00" * desc.nbytes
    with tifffile.TiffFile(path) as tf:
        assert len(tf.pages) == 3
        assert tf.pages[2].description == "macro"
        np.testing.assert_array_equal(tf.pages[0].asarray(), img)
    assert scan_raw(path, ["label " + SECRET]) == []


def test_unlink_first_and_last(sample):
    path, img = sample
    with TiffEditor(path, "r+") as ed:
        ed.unlink_ifd(3)
        ed.unlink_ifd(0)
        assert [d.description for d in ed.ifds] == ["level 1", "label " + SECRET]
    with tifffile.TiffFile(path) as tf:
        assert len(tf.pages) == 2
        np.testing.assert_array_equal(tf.pages[0].asarray(), img[::2, ::2])


@pytest.mark.parametrize("remove", [[2, 3], [0, 2], [0, 1, 3], [3]])
def test_unlink_several_at_once_gives_the_bytes_of_one_by_one(sample, tmp_path, remove):
    """``unlink_ifds`` (the kept ranges computed once) writes exactly what unlinking the
    same IFDs one at a time, from the last, writes."""
    import shutil

    path, img = sample
    one = tmp_path / "one.tif"
    shutil.copyfile(path, one)
    with TiffEditor(one, "r+") as ed:
        z_one = sum(ed.unlink_ifd(i) for i in sorted(remove, reverse=True))
    with TiffEditor(path, "r+") as ed:
        z_all = ed.unlink_ifds(remove)
        left = [d.description for d in ed.ifds]
    assert path.read_bytes() == one.read_bytes() and z_all == z_one > 0
    names = [SECRET, "level 1", "label " + SECRET, "macro"]
    assert left == [n for i, n in enumerate(names) if i not in remove]
    with tifffile.TiffFile(path) as tf:
        assert len(tf.pages) == 4 - len(remove)
        if 1 not in remove:
            kept = [i for i in range(4) if i not in remove].index(1)
            np.testing.assert_array_equal(tf.pages[kept].asarray(), img[::2, ::2])


def test_replace_tile_only_that_tile_changes(sample):
    path, img = sample
    with TiffEditor(path) as ed:
        before = [ed.read(o, n) for o, n in ed.segments(0)]
        old_off, old_n = ed.segments(0)[5]
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        fh = tf.filehandle
        fh.seek(page.dataoffsets[5])
        data = fh.read(page.databytecounts[5])
        tile, _, _ = page.decode(data, 5)
        tile = np.array(tile, copy=True)
    tile[:] = 0
    import imagecodecs
    new = imagecodecs.zlib_encode(tile.reshape(64, 64, 3).tobytes())
    with TiffEditor(path, "r+") as ed:
        ed.replace_tile(0, 5, new)
        after = [ed.read(o, n) for o, n in ed.segments(0)]
        assert ed.read(old_off, old_n) == b"\x00" * old_n
    assert after[5] == new
    assert [a for i, a in enumerate(after) if i != 5] == [b for i, b in enumerate(before) if i != 5]
    with tifffile.TiffFile(path) as tf:
        out = tf.pages[0].asarray()
    expect = img.copy()
    expect[64:128, 64:128] = 0  # tile 5 of a 5-wide grid = row 1, col 0? (320/64=5)
    expect = img.copy()
    r, c = divmod(5, 5)
    expect[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64] = 0
    np.testing.assert_array_equal(out, expect)


def test_read_only_refuses_writes(sample):
    path, _ = sample
    with TiffEditor(path) as ed, pytest.raises(PermissionError):
        ed.set_ascii(0, 270, "x")


def test_rollback_restores_file(sample):
    path, _ = sample
    before = path.read_bytes()
    with TiffEditor(path, "r+") as ed:
        ed.set_ascii(0, 270, "a much longer description than before " * 3)
        ed.unlink_ifd(2)
        ed.replace_tile(0, 1, b"\x00" * 10)
        ed.rollback()
    assert path.read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "bad-ifd-offset", "loop", "not-tiff", "bad-value-offset"])
def test_bad_input_raises_input_error(tmp_path, damage):
    p = tmp_path / "bad.tif"
    _make(p)
    data = bytearray(p.read_bytes())
    if damage == "truncate":
        with TiffEditor(p) as ed:
            cut = ed.ifds[1].offset + 5
        data = data[:cut]
    elif damage == "bad-ifd-offset":
        data[4:8] = (len(data) + 1000).to_bytes(4, "little")
    elif damage == "loop":
        with TiffEditor(p) as ed:
            d = ed.ifds[1]
            data[d.next_field_offset:d.next_field_offset + 4] = ed.ifds[0].offset.to_bytes(4, "little")
    elif damage == "not-tiff":
        data[:4] = b"GIF8"
    elif damage == "bad-value-offset":
        with TiffEditor(p) as ed:
            t = ed.ifds[0].tags[270]
            data[t.entry_offset + 8:t.entry_offset + 12] = (len(data) - 3).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    with pytest.raises(InputError, match="bad.tif"):
        TiffEditor(p)


def test_value_forms_find_base64_at_any_alignment(tmp_path):
    for prefix in (b"", b"a", b"ab", b"abc"):
        blob = base64.b64encode(prefix + b"SerialNumber=950291;" + b"tail")
        p = tmp_path / "b.bin"
        p.write_bytes(b"\x00" * 100 + blob + b"\x00" * 10)
        assert scan_raw(p, ["SerialNumber=950291"]), prefix
    assert "Jane".encode("utf-16-le") in value_forms("Jane")


def test_scan_raw_across_chunks(tmp_path):
    p = tmp_path / "big.bin"
    data = bytearray(300_000)
    data[99_995:100_005] = b"S12-345678"
    p.write_bytes(bytes(data))
    assert scan_raw(p, ["S12-345678"], chunk=100_000) == [("S12-345678", 99_995)]
    assert scan_raw(p, ["absent-value"], chunk=100_000) == []


def test_ndpi_real_structure(tmp_path, real):
    path = real("test3-DAPI-2-(387).ndpi")
    with TiffEditor(path) as ed, tifffile.TiffFile(path) as tf:
        assert ed.is_ndpi
        assert [d.offset for d in ed.ifds] == [p.offset for p in tf.pages]
        prop = ed.ifds[0].tags[65449]
        assert all(d.tags[65449].value_offset == prop.value_offset for d in ed.ifds)
    # a shared value is changed for every IFD and the old copy disappears
    with TiffEditor(path, "r+") as ed:
        ed.set_ascii(0, 65449, "Product=C9600-12\r\n")
        assert all(d.get(65449) == "Product=C9600-12\r\n" for d in ed.ifds)
    assert scan_raw(path, ["NDP.S/N=950291"]) == []
    with tifffile.TiffFile(path) as tf:
        assert tf.pages[0].tags[65449].value.strip() == "Product=C9600-12"


def test_ndpi_unlink_macro_keeps_shared_values(tmp_path, real):
    path = real("test3-DAPI-2-(387).ndpi")
    with TiffEditor(path) as ed:
        macro = [d.index for d in ed.ifds if d.first(65421) == -1.0][0]
        segs = ed.segments(macro)
    with TiffEditor(path, "r+") as ed:
        ed.unlink_ifd(macro)
        for o, n in segs:
            assert ed.read(o, n) == b"\x00" * n
        assert ed.ifds[0].get(271) == "Hamamatsu"  # shared Make value kept
    import openslide

    s = openslide.OpenSlide(str(path))
    assert s.properties["openslide.vendor"] == "hamamatsu"
    assert "macro" not in s.associated_images
    s.read_region((0, 0), 0, (64, 64))
    s.close()


def test_copy_of_real_svs_opens_after_edit(tmp_path, real):
    path = real("CMU-1-Small-Region.svs")
    orig = tmp_path / "orig.svs"
    shutil.copyfile(path, orig)
    with TiffEditor(path, "r+") as ed:
        ed.set_ascii(0, 270, "Aperio Image Library v11.2.1 \r\n46000x32914 [42673,5576 2220x2967] "
                     "(240x240) JPEG/RGB Q=30|AppMag = 20")
    import openslide

    a, b = openslide.OpenSlide(str(orig)), openslide.OpenSlide(str(path))
    assert b.properties["openslide.vendor"] == "aperio"
    assert "aperio.Filename" not in b.properties
    ra = np.asarray(a.read_region((100, 100), 0, (300, 300)))
    rb = np.asarray(b.read_region((100, 100), 0, (300, 300)))
    np.testing.assert_array_equal(ra, rb)


def test_scan_raw_without_ahocorasick_same_hits(tmp_path, monkeypatch):
    import builtins

    p = tmp_path / "mix.bin"
    data = bytearray(200_000)
    data[10:20] = b"S12-345678"
    data[5000:5020] = "Jane Doe!!".encode("utf-16-be")
    data[90_000:90_016] = base64.b64encode(b"xxSerial=4455")
    p.write_bytes(bytes(data))
    values = ["S12-345678", "Jane Doe", "Serial=4455"]
    fast = scan_raw(p, values, chunk=50_000)
    real_import = builtins.__import__

    def no_ac(name, *a, **k):
        if name == "ahocorasick_rs":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ac)
    slow = scan_raw(p, values, chunk=50_000)
    assert sorted(fast, key=lambda h: h[1]) == sorted(slow, key=lambda h: h[1])
    assert {v for v, _ in slow} == set(values)


def test_merge_ranges_matches_bytewise_union():
    from wsi.tiffedit import merge_ranges

    rng = np.random.default_rng(5)
    s = rng.integers(0, 1000, 200)
    e = s + rng.integers(1, 40, 200)
    merged = merge_ranges(s, e)
    want = np.zeros(1100, bool)
    for a, b in zip(s, e, strict=True):
        want[a:b] = True
    got = np.zeros(1100, bool)
    for a, b in merged:
        got[a:b] = True
    assert np.array_equal(want, got)
    assert np.all(merged[1:, 0] > merged[:-1, 1])  # disjoint, sorted, gaps between


def test_large_values_reread_after_every_kind_of_write(tmp_path):
    """A cached megabyte-sized value is never served stale: in-place shrink, a direct
    write into it, zeroing, and rollback all show the file's bytes on the next parse."""
    from wsi.tiffedit import BIG_VALUE

    p = tmp_path / "big.tif"
    blob = bytes(range(256)) * (BIG_VALUE // 128)
    tifffile.imwrite(p, np.zeros((16, 16), np.uint8), metadata=None,
                     extratags=[(65000, 7, len(blob), blob, True)])
    with TiffEditor(p, "r+") as ed:
        tag = ed.ifds[0].tags[65000]
        assert tag.raw == blob
        off = tag.value_offset
        ed.set_tag_bytes(0, 65000, blob[: len(blob) // 2], type_=7)
        assert ed.ifds[0].tags[65000].raw == blob[: len(blob) // 2]
        ed.write_at(off + 10, b"JANEDOE")
        ed.refresh()
        assert ed.ifds[0].tags[65000].raw[10:17] == b"JANEDOE"
        ed.zero_range(off, 4)
        ed.refresh()
        assert ed.ifds[0].tags[65000].raw[:4] == b"\x00" * 4
        ed.rollback()
        assert ed.ifds[0].tags[65000].raw == blob
    with TiffEditor(p) as ed:
        assert ed.ifds[0].tags[65000].raw == blob
