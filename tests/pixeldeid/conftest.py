"""Fixtures for the pixeldeid core tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `from corpus import ...`


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    p = tmp_path / "project.key"
    p.write_bytes(b"test-project-key-0123456789abcdef\n")
    return p
