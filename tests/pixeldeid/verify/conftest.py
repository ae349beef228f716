"""Output folders for the verify and report tests (also imported by tests/pixeldeid/report).

``ct_release`` runs the header core (``run_batch``) over two synthetic CT patients and one
bad file (quarantined). ``image_dataset`` builds small 8-bit secondary-capture / ultrasound
datasets with optional text drawn into the pixels; ``write_run_ledger`` writes a run ledger
following the contract of /work/spec/pipeline.md (``OUT/.pixeldeid/run.sqlite``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from pixeldeid._synth import SynthPatient, make_ct_series, make_patient, write_dataset

KEY = b"verify-report-test-key-0123456789"


@dataclass
class Release:
    src: Path
    out: Path
    patients: list[SynthPatient]


@pytest.fixture(scope="session")
def ct_release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    """Two CT patients (one slice each) and a truncated file, through ``run_batch``."""
    from pixeldeid.api import DeidConfig
    from pixeldeid.batch import run_batch

    root = tmp_path_factory.mktemp("ct_release")
    src, out = root / "src", root / "out"
    patients = [make_patient(11), make_patient(12)]
    for i, p in enumerate(patients):
        make_ct_series(src / f"p{i}", 1, patient=p, seed=11 + i)
    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    summary = run_batch([src], out, DeidConfig(key=KEY), progress=False)
    assert summary.count("written") == 2 and len(summary.quarantined) == 1
    return Release(src, out, patients)


def copy_release(rel: Release, dst: Path) -> Path:
    """A private copy of the release output (tests that plant identity change it)."""
    shutil.copytree(rel.out, dst, symlinks=True)
    return dst


def image_dataset(patient_id: str, name: str, *, modality: str = "SC", frames: int = 1,
                  rows: int = 64, cols: int = 96, text: str | None = None,
                  seed: int = 0, font_size: int | None = None, **attrs: object) -> FileDataset:
    """A small 8-bit MONOCHROME2 image (SC single frame, or US multi-frame) with ``text``
    drawn in white at (4, 4) of every frame (PIL's default font, at ``font_size`` when
    given); ``attrs`` are set as header keywords."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size) if font_size else None

    rng = np.random.default_rng(seed)
    arr = np.zeros((frames, rows, cols), np.uint8)
    for f in range(frames):
        img = Image.fromarray((40 + 20 * rng.random((rows, cols))).astype(np.uint8))
        d = ImageDraw.Draw(img)
        d.ellipse([cols // 4 + f, rows // 3, cols // 2 + f, rows - 4], fill=150)
        if text:
            d.text((4, 4), text, fill=255, font=font)
        arr[f] = np.asarray(img)
    sop_class = UltrasoundMultiFrameImageStorage if frames > 1 else SecondaryCaptureImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = patient_id, name, modality
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = arr.tobytes()
    ds.PatientIdentityRemoved = "YES"  # as an output of de-identification
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def save(ds: FileDataset, path: Path) -> Path:
    return write_dataset(ds, path)


def write_run_ledger(out: Path, *, items: list[dict] = (), identity: list[tuple] = (),
                     meta: dict | None = None, artifacts: list[tuple] = ()) -> Path:
    """Write ``OUT/.pixeldeid/run.sqlite`` with the contract's tables."""
    p = out / ".pixeldeid" / "run.sqlite"
    p.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(p)
    con.executescript("""
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE items(id INTEGER PRIMARY KEY, src TEXT NOT NULL, members TEXT, kind TEXT NOT NULL,
      modality TEXT, patient TEXT, study TEXT, series TEXT, stages TEXT NOT NULL,
      status TEXT NOT NULL, output TEXT, reason TEXT, details TEXT, started REAL, finished REAL);
    CREATE TABLE identity(patient TEXT, kind TEXT, value TEXT);
    CREATE TABLE artifacts(item INTEGER, stage TEXT, kind TEXT, path TEXT, caption TEXT);
    """)
    for k, v in (meta or {}).items():
        con.execute("INSERT INTO meta VALUES (?, ?)", (k, v))
    for i, it in enumerate(items, 1):
        con.execute("INSERT INTO items (id, src, members, kind, modality, patient, stages, status,"
                    " output, reason, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (it.get("id", i), str(it["src"]), None, it.get("kind", "dicom"),
                     it.get("modality", ""), it.get("patient", ""),
                     json.dumps(it.get("stages", ["header"])), it.get("status", "done"),
                     it.get("output"), it.get("reason"), json.dumps(it.get("details", {}))))
    con.executemany("INSERT INTO identity VALUES (?, ?, ?)", identity)
    con.executemany("INSERT INTO artifacts VALUES (?, ?, ?, ?, ?)", artifacts)
    con.commit()
    con.close()
    return p


def deidentified_slide(tmp_path: Path):
    """A synthetic Aperio slide (label, macro, identity in its metadata) in ``src/`` and its
    de-identified copy in ``out/``; returns ``(synth, out, result)``."""
    pytest.importorskip("openslide")
    from wsi.api import deidentify_slide
    from wsi.synth.aperio import make_aperio

    synth = make_aperio(tmp_path / "src" / "case.svs", width=720, height=480, levels=2)
    out = tmp_path / "out"
    res = deidentify_slide(synth.path, out, pseudonym="SUBJ_020")
    assert res.ok, res.reason
    return synth, out, res
