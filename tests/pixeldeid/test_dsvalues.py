"""peek/set_text read and write header values like pydicom, without decoding in place."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from pixeldeid import rawds
from pixeldeid._synth import make_ct_series
from pixeldeid.dsvalues import peek, set_text, with_value
from pixeldeid.rawwrite import encode_dataset_body


def corpus_files() -> list[Path]:
    """pydicom's own test files and the pydicom-data package's (nothing downloaded)."""
    import pydicom.data
    from pydicom.data.data_manager import external_data_sources

    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    roots += [Path(src.data_path) for src in external_data_sources().values()]
    return sorted(p for r in roots if r.is_dir() for p in r.rglob("*")
                  if p.is_file() and p.suffix.lower() in (".dcm", ""))


def _read(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path)
        except Exception:  # noqa: BLE001 - not DICOM, truncated...: nothing to compare
            return None


def test_peek_leaves_raw_and_set_text_matches_pydicom(tmp_path: Path) -> None:
    [ct] = make_ct_series(tmp_path / "ct", 1, seed=6)
    ds, ref = pydicom.dcmread(ct), pydicom.dcmread(ct)
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
        assert isinstance(ds._dict[ref[kw].tag], RawDataElement), kw  # stored raw
    assert encode_dataset_body(ds, True, False) == encode_dataset_body(ref, True, False)
    fresh = Dataset()  # not read from a file: pydicom's own setattr
    set_text(fresh, "PatientName", "A^B")
    assert fresh.PatientName == "A^B"


def test_peek_equals_pydicom_on_every_element_of_the_corpus() -> None:
    """On pydicom's data sets and on the fast path's raw data sets of the same files."""
    checked = raw_checked = 0
    for p in corpus_files():
        ds, ref = _read(p), _read(p)
        if ds is None:
            continue
        try:
            raw = rawds.read_raw(p)
        except rawds.Decline:
            raw = None
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
            if raw is not None and ref[tag].VR != "SQ":
                try:
                    value = peek(raw, tag)
                except rawds.Decline:  # needs pydicom's decoding (a UN or ambiguous VR)
                    continue
                assert str(value) == str(want), (p.name, tag)
                raw_checked += 1
    assert checked > 5000 and raw_checked > 2000


def test_fast_path_elements_equal_pydicom_raw_elements() -> None:
    """The fast path builds its raw elements (and :func:`with_value` rebuilds them) without
    the namedtuple constructor: each must equal what pydicom's reader and ``_replace`` give."""
    compared = 0
    for p in corpus_files():
        ds = _read(p)
        try:
            raw = rawds.read_raw(p)
        except rawds.Decline:
            continue
        for tag, elem in raw._dict.items():
            if not isinstance(elem, RawDataElement) or isinstance(elem.value, rawds.FileSlice):
                continue
            ref = ds._dict[tag]
            if not isinstance(ref, RawDataElement):  # pydicom decoded it while reading
                continue
            assert type(elem) is RawDataElement
            assert elem == ref._replace(VR=elem.VR), (p.name, hex(tag))  # (implicit: VR by rawds)
            new = with_value(elem, b"NEW ")
            assert new == elem._replace(value=b"NEW ", length=4) and type(new) is RawDataElement
            compared += 1
    assert compared > 1000
