"""pixeldeid report accounts for every input of a ``pixeldeid dicom`` batch (from its ledger),
without naming any input file."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import pytest

from pixeldeid._synth import make_ct_series
from pixeldeid.cli import main
from pixeldeid.report import build_report
from pixeldeid.report.inputs import ledger_path, read_input_account, scrub_reason
from tests.pixeldeid.report.test_report import _cells, _section

#: input names that could be patients' names: none may appear in the report
NAMES = ("PETTIGREW_Ottilie", "QUAXLEY_Bertram", "MUNDUNGUS_Agatha", "GHOSTLY_Link")
SUMMARY = re.compile(r"(\d+) input\(s\): (\d+) written, (\d+) already done, (\d+) quarantined")


@dataclass
class Batch:
    src: Path
    out: Path
    key: Path
    summary: dict[str, int]


def _dicom(src: Path, out: Path, key: Path, capsys) -> dict[str, int]:
    capsys.readouterr()
    main(["dicom", str(src), "-o", str(out), "--key-file", str(key), "--pixels", "off",
          "--no-progress"])
    captured = capsys.readouterr()
    m = SUMMARY.search(captured.out + captured.err)
    assert m, captured
    keys = ("inputs", "written", "already done", "quarantined")
    return dict(zip(keys, map(int, m.groups()), strict=True))


def _batch(root: Path, capsys) -> Batch:
    src, out, key = root / "in", root / "out", root / "project.key"
    key.write_bytes(os.urandom(32).hex().encode())
    series = make_ct_series(src / "PETTIGREW_Ottilie", 3, seed=4)
    (src / "copies").mkdir()
    shutil.copyfile(series[0], src / "copies" / "QUAXLEY_Bertram.dcm")  # byte-identical copies
    shutil.copyfile(series[1], src / "copies" / "QUAXLEY_Bertram_2.dcm")
    (src / "MUNDUNGUS_Agatha.dcm").write_bytes(b"junk\n")  # quarantined after reading
    (src / "GHOSTLY_Link.dcm").symlink_to(root / "nowhere.dcm")  # quarantined before reading
    return Batch(src, out, key, _dicom(src, out, key, capsys))


def _input_totals(html: str) -> dict[str, int]:
    head, values = _cells(re.search(r'<table id="input-totals">.*?</table>', html, re.S)[0])
    return dict(zip(head, map(int, values), strict=True))


def _no_input_names(batch: Batch) -> None:
    for p in (batch.out / "report").rglob("*"):
        if p.is_file() and p.suffix == ".html":
            text = unescape(p.read_text(encoding="utf-8"))
            for name in (*NAMES, str(batch.src), "copies"):
                assert name not in text, (name, p)


def test_report_totals_match_the_dicom_summary(tmp_path, capsys):
    batch = _batch(tmp_path, capsys)
    assert batch.summary == {"inputs": 7, "written": 3, "already done": 2, "quarantined": 2}
    assert main(["report", str(batch.out), "--no-progress"]) == 0
    html = (batch.out / "report" / "index.html").read_text(encoding="utf-8")
    assert _input_totals(html) == batch.summary
    statuses = {r[0]: int(r[2]) for r in _cells(re.search(
        r'<table id="input-statuses">.*?</table>', html, re.S)[0])[1:]}
    assert statuses == {"written": 3, "identical": 2, "quarantined": 1,
                        "quarantined before reading": 1}
    assert "inputs counted from the pixeldeid dicom ledger" in html
    # the data structure says the same
    from pixeldeid.report.collect import read_quarantine

    acc = read_input_account(batch.out, read_quarantine(batch.out))
    assert acc.read and acc.totals == batch.summary
    assert acc.outputs_recorded == 3 and acc.outputs_missing == 0
    # both quarantined inputs are listed, by their copies' hashed names, without a source
    rows = _cells(_section(html, "quarantine"))
    assert rows[0] == ["copy", "stage", "reason"] and len(rows) == 3
    _no_input_names(batch)
    # read-only: no write-ahead log or shared memory file left beside the ledger
    led = ledger_path(batch.out)
    assert not led.with_name(led.name + "-wal").exists()
    assert not led.with_name(led.name + "-shm").exists()


def test_rerun_keeps_every_input_counted_once(tmp_path, capsys):
    batch = _batch(tmp_path, capsys)
    again = _dicom(batch.src, batch.out, batch.key, capsys)
    # the rerun skips the finished inputs and quarantines the two others again
    assert again == {"inputs": 7, "written": 0, "already done": 5, "quarantined": 2}
    html = build_report(batch.out, progress=False).read_text(encoding="utf-8")
    totals = _input_totals(html)
    assert totals["inputs"] == again["inputs"] and totals["quarantined"] == again["quarantined"]
    assert totals["written"] + totals["already done"] == again["written"] + again["already done"]
    assert totals == batch.summary  # each input under the outcome of the run that finished it
    _no_input_names(batch)


@pytest.fixture
def batch(tmp_path, capsys) -> Batch:
    return _batch(tmp_path, capsys)


def test_damaged_ledger_is_said_not_a_crash(batch):
    ledger_path(batch.out).write_bytes(b"this is not a database" * 100)
    html = build_report(batch.out, progress=False).read_text(encoding="utf-8")
    assert "pixeldeid dicom ledger damaged" in unescape(html)
    assert 'id="input-totals"' not in html and 'id="totals"' in html
    _no_input_names(batch)


def test_ledger_without_its_table_is_said(batch):
    led = ledger_path(batch.out)
    led.unlink()
    sqlite3.connect(led).close()  # an empty database
    html = unescape(build_report(batch.out, progress=False).read_text(encoding="utf-8"))
    assert "not a ledger of pixeldeid dicom" in html


def test_locked_ledger_is_said_not_a_crash(batch):
    led = ledger_path(batch.out)
    con = sqlite3.connect(led)
    try:  # an exclusive lock held by a writer (with its write-ahead log open)
        con.execute("PRAGMA locking_mode=EXCLUSIVE")
        con.execute("BEGIN EXCLUSIVE")
        con.execute("UPDATE files SET status=status")
        html = unescape(build_report(batch.out, progress=False).read_text(encoding="utf-8"))
    finally:
        con.rollback()
        con.close()
    assert "pixeldeid dicom ledger locked" in html
    assert 'id="input-totals"' not in html


def test_missing_ledger_keeps_the_scan_of_outputs(batch):
    ledger_path(batch.out).unlink()
    html = build_report(batch.out, progress=False).read_text(encoding="utf-8")
    assert "no run ledger: outputs scanned directly" in html
    assert 'id="input-totals"' not in html and "pixeldeid dicom ledger" not in html
    head, values = _cells(re.search(r'<table id="totals">.*?</table>', html, re.S)[0])
    assert dict(zip(head, values, strict=True)) == {"outputs": "3", "quarantined": "2"}


def test_scrub_reason_drops_paths_and_names():
    src = "/data/in/PETTIGREW_Ottilie/IM1.dcm"
    reason = f"OSError: [Errno 5] Input/output error: '{src}'"
    assert scrub_reason(reason, src) == "OSError: [Errno 5] Input/output error: '(input)'"
    assert "PETTIGREW" not in scrub_reason("cannot open /other/PETTIGREW_Ottilie.dcm now")
    assert scrub_reason("bad (PETTIGREW_Ottilie) header", "/x/PETTIGREW_Ottilie.dcm") == \
        "bad ((input)) header"
    assert scrub_reason("not a DICOM Part 10 file (no DICM preamble)") == \
        "not a DICOM Part 10 file (no DICM preamble)"
