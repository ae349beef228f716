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
