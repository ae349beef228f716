"""Fixtures for the wsi tests: synthetic slides built on the fly, real slides from ../shared."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
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


def sha(p: str | Path) -> str:
    """SHA-256 of a file's bytes (inputs must be untouched)."""
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def assert_same_pixels(a_path, b_path, *, bounds: bool = False) -> None:
    """Every pyramid level of two slides reads back identical through openslide.

    ``bounds`` compares only the ``openslide.bounds-*`` rectangle (a Leica main image
    inside a larger collection).
    """
    import openslide

    a, b = openslide.OpenSlide(str(a_path)), openslide.OpenSlide(str(b_path))
    assert a.level_dimensions == b.level_dimensions
    for lvl, (w, h) in enumerate(a.level_dimensions):
        ds = a.level_downsamples[lvl]
        x = y = 0
        if bounds:
            x, y = int(a.properties["openslide.bounds-x"]), int(a.properties["openslide.bounds-y"])
            w = int(int(a.properties["openslide.bounds-width"]) / ds)
            h = int(int(a.properties["openslide.bounds-height"]) / ds)
        ra = np.asarray(a.read_region((x, y), lvl, (w, h)))
        rb = np.asarray(b.read_region((x, y), lvl, (w, h)))
        assert np.array_equal(ra, rb), f"level {lvl} (downsample {ds}) differs"
