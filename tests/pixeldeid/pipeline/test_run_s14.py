"""``pixeldeid run`` (audit s14): claims of work not done, usage errors before the key,
the ledger's file mode, packages of an earlier ``--zip`` run, job file enum values."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pydicom
import pytest

from pixeldeid.cli import main
from pixeldeid.errors import ProfileError
from pixeldeid.pipeline.job import load_job

from .conftest import KEY

#: CID 7050 code values of the pixel options
CLEAN_PIXEL_DATA, CLEAN_VISUAL_FEATURES = "113101", "113102"


@pytest.fixture()
def ct(tmp_path: Path) -> tuple[Path, Path]:
    """A three-slice chest CT (no head: nothing for defacing) and the project key."""
    from pixeldeid._synth import make_ct_series

    src = tmp_path / "in"
    make_ct_series(src / "DOE_JOHN", 3, seed=7)
    key = tmp_path / "project.key"
    key.write_bytes(KEY)
    return src, key


def _run(src: Path, out: Path, *extra: str) -> int:
    return main(["run", str(src), "-o", str(out), "--no-progress", *extra])


def _dicoms(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.dcm") if ".pixeldeid" not in p.parts
                  and "quarantine" not in p.parts)


def _codes(path: Path) -> list[str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return [str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence]


@pytest.mark.parametrize(("extra", "message"), [
    (["--option", "clean-pixel-data", "--pixels", "off"], "--pixels off does not do"),
    (["--option", "clean-recognizable-visual-features", "--no-deface", "--pixels", "off"],
     "--no-deface"),
])
def test_options_claiming_work_not_done_are_usage_errors(ct, tmp_path, capsys, extra,
                                                         message) -> None:
    src, key = ct
    out = tmp_path / "out"
    assert _run(src, out, "--key-file", str(key), *extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing written, not even the state folder


def test_defacing_turned_off_in_the_job_file_refuses_the_defacing_claim(ct, tmp_path,
                                                                         capsys) -> None:
    src, key = ct
    job = tmp_path / "job.yaml"
    job.write_text("options: [clean-recognizable-visual-features]\npixels: {policy: off}\n"
                   "deface: {enabled: false}\n")
    out = tmp_path / "out"
    assert _run(src, out, "--key-file", str(key), "--config", str(job)) == 2
    assert "clean-recognizable-visual-features" in capsys.readouterr().err
    assert not out.exists()


def test_defacing_claim_only_on_defaced_outputs(ct, tmp_path) -> None:
    """Defacing on, a chest CT (not defaced): the option is accepted, but no output claims
    it; the header options are recorded as before."""
    src, key = ct
    out = tmp_path / "out"
    assert _run(src, out, "--key-file", str(key), "--pixels", "off", "--option",
                "clean-recognizable-visual-features", "--option", "clean-descriptors") == 0
    files = _dicoms(out)
    assert len(files) == 3
    for f in files:
        codes = _codes(f)
        assert CLEAN_VISUAL_FEATURES not in codes and CLEAN_PIXEL_DATA not in codes
        assert "113100" in codes and "113105" in codes  # basic, clean descriptors
        method = pydicom.dcmread(f, stop_before_pixels=True).DeidentificationMethod
        assert "clean-recognizable-visual-features" not in list(method)


def test_empty_prefix_is_refused_before_a_key_is_made(ct, tmp_path, capsys) -> None:
    src, key = ct
    out = tmp_path / "out"
    assert _run(src, out, "--prefix", "", "--pixels", "off") == 2
    assert "prefix ''" in capsys.readouterr().err
    assert not out.exists()  # no generated key to lock OUT to
    assert _run(src, out, "--key-file", str(key), "--pixels", "off") == 0


def test_run_ledger_is_owner_only(ct, tmp_path) -> None:
    src, key = ct
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert _run(src, out, "--key-file", str(key), "--pixels", "off") == 0
        db = out / ".pixeldeid" / "run.sqlite"
        for p in (db, db.with_name("run.sqlite-wal"), db.with_name("run.sqlite-shm")):
            if p.exists():
                assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
        os.chmod(db, 0o644)  # a ledger of an earlier version
        assert _run(src, out, "--key-file", str(key), "--pixels", "off") == 0
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_rerun_without_zip_brings_earlier_packages_up_to_date(ct, tmp_path, caplog) -> None:
    src, key = ct
    out = tmp_path / "out"
    common = ("--key-file", str(key), "--pixels", "off", "--layout", "hierarchy")
    assert _run(src, out, *common, "--zip") == 0
    (zp,) = (out / "packages").glob("*.zip")
    changed = sorted(src.rglob("*.dcm"))[1]
    ds = pydicom.dcmread(changed)
    ds.InstanceNumber = 77
    ds.save_as(changed)
    assert _run(src, out, *common) == 0  # no --zip this time
    tree = sorted(p.relative_to(out).as_posix() for p in _dicoms(out))
    assert any("/00077_" in t for t in tree) and len(tree) == 3
    with zipfile.ZipFile(zp) as zf:
        assert sorted(zf.namelist()) == tree  # not the withdrawn output
    assert "earlier --zip run" in caplog.text


def test_run_without_zip_makes_no_packages(ct, tmp_path) -> None:
    src, key = ct
    out = tmp_path / "out"
    assert _run(src, out, "--key-file", str(key), "--pixels", "off") == 0
    assert not (out / "packages").exists()


# -- job file values -------------------------------------------------------------------------
def _job(tmp_path: Path, text: str):
    p = tmp_path / "job.yaml"
    p.write_text(text)
    return load_job(p)


def test_policy_off_as_documented(tmp_path) -> None:
    assert _job(tmp_path, "pixels: {policy: off}\n").pixels.policy == "off"
    assert _job(tmp_path, "pixels:\n  policy: 'off'\n").pixels.policy == "off"
    # a boolean setting keeps its YAML boolean
    job = _job(tmp_path, "deface: {enabled: off, qc: yes}\n")
    assert job.deface.enabled is False and job.deface.qc is True
    with pytest.raises(ProfileError, match="pixels/policy"):  # no enum word for true
        _job(tmp_path, "pixels: {policy: on}\n")


@pytest.mark.parametrize(("text", "hint"), [
    ("layout: hierachy\n", "did you mean 'hierarchy'?"),
    ("deface: {series: heads}\n", "did you mean 'head'?"),
    ("wsi: {label: remov}\n", "did you mean 'remove'?"),
    ("pixels: {policy: phi_only}\n", "did you mean 'phi-only'?"),
])
def test_enum_values_get_a_did_you_mean(tmp_path, text, hint) -> None:
    with pytest.raises(ProfileError, match="is not one of") as exc:
        _job(tmp_path, text)
    assert hint in str(exc.value)


def test_enum_value_far_from_any_gets_no_guess(tmp_path) -> None:
    with pytest.raises(ProfileError) as exc:
        _job(tmp_path, "layout: zzzzzz\n")
    assert "did you mean" not in str(exc.value)
