"""``pixeldeid run``: what stays in the release after reruns, and inputs that once stopped
a whole run (a non-UTF-8 file name)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from pixeldeid.cli import main

from .conftest import KEY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _ct(dest: Path, sop: str, *, patient: str = "PA", study: str = "1.2.3.4.19.100",
        instance: int = 1, pixel: int = 0) -> Path:
    """CT_small.dcm with another patient, study, SOP Instance UID and first pixel byte."""
    from tests.pixeldeid.conftest import ct_small_variant

    return ct_small_variant(dest, sop, pixel=pixel, PatientID=patient, StudyInstanceUID=study,
                            SeriesInstanceUID=study + ".1", InstanceNumber=instance)


def _run(src: Path, out: Path, tmp_path: Path, *extra: str) -> int:
    key = tmp_path / "project.key"
    key.write_bytes(KEY)
    return main(["run", str(src), "-o", str(out), "--key-file", str(key), "--no-progress",
                 "--pixels", "off", "--no-deface", *extra])


def _released(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.dcm") if p.is_file()
                  and not {"quarantine", ".pixeldeid", "packages"} & set(p.relative_to(out).parts))


def test_hierarchy_releases_one_instance_per_sop_instance_uid(tmp_path: Path, capsys) -> None:
    """``run --layout hierarchy`` released two different instances with one SOP Instance
    UID (their names differ by Instance Number); flat quarantined the second."""
    src, out = tmp_path / "in", tmp_path / "out"
    _ct(src / "a.dcm", "1.2.3.4.7.1", instance=1)
    _ct(src / "b.dcm", "1.2.3.4.7.1", instance=2, pixel=50)
    assert _run(src, out, tmp_path, "--layout", "hierarchy") == 1
    assert "duplicate SOP Instance UID" in capsys.readouterr().err
    assert len(_released(out)) == 1


def test_zip_of_a_patient_an_input_left_is_removed(tmp_path: Path) -> None:
    """An input corrected to another patient: its old patient's zip (the withdrawn output
    under the old pseudonym) stayed in OUT/packages beside the new one."""
    src, out = tmp_path / "in", tmp_path / "out"
    _ct(src / "a.dcm", "1.2.3.4.19.1")
    b = _ct(src / "b.dcm", "1.2.3.4.19.2", patient="PB", study="1.2.3.4.19.200")
    assert _run(src, out, tmp_path, "--zip") == 0
    assert sorted(p.name for p in (out / "packages").iterdir()) == ["SUBJ_001.zip", "SUBJ_002.zip"]
    _ct(b, "1.2.3.4.19.2", instance=2)  # filed under the wrong patient: now PA's
    st = b.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _run(src, out, tmp_path, "--zip") == 0
    (z,) = (out / "packages").iterdir()
    with zipfile.ZipFile(z) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".dcm")]) == 2
    assert len(_released(out)) == 2


def test_a_file_name_that_is_not_utf8(tmp_path: Path, capsys) -> None:
    """A Latin-1 file name stopped every run with a UnicodeEncodeError traceback (the ledger
    bound its surrogate escapes as SQLite text): nothing was processed, ever."""
    src, out = tmp_path / "in", tmp_path / "out"
    _ct(src / "good.dcm", "1.2.3.4.18.1")
    _ct(Path(os.fsdecode(os.fsencode(src) + b"/caf\xe9.dcm")), "1.2.3.4.18.2")
    Path(os.fsdecode(os.fsencode(src) + b"/bad\xe9.dcm")).write_bytes(b"not DICOM")
    assert _run(src, out, tmp_path) == 1
    err = capsys.readouterr().err
    assert "bad\\xe9.dcm: unreadable DICOM header" in err and "Traceback" not in err
    assert len(_released(out)) == 2
    assert _run(src, out, tmp_path) == 1  # the rerun finds every item in the ledger
    assert "2 already done, 1 quarantined" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
