"""Fixtures for the wsi tests: synthetic slides built on the fly, real slides from ../shared."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import shared_path


def real_slide(name: str, tmp_path: Path) -> Path:
    """Copy a real slide from ../shared/data/wsi to ``tmp_path`` (skip when absent)."""
    src = shared_path("data", "wsi", name)
    dst = tmp_path / "in" / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture
def real(tmp_path):
    def _get(name: str) -> Path:
        return real_slide(name, tmp_path)

    return _get
