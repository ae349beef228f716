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


@pytest.fixture(scope="module")
def us_collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small ultrasound cines with burned-in text (frame 1 of seed 2: the one once seen
    to give other boxes in other processes)."""
    if not pixel_stage_available():
        pytest.skip("burned-in text stage not available")
    from pixeldeid.burnedin.ocr import available_engines
    from pixeldeid.burnedin.synth import make_us_cine

    if "rapidocr" not in available_engines():
        pytest.skip("rapidocr not installed")
    src = tmp_path_factory.mktemp("us-in")
    for seed in (1, 2):
        make_us_cine(n_frames=2, seed=seed).dataset.save_as(src / f"cine{seed}.dcm",
                                                             enforce_file_format=True)
    return src


def _pixel_run(src: Path, out: Path, *extra: str) -> tuple[dict[str, str], list]:
    from .conftest import tree

    key = out.parent / "k"
    key.write_bytes(KEY)
    assert main(["run", str(src), "-o", str(out), "--key-file", str(key), "--no-progress",
                 "--pixels", "auto", *extra]) == 0
    con = sqlite3.connect(out / ".pixeldeid" / "run.sqlite")
    rows = con.execute("SELECT src, status, details FROM items ORDER BY src").fetchall()
    con.close()
    boxes = [(Path(s).name, st, json.loads(d)["pixels"]["boxes"]) for s, st, d in rows]
    return tree(out), boxes


@pytest.fixture(scope="module")
def us_reference(us_collection: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The outputs of ``-j 1`` (in this process)."""
    return _pixel_run(us_collection, tmp_path_factory.mktemp("us-j1") / "out", "-j", "1")


def test_reference_run_redacts_both_cines(us_reference) -> None:
    _, boxes = us_reference
    assert [st for _, st, _ in boxes] == ["done", "done"]
    assert all(b for _, _, b in boxes)  # text was found and redacted in both cines


@pytest.mark.parametrize("how", [("-j", "2"), ("-j", "2", "--executor", "dask")],
                         ids=["local-j2", "dask-localcluster"])
def test_redaction_is_the_same_bytes_for_any_worker_count(us_collection, us_reference, tmp_path,
                                                          how) -> None:
    ref_tree, ref_boxes = us_reference
    got_tree, got_boxes = _pixel_run(us_collection, tmp_path / "out", *how)
    assert got_boxes == ref_boxes
    assert got_tree == ref_tree


def test_ocr_boxes_do_not_depend_on_the_thread_count(monkeypatch) -> None:
    from pixeldeid.burnedin.ocr import available_engines

    if "rapidocr" not in available_engines():
        pytest.skip("rapidocr not installed")
    from pixeldeid.burnedin.ocr import RapidOcrEngine
    from pixeldeid.burnedin.synth import make_us_cine

    frame = make_us_cine(n_frames=2, seed=2).dataset.pixel_array[1]
    found = []
    for threads in ("1", "3"):
        monkeypatch.setenv("PIXELDEID_OCR_THREADS", threads)
        engine = RapidOcrEngine("cpu")
        assert engine.threads == int(threads)
        found.append(engine.read(frame))
    assert found[0] and found[0] == found[1]
