"""Damaged inputs that ended a whole batch (audit s14/fuzz, defects 4, 5 and 7).

- A Rust decoder's panic (pyo3's PanicException, a BaseException) escaped the pixel
  stage; from a worker it came back as a PicklingError: the batch ended with a traceback,
  every rerun at the same input.
- A damaged VR on the SOP Instance UID or the Patient ID raised in the header pre-pass
  (lazy value conversion), before anything was written.
- Quarantine reasons repeated pydicom's message with the raw value (``b'PXID73319 '``).
"""

from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, RLELossless, generate_uid

from pixeldeid import batch
from pixeldeid.errors import DeidError, InputError
from tests.pixeldeid.conftest import corpus_file, outputs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PATIENT_ID = "PXID73319"
forked = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers forked (Linux)")


def _ct(path: Path, *, ts: str = ExplicitVRLittleEndian, rle: bool = False, size: int = 32,
        seed: int = 0) -> Path:
    """A small CT of patient QUIXBURY^AHARROW / :data:`PATIENT_ID`, each a new instance."""
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    fm.MediaStorageSOPInstanceUID = generate_uid()
    fm.TransferSyntaxUID = ts
    ds = FileDataset(None, {}, file_meta=fm, preamble=b"\0" * 128)
    ds.SOPClassUID = fm.MediaStorageSOPClassUID
    ds.SOPInstanceUID = fm.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = "QUIXBURY^AHARROW", PATIENT_ID, "CT"
    ds.PatientTelephoneNumbers = "5550192834"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate = "20210304"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 1
    rng = np.random.default_rng(seed)
    ds.PixelData = rng.integers(0, 200, (size, size)).astype(np.int16).tobytes()
    if rle:
        ds.compress(RLELossless)
    path.parent.mkdir(parents=True, exist_ok=True)
    if ts == ExplicitVRBigEndian:
        pydicom.dcmwrite(path, ds, little_endian=False, implicit_vr=False, force_encoding=True)
    else:
        ds.save_as(path, enforce_file_format=True)
    return path


def _damage(path: Path, element: bytes, vr: bytes) -> Path:
    """Overwrite the VR of the first explicit-VR ``element`` (tag bytes and VR) in ``path``."""
    raw = bytearray(path.read_bytes())
    i = raw.index(element)
    raw[i + 4:i + 6] = vr
    path.write_bytes(raw)
    return path


def _rle_panic(path: Path) -> Path:
    """An RLE Lossless CT whose Columns says 1 (the segments hold 32): pylibjpeg-rle panics."""
    _ct(path, rle=True)
    ds = pydicom.dcmread(path)
    ds.Columns = 1
    ds.save_as(path, enforce_file_format=True)
    return path


def _good(folder: Path, n: int = 3) -> list[Path]:
    return [_ct(folder / f"good{i}.dcm", seed=i) for i in range(n)]


def _summary(stdout: str) -> dict[str, int]:
    m = re.search(r"(\d+) input\(s\): (\d+) written, (\d+) already done, (\d+) quarantined", stdout)
    assert m, stdout
    return dict(zip(("inputs", "written", "done", "quarantined"), map(int, m.groups()), strict=True))


def _reasons(out: Path) -> dict[str, str]:
    """input file name -> its .reason.txt text."""
    recs = {}
    for rf in (out / "quarantine").glob("*.reason.txt"):
        text = rf.read_text(encoding="utf-8")
        source = next(ln.split(": ", 1)[1] for ln in text.splitlines() if ln.startswith("source: "))
        recs[Path(source).name] = text
    return recs


# -- 4. a decoder panic -------------------------------------------------------------------
@forked
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_decoder_panic_quarantines_its_input_and_the_batch_goes_on(tmp_path, run, capsys,
                                                                      jobs):
    """The panic is a one-line quarantine (stage pixels); the good inputs are all written,
    and a rerun finishes the same way instead of stopping at the same file."""
    pytest.importorskip("rle")
    src = tmp_path / "in"
    good = _good(src)
    bad = _rle_panic(src / "b_rle_panic.dcm")
    out = tmp_path / "out"
    for attempt in range(2):
        status, _ = run(src, "--pixels", "auto", "-j", jobs, out=out)
        captured = capsys.readouterr()
        assert status == 1
        s = _summary(captured.out)
        assert s["inputs"] == len(good) + 1 and s["quarantined"] == 1
        assert s["written" if attempt == 0 else "done"] == len(good)
        assert "Traceback" not in captured.err
        assert f"quarantined: {bad}: a pixel decoder crashed: PanicException" in captured.err
        assert "stage: pixels" in _reasons(out)[bad.name]
    assert len(outputs(out)) == len(good)


class _Panic(BaseException):
    """Stands for pyo3_runtime.PanicException (a BaseException)."""


class _Stage:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def process(self, ds, identity, source=None):
        raise self.exc


def test_run_pixels_contains_a_panic_but_not_an_interrupt():
    ds = pydicom.dcmread(corpus_file("CT_small.dcm"))
    o = batch._run_pixels(_Stage(_Panic("index out of bounds")), ds, "x.dcm")
    assert (o.status, o.stage, o.reason) == ("quarantined", "pixels",
                                             "a pixel decoder crashed: _Panic")
    o = batch._run_pixels(_Stage(ValueError(f"bad value '{PATIENT_ID}'")), ds, "x.dcm")
    assert o.reason == "pixels: ValueError: bad value 'AAAA99999'"
    for exc in (KeyboardInterrupt(), SystemExit(3)):
        with pytest.raises(type(exc)):
            batch._run_pixels(_Stage(exc), ds, "x.dcm")


_PROCESS_CHUNK = batch._process_chunk


def _fails_on_poison(paths: list[str]):
    """:func:`batch._process_chunk` in a worker, failing as a chunk whose result could not
    be pickled (a panic's) after the work of a chunk that holds ``poison.dcm``."""
    if any(p.endswith("poison.dcm") for p in paths):
        _PROCESS_CHUNK([p for p in paths if not p.endswith("poison.dcm")])
        raise pickle.PicklingError("Can't pickle <class 'pyo3_runtime.PanicException'>")
    return _PROCESS_CHUNK(paths)


@forked
@pytest.mark.parametrize(("pixels", "jobs", "n"), [("off", "2", 40), ("auto", "1", 3)])
def test_a_result_that_cannot_come_back_from_a_worker_costs_its_input_only(
        tmp_path, run, monkeypatch, capsys, pixels, jobs, n):
    """future.result() raising (not BrokenProcessPool: an unpicklable exception, as a
    panic was) ended the batch. Now that input is quarantined (stage worker); the others
    of its chunk (40 inputs at -j 2: chunks of 2) are run again one at a time."""
    src = tmp_path / "in"
    good = _good(src, n)
    poison = _ct(src / "poison.dcm", seed=99)
    monkeypatch.setattr(batch, "_process_chunk", _fails_on_poison)
    status, out = run(src, "--pixels", pixels, "-j", jobs)
    captured = capsys.readouterr()
    assert status == 1
    s = _summary(captured.out)
    assert s["inputs"] == n + 1 and s["quarantined"] == 1 and s["written"] == n
    assert "Traceback" not in captured.err
    assert f"quarantined: {poison}: its worker failed on it: PicklingError" in captured.err
    assert "stage: worker" in _reasons(out)[poison.name]
    assert len(outputs(out)) == len(good)


# -- 5. the header pre-pass -----------------------------------------------------------------
def _damaged_headers(src: Path) -> tuple[Path, Path]:
    """A big-endian CT whose SOP Instance UID has VR 'QI' (one bit flipped), and a little
    endian CT whose Patient ID has VR FD (its value cannot be converted)."""
    be = _damage(_ct(src / "bad_be.dcm", ts=ExplicitVRBigEndian, seed=7),
                 b"\x00\x08\x00\x18UI", b"QI")
    le = _damage(_ct(src / "bad_le.dcm", seed=8), b"\x10\x00\x20\x00LO", b"FD")
    return be, le


def test_the_header_scan_survives_lazy_value_conversion(tmp_path):
    be, le = _damaged_headers(tmp_path)
    for p in (be, le):
        batch._scan_header(str(p))  # (raised NotImplementedError, BytesLengthException)
    assert batch._scan_header_pydicom(str(le)) is None
    good = _ct(tmp_path / "good.dcm")
    assert batch._scan_header_pydicom(str(good))[1] == str(
        pydicom.dcmread(good).SOPInstanceUID)


@forked
@pytest.mark.parametrize("extra", [("--pixels", "auto", "-j", "1"), ("--pixels", "auto", "-j", "2"),
                                   ("--pixels", "off", "-j", "2")])
def test_a_damaged_vr_in_the_prepass_does_not_end_the_batch(tmp_path, run, capsys, extra):
    """Every input is accounted for (written, or quarantined with a one-line reason that
    does not repeat the Patient ID); the good ones are all written."""
    src = tmp_path / "in"
    good = _good(src)
    _damaged_headers(src)
    status, out = run(src, *extra)
    captured = capsys.readouterr()
    s = _summary(captured.out)
    assert s["inputs"] == len(good) + 2
    assert s["written"] + s["quarantined"] == s["inputs"] and s["written"] >= len(good)
    assert status == (1 if s["quarantined"] else 0)
    assert "Traceback" not in captured.err and PATIENT_ID not in captured.err
    for line in captured.err.splitlines():
        if line.startswith("quarantined: "):
            assert "bad_" in line
    for text in _reasons(out).values() if (out / "quarantine").is_dir() else ():
        assert PATIENT_ID not in text
    for f in outputs(out):
        assert PATIENT_ID.encode() not in f.read_bytes()


# -- 7. reasons repeat no header value --------------------------------------------------------
def test_a_reason_does_not_repeat_a_value_from_pydicoms_message(tmp_path, run, capsys):
    """A Patient ID stored as FD: pydicom's BytesLengthException quotes b'PXID73319 '; the
    reason names the exception, the VR and the element, not the value."""
    src = tmp_path / "in"
    _good(src, 1)
    bad = _damage(_ct(src / "pid_fd.dcm", seed=5), b"\x10\x00\x20\x00LO", b"FD")
    status, out = run(src, "--profile", "basic", "-j", "1")
    err = capsys.readouterr().err
    assert status == 1
    (line,) = [ln for ln in err.splitlines() if ln.startswith(f"quarantined: {bad}: ")]
    assert "BytesLengthException" in line and "'FD'" in line and "(0010,0020)" in line
    assert PATIENT_ID not in line and PATIENT_ID not in _reasons(out)[bad.name]


@pytest.mark.parametrize(("exc", "want"), [
    (ValueError("Instead received b'PXID73319 ' with length 10 and struct format 'd'"),
     "ValueError: Instead received 'AAAA99999 ' with length 10 and struct format 'd'"),
    (ValueError('cannot parse "QUIXBURY^AHARROW" as a date'),
     "ValueError: cannot parse 'AAAAAAAA^AAAAAAA' as a date"),
    (ValueError("patient 5550192834 born 19430817 in 1.2.826.0.1.3680043.9.7777"),
     "ValueError: patient 9999999999 born 99999999 in 9.9.999.9.9.9999999.9.9999"),
])
def test_unexpected_reason_masks_values(exc, want):
    assert batch.unexpected_reason(exc) == want


@pytest.mark.parametrize("text", [
    "Unknown Value Representation 'QI' in tag (0008,0018)",
    "[Errno 2] No such file or directory",
    "can't read TR/TE 2000/10 at slice 12 of 240, 0.5 mm, 120 kVp",
    "Can't convert 'DS' to a float",
])
def test_unexpected_reason_keeps_ordinary_text(text):
    """Short literals (VRs, struct formats), tags, measurements and apostrophes stay."""
    assert batch.unexpected_reason(RuntimeError(text + "\nsecond line")) == f"RuntimeError: {text}"


def test_failed_keeps_project_reasons_and_names_a_crash():
    """DeidError reasons (written with care, they may quote a shape) stay as they are."""
    reason = "Patient ID is stored with VR FD, not as text (damaged header?)"
    assert batch._failed("x.dcm", InputError(reason, "x.dcm")).reason == reason
    assert batch._failed("x.dcm", DeidError(reason)).reason == reason
    assert batch._failed("x.dcm", _Panic("boom")).reason == "a decoder crashed: _Panic"
