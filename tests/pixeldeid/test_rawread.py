"""The fast reader builds exactly the Dataset pydicom's reader builds, or declines."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from pixeldeid import rawread
from pixeldeid._synth import make_ct_series
from pixeldeid.rawread import fast_dcmread


def assert_same(a: Dataset, b: Dataset, where: str = "") -> None:
    """Same tags, same raw tuples, same (recursively) sequences, same encodings."""
    assert list(a._dict) == list(b._dict), where
    for tag in a._dict:
        x, y = a._dict[tag], b._dict[tag]
        if type(x) is not type(y):  # pydicom's reader decodes a few meta elements
            assert (a[tag].VR, a[tag].value) == (b[tag].VR, b[tag].value), (where, tag)
        elif isinstance(x, RawDataElement):
            assert tuple(x) == tuple(y), (where, tag)
        else:
            assert (x.VR, x.is_undefined_length, x.file_tell) == \
                   (y.VR, y.is_undefined_length, y.file_tell), (where, tag)
            if x.VR == "SQ":
                assert len(x.value) == len(y.value)
                for i, (p, q) in enumerate(zip(x.value, y.value, strict=True)):
                    assert_same(p, q, f"{where}{tag}[{i}]")
                    assert p.original_encoding == q.original_encoding
            else:
                assert x.value == y.value


def check_file(path: Path) -> bool:
    """Compare both readers on ``path``; True when the fast one took it."""
    fast = fast_dcmread(path)
    if fast is None:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slow = pydicom.dcmread(path)
    assert_same(fast, slow, path.name)
    assert_same(fast.file_meta, slow.file_meta, f"{path.name}:meta")
    assert fast.original_encoding == slow.original_encoding
    assert fast._character_set == slow._character_set
    assert fast.preamble == slow.preamble
    return True


def corpus_files() -> list[Path]:
    """pydicom's own test files and the pydicom-data package's (nothing downloaded)."""
    import pydicom.data
    from pydicom.data.data_manager import external_data_sources

    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    roots += [Path(src.data_path) for src in external_data_sources().values()]
    return sorted(p for r in roots if r.is_dir() for p in r.rglob("*")
                  if p.is_file() and p.suffix.lower() in (".dcm", ""))


def test_pydicom_corpus_read_alike_or_declined() -> None:
    taken = declined = 0
    for p in corpus_files():
        if check_file(p):
            taken += 1
        else:
            declined += 1
    # most of the corpus is ordinary little endian; big endian, deflate, truncated
    # and malformed files are declined (pydicom reads them and reports)
    assert taken > 2 * declined > 0


def test_big_endian_deflate_and_truncated_are_declined() -> None:
    for name in ("MR_small_bigendian.dcm", "image_dfl.dcm", "MR_truncated.dcm"):
        [path] = [p for p in corpus_files() if p.name == name][:1] or [None]
        if path is None:
            pytest.skip(f"{name} not installed")
        assert fast_dcmread(path) is None


def test_header_beyond_first_read_and_element_after_pixels(tmp_path: Path,
                                                           monkeypatch) -> None:
    [ct] = make_ct_series(tmp_path / "ct", 1, seed=3)
    monkeypatch.setattr(rawread, "HEAD_BYTES", 700)  # the header needs a second read
    assert check_file(ct)
    ds = pydicom.dcmread(ct)
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 64)  # Data Set Trailing Padding after the pixels
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3"
    ds["ReferencedImageSequence"].is_undefined_length = True
    padded = tmp_path / "padded.dcm"
    ds.save_as(padded)
    assert check_file(padded)
    monkeypatch.setattr(rawread, "HEAD_BYTES", 1 << 16)
    assert check_file(padded)


def test_file_cut_anywhere_is_declined_or_read_alike(tmp_path: Path) -> None:
    [ct] = make_ct_series(tmp_path / "ct", 1, seed=4)
    data = ct.read_bytes()
    cut = tmp_path / "cut.dcm"
    for n in (100, 131, 140, 400, 1001, 2000, len(data) - 1000, len(data) - 1):
        cut.write_bytes(data[:n])
        ds = fast_dcmread(cut)
        if ds is not None:  # only when the cut fell on an element boundary
            check_file(cut)
            assert "PixelData" not in ds


def test_read_dicom_uses_it(tmp_path: Path) -> None:
    from pixeldeid.api import read_dicom

    [ct] = make_ct_series(tmp_path / "ct", 1, seed=5)
    ds = read_dicom(ct)
    assert_same(ds, pydicom.dcmread(ct))
    assert ds.filename == str(ct)


def test_peek_leaves_raw_and_set_text_matches_pydicom(tmp_path: Path) -> None:
    from pixeldeid.dsvalues import peek, set_text
    from pixeldeid.rawwrite import encode_dataset_body

    [ct] = make_ct_series(tmp_path / "ct", 1, seed=6)
    ds = fast_dcmread(ct)
    ref = pydicom.dcmread(ct)
    for kw in ("PatientID", "PatientName", "Rows", "SOPClassUID", "ImagePositionPatient",
               "StudyDate", "SpecificCharacterSet"):
        assert peek(ds, kw) == ref[kw].value, kw
        if kw != "SpecificCharacterSet":  # pydicom decodes that one on reading
            assert isinstance(ds._dict[ref[kw].tag], RawDataElement), kw  # still raw
    assert peek(ds, "NumberOfFrames", 7) == 7
    for kw, value in (("PatientName", "SUBJ_001"), ("PatientID", "X1"),
                      ("DeidentificationMethod", ["pixeldeid", "odd length"]),
                      ("PatientIdentityRemoved", "YES"), ("PatientAge", "")):
        set_text(ds, kw, value)
        setattr(ref, kw, value)
        assert peek(ds, kw) == ref[kw].value
    assert encode_dataset_body(ds, True, False) == encode_dataset_body(ref, True, False)
    fresh = Dataset()  # not read from a file: pydicom's own setattr
    set_text(fresh, "PatientName", "A^B")
    assert fresh.PatientName == "A^B"


def test_peek_equals_pydicom_on_every_element_of_the_corpus() -> None:
    from pixeldeid.dsvalues import peek

    checked = 0
    for p in corpus_files():
        ds = fast_dcmread(p)
        if ds is None:
            continue
        ref = pydicom.dcmread(p)
        for tag in list(ds._dict):
            if tag >> 16 == 0x7FE0:
                continue
            try:
                want = ref[tag].value
            except Exception:  # noqa: BLE001 - pydicom cannot decode it: nor need peek
                continue
            got = peek(ds, tag)
            assert str(got) == str(want) and type(got) in (type(want), str), (p.name, tag)
            checked += 1
    assert checked > 5000
