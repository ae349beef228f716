"""Locations of the project's declarative data (``configs/``)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


@cache
def configs_dir() -> Path:
    """Return the ``configs/`` folder (``PIXELDEID_CONFIGS`` overrides)."""
    env = os.environ.get("PIXELDEID_CONFIGS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "configs", here / "_configs"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(
        "pixeldeid configs/ folder not found; install from a source checkout "
        "(pip install -e .) or set PIXELDEID_CONFIGS"
    )
