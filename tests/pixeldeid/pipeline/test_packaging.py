"""Packaging never follows symbolic links out of OUT, never packs private state, and names
zips safely; zips are reproducible and rewritten only when their content changes."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from pixeldeid.pipeline.packaging import package_subjects, write_package


def _out(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    (out / "slides" / "S1").mkdir(parents=True)
    (out / "slides" / "S1" / "a.dcm").write_bytes(b"image a")
    (out / "slides" / "S1" / "b.dcm").write_bytes(b"image b")
    secret = tmp_path / "secret.txt"
    secret.write_text("Doe^John MRN123")
    os.symlink(secret, out / "slides" / "S1" / "link.dcm")          # file link out of OUT
    os.symlink(tmp_path, out / "slides" / "S1" / "dirlink")          # folder link out of OUT
    (out / "x.dcm").write_bytes(b"image x")
    os.symlink(secret, out / "y.dcm")
    (out / ".pixeldeid").mkdir()
    (out / ".pixeldeid" / "key").write_text("k" * 32)
    (out / "quarantine").mkdir()
    (out / "quarantine" / "q.dcm").write_text("Doe^John")
    return out


def test_only_regular_released_files_are_packed(tmp_path: Path) -> None:
    out = _out(tmp_path)
    z = write_package(out, "SUBJ_001", ["slides/S1", "x.dcm", "y.dcm", ".pixeldeid/key",
                                        "quarantine/q.dcm", "../secret.txt",
                                        str(tmp_path / "secret.txt")])
    with zipfile.ZipFile(z) as zf:
        names = sorted(zf.namelist())
        blob = b"".join(zf.read(n) for n in names)
    assert names == ["slides/S1/a.dcm", "slides/S1/b.dcm", "x.dcm"]
    assert b"Doe" not in blob


def test_hostile_package_names_stay_in_packages(tmp_path: Path) -> None:
    out = _out(tmp_path)
    made = package_subjects(out, {"../../evil": ["x.dcm"], "A/B": ["slides/S1"], "A_B": ["x.dcm"],
                                  "none": []})
    assert {p.parent for p in made} == {out / "packages"}
    names = sorted(p.name for p in made)
    assert len(names) == 3 and "A_B.zip" in names and names[-1] == "evil.zip"
    assert names[0].startswith("A_B-")  # two pseudonyms cleaned to one name: both kept
    assert not (tmp_path / "evil.zip").exists()


def test_zips_are_reproducible_and_left_alone_when_unchanged(tmp_path: Path) -> None:
    out = _out(tmp_path)
    z = write_package(out, "S", ["slides/S1", "x.dcm"])
    first, mtime = z.read_bytes(), z.stat().st_mtime_ns
    assert write_package(out, "S", ["x.dcm", "slides/S1"]) == z
    assert z.read_bytes() == first and z.stat().st_mtime_ns == mtime
    (out / "x.dcm").write_bytes(b"image x, redone")
    write_package(out, "S", ["slides/S1", "x.dcm"])
    with zipfile.ZipFile(z) as zf:
        assert zf.read("x.dcm") == b"image x, redone"


def test_the_zip_of_a_patient_with_nothing_released_is_removed(tmp_path: Path) -> None:
    """A patient whose outputs were withdrawn or moved kept the old zip in the release."""
    out = _out(tmp_path)
    made = package_subjects(out, {"SUBJ_001": ["x.dcm"], "SUBJ_002": ["slides/S1"]})
    assert sorted(p.name for p in made) == ["SUBJ_001.zip", "SUBJ_002.zip"]
    made = package_subjects(out, {"SUBJ_001": ["x.dcm", "slides/S1"], "SUBJ_003": []})
    assert sorted(p.name for p in (out / "packages").iterdir()) == ["SUBJ_001.zip"]
    assert sorted(p.name for p in (out / ".pixeldeid" / "packages").iterdir()) == [
        "SUBJ_001.zip.sha256"]
