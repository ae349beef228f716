"""``pixeldeid report`` and ``verify`` (audit s14): where a report may go, what verify leaves
out beside a report, the redacted-frames count and a verification that is out of date."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from pixeldeid.cli import main
from pixeldeid.errors import InputError
from pixeldeid.report import build_report
from pixeldeid.verify.checks import REPORT_MARKER, iter_outputs
from tests.pixeldeid.verify.conftest import copy_release, write_run_ledger


def _section(html: str, ident: str) -> str:
    start = html.index(f'id="{ident}"')
    nxt = html.find("<h2", start)
    return html[start: nxt if nxt > 0 else len(html)]


def _subject_folder(out: Path) -> Path:
    """Move one output of the flat release into ``OUT/SUBJ_X/`` (as the hierarchy layout
    names it); return the moved file."""
    first = sorted(out.glob("*.dcm"))[0]
    dest = out / "SUBJ_X" / "study_1" / first.name
    dest.parent.mkdir(parents=True)
    shutil.move(first, dest)
    return dest


def _old_report_beside(folder: Path) -> None:
    """The files an earlier version's report left in ``folder``."""
    (folder / REPORT_MARKER).write_bytes(b"pixeldeid QC report: never release this folder\n")
    (folder / "index.html").write_text("<html></html>")
    (folder / "images").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "images" / "00001-before.png")


@pytest.mark.parametrize("where", ["SUBJ_X", "SUBJ_X/review", "SUBJ_X/study_1", "."])
def test_report_in_or_under_a_release_folder_is_refused(ct_release, tmp_path, where) -> None:
    out = copy_release(ct_release, tmp_path / "out")
    _subject_folder(out)
    with pytest.raises(InputError, match="folder of its own"):
        build_report(out, out / where, progress=False)
    assert not (out / "SUBJ_X" / REPORT_MARKER).exists()
    assert main(["report", str(out), "-o", str(out / where), "--no-progress"]) == 2


def test_report_folders_of_their_own_are_accepted(ct_release, tmp_path) -> None:
    out = copy_release(ct_release, tmp_path / "out")
    _subject_folder(out)
    for rdir in (out / "report", out / "report", out / "qc" / "r1", out / ".pixeldeid" / "r2"):
        assert build_report(out, rdir, progress=False).is_file()  # again: an earlier report
    with pytest.raises(InputError, match="folder of its own"):  # qc/ holds r1 and a file
        (out / "qc" / "notes.dcm").write_bytes(b"x")
        build_report(out, out / "qc" / "r2", progress=False)


def test_verify_skips_only_the_report_files_beside_release_outputs(ct_release, tmp_path,
                                                                   capsys) -> None:
    out = copy_release(ct_release, tmp_path / "out")
    moved = _subject_folder(out)
    _old_report_beside(out / "SUBJ_X")
    files = iter_outputs(out)
    assert moved in files
    assert not [f for f in files if f.name in (REPORT_MARKER, "index.html", "00001-before.png")]
    # a name of identity planted in the release output beside the report is found
    ds = pydicom.dcmread(moved)
    ds.ImageComments = ct_release.patients[0].family
    ds.save_as(moved)
    assert main(["verify", str(out), "--against", str(ct_release.src), "--no-ocr",
                 "--no-dciodvfy", "--no-progress"]) == 1
    assert "SUBJ_X/study_1/" in capsys.readouterr().out


def test_a_report_folder_alone_is_still_not_for_release(ct_release, tmp_path) -> None:
    out = copy_release(ct_release, tmp_path / "out")
    build_report(out, progress=False)
    skipped: list[Path] = []
    files = iter_outputs(out, skipped=skipped)
    assert out / "report" in skipped and not [f for f in files if "report" in f.parts]


def _pixel_ledger(out: Path) -> None:
    """A run ledger: three CT-like outputs read by the pixel stage, one of them redacted,
    each with before/after QC images."""
    qc = out / ".pixeldeid" / "qc" / "pixels"
    qc.mkdir(parents=True)
    items, arts = [], []
    for i, f in enumerate(sorted(out.glob("*.dcm")) * 2, 1):  # (two outputs, used twice)
        redacted = i == 1
        box = [{"frame": 0, "x0": 1, "y0": 1, "x1": 9, "y1": 5, "label": "identity"}]
        items.append({"src": f"/data/in/IM{i}.dcm", "patient": f"SUBJ_00{i}", "modality": "CT",
                      "stages": ["pixels", "header"], "output": f.name,
                      "details": {"pixels": {"redacted": redacted, "verified": True,
                                             "boxes": box if redacted else []}}})
        for kind in ("before", "after"):
            p = qc / f"item{i}-{kind}.png"
            Image.fromarray(np.full((16, 16), 90, np.uint8)).save(p)
            arts.append((i, "pixels", kind, p.relative_to(out).as_posix(), kind))
    write_run_ledger(out, items=items, artifacts=arts)


def test_redacted_frames_counts_only_the_redacted(ct_release, tmp_path) -> None:
    out = copy_release(ct_release, tmp_path / "out")
    _pixel_ledger(out)
    html = build_report(out, progress=False).read_text()
    red = _section(html, "redactions")
    assert "redacted frames (1)" in red
    assert len(re.findall(r"<img ", red)) == 2  # before and after of the one redacted
    assert "3 output(s) read by the burned-in text stage with nothing to redact" in html


def test_at_risk_outputs_without_a_record_are_not_counted_as_redacted(ct_release,
                                                                      tmp_path) -> None:
    from tests.pixeldeid.verify.conftest import image_dataset, save

    out = copy_release(ct_release, tmp_path / "out")
    save(image_dataset("SUBJ_030", "SUBJ_030", seed=2), out / "capture.dcm")
    html = build_report(out, progress=False).read_text()
    assert "redacted frames (0)" in html
    assert "capture.dcm" in _section(html, "at-risk")


def _verify(out: Path, src: Path) -> None:
    assert main(["verify", str(out), "--against", str(src), "--no-ocr", "--no-dciodvfy",
                 "--no-progress"]) == 0


def test_verification_after_new_outputs_is_out_of_date(ct_release, tmp_path) -> None:
    out = copy_release(ct_release, tmp_path / "out")
    _verify(out, ct_release.src)
    html = build_report(out, progress=False).read_text()
    assert "clean" in _section(html, "verification") and 'id="verify-stale"' not in html
    # a rerun writes another output
    shutil.copy(sorted(out.glob("*.dcm"))[0], out / "added.dcm")
    html = build_report(out, progress=False).read_text()
    stale = _section(html, "verification")
    assert 'id="verify-stale"' in stale
    assert "1 output file(s) written after it" in stale and "3 file(s) to check now" in stale
    _verify(out, ct_release.src)
    assert 'id="verify-stale"' not in build_report(out, progress=False).read_text()


def test_verification_with_an_output_withdrawn_or_rewritten_is_out_of_date(ct_release,
                                                                          tmp_path) -> None:
    out = copy_release(ct_release, tmp_path / "out")
    _verify(out, ct_release.src)
    first, second = sorted(out.glob("*.dcm"))
    verified = (out / ".pixeldeid" / "verify.json").stat().st_mtime_ns
    os.utime(second, ns=(verified + 10**9, verified + 10**9))  # rewritten after verify
    first.unlink()  # withdrawn
    stale = _section(build_report(out, progress=False).read_text(), "verification")
    assert "1 output file(s) written after it" in stale and "1 file(s) to check now" in stale
    assert json.loads((out / ".pixeldeid" / "verify.json").read_text())["files"] == 2
