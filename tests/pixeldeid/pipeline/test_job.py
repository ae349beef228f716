"""Job files: the shipped example loads, unknown keys get "did you mean", bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixeldeid.errors import ProfileError
from pixeldeid.paths import configs_dir
from pixeldeid.pipeline.job import Job, load_job, parse_job


def test_example_job_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    job = load_job(configs_dir() / "jobs" / "example.yaml")
    assert job.profile == "tcia-like" and job.layout == "hierarchy"
    assert job.deface.enabled and job.zip_per_subject and job.pixels.policy == "auto"
    (tmp_path / "job.yaml").write_text("key_file: keys/project.key\nsubject_map: map.csv\n")
    job = load_job(tmp_path / "job.yaml")
    assert job.key_file == str(tmp_path / "keys" / "project.key")
    assert job.subject_map == str(tmp_path / "map.csv")


@pytest.mark.parametrize("data, words", [
    ({"profil": "basic"}, ["'profil'", "did you mean 'profile'"]),
    ({"deface": {"enable": True}}, ["'deface.enable'", "did you mean 'enabled'"]),
    ({"packaging": {"zip_per_subjects": True}}, ["did you mean 'zip_per_subject'"]),
    ({"pixels": {"policy": "everything"}}, ["pixels/policy", "everything"]),
    ({"layout": "dicomdir"}, ["layout", "dicomdir"]),
    ({"jobs": 0}, ["jobs"]),
    (["profile"], ["mapping"]),
])
def test_bad_job_files_are_refused_with_the_reason(data, words) -> None:
    with pytest.raises(ProfileError) as exc:
        parse_job(data, "job.yaml")
    for w in words:
        assert w in str(exc.value)
    assert "job.yaml" in str(exc.value)


def test_flags_override_the_job_file() -> None:
    job = Job(jobs=1, profile="basic").override(jobs=4, profile=None)
    assert job.jobs == 4 and job.profile == "basic"
    # settings that change outputs are the ones a rerun must keep
    assert "jobs" not in job.output_settings() and "deface" in job.output_settings()


def test_bad_job_file_is_a_usage_error(tmp_path: Path, capsys) -> None:
    from pixeldeid.cli import main

    (tmp_path / "job.yaml").write_text("profile: basic\nwsi: {lable: replace}\n")
    (tmp_path / "in").mkdir()
    status = main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                   "--config", str(tmp_path / "job.yaml")])
    assert status == 2
    assert "did you mean 'label'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_pseudonym_prefix_is_a_usage_error_before_anything_is_written(
        tmp_path: Path, capsys) -> None:
    """It was refused after the project key had been made in OUT/.pixeldeid/."""
    from pixeldeid.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.dcm").write_bytes(b"\0" * 200)
    status = main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--no-progress",
                   "--prefix", "bad prefix"])
    assert status == 2
    assert "pseudonym prefix 'bad prefix'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _one_ct(tmp_path: Path) -> Path:
    from pixeldeid._synth import make_ct_series

    make_ct_series(tmp_path / "in", 1)
    return tmp_path / "in"


@pytest.mark.parametrize(("job", "words"), [
    ("pixels: {ocr: tesseractt}\n", "did you mean 'tesseract'"),
    ("wsi: {ocr: rapidocrr}\n", "did you mean 'rapidocr'"),
    ("pixels: {templates: /nonexistent/templates}\n", "templates folder not found"),
])
def test_engine_and_folder_typos_are_usage_errors_before_anything_is_written(
        tmp_path: Path, capsys, job: str, words: str) -> None:
    """Found per item, they quarantined every item, and the settings recorded in OUT then
    refused the corrected job."""
    from pixeldeid.cli import main

    src = _one_ct(tmp_path)
    (tmp_path / "job.yaml").write_text(job)
    for dry in ([], ["--dry-run"]):
        status = main(["run", str(src), "-o", str(tmp_path / "out"), "--no-progress",
                       "--config", str(tmp_path / "job.yaml"), *dry])
        assert status == 2 and words in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_a_key_given_twice_in_a_job_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("profile: limited-dataset\npixels:\n  policy: all-text\n"
                                       "profile: basic\n")
    with pytest.raises(ProfileError, match="key 'profile' given twice"):
        load_job(tmp_path / "job.yaml")


def test_a_dry_run_gives_the_refusals_of_the_real_run(tmp_path: Path, capsys) -> None:
    from pixeldeid.cli import main

    src = _one_ct(tmp_path)
    out = tmp_path / "out"
    key, other = tmp_path / "k", tmp_path / "k2"
    key.write_bytes(b"k" * 32)
    other.write_bytes(b"o" * 32)
    base = ["run", str(src), "-o", str(out), "--no-progress", "--pixels", "off"]
    assert main([*base, "--key-file", str(key)]) == 0
    def state() -> list[str]:  # (a read-only SQLite reader may add its -shm/-wal files)
        return sorted(p.name for p in (out / ".pixeldeid").iterdir()
                      if not p.name.endswith(("-shm", "-wal")))

    before = state()
    assert main([*base, "--key-file", str(other), "--dry-run"]) == 2
    assert "another project key" in capsys.readouterr().err
    assert main([*base, "--key-file", str(key), "--profile", "tcia-like", "--dry-run"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main([*base, "--key-file", str(key), "--dry-run"]) == 0
    assert state() == before


def test_a_run_without_inputs_writes_no_key(tmp_path: Path, capsys) -> None:
    from pixeldeid.cli import main

    (tmp_path / "in").mkdir()
    assert main(["run", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "no input files found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("name", "suffix"), [
    ("sub-01_T1w.nii.gz", "T1w"), ("run_bold.nii", "bold"), ("T1_HARROWGATE.nii.gz", ""),
    ("mprage_4455667.nii.gz", ""), ("head.nii", "")])
def test_nifti_output_names_keep_only_a_bids_suffix(name: str, suffix: str) -> None:
    from pixeldeid.pipeline.plan import _nifti_suffix

    assert _nifti_suffix(Path(name)) == suffix
