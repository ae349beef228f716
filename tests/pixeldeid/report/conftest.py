"""A mixed output folder with a run ledger for the report tests.

``mixed_release`` extends a copy of ``ct_release`` (two CT patients, one quarantined file)
with a secondary capture whose burned-in text was redacted (source kept, boxes in the
ledger's pixels details), an ultrasound cine without a ledger record, a defacing QC render
and a ledger (meta, items, identity, artifacts) following the run ledger contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.pixeldeid.verify.conftest import (  # noqa: F401 - fixture re-exported
    Release,
    copy_release,
    ct_release,
    image_dataset,
    save,
    write_run_ledger,
)

#: the burned-in identity box of the secondary capture (x0, y0, x1, y1, exclusive)
ID_BOX = (2, 2, 60, 16)


@dataclass
class Mixed:
    out: Path
    src: Path
    ct: Release


@pytest.fixture(scope="session")
def mixed_release(ct_release, tmp_path_factory) -> Mixed:  # noqa: F811
    root = tmp_path_factory.mktemp("mixed")
    out = copy_release(ct_release, root / "out")
    src = root / "src"
    # secondary capture with text; output has the identity box blacked out
    sc = image_dataset("MRN5550001", "PETTIGREW^Ottilie", text="PETTIGREW", seed=3,
                       PatientAge="045Y", PatientSex="F", SeriesDescription="Screen capture")
    save(sc, src / "sc.dcm")
    arr = np.frombuffer(sc.PixelData, np.uint8).reshape(64, 96).copy()
    x0, y0, x1, y1 = ID_BOX
    arr[y0:y1, x0:x1] = 0
    sc.PixelData = arr.tobytes()
    sc.PatientID = sc.PatientName = "SUBJ_010"
    save(sc, out / "sc_out.dcm")
    # an ultrasound cine without a ledger record, and one more patient
    save(image_dataset("SUBJ_011", "SUBJ_011", modality="US", frames=6, seed=4,
                       PatientAge="045Y", PatientSex="F"), out / "us_cine.dcm")
    save(image_dataset("SUBJ_012", "SUBJ_012", seed=5, PatientAge="050Y", PatientSex="M",
                       SeriesDescription="Dose report"), out / "sc2.dcm")
    # a defacing QC render recorded as an artifact
    qc = out / ".pixeldeid" / "qc"
    qc.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((40, 80, 3), 120, np.uint8)).save(qc / "item4_front.png")
    cts = sorted(p.name for p in out.glob("2.25.*.dcm"))
    boxes = [{"frame": 0, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "label": "identity",
              "source": "ocr"},
             {"frame": 0, "x0": 4, "y0": 40, "x1": 40, "y1": 52, "label": "safe",
              "source": "ocr", "text": "LT ABD"}]
    items = [
        {"src": ct_release.src / "p0" / "IM00001.dcm", "patient": "SUBJ_001", "modality": "CT",
         "output": cts[0]},
        {"src": ct_release.src / "p1" / "IM00001.dcm", "patient": "SUBJ_002", "modality": "CT",
         "output": cts[1]},
        {"src": src / "sc.dcm", "patient": "SUBJ_010", "modality": "SC",
         "stages": ["header", "pixels"], "output": "sc_out.dcm",
         "details": {"pixels": {"boxes": boxes, "redacted": True, "method": "native"}}},
        {"src": "/data/head/IM1.dcm", "kind": "dicom-series", "patient": "SUBJ_013",
         "modality": "MR", "stages": ["header", "deface"], "output": "SUBJ_013/MR",
         "details": {"deface": {"qc": [".pixeldeid/qc/item4_front.png"]}}},
        {"src": "/data/head/odd.nii.gz", "kind": "nifti", "modality": "MR", "stages": ["deface"],
         "status": "quarantined", "reason": "orientation check failed"},
    ]
    write_run_ledger(out, items=items, meta={
        "profile": "tcia-like", "options": '["retain-patient-characteristics"]',
        "ps315_release": "2024c", "pixeldeid_version": "0.1.0", "layout": "flat"},
        identity=[("SUBJ_010", "name", "PETTIGREW^Ottilie"), ("SUBJ_010", "id", "MRN5550001")])
    return Mixed(out, src, ct_release)


@pytest.fixture(scope="session")
def mixed_report(mixed_release) -> Path:
    """``pixeldeid report OUT --k 2`` of :func:`mixed_release`; the path of index.html."""
    from pixeldeid.cli import main

    assert main(["report", str(mixed_release.out), "--k", "2", "--no-progress"]) == 0
    return mixed_release.out / "report" / "index.html"
