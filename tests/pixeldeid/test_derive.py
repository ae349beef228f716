"""pixeldeid.derive: an output derived from the previous instance of its series is the
ordinary fast path's output, byte for byte; a file that differs in anything its context is
made of goes the ordinary way; the residual check runs on derived outputs too."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pydicom.data
import pytest

from pixeldeid import batch, derive
from pixeldeid._synth import make_ct_series, make_patient
from pixeldeid.api import DeidConfig
from pixeldeid.batch import run_batch
from pixeldeid.engine import Walker

OPTION_SETS = {
    "basic": ("basic", ()),
    "modified-dates": ("basic", ("retain-longitudinal-modified-dates",
                                 "retain-patient-characteristics")),
    "tcia-like": ("tcia-like", ()),
    "clean-all": ("basic", ("clean-descriptors", "clean-structured-content")),
    "full-dates+uids+private": ("basic", ("retain-longitudinal-full-dates", "retain-uids",
                                          "retain-safe-private")),
}


def _series(root: Path) -> Path:
    """Two CT series of two patients; each slice has its own acquisition time, just before
    midnight (a shift by the date offset moves some of them to the next day), its own
    source image reference, position and instance number."""
    make_ct_series(root / "a", 6, seed=11)
    make_ct_series(root / "b", 5, seed=12)
    for i, f in enumerate(sorted((root / "a").iterdir())):
        ds = pydicom.dcmread(f)
        ds.AcquisitionDate = "20230521"
        ds.AcquisitionTime = f"2359{50 + i:02d}.{i:03d}"
        ds.save_as(f)
    return root


def _run(src: Path, out: Path, monkeypatch, *, derive_on: bool, name: str = "basic",
         layout: str = "flat"):
    profile, options = OPTION_SETS[name]
    monkeypatch.setenv("PIXELDEID_DERIVE", "1" if derive_on else "0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = run_batch([src], out, DeidConfig(key=b"d" * 32, profile=profile,
                                                   options=options), layout=layout,
                            progress=False)
    deriver = batch._WORKER.get("deriver")
    return summary, (dict(deriver.stats) if deriver is not None else {})


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.suffix != ".txt"
            and ".pixeldeid" not in p.parts and "quarantine" not in p.parts}


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_derived_outputs_are_the_ordinary_outputs(tmp_path: Path, monkeypatch, name: str
                                                  ) -> None:
    src = _series(tmp_path / "in")
    derived, stats = _run(src, tmp_path / "derived", monkeypatch, derive_on=True, name=name)
    plain, none = _run(src, tmp_path / "plain", monkeypatch, derive_on=False, name=name)
    assert none == {}
    assert stats.get("derived", 0) == 9  # every slice but each series' first
    assert derived.count("written") == plain.count("written") == 11
    a, b = _outputs(tmp_path / "derived"), _outputs(tmp_path / "plain")
    assert len(a) == 11 and a == b


@pytest.mark.parametrize("layout", ["hierarchy", "dicomdir"])
def test_derived_outputs_in_other_layouts(tmp_path: Path, monkeypatch, layout: str) -> None:
    src = _series(tmp_path / "in")
    _, stats = _run(src, tmp_path / "derived", monkeypatch, derive_on=True, layout=layout,
                    name="modified-dates")
    _run(src, tmp_path / "plain", monkeypatch, derive_on=False, layout=layout,
         name="modified-dates")
    assert stats["derived"] == 9
    a, b = _outputs(tmp_path / "derived"), _outputs(tmp_path / "plain")
    assert len(a) >= 11 and a == b  # names (dates, descriptions, numbers) and bytes


def test_a_file_that_differs_in_text_or_names_is_not_derived(tmp_path: Path, monkeypatch
                                                             ) -> None:
    src = tmp_path / "in"
    files = make_ct_series(src, 5, seed=21)
    other = make_patient(22)
    ds = pydicom.dcmread(files[2])  # another operator and a description naming the patient
    ds.OperatorsName = f"{other.family}^{other.given}"
    ds.SeriesDescription = f"CHEST {other.family}"
    ds.save_as(files[2])
    ds = pydicom.dcmread(files[3])  # another patient in the same series
    ds.PatientName = f"{other.family}^{other.given}"
    ds.PatientID = other.patient_id
    ds.save_as(files[3])
    summary, stats = _run(src, tmp_path / "out", monkeypatch, derive_on=True)
    assert summary.count("written") == 5
    assert stats["derived"] < 4  # files 3 and 4 (at least) went the ordinary way
    _run(src, tmp_path / "plain", monkeypatch, derive_on=False)
    assert _outputs(tmp_path / "out") == _outputs(tmp_path / "plain")
    for data in _outputs(tmp_path / "out").values():
        assert other.family.encode() not in data and other.patient_id.encode() not in data


def test_another_persons_name_is_context(tmp_path: Path, monkeypatch) -> None:
    """Kept free text loses the names of the people in the file: a name only one slice
    holds (its operator) makes that slice's context, so it is not derived."""
    src = tmp_path / "in"
    files = make_ct_series(src, 4, seed=51)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.FilterType = "BODY WOLFENDEN"  # untabled text, kept
        if f == files[2]:
            ds.OperatorsName = "Wolfenden^Ann"
        ds.save_as(f)
    summary, stats = _run(src, tmp_path / "out", monkeypatch, derive_on=True)
    assert summary.count("written") == 4 and stats["derived"] == 1  # (slice 2 from 1)
    names = {pydicom.dcmread(p).get("FilterType") for p in (tmp_path / "out").glob("*.dcm")}
    assert names == {"BODY WOLFENDEN", "BODY"}


def test_residual_check_runs_on_derived_outputs(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in"
    files = make_ct_series(src, 4, seed=31)
    patient = make_patient(31)
    ds = pydicom.dcmread(files[2])  # a kept number that spells the birth date
    ds.SliceLocation = patient.birth_date
    ds.save_as(files[2])
    summary, stats = _run(src, tmp_path / "out", monkeypatch, derive_on=True)
    assert stats["derived"] >= 2
    assert summary.count("written") == 3
    [bad] = summary.quarantined
    assert Path(bad.source) == files[2] and "identity still present" in bad.reason
    for data in _outputs(tmp_path / "out").values():
        assert patient.birth_date.encode() not in data


def test_self_check_reports_a_wrong_derivation(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in"
    make_ct_series(src, 3, seed=41)
    check = tmp_path / "check.txt"
    monkeypatch.setenv(derive.ENV_CHECK, str(check))
    monkeypatch.setattr(Walker, "walk_tags", lambda self, ds, tags: None)  # nothing walked
    _run(src, tmp_path / "out", monkeypatch, derive_on=True)
    lines = check.read_text().splitlines()
    assert len(lines) == 2 and all("\tbytes\t" in line for line in lines)


def test_context_free() -> None:
    basic, private = frozenset(), frozenset({"retain-safe-private"})
    assert derive.context_free(0x00080018, "UI", basic)  # SOP Instance UID
    assert derive.context_free(0x00200032, "DS", basic)  # Image Position (Patient)
    assert derive.context_free(0x00082112, "SQ", basic)  # Source Image Sequence (its text
    # is compared by signature())
    assert not derive.context_free(0x00100010, "PN", basic)  # Patient's Name
    assert not derive.context_free(0x00100030, "DA", basic)  # Patient's Birth Date
    assert not derive.context_free(0x00080016, "UI", basic)  # SOP Class UID
    assert not derive.context_free(0x00080020, "DA", basic)  # Study Date (the age)
    assert not derive.context_free(0x0008103E, "LO", basic)  # Series Description
    assert not derive.context_free(0x00081070, "PN", basic)  # Operators' Name
    assert not derive.context_free(0x00280010, "US", basic)  # Rows (overlays, pixels)
    assert not derive.context_free(0x60003000, "OW", basic)  # Overlay Data
    assert not derive.context_free(0x00090010, "LO", basic)  # a private creator
    assert derive.context_free(0x00091001, "LO", basic)  # removed whatever it holds
    assert not derive.context_free(0x00091001, "LO", private)  # may be kept: may be text
    assert derive.context_free(0x00091001, "DS", private)
    assert not derive.context_free(0x00091001, "SQ", basic)
    assert not derive.context_free(0x00100010, "UN", basic)  # read as the PN it is


def test_small_files_with_the_same_pixels_and_empty_values(tmp_path: Path, monkeypatch
                                                           ) -> None:
    """MR_small.dcm re-saved with other SOP Instance UIDs: read whole (the pixel data is
    the template's, byte for byte) and holding empty values (Echo Train Length)."""
    src = tmp_path / "in"
    src.mkdir()
    template = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm"))
    for i in range(4):
        template.SOPInstanceUID = f"{template.SOPInstanceUID.rsplit('.', 1)[0]}.8{i:02d}"
        template.file_meta.MediaStorageSOPInstanceUID = template.SOPInstanceUID
        template.save_as(src / f"mr{i:02d}.dcm")
    check = tmp_path / "check.txt"  # (a derived output that cannot be encoded: a line)
    monkeypatch.setenv(derive.ENV_CHECK, str(check))
    summary, stats = _run(src, tmp_path / "derived", monkeypatch, derive_on=True)
    assert not check.exists()
    _run(src, tmp_path / "plain", monkeypatch, derive_on=False)
    assert summary.count("written") == 4 and stats["derived"] == 3
    assert _outputs(tmp_path / "derived") == _outputs(tmp_path / "plain")
