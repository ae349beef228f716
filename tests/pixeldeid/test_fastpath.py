"""The header fast path (pixeldeid.rawds) gives what the ordinary path gives.

Every file is de-identified twice, once with the fast path allowed and once with it
off; the outputs must hold the same elements with the same values at every depth, the
same files must be quarantined, and the fast path must have taken most of the files
(else these tests would compare the ordinary path with itself).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pydicom
import pytest
from corpus import damaged_copies, leaked, make_ct_series, write_planted

from pixeldeid import batch, rawds
from pixeldeid.api import DeidConfig
from pixeldeid.atomic import FileParts
from pixeldeid.batch import run_batch

OPTION_SETS = {
    "basic": ("basic", ()),
    "modified-dates+chars": ("basic", ("retain-longitudinal-modified-dates",
                                       "retain-patient-characteristics",
                                       "retain-device-identity")),
    "tcia-like": ("tcia-like", ()),
    "clean-all": ("basic", ("clean-descriptors", "clean-structured-content",
                            "clean-graphics")),
    "full-dates+uids+private": ("basic", ("retain-longitudinal-full-dates", "retain-uids",
                                          "retain-safe-private",
                                          "retain-institution-identity")),
}


def _values(ds) -> list:
    out = []
    for e in ds.iterall():
        v = e.value
        if e.VR == "SQ":
            v = len(v)
        elif isinstance(v, bytes):
            v = v.rstrip(b"\x00 ")
        out.append((int(e.tag), e.VR, v))
    return out


def _outputs(out: Path) -> dict[str, Path]:
    return {p.relative_to(out).as_posix(): p for p in out.rglob("*")
            if p.is_file() and ".pixeldeid" not in p.parts}


def _assert_same_outputs(fast: Path, slow: Path) -> None:
    """The same files in both output folders; each instance with the same elements and
    values at every depth (every element decoded), transfer syntax and pixel data."""
    a, b = _outputs(fast), _outputs(slow)
    assert sorted(a) == sorted(b)
    for rel, path in a.items():
        if rel.endswith(".dcm") and not rel.startswith("quarantine/"):
            x, y = pydicom.dcmread(path), pydicom.dcmread(b[rel])
            assert _values(x) == _values(y), rel
            assert x.file_meta.TransferSyntaxUID == y.file_meta.TransferSyntaxUID, rel
            assert x.get("PixelData") == y.get("PixelData"), rel


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Synthetic CT series (explicit VR), planted-identity files (native, implicit, JPEG),
    and the pydicom test corpus files."""
    root = tmp_path_factory.mktemp("fast-src")
    make_ct_series(root / "ct", 12, seed=21)
    for i, (pixels, implicit) in enumerate([("native", False), ("native", True),
                                            ("jpeg", False)]):
        write_planted(root / "planted" / f"p{i}.dcm", pixels=pixels, implicit=implicit,
                      seed=40 + i)
    import pydicom.data

    corpus = Path(pydicom.data.__file__).parent / "test_files"
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "SC_rgb.dcm",
                 "MR_small_implicit.dcm", "nested_priv_SQ.dcm", "no_meta.dcm",
                 "ExplVR_BigEnd.dcm", "emri_small.dcm", "JPEG2000.dcm"):
        if (corpus / name).is_file():
            shutil.copy(corpus / name, root / name)
    return root


def _run(src: Path, out: Path, profile: str, options, fast: bool, monkeypatch,
         taken: list) -> object:
    real = batch._deidentify_file

    def counting(ds, path, **kw):  # the inputs the fast path finished (not declined)
        outcome = real(ds, path, **kw)
        if ds is not None:
            taken.append(path)
        return outcome

    with monkeypatch.context() as m:
        if not fast:
            m.setattr(batch, "_fast_path_allowed", lambda *a: False)
        m.setattr(batch, "_deidentify_file", counting)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run_batch([src], out, DeidConfig(key=b"k" * 32, profile=profile,
                                                    options=options), progress=False)


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_fast_and_ordinary_paths_agree(sources: Path, tmp_path: Path, monkeypatch,
                                       name: str) -> None:
    profile, options = OPTION_SETS[name]
    taken: list = []
    fast = _run(sources, tmp_path / "fast", profile, options, True, monkeypatch, taken)
    slow = _run(sources, tmp_path / "slow", profile, options, False, monkeypatch, [])
    assert len(taken) >= 12  # finished by the fast path: the CT series at least
    assert sorted(o.status for o in fast.outcomes) == sorted(o.status for o in slow.outcomes)
    assert {Path(o.source).name for o in fast.quarantined} == \
           {Path(o.source).name for o in slow.quarantined}
    _assert_same_outputs(tmp_path / "fast", tmp_path / "slow")


def test_fast_path_leaks_nothing_planted(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in"
    _, planted = write_planted(src / "a.dcm", pixels="native", seed=7)
    ds = pydicom.dcmread(src / "a.dcm")
    del ds[0x00142006]  # Evaluator Name (a PN the table misses): the fast path declines it
    ds.save_as(src / "a.dcm")
    taken: list = []
    summary = _run(src, tmp_path / "out", "basic", (), True, monkeypatch, taken)
    assert taken and summary.count("written") == 1
    [out] = _outputs(tmp_path / "out").values()
    assert not leaked(out.read_bytes(), planted)


def test_pixel_data_copied_file_to_file_exactly(tmp_path: Path, monkeypatch) -> None:
    [ct] = make_ct_series(tmp_path / "in", 1, seed=8)
    ds = rawds.read_raw(ct)
    assert isinstance(ds._dict[0x7FE00010].value, rawds.FileSlice)  # left in the file
    taken: list = []
    _run(tmp_path / "in", tmp_path / "out", "basic", (), True, monkeypatch, taken)
    [out] = _outputs(tmp_path / "out").values()
    assert taken
    assert pydicom.dcmread(out).PixelData == pydicom.dcmread(ct).PixelData


def test_changed_source_is_refused_and_redone(tmp_path: Path) -> None:
    [ct] = make_ct_series(tmp_path / "in", 1, seed=9)
    ds = rawds.read_raw(ct)
    tail = ds._dict[0x7FE00010].value
    parts = FileParts([b"head", tail])
    st = ct.stat()
    os.utime(ct, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the input changed since
    with open(tmp_path / "x", "wb") as fh, pytest.raises(OSError, match="changed"):
        parts.write_to(fh)


def test_small_first_read_and_declines(tmp_path: Path, monkeypatch) -> None:
    [ct] = make_ct_series(tmp_path / "in", 1, seed=10)
    monkeypatch.setattr(rawds, "HEAD_BYTES", 300)  # header needs the whole file
    ds = rawds.read_raw(ct)
    assert isinstance(ds._dict[0x7FE00010].value, bytes)
    data = ct.read_bytes()
    for bad in (data[:1000], data[:-10], b"\x00" * 132 + data[132:]):
        (tmp_path / "bad.dcm").write_bytes(bad)
        with pytest.raises(rawds.Decline):
            rawds.read_raw(tmp_path / "bad.dcm")
    with pytest.raises(rawds.Decline):
        rawds.read_raw(tmp_path / "missing.dcm")
    ds = rawds.read_raw(ct)
    with pytest.raises(rawds.Decline):
        ds.PatientName = "X"  # a pydicom attribute write is never taken silently
    with pytest.raises(rawds.Decline):
        ds["PatientID"]  # nor a decoded element


@pytest.mark.parametrize("first_read", [rawds.SCAN_BYTES, 300])
def test_header_scan_agrees_with_pydicom(sources: Path, monkeypatch, first_read: int) -> None:
    """The scan skips what it does not need (sequences of defined and undefined length,
    nested) and reads the whole file when its elements run past the first read."""
    monkeypatch.setattr(rawds, "SCAN_BYTES", first_read)
    taken = 0
    for path in sorted(p for p in sources.rglob("*") if p.is_file()):
        want = batch._scan_header_pydicom(str(path))
        try:
            got = rawds.scan_patient(path)
        except rawds.Decline:
            continue
        taken += 1
        assert got == want, path.name
    assert taken >= 13


def test_header_scan_skips_nested_sequences_and_declines_truncation(tmp_path: Path) -> None:
    [ct] = make_ct_series(tmp_path / "in", 1, seed=12)
    ds = pydicom.dcmread(ct)
    inner = pydicom.Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "1", "99X", "x"
    outer = pydicom.Dataset()
    outer.ProcedureCodeSequence = pydicom.Sequence([inner, inner])
    ds.ReferencedStudySequence = pydicom.Sequence([outer])  # (0008,1110): before group 0010
    for seq, items in ((ds["ReferencedStudySequence"], [outer]),
                       (outer["ProcedureCodeSequence"], [inner])):
        seq.is_undefined_length = True  # delimited sequences and items, nested
        for item in items:
            item.is_undefined_length_sequence_item = True
    ds.PatientID = "SCAN-ME"
    ds.save_as(ct)
    data = ct.read_bytes()
    assert data.count(b"\xfe\xff\xdd\xe0") >= 2  # sequence delimiters: undefined lengths
    assert rawds.scan_patient(ct) == ("SCAN-ME", str(ds.SOPInstanceUID))
    cut = data.index(b"99X") + 3  # inside the nested item
    (tmp_path / "cut.dcm").write_bytes(data[:cut])
    with pytest.raises(rawds.Decline):
        rawds.scan_patient(tmp_path / "cut.dcm")


@pytest.mark.parametrize("fails", [("copy_file_range",), ("copy_file_range", "sendfile")])
def test_copy_falls_back_to_sendfile_then_reads_and_writes(tmp_path: Path, monkeypatch,
                                                           fails) -> None:
    import errno

    from pixeldeid import atomic

    [ct] = make_ct_series(tmp_path / "in", 1, seed=11)
    tail = rawds.read_raw(ct)._dict[0x7FE00010].value
    calls: list[str] = []

    def failing(name):
        def call(*args):
            calls.append(name)
            raise OSError(errno.EXDEV, "cross-device")
        return call

    for name in fails:
        monkeypatch.setattr(os, name, failing(name), raising=False)
    monkeypatch.setattr(atomic, "_NO_CFR", set())
    with open(tmp_path / "x", "wb") as fh:
        FileParts([b"abcd", tail]).write_to(fh)
    with open(tmp_path / "y", "wb") as fh:  # as write_exclusive writes
        FileParts([b"abcd", tail]).write_fd(fh.fileno())
    for x in ("x", "y"):
        data = (tmp_path / x).read_bytes()
        assert data[:4] == b"abcd" and data[4:] == ct.read_bytes()[tail.offset:]
    assert calls == [n for _ in range(2) for n in fails]
    # write_exclusive and a staged file remember where copy_file_range fails
    calls.clear()
    assert atomic.write_exclusive(tmp_path / "out" / "a.dcm", FileParts([b"ab", tail])) == \
        "written"
    assert atomic.write_exclusive(tmp_path / "out" / "b.dcm", FileParts([b"ab", tail])) == \
        "written"
    with atomic.BackgroundWriter() as writer:
        staged = atomic.StagedFile(tmp_path / "out" / "c.dcm", FileParts([b"ab", tail]), writer)
        assert atomic.write_exclusive(tmp_path / "out" / "c.dcm", staged) == "written"
    # copy_file_range tried once; sendfile (when it fails too) for each of the 3 files
    assert calls == ["copy_file_range"] + ["sendfile"] * 3 * (len(fails) - 1)
    for x in "abc":
        assert (tmp_path / "out" / f"{x}.dcm").read_bytes() == b"ab" + ct.read_bytes()[tail.offset:]


@pytest.mark.parametrize("seed", [0, 2, 3])  # each wrote a damaged VR as it was, once
def test_damaged_inputs_same_outcome_on_both_paths(sources: Path, tmp_path: Path,
                                                   monkeypatch, seed: int) -> None:
    """The fast path's parser meets damaged files: whatever it takes must give exactly what
    the ordinary path gives (same files written and quarantined, same values), and what it
    cannot take it must hand over (never a different or a partial output). Every output
    must read back whole (each element decoded)."""
    files = sorted(sources.glob("ct/**/*.dcm"))[:3] + sorted(sources.glob("planted/*.dcm"))
    damaged_copies(files, tmp_path / "in", 90, seed=seed)
    taken: list = []
    fast = _run(tmp_path / "in", tmp_path / "fast", "basic", (), True, monkeypatch, taken)
    slow = _run(tmp_path / "in", tmp_path / "slow", "basic", (), False, monkeypatch, [])
    assert len(taken) >= 12  # the parser took many of them (the damaged ones it declines)
    by_name = {Path(o.source).name: o.status for o in slow.outcomes + slow.input_errors}
    assert {Path(o.source).name: o.status for o in fast.outcomes + fast.input_errors} == by_name
    assert 10 <= sum(s == "quarantined" for s in by_name.values()) <= 80
    _assert_same_outputs(tmp_path / "fast", tmp_path / "slow")
