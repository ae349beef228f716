"""Output names that carry nothing of the input's, and the data holder's map back.

Outside BIDS mode a defaced NIfTI file is written to ``OUT/nifti/<keyed hash>[_<suffix>]
.nii[.gz]``: the hash is HMAC-SHA256 of the input's absolute path under the project key
(the same input gets the same name on a rerun with the key; without the key the name
says nothing of the path), and the suffix is kept only when it is a known BIDS image
suffix (``T1w``, ``ct``...). Folder and file names of inputs are often a patient's name
or ID. DICOM series are named by their new Series Instance UID (``OUT/dicom/<UID>/``).

The map from inputs to outputs is written to ``OUT/.pixeldeid/deface_map.csv`` (never
released; merged over reruns into the same OUT), next to the run's full report.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from pixeldeid.atomic import write_bytes_atomic
from pixeldeid.batch import STATE_DIRNAME

from .nifti import nifti_stem

NIFTI_OUT_DIRNAME = "nifti"
MAP_NAME = "deface_map.csv"
MAP_HEADER = ("source", "output", "status")
#: BIDS image suffixes kept at the end of a hashed name (no identity: a closed list; the
#: anatomical, functional, diffusion, perfusion, field map and PET suffixes of BIDS 1.9,
#: and ``ct``/``CT``); ``pixeldeid run`` names its NIfTI outputs with them too
KEPT_SUFFIXES = frozenset("""
T1w T2w PDw T2starw FLAIR PD inplaneT1 inplaneT2 PDT2 angio T1map T2map T2starmap R1map
R2map R2starmap PDmap MTRmap MTsat UNIT1 T1rho MWFmap MTVmap PDT2map Chimap S0map M0map
defacemask MEGRE MESE VFA IRT1 MP2RAGE MPM MTS MTR TB1DAM TB1EPI TB1AFI TB1TFL TB1RFM
TB1SRGE TB1map RB1map RB1COR bold cbv phase sbref dwi epi fieldmap magnitude magnitude1
magnitude2 phasediff phase1 phase2 asl m0scan aslcontext pet ct CT
""".split())
HASH_CHARS = 16


class OutputNamer:
    """Keyed output names for the inputs of one run.

    Parameters
    ----------
    out : path
        The output folder.
    key : bytes, optional
        The project key; None: a random key (names that no rerun repeats).
    """

    def __init__(self, out: Path, key: bytes | None = None) -> None:
        self.out = Path(out)
        self._key = bytes(key) if key else secrets.token_bytes(32)

    def digest(self, kind: str, path: str | os.PathLike) -> str:
        """Hex keyed hash of ``kind`` and the absolute ``path``."""
        msg = f"pixeldeid-deface:{kind}:{os.path.abspath(path)}".encode("utf-8",
                                                                      "surrogateescape")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:HASH_CHARS]

    def nifti(self, src: Path) -> Path:
        """``OUT/nifti/<hash>[_<suffix>]<.nii or .nii.gz>`` for the NIfTI input ``src``."""
        stem = nifti_stem(src)
        suffix = stem.rsplit("_", 1)[-1] if "_" in stem else ""
        tail = f"_{suffix}" if suffix in KEPT_SUFFIXES else ""
        ext = ".nii.gz" if str(src).lower().endswith(".gz") else ".nii"
        return self.out / NIFTI_OUT_DIRNAME / f"{self.digest('nifti', src)}{tail}{ext}"


def _relative(path: str | None, out: Path) -> str:
    if not path:
        return ""
    try:
        return Path(path).resolve().relative_to(out.resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def read_map(path: Path) -> dict[str, tuple[str, str]]:
    """The rows of an existing map, {source: (output, status)} ({} when none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != MAP_HEADER:
        return {}
    return {r[0]: (r[1], r[2]) for r in rows[1:] if len(r) == 3}


def write_map(rows: Iterable[tuple[str, str | None, str]], out: Path) -> Path:
    """Merge ``(source, output, status)`` rows into ``OUT/.pixeldeid/deface_map.csv``
    (outputs relative to OUT; a source seen again takes its new row)."""
    out = Path(out)
    path = out / STATE_DIRNAME / MAP_NAME
    merged = read_map(path)
    for source, output, status in rows:
        merged[str(source)] = (_relative(output, out), status)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MAP_HEADER)
    for source in sorted(merged):
        w.writerow([source, *merged[source]])
    write_bytes_atomic(path, buf.getvalue().encode("utf-8", "surrogateescape"))
    return path
