"""Shared test fixtures: location of ../shared reference data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """Return a path under ../shared, skipping the test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference data not available: {p}")
    return p


@pytest.fixture
def shared():
    return shared_path


# Every output that pixeldeid.derive derives from a template during the tests is also made
# the ordinary way and compared (in every worker process too); a difference fails the run.
_DERIVE_CHECK = Path(os.environ.setdefault(
    "PIXELDEID_CHECK_DERIVED",
    str(Path(tempfile.gettempdir()) / f"pixeldeid-derive-check-{os.getpid()}.txt")))


def pytest_sessionstart(session):
    _DERIVE_CHECK.unlink(missing_ok=True)


def pytest_sessionfinish(session, exitstatus):
    if _DERIVE_CHECK.exists() and _DERIVE_CHECK.read_text().strip():
        lines = _DERIVE_CHECK.read_text().splitlines()
        print(f"\npixeldeid.derive: {len(lines)} derived output(s) differ from the ordinary "
              f"path (see {_DERIVE_CHECK}):\n" + "\n".join(lines[:20]))
        session.exitstatus = 1
