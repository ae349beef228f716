"""Bad inputs in one batch with good files: each is quarantined with a one-line reason on
stderr and a ``.reason.txt`` (plus a copy when it is a readable file), the good files are
all written, and the exit status is 1. Usage errors exit 2 and write nothing."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from pixeldeid.cli import printable
from pixeldeid.uids import UIDMapper
from tests.pixeldeid.conftest import copy_corpus, corpus_file, outputs, tree_digest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

GOOD = ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm")


def _good_files(folder: Path) -> list[Path]:
    return copy_corpus(GOOD, folder)


def _quarantine_records(out: Path) -> dict[str, dict[str, str]]:
    """source path -> {"reason": ..., "stage": ..., "copy": copy file name or ""}."""
    recs = {}
    for rf in sorted((out / "quarantine").glob("*.reason.txt")):
        text = rf.read_text(encoding="utf-8", errors="surrogateescape")  # names need not be UTF-8
        fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
        stem = rf.name[: -len(".reason.txt")]
        copies = [p.name for p in rf.parent.glob(stem + "*") if p != rf]
        fields["copy"] = copies[0] if copies else ""
        recs[fields["source"]] = fields
    return recs


def _line_for(stderr: str, path: Path) -> str:
    """The reason on the one stderr line naming ``path`` (a name that is not UTF-8 may be
    shown with its bytes escaped)."""
    shown = {str(path), os.fsencode(path).decode("utf-8", "backslashreplace")}
    prefixes = [f"quarantined: {s}: " for s in shown]
    lines = [(ln, pre) for ln in stderr.splitlines() for pre in prefixes if ln.startswith(pre)]
    assert len(lines) == 1, f"expected one stderr line for {path}, got {lines}"
    return lines[0][0][len(lines[0][1]):]


def _mapped_sops(files, key: bytes) -> set[str]:
    m = UIDMapper(key)
    return {m(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)) for f in files}


def _assert_batch(out: Path, status: int, stderr: str, good: list[Path],
                  bad: dict[Path, tuple[str, bool]], key: bytes) -> None:
    """``bad``: input path -> (substring of the reason, whether a copy is expected)."""
    assert status == 1
    written = outputs(out)
    assert {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in written} == \
        _mapped_sops(good, key)
    assert not [p for p in out.rglob("*") if p.name.startswith(".pixeldeid-tmp-")]
    recs = _quarantine_records(out)
    assert set(recs) == {printable(p) for p in bad}
    for path, (why, copied) in bad.items():
        reason = _line_for(stderr, path)
        assert "\n" not in reason
        assert why.lower() in reason.lower(), (path, reason)
        rec = recs[printable(path)]
        assert why.lower() in rec["reason"].lower()
        if copied:
            copy = out / "quarantine" / rec["copy"]
            assert rec["copy"] and copy.read_bytes() == path.read_bytes()
        # the copy is named by a hash, never by the (possibly identifying) input name
        assert path.name not in rec["copy"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_bad_files_quarantined_good_files_written(tmp_path, run, key_file, capsys, jobs):
    src = tmp_path / "in"
    good = _good_files(src)
    ct = corpus_file("SC_rgb.dcm").read_bytes()
    bad: dict[Path, tuple[str, bool]] = {}

    half = src / "rtplan_half.dcm"
    half.write_bytes(corpus_file("rtplan.dcm").read_bytes()[:1336])
    bad[half] = ("truncated", True)
    cut_pixels = src / "sc_cut_in_pixels.dcm"
    cut_pixels.write_bytes(ct[: len(ct) - 5000])
    bad[cut_pixels] = ("truncated", True)
    text = src / "notes.txt"
    text.write_text("Patient Jane Doe, MRN 12345678\nnot an image\n")
    bad[text] = ("not a DICOM", True)
    png = src / "photo.png"
    buf = io.BytesIO()
    Image.new("L", (8, 8), 7).save(buf, format="PNG")
    png.write_bytes(buf.getvalue())
    bad[png] = ("not a DICOM", True)
    empty = src / "empty.dcm"
    empty.write_bytes(b"")
    bad[empty] = ("zero-byte", True)
    dicomdir = src / "DICOMDIR"
    dicomdir.write_bytes(corpus_file("DICOMDIR").read_bytes())
    bad[dicomdir] = ("DICOMDIR", True)
    dangling = src / "dangling.dcm"
    dangling.symlink_to(src / "no-such-file.dcm")
    bad[dangling] = ("dangling symbolic link", False)
    loop = src / "loop.dcm"
    loop.symlink_to(src / "loop2.dcm")
    (src / "loop2.dcm").symlink_to(loop)
    bad[loop] = ("symbolic link loop", False)
    bad[src / "loop2.dcm"] = ("symbolic link loop", False)
    elsewhere = tmp_path / "elsewhere"  # a linked folder: reported, never silently dropped
    copy_corpus(["SC_rgb.dcm"], elsewhere)
    linked = src / "linked_series"
    linked.symlink_to(elsewhere, target_is_directory=True)
    bad[linked] = ("symbolic link to a directory", False)
    if hasattr(os, "mkfifo"):
        fifo = src / "pipe.dcm"
        os.mkfifo(fifo)  # would block a reader forever
        bad[fifo] = ("not a regular file", False)

    before = {p: p.read_bytes() for p in src.iterdir() if p.is_file()}
    status, out = run(src, "-j", jobs)
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, bad, key_file.read_bytes().strip())
    assert {p: p.read_bytes() for p in src.iterdir() if p.is_file()} == before


def test_value_invalid_for_its_vr_is_quarantined(tmp_path, run, key_file, capsys):
    """StudyDate 20201341 cannot be shifted: the file is quarantined, never passed through."""
    src = tmp_path / "in"
    good = _good_files(src)
    ds = pydicom.dcmread(corpus_file("CT_small.dcm"))
    ds.StudyDate = "20201341"
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["bad date"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    bad_date = src / "bad_date.dcm"
    ds.save_as(bad_date, enforce_file_format=True)
    status, out = run(src, "--option", "retain-longitudinal-modified-dates")
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, {bad_date: ("StudyDate", True)},
                  key_file.read_bytes().strip())
    assert b"20201341" not in b"".join(p.read_bytes() for p in outputs(out))


@pytest.mark.parametrize("tag", [(0x0020, 0x0012), (0x0018, 0x1151)])
def test_damaged_vr_is_quarantined(tmp_path, run, key_file, capsys, tag):
    """An explicit VR element whose VR bytes are no VR (a damaged header, found by the
    damaged-input test of the fast path): nobody can tell what its value is, so the file
    is quarantined, never written with the element copied as it was."""
    src = tmp_path / "in"
    good = _good_files(src)
    ds = pydicom.dcmread(corpus_file("CT_small.dcm"))
    ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["damaged vr", str(tag)])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    bad = src / "damaged_vr.dcm"
    ds.save_as(bad, enforce_file_format=True)
    data = bytearray(bad.read_bytes())
    head = struct.pack("<HH", *tag)
    at = data.index(head, 132)
    assert data[at + 4:at + 6] == b"IS"
    data[at + 4:at + 6] = b"IW"
    bad.write_bytes(bytes(data))
    status, out = run(src)
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, {bad: ("no valid VR", True)},
                  key_file.read_bytes().strip())


def test_damaged_tag_or_item_vr_is_quarantined(tmp_path, run, key_file, capsys):
    """Damage found by fuzzing that used to release identity: a tag whose group byte changed
    ((0020,0010) Study ID read as (0042,0010) Document Title, out of order), and VR bytes
    in a sequence item that are no VR (pydicom then reads the item as implicit VR and a
    class UID swallows the instance UID after it). Both are quarantined."""
    from pixeldeid._synth import make_planted_dataset

    src = tmp_path / "in"
    good = _good_files(src)
    bad = {}
    for name, old, new, why in [
            ("tag.dcm", struct.pack("<HH", 0x0020, 0x0010) + b"SH",
             struct.pack("<HH", 0x0042, 0x0010) + b"SH", "out of order"),
            ("item_vr.dcm", struct.pack("<HH", 0x0008, 0x1150) + b"UI",
             struct.pack("<HH", 0x0008, 0x1150) + b"\xe2I", "switches to implicit VR")]:
        ds, _ = make_planted_dataset(pixels="native", seed=len(bad) + 11)
        path = src / name
        ds.save_as(path, enforce_file_format=True)
        data = path.read_bytes()
        assert data.count(old) >= 1
        path.write_bytes(data.replace(old, new, 1))
        bad[path] = (why, True)
    status, out = run(src)
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, bad, key_file.read_bytes().strip())


@pytest.mark.parametrize("profile", ["basic", "tcia-like"])
def test_empty_sequence_items_are_no_damage(tmp_path, run, profile):
    """An empty item of undefined length (pydicom writes them so) has no element whose VR
    could be misread; it is no sign of damage (a JPEG Lossless file of pydicom-data came
    out with one, and verify then called the output damaged). Outputs read back whole."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from pixeldeid.api import read_dicom
    from pixeldeid.rawds import read_raw

    src = tmp_path / "in"
    good = _good_files(src)
    ds = pydicom.dcmread(good[0])
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "2501", "99X", "Echo"
    ds.PerformedProtocolCodeSequence = Sequence([code, Dataset()])
    ds.AnatomicRegionSequence = Sequence([Dataset()])
    ds.save_as(good[0])
    # as DCMTK (and pixeldeid before) may write it: sequence and empty item of undefined length
    data = good[0].read_bytes()
    defined = struct.pack("<HH2sHLHHL", 0x0008, 0x2218, b"SQ", 0, 8, 0xFFFE, 0xE000, 0)
    undefined = struct.pack("<HH2sHLHHLHHLHHL", 0x0008, 0x2218, b"SQ", 0, 0xFFFFFFFF,
                            0xFFFE, 0xE000, 0xFFFFFFFF, 0xFFFE, 0xE00D, 0, 0xFFFE, 0xE0DD, 0)
    assert data.count(defined) == 1
    good[0].write_bytes(data.replace(defined, undefined))
    status, out = run(src, "--profile", profile)
    written = outputs(out)
    assert status == 0 and len(written) == len(good)
    for path in written:
        read_dicom(path)  # raises on any sign of damage
        read_raw(path)  # and the fast path's parser takes it too
    [mine] = [p for p in written if b"2501" in p.read_bytes()]
    assert [len(it) for it in pydicom.dcmread(mine).PerformedProtocolCodeSequence] == [3, 0]
    # a sequence the engine re-encodes writes its empty item with defined length 0
    data = mine.read_bytes()
    tail = data[data.index(b"2501"):][:200]
    assert struct.pack("<HHL", 0xFFFE, 0xE000, 0) in tail
    assert struct.pack("<HHLHHL", 0xFFFE, 0xE000, 0xFFFFFFFF, 0xFFFE, 0xE00D, 0) not in tail


def test_damaged_length_that_swallows_elements_is_quarantined(tmp_path, run, key_file,
                                                              capsys):
    """A value length damaged so that the value runs over the next elements, ending on an
    element boundary: pydicom reads the file, and the kept Focal Spot(s) held Acquisition
    Comments ("Scanned by tech ...") as it was. Control bytes in a text value mark it."""
    from pixeldeid._synth import make_planted_dataset

    src = tmp_path / "in"
    good = _good_files(src)
    ds, _ = make_planted_dataset(pixels="native", seed=13)
    path = src / "swallow.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = bytearray(path.read_bytes())
    at = data.index(struct.pack("<HH", 0x0018, 0x1190) + b"DS")
    end = data.index(struct.pack("<HH", 0x0018, 0x5100) + b"CS", at)  # Patient Position
    assert b"Scanned by tech" in data[at:end]
    struct.pack_into("<H", data, at + 6, end - (at + 8))
    path.write_bytes(bytes(data))
    assert b"Scanned by tech" in pydicom.dcmread(path)[0x00181190].value.encode("latin-1")
    status, out = run(src)
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, {path: ("control bytes", True)},
                  key_file.read_bytes().strip())


def test_duplicate_sop_instance_uid_with_other_content(tmp_path, run, key_file, capsys):
    src = tmp_path / "in"
    good = _good_files(src)
    ds = pydicom.dcmread(src / "MR_small.dcm")
    arr = bytearray(ds.PixelData)
    arr[100] ^= 0xFF  # other pixels, same SOP Instance UID
    ds.PixelData = bytes(arr)
    dup = src / "zz_MR_small_copy.dcm"  # sorted after the original
    ds.save_as(dup)
    status, out = run(src)
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, {dup: ("duplicate SOP Instance UID", True)},
                  key_file.read_bytes().strip())
    # the written instance is the first one, not a mixture
    written = [p for p in outputs(out)
               if pydicom.dcmread(p).Modality == "MR"]
    assert len(written) == 1
    assert pydicom.dcmread(written[0]).PixelData == pydicom.dcmread(src / "MR_small.dcm").PixelData


def test_exact_duplicate_is_not_an_error(tmp_path, run):
    """The same file twice (a copy): written once, not quarantined."""
    src = tmp_path / "in"
    _good_files(src)
    (src / "again.dcm").write_bytes((src / "CT_small.dcm").read_bytes())
    status, out = run(src)
    assert status == 0
    assert len(outputs(out)) == len(GOOD)


def test_unreadable_directory(tmp_path, run, key_file, capsys):
    src = tmp_path / "in"
    good = _good_files(src)
    locked = src / "locked"
    locked.mkdir()
    (locked / "hidden.dcm").write_bytes(corpus_file("SC_rgb.dcm").read_bytes())
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("permissions are not enforced for this user (root)")
        status, out = run(src)
        err = capsys.readouterr().err
        _assert_batch(out, status, err, good, {locked: ("unreadable directory", False)},
                      key_file.read_bytes().strip())
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("name", ["a_locked", "z_locked"])  # walked before / after a series
def test_unreadable_directory_as_root(tmp_path, run, key_file, capsys, monkeypatch, name):
    """Root reads any folder: the listing error is simulated where the walk meets it."""
    src = tmp_path / "in"
    good = _good_files(src)
    (src / "m_series").mkdir()
    good[0] = good[0].rename(src / "m_series" / good[0].name)
    locked = src / name
    locked.mkdir()
    (locked / "hidden.dcm").write_bytes(corpus_file("SC_rgb.dcm").read_bytes())
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    status, out = run(src)
    monkeypatch.undo()
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, {locked: ("unreadable directory", False)},
                  key_file.read_bytes().strip())


@pytest.mark.parametrize("extra, word", [
    (("--profile", "tcia-lik"), "tcia-like"),
    (("--option", "retain-longitudinal-modified-date"), "retain-longitudinal-modified-dates"),
    (("--map-csv", "BADMAP"), "id_old,id_new"),
])
@pytest.mark.parametrize("with_key", [True, False])
def test_usage_error_exits_2_and_writes_nothing(tmp_path, run, capsys, extra, word, with_key):
    src = tmp_path / "in"
    _good_files(src)
    out = tmp_path / "out"
    bad_map = tmp_path / "map.csv"
    bad_map.write_text("patient,pseudonym\nA,B\n")  # not the id_old,id_new columns
    extra = tuple(str(bad_map) if e == "BADMAP" else e for e in extra)
    kwargs = {} if with_key else {"key": None}
    status, _ = run(src, *extra, out=out, **kwargs)
    err = capsys.readouterr().err
    assert status == 2
    assert ("did you mean" in err or "--map-csv" in extra) and word in err
    assert not out.exists() or not any(out.rglob("*"))


def test_missing_source_is_reported(tmp_path, run, capsys):
    src = tmp_path / "in"
    good = _good_files(src)
    missing = tmp_path / "no-such-folder"
    status, out = run([src, missing])
    err = capsys.readouterr().err
    assert status == 1
    assert len(outputs(out)) == len(good)
    assert "no such file" in _line_for(err, missing).lower()


#: Damaged files of the pydicom corpus and what their reason must say.
BROKEN = {
    "MR_truncated.dcm": "truncated",
    "rtplan_truncated.dcm": "truncated",
    "no_meta.dcm": "not a DICOM",
    "meta_missing_tsyntax.dcm": "Transfer Syntax",
    "badVR.dcm": "invalid",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "",
    "DICOMDIR-implicit": "DICOMDIR",
    "DICOMDIR-bigEnd": "DICOMDIR",
    "DICOMDIR-empty.dcm": "DICOMDIR",
}


def test_broken_corpus_files_quarantined(tmp_path, run, key_file, capsys):
    src = tmp_path / "in"
    good = _good_files(src)
    bad = {p: (BROKEN[p.name], True) for p in copy_corpus(BROKEN, src / "broken")}
    status, out = run(src)
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, bad, key_file.read_bytes().strip())
    for path in bad:
        assert _line_for(err, path).strip()


def _with_raw_value(ds: pydicom.Dataset, keyword: str, value: str) -> None:
    """Set ``keyword`` to ``value`` byte for byte (pydicom would refuse or fix it)."""
    tag = pydicom.tag.Tag(keyword)
    data = value.encode("ascii")
    if len(data) % 2:
        data += b" "
    ds._dict[tag] = pydicom.dataelem.RawDataElement(
        tag, pydicom.datadict.dictionary_VR(tag), len(data), data, 0, False, True)


@pytest.mark.parametrize("keyword, value", [
    ("StudyDate", "20201341"), ("StudyDate", "2020011"), ("StudyDate", "ABCDEFGH"),
    ("StudyDate", "1997.04.24"), ("StudyDate", "20200101\\20201341"), ("StudyTime", "256000"),
    ("StudyTime", "12:30:00"), ("AcquisitionDateTime", "20201341120000"),
    ("ContentDate", "00000000"), ("SeriesTime", "1230.5.5"),
])
@pytest.mark.parametrize("profile", ["basic", "tcia-like"])
def test_invalid_date_values_never_pass_through(tmp_path, run, capsys, keyword, value, profile):
    """Shifted (tcia-like) or removed (basic): a value that cannot be shifted quarantines the
    file with a reason naming the attribute; a written file never holds the original."""
    ds = pydicom.dcmread(corpus_file("CT_small.dcm"))
    _with_raw_value(ds, keyword, value)
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "x.dcm")
    status, out = run(src, "--profile", profile)
    err = capsys.readouterr().err
    files = outputs(out)
    if status == 1:
        assert profile != "basic", "the Basic Profile removes dates: nothing to shift"
        assert not files
        assert keyword in _line_for(err, src / "x.dcm")
        return
    assert status == 0 and len(files) == 1
    raw = files[0].read_bytes()
    for part in value.split("\\"):
        assert part.encode() not in raw
    after = pydicom.dcmread(files[0])
    if profile == "tcia-like":  # kept and shifted: a valid value of its VR
        new = after.data_element(keyword)
        from pydicom.valuerep import validate_value

        validate_value(new.VR, new.value, "raise")


def _element_ends(path: Path) -> list[int]:
    """File offsets where a top-level element of ``path`` ends (cuts that read cleanly)."""
    ds = pydicom.dcmread(path)
    return sorted(e.value_tell + e.length for e in ds._dict.values()
                  if isinstance(e, pydicom.dataelem.RawDataElement) and e.length != 0xFFFFFFFF)


def _assert_cuts_quarantined(tmp_path, run, key_file, capsys, whole: bytes, cuts, why: str):
    """Run the file ``whole`` cut at each of ``cuts`` with good files: each cut is
    quarantined with ``why`` in its reason, the good files are written."""
    src = tmp_path / "in"
    good = _good_files(src)
    bad = {}
    for n in cuts:
        p = src / "cut" / f"cut_at_{n}.dcm"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(whole[:n])
        bad[p] = (why, True)
    status, out = run(src)
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, bad, key_file.read_bytes().strip())


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_cut_anywhere_is_quarantined(tmp_path, run, key_file, capsys, name):
    """A file cut at an element boundary reads without any error in pydicom; cut there or
    mid-element, it must be quarantined, never written as an image without its pixels."""
    whole = corpus_file(name).read_bytes()
    ends = [n for n in _element_ends(corpus_file(name)) if 300 < n < len(whole)]
    cuts = sorted(set(ends[:: max(1, len(ends) // 8)] + [n - 3 for n in ends[1::17]]
                      + [len(whole) - 1, len(whole) // 2]))
    _assert_cuts_quarantined(tmp_path, run, key_file, capsys, whole, cuts, "")


def test_dicomdir_layout_quarantines_an_unindexable_instance(tmp_path, run, capsys):
    """No Series Instance UID: no DICOMDIR record can be made; that instance is quarantined,
    the others are written and indexed (not the whole batch failed with exit 2)."""
    src = tmp_path / "in"
    good = _good_files(src)
    (odd,) = copy_corpus(["JPEGLSNearLossless_08.dcm"], src)
    status, out = run(src, "--layout", "dicomdir")
    err = capsys.readouterr().err
    assert status == 1
    assert "DICOMDIR" in _line_for(err, odd)
    files = outputs(out)
    images = {p.resolve() for p in files if p.name.startswith("IM_")}
    assert len(images) == len(good)
    indexed = set()
    for d in (p for p in files if p.name == "DICOMDIR"):
        indexed |= {Path(i.path).resolve() for i in pydicom.fileset.FileSet(pydicom.dcmread(d))}
    assert indexed == images


@pytest.mark.parametrize("where", ["same", "parent"])
def test_source_inside_output_folder_is_a_usage_error(tmp_path, run, capsys, where):
    """Every file under OUT is skipped as one of our outputs: a source there would be
    silently dropped whole, so it is refused before anything is written."""
    parent = tmp_path / "data"
    src = parent / "raw"
    _good_files(src)
    out = src if where == "same" else parent
    before = tree_digest(parent)
    status, _ = run(src, out=out)
    assert status == 2
    assert "inside the output folder" in capsys.readouterr().err
    assert tree_digest(parent) == before
    assert not (out / ".pixeldeid").exists()


@pytest.mark.parametrize("key_bytes, why", [(None, "cannot read key file"),
                                            (b"short\n", "at least 16 bytes")])
def test_bad_key_file_is_a_usage_error(tmp_path, run, capsys, key_bytes, why):
    src = tmp_path / "in"
    _good_files(src)
    key = tmp_path / "project.key.bad"
    if key_bytes is not None:
        key.write_bytes(key_bytes)
    out = tmp_path / "out"
    status, _ = run(src, out=out, key=key)
    assert status == 2
    assert why in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*"))


def test_unicode_and_undecodable_file_names(tmp_path, run, key_file, capsys):
    """Names in any script, and names that are not UTF-8 at all, are inputs like others."""
    src = tmp_path / "in"
    good = _good_files(src)
    odd = Path(os.fsdecode(bytes(src) + b"/scan\xff\xfe.dcm"))  # not UTF-8
    good[0].rename(odd)
    uni = src / "Ünïcødé 名前.dcm"
    good[1].rename(uni)
    bad = src / "Ünïcødé 名前 notes.txt"
    bad.write_text("not an image")
    status, out = run(src)
    err = capsys.readouterr().err
    _assert_batch(out, status, err, [odd, uni, good[2]], {bad: ("not a DICOM", True)},
                  key_file.read_bytes().strip())


def test_undecodable_name_of_a_bad_file_is_quarantined(tmp_path, run, key_file, capsys):
    src = tmp_path / "in"
    good = _good_files(src)
    bad = Path(os.fsdecode(bytes(src) + b"/notes\xff.txt"))
    bad.write_text("not an image")
    status, out = run(src)
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, {bad: ("not a DICOM", True)},
                  key_file.read_bytes().strip())


def test_one_stderr_line_per_bad_input_from_the_command(tmp_path, key_file):
    """The installed command (a real process, real logging): one line per bad input."""
    import subprocess
    import sys

    src = tmp_path / "in"
    _good_files(src)
    bad = [src / "notes.txt", src / "empty.dcm"]
    bad[0].write_text("not an image")
    bad[1].write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "pixeldeid", "dicom", str(src), "-o",
                        str(tmp_path / "out"), "--key-file", str(key_file), "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    for p in bad:
        assert [ln for ln in r.stderr.splitlines() if str(p) in ln] == \
            [f"quarantined: {p}: {_line_for(r.stderr, p)}"]
    assert "2 quarantined" in r.stdout


@pytest.mark.parametrize("value, expected", [
    ("95Y", "090Y"), ("095Y", "090Y"), ("120 Y", "090Y"), ("75Y", "075Y"), ("5M", "005M"),
    ("ninety", ""), ("1000Y", ""),
])
def test_malformed_patient_age(tmp_path, run, value, expected):
    """Retained ages are valid AS and never over 89 years, however the input wrote them."""
    ds = pydicom.dcmread(corpus_file("CT_small.dcm"))
    _with_raw_value(ds, "PatientAge", value)
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "x.dcm")
    status, out = run(src, "--profile", "tcia-like")
    assert status == 0
    (dst,) = outputs(out)
    after = pydicom.dcmread(dst)
    assert str(after.PatientAge) == expected
    if expected:
        from pydicom.valuerep import validate_value

        validate_value("AS", after.PatientAge, "raise")
    status, out = run(src, "--profile", "basic")
    assert status == 0
    assert "PatientAge" not in pydicom.dcmread(outputs(out)[0])


@pytest.mark.parametrize("value", [
    "1.2.840.113619.2.55.3.ABC.1",                 # letters
    "1.2.840.0113619.2.55",                        # a leading zero
    "1.2." + ".".join(["123456789"] * 8),          # longer than 64 characters
    "1.2.3.4.5 ",                                  # padded with a space, not a NUL
])
def test_invalid_uids_become_valid_uids(tmp_path, run, value):
    """Instance UIDs that violate the UI rules are replaced by valid ones, consistently."""
    ds = pydicom.dcmread(corpus_file("CT_small.dcm"))
    _with_raw_value(ds, "StudyInstanceUID", value)
    _with_raw_value(ds, "FrameOfReferenceUID", value)  # another reference to the same value
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "x.dcm")
    status, out = run(src)
    assert status == 0
    (dst,) = outputs(out)
    after = pydicom.dcmread(dst)
    from pydicom.valuerep import validate_value

    validate_value("UI", after.StudyInstanceUID, "raise")
    assert after.StudyInstanceUID.startswith("2.25.")
    assert after.FrameOfReferenceUID == after.StudyInstanceUID
    assert value.strip().encode() not in dst.read_bytes()


def test_folder_named_quarantine_is_read(tmp_path, run, key_file):
    """Only an output folder's quarantine (beside its .pixeldeid state) is skipped; a
    user's folder that happens to be called quarantine is input like any other."""
    src = tmp_path / "in"
    good = _good_files(src)
    (src / "quarantine").mkdir()
    moved = src / "quarantine" / good[0].name
    good[0].rename(moved)
    old_out = src / "old_release"  # an earlier output folder left among the sources
    status, _ = run([src / "quarantine"], out=old_out)
    assert status == 0
    (old_out / "quarantine").mkdir(exist_ok=True)
    (old_out / "quarantine" / "0123456789abcdef.dcm").write_bytes(b"not read again")
    status, out = run(src)
    assert status == 0
    sops = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in outputs(out)}
    assert _mapped_sops([moved, *good[1:]], key_file.read_bytes().strip()) <= sops


def test_unreadable_file_as_root(tmp_path, run, key_file, capsys, monkeypatch):
    """A file that cannot be opened (simulated for root): quarantined with the reason, the
    copy failure noted, the batch goes on."""
    import builtins

    src = tmp_path / "in"
    good = _good_files(src)
    locked = src / "locked.dcm"
    locked.write_bytes(corpus_file("SC_rgb.dcm").read_bytes())
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    status, out = run(src)
    monkeypatch.undo()
    err = capsys.readouterr().err
    _assert_batch(out, status, err, good, {locked: ("permission denied", False)},
                  key_file.read_bytes().strip())


@pytest.mark.parametrize("with_key", [True, False])
@pytest.mark.parametrize("where", ["is_a_file", "under_a_file"])
def test_output_folder_that_cannot_be_made(tmp_path, run, capsys, with_key, where):
    src = tmp_path / "in"
    _good_files(src)
    blocker = tmp_path / "release"
    blocker.write_bytes(b"a file, not a folder")
    out = blocker if where == "is_a_file" else blocker / "sub"
    kwargs = {} if with_key else {"key": None}
    status, _ = run(src, out=out, **kwargs)
    assert status == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    assert blocker.read_bytes() == b"a file, not a folder"


def _summary_counts(stdout: str) -> tuple[int, ...]:
    import re

    m = re.search(r"(\d+) input\(s\): (\d+) written, (\d+) already done, (\d+) quarantined", stdout)
    assert m, stdout
    return tuple(map(int, m.groups()))


def test_two_links_to_one_damaged_file_keep_two_quarantine_records(tmp_path, run, capsys):
    """The record was named by the resolved path: links to one file are separate inputs
    (git-annex trees), but their records overwrote each other (5 quarantined, 2 records)."""
    src = tmp_path / "in"
    src.mkdir()
    damaged = src / "damaged.dcm"
    damaged.write_bytes(corpus_file("CT_small.dcm").read_bytes()[:1000])
    (src / "link1.dcm").symlink_to(damaged)
    (src / "link2.dcm").symlink_to(damaged)
    status, out = run(src)
    assert status == 1 and _summary_counts(capsys.readouterr().out)[3] == 3
    reasons = sorted((out / "quarantine").glob("*.reason.txt"))
    named = sorted(r.read_text().splitlines()[0].rsplit("/", 1)[1] for r in reasons)
    assert named == ["damaged.dcm", "link1.dcm", "link2.dcm"]


def test_a_link_into_the_output_folder_is_reported(tmp_path, run, capsys):
    """A link in a source folder to a file inside OUT was skipped without a word (one input
    fewer in the summary, exit 0)."""
    src = tmp_path / "in"
    copy_corpus(["CT_small.dcm"], src)
    status, out = run(src)
    assert status == 0
    (src / "into_out.dcm").symlink_to(next(out.glob("*.dcm")))
    capsys.readouterr()
    status, _ = run(src, out=out)
    captured = capsys.readouterr()
    assert status == 1 and _summary_counts(captured.out) == (2, 0, 1, 1)
    assert "into_out.dcm" in captured.err and "inside the output folder" in captured.err


def test_a_quarantine_record_goes_when_its_input_is_cleaned(tmp_path, run, capsys):
    """An input quarantined by one run and replaced by a good file before the next kept its
    old copy and reason in OUT/quarantine, so the quarantine listed a file now released."""
    src = tmp_path / "in"
    src.mkdir()
    good = corpus_file("CT_small.dcm").read_bytes()
    (src / "a.dcm").write_bytes(good[:1000])
    status, out = run(src)
    assert status == 1 and len(list((out / "quarantine").iterdir())) == 2
    (src / "a.dcm").write_bytes(good)
    status, _ = run(src, out=out)
    assert status == 0 and list((out / "quarantine").iterdir()) == []
    assert len(outputs(out)) == 1


@pytest.mark.parametrize("name", ["JPEG-LL.dcm", "SC_rgb_rle_2frame.dcm"])
def test_compressed_file_cut_in_its_pixel_data_says_truncated(tmp_path, run, capsys, name):
    """pydicom reads an encapsulated file cut in its pixel data (an interrupted copy) as an
    empty data set: the reason said "missing SOP Class UID or SOP Instance UID" of a file
    that has both."""
    whole = corpus_file(name).read_bytes()
    src = tmp_path / "in"
    src.mkdir()
    (src / "cut.dcm").write_bytes(whole[: len(whole) * 3 // 4])
    status, out = run(src)
    assert status == 1
    (reason,) = (out / "quarantine").glob("*.reason.txt")
    assert "truncated" in reason.read_text() and "missing SOP" not in reason.read_text()


def test_a_folder_path_longer_than_the_system_takes_is_one_quarantine(tmp_path, run, capsys):
    """A folder whose path passes PATH_MAX (4096 bytes) ended the whole batch as a usage
    error (exit 2) before any file was read; it is one quarantined input now."""
    src = tmp_path / "in"
    copy_corpus(["CT_small.dcm"], src)
    fd = os.open(src, os.O_RDONLY)
    try:
        for _ in range(24):  # made relative to a folder descriptor: 24 x 201 bytes
            os.mkdir("d" * 200, dir_fd=fd)
            deeper = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = deeper
    finally:
        os.close(fd)
    status, out = run(src)
    captured = capsys.readouterr()
    assert status == 1 and _summary_counts(captured.out) == (2, 1, 0, 1)
    (line,) = [ln for ln in captured.err.splitlines() if ln.startswith("quarantined: ")]
    assert line.endswith(": cannot read: File name too long")
    assert len(outputs(out)) == 1


def test_sources_named_through_a_link_to_the_folder_of_the_output(tmp_path, run, capsys):
    """SRC named by a link to the folder that holds OUT: the rerun quarantined every earlier
    output as 'a link to a file inside the output folder' (they are regular files)."""
    data = tmp_path / "data"
    copy_corpus(["CT_small.dcm"], data / "in")
    (tmp_path / "link").symlink_to(data)
    status, out = run(tmp_path / "link", out=data / "out")
    assert status == 0
    before = tree_digest(out)
    capsys.readouterr()
    status, _ = run(tmp_path / "link", out=data / "out")
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert _summary_counts(captured.out) == (1, 0, 1, 0)
    assert tree_digest(out) == before and not (out / "quarantine").exists()
    (data / "in" / "into_out.dcm").symlink_to(next(out.glob("*.dcm")))  # still reported
    status, _ = run(tmp_path / "link", out=data / "out")
    assert status == 1 and "inside the output folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["rtplan.dcm", "reportsi.dcm", "JPEG2000.dcm",
                                  "emri_small_RLE.dcm"])
def test_a_file_ending_inside_an_element_header_is_quarantined(tmp_path, run, key_file,
                                                                capsys, name):
    """pydicom reads a file that ends 1 to 7 bytes into an element header, or inside the
    Sequence Delimitation Item of encapsulated Pixel Data, as if it were whole: an RT Plan
    cut so was written without its Study, Series and beams, and exit status 0."""
    whole = corpus_file(name).read_bytes()
    ends = [n for n in _element_ends(corpus_file(name)) if 300 < n < len(whole) - 8]
    cuts = sorted({n + k for n in ends[:: max(1, len(ends) // 6)] for k in (1, 3, 7)}
                  | {len(whole) - k for k in (1, 2, 4)})
    _assert_cuts_quarantined(tmp_path, run, key_file, capsys, whole, cuts, "truncated")


def _full_after(limit: int):
    """A stand-in for batch._write_output that fails as a full disk does for the inputs
    numbered ``limit`` and on (IM00005.dcm...), in any worker process."""
    import errno

    from pixeldeid import batch

    real = batch._write_output

    def write(out, rel, sop, data, path, layout):
        if int(Path(path).stem[2:]) >= limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(out, rel, sop, data, path, layout)
    return write


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_full_output_disk_stops_the_batch_and_blames_no_input(tmp_path, run, key_file,
                                                                capsys, monkeypatch, jobs):
    """Every input after the disk filled was quarantined as if it were bad (with -j 2 the
    run died on a reason file, naming no folder). Now the batch stops with one line naming
    OUT and the summary of what was done, no input is quarantined, and a rerun once there
    is room finishes the release as one uninterrupted run writes it."""
    from corpus import make_ct_series

    from pixeldeid import batch

    src = tmp_path / "in"
    make_ct_series(src, 12)
    monkeypatch.setattr(batch, "_write_output", _full_after(5))
    status, out = run(src, "-j", jobs)
    err = capsys.readouterr()
    assert status == 1
    [line] = [x for x in err.err.splitlines() if x.startswith("pixeldeid: error:")]
    assert str(out) in line and "No space left on device" in line and "stopped" in line
    assert "quarantined" not in err.err and not (out / "quarantine").exists()
    assert "0 quarantined" in err.out and len(outputs(out)) <= 5
    monkeypatch.undo()
    status, _ = run(src, "-j", jobs, out=out)
    assert status == 0
    status, whole = run(src, "-j", jobs, out=tmp_path / "whole")
    def release(root):
        return {k: v for k, v in tree_digest(root).items() if not k.startswith(".pixeldeid")}
    assert release(out) == release(whole) and len(outputs(out)) == 12


def test_no_room_for_a_quarantine_record_stops_the_batch(tmp_path, run, capsys, monkeypatch):
    import errno

    from pixeldeid import batch

    src = tmp_path / "in"
    _good_files(src)
    (src / "junk.dcm").write_bytes(b"not dicom")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(batch, "quarantine", full)
    status, out = run(src)
    err = capsys.readouterr().err
    assert status == 1
    assert f"pixeldeid: error: {out}: No space left on device" in err


def test_a_users_folders_named_like_ours_are_read(tmp_path, run, capsys):
    """Files under a source folder named ``.pixeldeid`` were skipped without a word (the
    state folder of an output folder is skipped); only a folder holding pixeldeid's key id
    is state. An earlier output folder given as a source is still read without its state
    and quarantine."""
    src = tmp_path / "in"
    copy_corpus(["CT_small.dcm"], src / ".pixeldeid")
    copy_corpus(["MR_small.dcm"], src / "quarantine")
    status, out = run(src)
    assert status == 0 and len(outputs(out)) == 2, capsys.readouterr()
    (src / "junk.dcm").write_bytes(b"not dicom")
    status, again = run([src, out])  # OUT's own state and quarantine are not inputs
    assert status == 1
    assert "5 input(s): 4 written, 0 already done, 1 quarantined" in capsys.readouterr().out
    assert len(outputs(again)) == 4


@pytest.mark.parametrize("name", ["reportsi.dcm", "rtplan.dcm", "rtdose.dcm"])
def test_an_instance_cut_before_its_study_is_quarantined(tmp_path, run, key_file, capsys,
                                                         name):
    """A report, plan or dose cut at an element boundary before its Study or Series
    Instance UID read as whole and was written without them (and all after the cut)."""
    whole = corpus_file(name).read_bytes()
    elements = pydicom.dcmread(corpus_file(name))._dict
    sop_at, series_at = elements[0x00080018].value_tell, elements[0x0020000E].value_tell
    cuts = [n for n in _element_ends(corpus_file(name)) if sop_at < n < series_at - 8]
    assert len(cuts) >= 5
    _assert_cuts_quarantined(tmp_path, run, key_file, capsys, whole, cuts, "truncated")
