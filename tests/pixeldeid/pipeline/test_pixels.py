"""The burned-in text stage inside ``pixeldeid run``: results and QC images in the ledger."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pixeldeid.cli import main
from pixeldeid.pipeline.plan import pixel_stage_available

from .conftest import KEY


def test_ultrasound_text_is_redacted_and_recorded_without_identity(tmp_path: Path) -> None:
    if not pixel_stage_available():
        pytest.skip("burned-in text stage not available")
    from pixeldeid.burnedin.ocr import available_engines
    from pixeldeid.burnedin.synth import make_us_cine

    if "rapidocr" not in available_engines():
        pytest.skip("rapidocr not installed")
    us = make_us_cine(n_frames=2, seed=1)
    src = tmp_path / "in" / "us.dcm"
    src.parent.mkdir()
    us.dataset.save_as(src, enforce_file_format=True)
    key = tmp_path / "k"
    key.write_bytes(KEY)
    out = tmp_path / "out"
    status = main(["run", str(src.parent), "-o", str(out), "--key-file", str(key),
                   "--no-progress", "--pixels", "auto"])
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    stages, st, details = con.execute("SELECT stages, status, details FROM items").fetchone()
    arts = con.execute("SELECT stage, kind, path FROM artifacts").fetchall()
    con.close()
    assert json.loads(stages) == ["pixels", "header"]
    assert status == 0 and st == "done"
    pix = json.loads(details)["pixels"]
    assert pix["redacted"] and pix["boxes"]
    for value in us.identity.values():  # the ledger's details carry no identity text
        assert str(value) not in details
    assert {k for _, k, _ in arts} == {"before", "after"}
    for _, _, rel in arts:
        assert rel.startswith(".pixeldeid/qc/") and (out / rel).is_file()
    assert sorted(pix["qc"]) == sorted(r for _, _, r in arts)
