"""pixeldeid report: content of the HTML report with and without a run ledger."""

from __future__ import annotations

import re
from html import unescape

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

from pixeldeid.cli import main
from pixeldeid.errors import InputError
from pixeldeid.report import build_report
from pixeldeid.report.collect import read_quarantine
from tests.pixeldeid.report.conftest import ID_BOX
from tests.pixeldeid.verify.conftest import copy_release


def _section(html: str, ident: str) -> str:
    start = html.index(f'id="{ident}"')
    nxt = html.find("<h2", start)
    return html[start: nxt if nxt > 0 else len(html)]


def _cells(table_html: str) -> list[list[str]]:
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table_html, re.S)
    return [[unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)] for r in rows]


def test_plain_dicom_output_without_ledger(ct_release, tmp_path, capsys):
    out = copy_release(ct_release, tmp_path / "out")
    assert main(["report", str(out), "--no-progress"]) == 0
    html = (out / "report" / "index.html").read_text()
    assert "no run ledger" in html
    counts = _cells(_section(html, "counts"))
    assert counts[0] == ["stage", "modality", "done", "quarantined"]
    assert ["header", "CT", "2", "0"] in counts and ["header", "(unknown)", "0", "1"] in counts
    q = read_quarantine(out)
    assert len(q) == 1 and q[0]["reason"]
    rows = _cells(_section(html, "quarantine"))
    assert rows[0] == ["copy", "stage", "reason"]
    assert rows[1] == [q[0]["name"], "header", q[0]["reason"]]
    assert "broken" not in html  # no input name in the report (the record names it)
    assert q[0]["source"].endswith("broken.dcm")
    text = _section(html, "retained-text")
    assert "GE MEDICAL SYSTEMS" in text and "ANONYMIZED" not in text
    method = dict((r[0], r[1]) for r in _cells(_section(html, "method")))
    assert "DICOM PS3.15 2024c Basic Profile" in method["De-identification Method (DICOM)"]
    sample = _section(html, "sample")
    assert re.findall(r'alt="([^"]+)"', sample) == ["CT, frame 0 of 1"] * 2
    # the report folder is marked so that verify never scans it
    assert (out / "report" / ".pixeldeid-report").is_file()


def test_report_with_ledger_counts_method_and_quarantine(mixed_report):
    html = mixed_report.read_text()
    counts = _cells(_section(html, "counts"))
    assert counts[0] == ["stage", "modality", "done", "quarantined"]
    assert sorted(tuple(r) for r in counts[1:]) == [
        ("deface", "MR", "1", "1"), ("header", "CT", "2", "0"), ("header", "MR", "1", "0"),
        ("header", "SC", "1", "0"), ("pixels", "SC", "1", "0")]
    method = dict((r[0], r[1]) for r in _cells(_section(html, "method")))
    assert method["profile"] == "tcia-like" and method["options"] == "retain-patient-characteristics"
    assert method["ps315 release"] == "2024c"
    reasons = [r[2] for r in _cells(_section(html, "quarantine"))[1:]]
    assert "orientation check failed" in reasons and len(reasons) == 2


def test_report_redaction_thumbnails_strip_and_render(mixed_report, mixed_release):
    html = mixed_report.read_text()
    red = _section(html, "redactions")
    srcs = re.findall(r'<img src="([^"]+)" alt="([^"]*)"', red)
    assert [a for _, a in srcs if "sc2" not in a][:2] == ["before, frame 0", "after, frame 0"]
    before = np.asarray(Image.open(mixed_report.parent / srcs[0][0]).convert("L"), np.int16)
    after = np.asarray(Image.open(mixed_report.parent / srcs[1][0]).convert("L"), np.int16)
    assert before.shape == after.shape == (64, 96)
    x0, y0, x1, y1 = ID_BOX
    inner = (slice(y0 + 3, y1 - 3), slice(x0 + 3, x1 - 3))  # inside the drawn outline
    assert before[inner].max() > 200 and after[inner].max() < 30  # text, then black
    assert "2 box(es): 1 identity, 1 safe" in red
    strips = _section(html, "strips")
    assert "us_cine.dcm" in strips
    (strip_src,) = re.findall(r'<img src="([^"]+)"', strips)
    w, h = Image.open(mixed_report.parent / strip_src).size
    assert h == 120 and w > 6 * 120  # six frames side by side
    deface = _section(html, "deface")
    assert "SUBJ_013/MR" in deface and len(re.findall(r"<img ", deface)) == 1
    # every image lies in report/images and nothing points off the page
    for src in re.findall(r'<img src="([^"]+)"', html):
        assert src.startswith("images/") and (mixed_report.parent / src).is_file()
    assert not re.search(r'(src|href)=["\']?(https?:)?//', html)


def test_report_retained_text_and_kanon(mixed_report):
    html = mixed_report.read_text()
    text = _section(html, "retained-text")
    values = dict(re.findall(r'data-attribute="([^"]+)"><li>(.*?)</ul>', text, re.S))
    assert re.findall(r"<li>(.*?)</li>", "<li>" + values["SeriesDescription"]) == [
        "Dose report", "Screen capture"]
    assert values["safe OCR text"].startswith("LT ABD")
    assert text.index('"SeriesDescription"') < text.index('"safe OCR text"')
    risk = _section(html, "risk")
    rows = _cells(risk)
    # by hand: SUBJ_001/SUBJ_002 (CT, nothing retained) and SUBJ_013 (in the ledger only)
    # 3, SUBJ_010/SUBJ_011 (045Y F) 2, SUBJ_012 (050Y M) 1 -> with k=2 one class is flagged
    assert rows[0] == ["PatientAge", "PatientSex", "class size", "patients"]
    assert rows[1:] == [
        ["(absent)", "(absent)", "3", "SUBJ_001, SUBJ_002, SUBJ_013"],
        ["045Y", "F", "2", "SUBJ_010, SUBJ_011"], ["050Y", "M", "1", "SUBJ_012"]]
    assert risk.count('class="small"') == 1
    assert "6 patient(s) in 3 equivalence class(es)" in risk and "smallest class 1" in risk


def test_report_folder_outside_out_is_refused(ct_release, tmp_path, capsys):
    out = copy_release(ct_release, tmp_path / "out")
    with pytest.raises(InputError, match="--allow-outside"):
        build_report(out, tmp_path / "elsewhere", progress=False)
    assert main(["report", str(out), "-o", str(tmp_path / "elsewhere"), "--no-progress"]) == 2
    assert not (tmp_path / "elsewhere").exists()
    index = build_report(out, tmp_path / "elsewhere", allow_outside=True, progress=False)
    assert index.is_file()


def test_report_shows_the_last_verification(ct_release, tmp_path, capsys):
    out = copy_release(ct_release, tmp_path / "out")
    html = build_report(out, progress=False).read_text()
    assert "Not verified yet" in _section(html, "verification")
    target = sorted(out.glob("*.dcm"))[0]
    ds = pydicom.dcmread(target)
    family = ct_release.patients[1].family
    ds.ImageComments = family
    ds.save_as(target)
    assert main(["verify", str(out), "--against", str(ct_release.src), "--no-ocr",
                 "--no-dciodvfy", "--no-progress"]) == 1
    html = build_report(out, progress=False).read_text()
    rows = _cells(_section(html, "verification"))
    assert rows[0] == ["file", "check", "what"]
    assert {(r[0], r[1]) for r in rows[1:]} == {(target.name, "raw-bytes"),
                                               (target.name, "dicom-header")}
    assert family.lower() not in _section(html, "verification").lower()  # kind and length only
    assert family in _section(html, "retained-text")  # where the reviewer sees it too


def test_report_of_a_folder_with_nothing_pixeldeid_wrote_is_an_error(tmp_path, capsys):
    """A mistyped OUT gives an error, not an empty report that looks like a clean release."""
    (tmp_path / "notes").mkdir()
    assert main(["report", str(tmp_path / "notes"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nothing to report" in err and "notes" in err
    assert not (tmp_path / "notes" / "report").exists()


def test_an_output_with_a_value_pydicom_cannot_convert_is_noted_not_a_crash(ct_release, tmp_path):
    """pydicom converts values as they are read: Number of Frames '1A' raised ValueError out
    of the report (a file put into OUT by hand, or a folder that is not an output)."""
    out = copy_release(ct_release, tmp_path / "out")
    ds = pydicom.dcmread(next(out.glob("*.dcm")))
    ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", 2, b"1A", 0, False, True)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "2.25.1234"
    ds.save_as(out / "foreign.dcm")
    html = build_report(out, progress=False).read_text()
    assert "foreign.dcm: unreadable dicom output (ValueError)" in unescape(html)
    counts = _cells(_section(html, "counts"))
    assert ["header", "CT", "2", "0"] in counts  # the others are reported as before
