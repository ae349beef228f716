"""scrub_reason replaces the input's name where it stands whole, never inside words."""

from __future__ import annotations

import pytest

from pixeldeid.report.inputs import scrub_reason


@pytest.mark.parametrize(("reason", "source", "expected"), [
    ("zero-byte file", "/in/zero.dcm", "zero-byte file"),
    ("truncated: element (7FE0,0010) value", "/in/trunc.dcm",
     "truncated: element (7FE0,0010) value"),
    ("dangling symbolic link", "/in/dangling.dcm", "dangling symbolic link"),
    ("cannot read zero.dcm now", "/in/zero.dcm", "cannot read (input) now"),
    ("bad (PETTIGREW_Ottilie) header", "/x/PETTIGREW_Ottilie.dcm", "bad ((input)) header"),
    ("PETTIGREW_Ottilie2 differs", "/x/PETTIGREW_Ottilie.dcm", "PETTIGREW_Ottilie2 differs"),
])
def test_scrub_reason_replaces_whole_names_only(reason, source, expected):
    assert scrub_reason(reason, source) == expected
