"""The built distribution: every package and the data it loads at run time (configs/ and
models/ inside the packages), so that a wheel installed with pip works without a source
checkout (the wheel lacked both: every profile, table and template was missing)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_config() -> dict:
    tomllib = pytest.importorskip("tomllib")  # (Python 3.11+)
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_and_data_folder_is_listed():
    from setuptools import find_packages

    listed = set(_setuptools_config()["packages"])
    code = set(find_packages(str(ROOT), include=["pixeldeid*", "defacing*", "wsi*"]))
    data = {f"pixeldeid._configs{'.' + p.name if p != ROOT / 'configs' else ''}"
            for p in [ROOT / "configs", *(d for d in (ROOT / "configs").iterdir() if d.is_dir())]}
    data |= {f"defacing._models{'.' + p.name if p != ROOT / 'models' else ''}"
             for p in [ROOT / "models", *(d for d in (ROOT / "models").iterdir() if d.is_dir())]}
    data.add("pixeldeid.report.templates")
    assert code | data == listed


@pytest.mark.slow
def test_an_installed_wheel_finds_its_configs_and_models(tmp_path):
    import shutil

    pytest.importorskip("setuptools")
    src, dist = tmp_path / "src", tmp_path / "dist"
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name if src.exists() else (src.mkdir() or src / name))
    for name in ("pixeldeid", "defacing", "wsi", "configs", "models"):  # (a clean build)
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", str(src), "-w", str(dist)], check=True, cwd=tmp_path,
                   capture_output=True)
    (wheel,) = dist.glob("pixeldeid-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for p in [*(ROOT / "configs").rglob("*"), *(ROOT / "models").rglob("*")]:
        if p.is_file():
            top = "pixeldeid/_configs" if p.is_relative_to(ROOT / "configs") else "defacing/_models"
            base = ROOT / ("configs" if top.endswith("configs") else "models")
            assert f"{top}/{p.relative_to(base).as_posix()}" in names, p
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    code = ("import pixeldeid.paths as p, defacing.template as t, pixeldeid.standard as s;"
            "print(p.configs_dir()); print(t.models_dir()); print(len(s.rules()))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("PIXELDEID_CONFIGS", None)
    env.pop("PIXELDEID_MODELS", None)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=tmp_path, env=env).stdout.split()
    assert out[0] == str(target / "pixeldeid" / "_configs")
    assert out[1] == str(target / "defacing" / "_models" / "deface")
    assert int(out[2]) > 600  # Table E.1-1's rows
