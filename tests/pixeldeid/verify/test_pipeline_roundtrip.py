"""`pixeldeid run` then `pixeldeid verify` and `pixeldeid report` on its output folder."""

from __future__ import annotations

import json
import re

import pydicom
import pytest

from pixeldeid._synth import make_ct_series, make_patient
from pixeldeid.cli import main
from tests.pixeldeid.verify.conftest import KEY


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    pytest.importorskip("pixeldeid.pipeline.cli")
    root = tmp_path_factory.mktemp("roundtrip")
    src, out = root / "src", root / "out"
    for i in range(2):
        make_ct_series(src / f"p{i}", 1, patient=make_patient(40 + i), seed=40 + i)
    (src / "notes.bin").write_bytes(b"not an image")
    key = root / "key"
    key.write_bytes(KEY)
    rc = main(["run", str(src), "-o", str(out), "--key-file", str(key), "--pixels", "off",
               "--no-deface", "--no-progress"])
    assert rc == 1  # the non-image is quarantined
    return src, out


def test_run_output_verifies_clean_from_its_ledger(run_out, capsys):
    _src, out = run_out
    assert main(["verify", str(out), "--no-ocr", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "2 file(s) checked" in text and text.strip().endswith("clean")
    assert json.loads((out / ".pixeldeid" / "verify.json").read_text())["clean"] is True


def test_run_output_with_a_leak_fails_and_report_shows_it(run_out, tmp_path, capsys):
    import shutil

    _src, out0 = run_out
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    target = sorted(out.rglob("*.dcm"))[0]
    ds = pydicom.dcmread(target)
    ds.ContentLabel = make_patient(41).patient_id  # the other patient's ID
    ds.save_as(target)
    assert main(["verify", str(out), "--no-ocr", "--no-progress"]) == 1
    assert make_patient(41).patient_id not in capsys.readouterr().out
    assert main(["report", str(out), "--no-progress"]) == 0
    html = (out / "report" / "index.html").read_text()
    assert re.search(r"<td>dicom-header</td><td>id value \(length \d+\) in \(0070,0080\) "
                     r"ContentLabel</td>", html)
    assert "run ledger present" in html
    quarantine = html[html.index('id="quarantine-table"'):]
    quarantine = quarantine[:quarantine.index("</table>")]
    assert quarantine.count("<tr>") == 2  # header + the non-image
    assert "notes.bin" not in html  # input names stay in OUT/quarantine/, not in the report


def test_other_patient_ids_sequence_id_is_in_the_ledger(run_out, tmp_path, capsys):
    """The ledger kept Other Patient IDs but not the Patient ID of the Other Patient IDs
    Sequence items (an NHS number): put back into an output it verified clean."""
    import shutil

    _src, out0 = run_out
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    target = sorted(out.rglob("*.dcm"))[0]
    ds = pydicom.dcmread(target)
    other_id = make_patient(40).other_id
    ds.ImageComments = f"see record {other_id}"
    ds.save_as(target)
    assert main(["verify", str(out), "--no-ocr", "--no-progress", "--no-dciodvfy"]) == 1
    text = capsys.readouterr().out
    assert "ImageComments" in text and other_id not in text
