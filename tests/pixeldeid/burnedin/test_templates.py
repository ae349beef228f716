"""Templates: schema checks, matching semantics, and the shipped templates on real captures."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from pixeldeid.burnedin.templates import (
    Template,
    load_template_file,
    load_templates,
    matching_templates,
    parse_templates,
    template_boxes,
)
from pixeldeid.errors import ProfileError

# -- real captures (PyPI deid-data and pydicom-data) -------------------------------------
# capture -> (shipped template, identity burned into the top band, safe text left beside it)
CAPTURES = {
    "GREYSCALE_IMAGE.dcm": ("philips-epiq5g-1024x768",
                            ["00079241539", "08291951", "CLEVELA", "03022017", "ZZZTEST"],
                            "ADVBREAST"),
    "GREYSCALE_CINE.zip": ("philips-epiq5g-800x600",
                           ["00079241539", "08291951", "CLEVELA", "03022017", "ZZZTEST"],
                           "ADVBREAST"),
    "RGB_IMAGE.dcm": ("siemens-s2000-1024x768",
                      ["ZZZDOWNTIME", "00047431395", "4142020", "CLEVELAND", "120907058"],
                      "SIEMENS"),
    "RGB_CINE.zip": ("terason-1016x672",
                     ["TESTADL", "0001128201", "01301986", "AGMC", "7OCT2016", "010745"],
                     "MI06"),
    "US1_UNCR.dcm": ("ge-logiq700-640x480", ["BAPTIST", "20904", "630P630"], "MSCSKEL"),
    "gdcm-US-ALOKA-16.dcm": ("aloka-ssd4000-640x480", ["MEDICAL", "24MAY02", "112420"],
                             "110"),
}


def load_capture(name: str, header_only: bool = False) -> Dataset:
    """A capture of deid-data (ultrasounds/, zip members read in place) or pydicom-data."""
    if name.startswith(("US1_", "gdcm-", "color3d")):
        from pydicom.data import get_testdata_file

        path = get_testdata_file(name, download=False)
        if path is None:
            pytest.skip(f"pydicom-data not installed ({name})")
        return pydicom.dcmread(path, stop_before_pixels=header_only)
    deid_data = pytest.importorskip("deid_data", reason="deid-data not installed")
    path = Path(deid_data.__file__).parent / "data" / "ultrasounds" / name
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            member = zf.namelist()[0]
            with zf.open(member) as fh:
                return pydicom.dcmread(fh, stop_before_pixels=header_only)
    return pydicom.dcmread(path, stop_before_pixels=header_only)


def _norm(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


@pytest.fixture(scope="module")
def shipped() -> list[Template]:
    return load_templates()


@pytest.mark.parametrize("capture", sorted(CAPTURES))
def test_shipped_template_matches_its_capture(capture: str, shipped: list[Template]) -> None:
    ds = load_capture(capture, header_only=True)
    assert [t.name for t in matching_templates(ds, shipped)] == [CAPTURES[capture][0]]
    boxes = template_boxes(ds, shipped)
    assert boxes and all(b.source == "template" and b.label == "identity" and b.frame is None
                         for b in boxes)
    assert all(0 <= b.x0 < b.x1 <= ds.Columns and 0 <= b.y0 < b.y1 <= ds.Rows for b in boxes)


def test_shipped_templates_leave_other_images_alone(shipped: list[Template]) -> None:
    # same vendor, other screen sizes or models: no template, so OCR decides
    for name in ("ultrasound-multiframe.dcm", "color3d_jpeg_baseline.dcm"):
        assert matching_templates(load_capture(name, header_only=True), shipped) == []
    from pydicom.data import get_testdata_file

    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    assert matching_templates(ct, shipped) == []
    ds = load_capture("GREYSCALE_IMAGE.dcm", header_only=True)
    ds.Rows = 767
    assert matching_templates(ds, shipped) == []


@pytest.mark.parametrize("capture", sorted(CAPTURES))
def test_template_hides_the_identity_ocr_reads(capture: str, shipped: list[Template]) -> None:
    """OCR reads the identity on the capture; after the template regions are blacked out it
    reads none of it, while the settings beside the band stay readable."""
    from pixeldeid.burnedin.frames import PixelFrames
    from pixeldeid.burnedin.ocr import get_engine

    try:
        engine = get_engine("rapidocr", "cpu")
    except ImportError:
        pytest.skip("rapidocr not installed")
    ds = load_capture(capture)
    _, identity, kept = CAPTURES[capture]
    boxes = template_boxes(ds, shipped)
    frame = PixelFrames(ds).display([0])[0]
    h = max(b.y1 for b in boxes) + 30      # the band and what lies just below it
    redacted = frame[:h].copy()
    for b in boxes:
        redacted[b.y0:b.y1, b.x0:b.x1] = 0
    # one read: the raw band on top, the redacted band below (rest of the frame black)
    canvas = frame.copy()
    canvas[h:] = 0
    canvas[h + 20:2 * h + 20] = redacted[: max(0, min(h, frame.shape[0] - h - 20))]
    read = engine.read(canvas)
    before = [_norm(b.text) for b in read if b.y1 <= h + 5]
    after = [_norm(b.text) for b in read if b.y0 >= h + 15]
    found = [tok for tok in identity if any(tok in t for t in before)]
    assert len(found) >= 2, f"OCR should read identity on the raw capture, got {before}"
    assert not [tok for tok in identity if any(tok in t for t in after)], after
    assert any(kept in t for t in after), after


# -- matching semantics --------------------------------------------------------------------
def _ds(**kw: object) -> Dataset:
    ds = Dataset()
    ds.Modality = "US"
    ds.Manufacturer = "Philips Medical Systems"
    ds.ManufacturerModelName = "EPIQ 7G"
    ds.Rows, ds.Columns = 600, 800
    ds.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    ds.SeriesDescription = "Dose Report"
    for k, v in kw.items():
        setattr(ds, k, v)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _t(match: dict, regions: list | None = None, action: str = "redact") -> Template:
    data = {"name": "t", "match": match, "regions": regions or [[0, 0, 10, 10]]}
    if action != "redact":
        data["action"] = action
    return parse_templates([data])[0]


@pytest.mark.parametrize(("match", "expected"), [
    ({"Manufacturer": "philips medical systems "}, True),        # case and spaces ignored
    ({"Manufacturer": "Philips"}, False),                         # equals is whole value
    ({"Rows": 600, "Columns": "800"}, True),
    ({"Rows": [480, 600]}, True),
    ({"Rows": [480, 768]}, False),
    ({"ManufacturerModelName": {"contains": "epiq"}}, True),
    ({"ManufacturerModelName": {"startswith": "EPIQ"}}, True),
    ({"ManufacturerModelName": {"endswith": "5G"}}, False),
    ({"SeriesDescription": {"regex": "dose|report"}}, True),
    ({"ImageType": "SECONDARY"}, True),                           # any value of a multi-value
    ({"ImageType": "DERIVED\\SECONDARY\\SCREEN SAVE"}, True),     # or the whole value
    ({"ImageType": {"contains": "SCREEN"}}, True),
    ({"Columns": {"min": 640, "max": 1024}}, True),
    ({"Columns": {"max": 640}}, False),
    ({"BurnedInAnnotation": {"missing": True}}, True),
    ({"Manufacturer": {"present": True}}, True),
    ({"BurnedInAnnotation": "NO"}, False),                        # absent never equals
    ({"ImageType": {"not": {"contains": "PRIMARY"}}}, True),
    ({"any": [{"Modality": "CT"}, {"Modality": "US"}]}, True),
    ({"all": [{"Modality": "US"}, {"Modality": {"regex": "^U"}}]}, True),
    ({"none": [{"Modality": "US"}]}, False),
    ({"00080060": "US"}, True),                                   # tag in hex
    ({"TransferSyntaxUID": "1.2.840.10008.1.2.1"}, True),         # file meta
])
def test_conditions(match: dict, expected: bool) -> None:
    assert _t(match).matches(_ds()) is expected


def test_empty_condition() -> None:
    assert _t({"StationName": {"empty": True}}).matches(_ds(StationName=""))
    assert not _t({"StationName": {"empty": True}}).matches(_ds())        # absent is not empty
    assert not _t({"StationName": {"empty": True}}).matches(_ds(StationName="US1"))


def test_regions_resolve_expressions_and_clip() -> None:
    t = _t({"Modality": "US"},
           [[0, 0, "Columns", 60], [700, "Rows - 40", 900, "Rows"], [900, 0, 950, 10]])
    assert t.resolve_regions(_ds()) == [(0, 0, 800, 60), (700, 560, 800, 600)]
    boxes = template_boxes(_ds(), [t])
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes] == [(0, 0, 800, 60), (700, 560, 800, 600)]


def test_actions_without_regions_give_no_boxes() -> None:
    flag = _t({"Modality": "US"}, action="flag")
    clean = _t({"Modality": "US"}, action="clean")
    ds = _ds()
    assert matching_templates(ds, [flag, clean]) == []          # default: region actions only
    assert matching_templates(ds, [flag, clean], None) == [flag, clean]
    assert template_boxes(ds, [flag, clean]) == []


def test_a_template_covering_nothing_is_no_match() -> None:
    # fail closed for callers that take "a template matched" as "the text is handled"
    outside = _t({"Modality": "US"}, [[900, 0, 950, 10]])               # right of 800 columns
    keep = _t({"Modality": "US"}, [], action="keep-us-regions")
    ds = _ds()
    assert outside.matches(ds) and matching_templates(ds, [outside, keep]) == []
    item = Dataset()
    item.RegionLocationMinX0, item.RegionLocationMinY0 = 10, 30
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = 5, 500          # min > max: invalid
    ds.SequenceOfUltrasoundRegions = [item]
    assert matching_templates(ds, [keep]) == [] and template_boxes(ds, [keep]) == []
    item.RegionLocationMaxX1 = 789
    assert matching_templates(ds, [keep]) == [keep]
    assert {b.source for b in template_boxes(ds, [keep])} == {"us-regions"}


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(("data", "message"), [
    ([{"name": "a", "match": {"Manufactuer": "X"}, "regions": [[0, 0, 1, 1]]}],
     "did you mean 'Manufacturer'"),
    ([{"name": "a", "match": {}, "region": [[0, 0, 1, 1]]}], "did you mean 'regions'"),
    ([{"name": "a", "match": {"Rows": {"contain": "5"}}, "regions": [[0, 0, 1, 1]]}],
     "did you mean 'contains'"),
    ([{"name": "a", "match": {"Rows": {"regex": "("}}, "regions": [[0, 0, 1, 1]]}],
     "bad regex"),
    ([{"name": "a", "match": {}}], "needs regions"),
    ([{"name": "a", "match": {}, "regions": [[0, 0, "Width", 1]]}], "invalid template file"),
    ([{"name": "a", "match": {}, "regions": [[0, 0, 1]]}], "invalid template file"),
    ([{"name": "a", "match": {}, "regions": [[0, 0, 1, 1]]}] * 2, "used twice"),
    ([{"name": "a", "match": {}, "action": "blank", "regions": [[0, 0, 1, 1]]}],
     "invalid template file"),
    ({"name": "a"}, "invalid template file"),
])
def test_invalid_templates(data: object, message: str) -> None:
    with pytest.raises(ProfileError, match=re.escape(message)):
        parse_templates(data, "my.yaml")


def test_user_folder_loaded_cached_and_checked(tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("- name: mine\n  match: {Modality: US}\n  regions: [[0, 0, 10, 10]]\n")
    names = [t.name for t in load_templates([tmp_path])]
    assert "mine" in names and "philips-epiq5g-800x600" in names
    from pixeldeid.paths import configs_dir

    assert [t.name for t in load_templates([tmp_path, configs_dir() / "templates", f])] == names
    assert load_template_file(f)[0] is load_template_file(f)[0]          # cached
    f.write_text("- name: mine2\n  match: {Modality: US}\n  regions: [[0, 0, 10, 10]]\n"
                 "# changed\n")
    assert [t.name for t in load_template_file(f)] == ["mine2"]          # reloaded
    (tmp_path / "dup.yaml").write_text(
        "- name: philips-epiq5g-800x600\n  match: {Modality: US}\n  regions: [[0, 0, 1, 1]]\n")
    with pytest.raises(ProfileError, match="also defined"):
        load_templates([tmp_path])
    with pytest.raises(ProfileError, match="not found"):
        load_templates([tmp_path / "missing"])
    (tmp_path / "dup.yaml").write_text("- name: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_templates([tmp_path])


def test_to_dict_round_trips() -> None:
    import yaml

    t = _t({"any": [{"Modality": "US"}, {"Rows": {"min": 1}}]}, [[0, 0, "Columns", 5]])
    back = parse_templates(yaml.safe_load(io.StringIO(yaml.safe_dump([t.to_dict()]))))[0]
    assert back.to_dict() == t.to_dict() and back.regions == t.regions
