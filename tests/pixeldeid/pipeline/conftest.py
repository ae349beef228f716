"""Fixtures of the ``pixeldeid run`` tests: a small mixed collection with hostile inputs.

``collection`` (module scope) is a folder with two CT patients, an ultrasound-like JPEG
cine, a small Aperio slide, and hostile inputs: a truncated file, a huge private element
declared longer than the file, an 8 MB private element that is real, sequences nested
4000 deep, a zip bomb, a symbolic link loop and a file that is not an image.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from pathlib import Path

import pytest

KEY = b"test-project-key-0123456789abcdef\n"
OTHER_KEY = b"another-project-key-fedcba9876543210\n"


def tree(root: Path, *, skip_state: bool = True) -> dict[str, str]:
    """SHA-256 of every regular file under ``root`` (relative path -> digest)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if skip_state and rel.parts[0] == ".pixeldeid":
            continue
        if p.is_file() and not p.is_symlink():
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def inputs_digest(root: Path) -> dict[str, str]:
    """Digest of the inputs, symbolic links included by their target text."""
    out = tree(root, skip_state=False)
    for p in root.rglob("*"):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = "link:" + os.readlink(p)
    return out


def _element(tag: tuple[int, int], vr: bytes, value: bytes, length: int | None = None) -> bytes:
    n = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC"):
        return struct.pack("<HH2sHI", tag[0], tag[1], vr, 0, n) + value
    return struct.pack("<HH2sH", tag[0], tag[1], vr, n) + value


def _with_tail(template: Path, dest: Path, tail: bytes) -> Path:
    """A copy of ``template`` whose dataset ends with ``tail`` before Pixel Data."""
    data = template.read_bytes()
    at = data.rfind(b"\xe0\x7f\x10\x00")
    dest.write_bytes(data[:at] + tail + data[at:])
    return dest


def _with_block(template: Path, dest: Path, block: bytes, tag: int) -> Path:
    """A copy of ``template`` (explicit VR little endian) with ``block`` (elements from
    ``tag`` on) inserted where its tags belong: before the first element after them."""
    import pydicom

    ds = pydicom.dcmread(template, stop_before_pixels=True)
    after = ds.get_item(min(t for t in ds._dict if t > tag))  # raw: it knows its offset
    at = after.value_tell - (12 if after.VR in ("OB", "OW", "SQ", "UN", "UT") else 8)
    data = template.read_bytes()
    dest.write_bytes(data[:at] + block + data[at:])
    return dest


def nested_sequence(depth: int) -> bytes:
    """(0009,1001) private SQ with items nested ``depth`` deep (undefined lengths)."""
    opening = _element((0x0009, 0x0010), b"LO", b"HOSTILE ")
    sq = struct.pack("<HH2sHI", 0x0009, 0x1001, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    inner_sq = struct.pack("<HH2sHI", 0x0009, 0x1001, b"SQ", 0, 0xFFFFFFFF)
    end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return opening + sq + (item + inner_sq) * depth + end * (depth + 1)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pixeldeid._synth import make_ct_series, make_planted_dataset, write_dataset

    root = tmp_path_factory.mktemp("collection") / "in"
    ct1 = make_ct_series(root / "ct" / "DOE_JOHN", 4, seed=1,
                         filename="{family}_{index:03d}.dcm")
    make_ct_series(root / "ct" / "ROE_JANE", 3, seed=2)
    ds, _ = make_planted_dataset(pixels="jpeg", frames=2, seed=5)
    write_dataset(ds, root / "us" / "cine.dcm")
    try:
        from wsi.synth.aperio import make_aperio

        make_aperio(root / "slide" / "S-2026-0001_DOE.svs", width=640, height=480, levels=2)
    except ImportError:
        pass
    bad = root / "hostile"
    bad.mkdir()
    (bad / "truncated.dcm").write_bytes(ct1[0].read_bytes()[:2000])
    _with_tail(ct1[1], bad / "huge_private_declared.dcm",
               _element((0x0009, 0x0010), b"LO", b"HOSTILE ")
               + _element((0x0009, 0x1002), b"OB", b"\0" * 16, length=0x7FFFFFF0))
    _with_block(ct1[2], bad / "huge_private_real.dcm",
                _element((0x0009, 0x0010), b"LO", b"HOSTILE ")
                + _element((0x0009, 0x1002), b"OB", b"\0" * (8 << 20)), 0x0009FFFF)
    _with_tail(ct1[3], bad / "deep_nesting.dcm", nested_sequence(4000))
    with zipfile.ZipFile(bad / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * (32 << 20))
    (bad / "notes.pdf").write_bytes(b"%PDF-1.4 Doe John MRN")
    os.symlink("loop", bad / "loop")
    return root
