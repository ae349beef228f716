"""DICOM WSI: synthetic and real (openslide-python fixture) slides de-identified as a set."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

openslide = pytest.importorskip("openslide")
pydicom = pytest.importorskip("pydicom")

from pixeldeid.errors import DeidError  # noqa: E402
from tests.conftest import shared_path  # noqa: E402
from wsi import dicomwsi  # noqa: E402
from wsi.api import SlideOptions  # noqa: E402
from wsi.synth.dicomwsi import make_dicom_wsi  # noqa: E402
from wsi.tiffedit import scan_raw  # noqa: E402

KEY = b"test-project-key-0123456789"


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def slide(tmp_path):
    src = tmp_path / "in"
    planted = make_dicom_wsi(src)
    return src, planted


def run(src, out, **kw):
    opts = SlideOptions(**{"pseudonym": "DS-0001", **kw})
    return dicomwsi.deidentify_paths([src], out, opts, dicomwsi.make_deidentifier(KEY, opts))


def test_synthetic_series_carries_identity(slide):
    src, planted = slide
    s = openslide.OpenSlide(str(src / "level-0.dcm"))
    assert s.properties["openslide.vendor"] == "dicom"
    assert {"label", "macro"} <= set(s.associated_images)
    assert s.properties["dicom.PatientID"] == planted["PatientID"]
    hits = {v for f in src.iterdir() for v, _ in scan_raw(f, list(planted.values()))}
    assert hits == set(planted.values())


def test_label_and_overview_dropped_header_cleaned(slide, tmp_path):
    src, planted = slide
    before = digests(src)
    (r,) = run(src, tmp_path / "out", date_offset=-10)
    assert r.status == "clean", (r.reason, r.problems)
    assert digests(src) == before
    assert sorted(k for _, k in r.dropped) == ["label", "macro"]
    assert len(r.outputs) == 2 and Path(r.output_dir).name == "DS-0001"
    for f in r.outputs:
        assert scan_raw(f, list(planted.values())) == [], f
    s = openslide.OpenSlide(r.outputs[0])
    a = openslide.OpenSlide(str(src / "level-0.dcm"))
    assert s.properties["openslide.vendor"] == "dicom"
    assert s.level_dimensions == a.level_dimensions
    assert not {"label", "macro"} & set(s.associated_images)
    assert s.properties["dicom.PatientIdentityRemoved"] == "YES"
    # keyed UIDs: one new series for all instances, different from the original
    dss = [pydicom.dcmread(f, stop_before_pixels=True) for f in r.outputs]
    assert len({str(d.SeriesInstanceUID) for d in dss}) == 1
    assert len({str(d.FrameOfReferenceUID) for d in dss}) == 1
    assert str(dss[0].SeriesInstanceUID) != planted["uid_series"]
    # the same key gives the same UIDs in a second run
    (r2,) = run(src, tmp_path / "out2", date_offset=-10)
    again = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in r2.outputs}
    assert again == {str(d.SOPInstanceUID) for d in dss}


def test_keep_label_releases_it(slide, tmp_path):
    src, _ = slide
    (r,) = run(src, tmp_path / "out", label="keep", macro="remove")
    assert r.status == "clean", (r.reason, r.problems)
    assert [k for _, k in r.dropped] == ["macro"]
    assert "label" in openslide.OpenSlide(r.outputs[0]).associated_images


def test_real_fixture_pair(tmp_path):
    folder = shared_path("data", "wsi", "dicom-boxes")
    src = tmp_path / "in"
    shutil.copytree(folder, src)
    orig = pydicom.dcmread(src / "openslide-python_boxes_0.dcm", stop_before_pixels=True)
    (r,) = run(src, tmp_path / "out")
    assert r.status == "clean", (r.reason, r.problems)
    s = openslide.OpenSlide(r.outputs[0])
    assert s.level_dimensions == openslide.OpenSlide(str(src / "openslide-python_boxes_0.dcm")).level_dimensions
    assert "thumbnail" in s.associated_images  # a THUMBNAIL instance is pyramid-derived: kept
    secrets = [str(orig.DeviceSerialNumber), str(orig.SeriesInstanceUID), "Filename = CMU-1"]
    for f in r.outputs:
        assert scan_raw(f, secrets) == []


def test_two_slides_in_one_folder_are_two_results(tmp_path):
    make_dicom_wsi(tmp_path / "in" / "a", seed=1, planted={"PatientID": "P-A-0001"})
    make_dicom_wsi(tmp_path / "in" / "b", seed=2, planted={"PatientID": "P-B-0002"}, label=False)
    opts = SlideOptions()
    rs = dicomwsi.deidentify_paths([tmp_path / "in"], tmp_path / "out", opts,
                                   dicomwsi.make_deidentifier(KEY, opts))
    assert len(rs) == 2 and all(r.status == "clean" for r in rs), [r.reason for r in rs]
    assert len({r.output_dir for r in rs}) == 2


def test_mixed_series_given_as_one_slide_is_quarantined(tmp_path):
    make_dicom_wsi(tmp_path / "a", seed=1, planted={"PatientID": "P-A-0001"})
    make_dicom_wsi(tmp_path / "b", seed=2, planted={"PatientID": "P-B-0002"})
    opts = SlideOptions()
    r = dicomwsi.deidentify_series([tmp_path / "a" / "level-0.dcm", tmp_path / "b" / "level-1.dcm"],
                                   tmp_path / "out", opts, dicomwsi.make_deidentifier(KEY, opts))
    assert r.status == "quarantined" and "different slides" in r.reason
    assert len(r.quarantine_copies) == 2
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "quarantine"]


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_bad_files_are_quarantined_untouched(slide, tmp_path):
    src, _ = slide
    junk = src / "notes.txt"
    junk.write_text("not dicom")
    trunc = tmp_path / "trunc" / "t.dcm"
    trunc.parent.mkdir()
    data = (src / "level-0.dcm").read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    before = digests(src)
    rs = run(src, tmp_path / "out")
    assert {r.status for r in rs if r.sources == [str(junk)]} == {"quarantined"}
    assert [r for r in rs if r.status == "clean"]  # the slide itself still goes through
    (rt,) = run(trunc.parent, tmp_path / "out2")
    assert rt.status == "quarantined" and rt.reason and rt.quarantine_copies
    assert digests(src) == before


def test_redaction_request_is_refused(slide, tmp_path):
    src, _ = slide
    (r,) = run(src, tmp_path / "out", redact_regions=((0, 0, 10, 10),))
    assert r.status == "quarantined" and "redaction" in r.reason


def test_single_file_plugin_refuses(slide):
    src, _ = slide
    with pytest.raises(DeidError, match="as a set"):
        dicomwsi.deidentify(src / "level-0.dcm", SlideOptions())


def test_replace_label_with_pseudonym(slide, tmp_path):
    import numpy as np

    src, planted = slide
    (r,) = run(src, tmp_path / "out", label="replace", pseudonym="DS-0042")
    assert r.status == "clean", (r.reason, r.problems)
    assert len(r.replaced) == 1 and [k for _, k in r.dropped] == ["macro"]
    for f in r.outputs:
        assert scan_raw(f, list(planted.values())) == [], f
    out = openslide.OpenSlide(r.outputs[0])
    new = np.asarray(out.associated_images["label"])
    old = np.asarray(openslide.OpenSlide(str(src / "level-0.dcm")).associated_images["label"])
    assert new.shape == old.shape and not np.array_equal(new, old)
    labels = [pydicom.dcmread(f) for f in r.outputs]
    labels = [d for d in labels if d.ImageType[2] == "LABEL"]
    assert len(labels) == 1 and "LabelText" not in labels[0] and "BarcodeValue" not in labels[0]


def test_extra_values_are_scanned_for(slide, tmp_path):
    src, planted = slide
    # Manufacturer is kept by the profile: naming it as identifying must quarantine
    (r,) = run(src, tmp_path / "out", extra_values=("SynthScanner",))
    assert r.status == "quarantined" and "verification failed" in r.reason
    (r2,) = run(src, tmp_path / "out2", extra_values=("NOT-IN-THE-FILES-42",))
    assert r2.status == "clean", r2.reason
