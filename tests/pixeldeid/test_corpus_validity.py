"""The pydicom test corpus through ``pixeldeid dicom``: every file is cleaned (not
quarantined) and dicom3tools' ``dciodvfy`` finds no error in the output that the input
did not already have, under ``basic``, ``tcia-like`` and ``limited-dataset``."""

from __future__ import annotations

import pydicom
import pytest

from tests.pixeldeid.conftest import CORPUS, corpus_file, dciodvfy_exe, outputs

PROFILES = ("basic", "tcia-like", "limited-dataset")

needs_dciodvfy = pytest.mark.skipif(dciodvfy_exe() is None, reason="dciodvfy not installed")


def test_corpus_covers_every_transfer_syntax():
    """The subset really holds the transfer syntaxes it claims (pydicom-data may change)."""
    seen = {}
    for name, ts in CORPUS.items():
        ds = pydicom.dcmread(corpus_file(name), stop_before_pixels=True)
        assert str(ds.file_meta.TransferSyntaxUID) == ts, name
        seen[ts] = name
    expected = {
        "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    }
    assert expected <= set(seen)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_file_is_cleaned(corpus_runs, name, profile):
    status, _src, out = corpus_runs(name, profile)
    quarantined = sorted((out / "quarantine").glob("*.reason.txt"))
    reasons = [p.read_text() for p in quarantined]
    assert status == 0, reasons
    assert len(outputs(out)) == 1
    assert not quarantined


@needs_dciodvfy
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_no_new_dciodvfy_errors(corpus_runs, name, profile):
    status, src, out = corpus_runs(name, profile)
    files = outputs(out)
    if status != 0 or len(files) != 1:
        pytest.fail(f"{name} was not de-identified under {profile} (see test_corpus_file_is_cleaned)")
    before = set(corpus_runs.errors(src))
    after = set(corpus_runs.errors(files[0]))
    assert sorted(after - before) == []
