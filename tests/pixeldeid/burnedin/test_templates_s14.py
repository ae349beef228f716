"""Audit s14 (templates): CTP regions, flag templates, the Clean Pixel Data claim,
empty regions and ranges, unquoted tag keys, ``--templates FILE``."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pixeldeid.burnedin.classify import IdentityValues
from pixeldeid.burnedin.stage import BurnedInStage, PixelResult, PixelSettings, validate_settings
from pixeldeid.burnedin.synth import make_us_frame, write
from pixeldeid.burnedin.template_import import parse_ctp_script, parse_deid_recipe
from pixeldeid.burnedin.templates import load_templates, parse_templates
from pixeldeid.errors import DeidError, ProfileError

from .conftest import render_lines

CLEAN_PIXEL_DATA = "113101"
NAME = "QUIXMORE^ZEBULON"
FLAG = """- name: derived-catchall
  action: flag
  match: {ImageType: {contains: DERIVED}}
"""
BAND = """- name: synth-top-band
  match: {Manufacturer: Synthetic Sonics}
  regions: [[0, 0, Columns, 45]]
"""


# -- 1. CTP: every ( ... ) group between one signature and the next ------------------------
SIG = '{ Modality.equals("US") * Manufacturer.containsIgnoreCase("ACME") }\n'


@pytest.mark.parametrize("after", [
    "  (0,0,800,40)\n  (0,560,800,40)   bottom band: patient name\n",
    "  (0,0,800,40)\n  (0,560,800,40), (700,40,100,30)\n",
    "  (0,0,800,40)\n  bottom band:\n  (0,560,800,40)\n",
    "  (0,0,800,40) (0,560,800,40)\n",
])
def test_ctp_takes_every_region_after_its_signature(after: str) -> None:
    result = parse_ctp_script(SIG + after, "<test>")
    assert result.skipped == []
    (t,) = result.templates
    assert (0, 0, 800, 40) in t.regions and (0, 560, 800, 600) in t.regions
    if "(700,40,100,30)" in after:
        assert (700, 40, 800, 70) in t.regions


def test_ctp_regions_stay_with_their_signature_and_notes_are_no_regions() -> None:
    text = (SIG + "  (0,0,800,40)\n\n"
            "Philips iU22 (bottom band, see note)\n"          # no region: CTP skips it too
            '{ Manufacturer.containsIgnoreCase("Philips") * Rows.equals("600") }\n'
            "  (0,560,800,40)\n")
    result = parse_ctp_script(text, "<test>")
    assert result.skipped == []
    first, second = result.templates
    assert first.regions == ((0, 0, 800, 40),)
    assert second.regions == ((0, 560, 800, 600),)
    assert second.match == {"Manufacturer": {"contains": "Philips"}, "Rows": 600}


def test_ctp_region_that_is_not_four_integers_skips_its_signature_by_name() -> None:
    result = parse_ctp_script(SIG + "  (0,0,800,40)\n  (0, 560, 800, 4O)\n", "<test>")
    assert result.templates == []
    (name, why), = result.skipped
    assert name.startswith("ctp-01") and "not four integers" in why


# -- helpers -----------------------------------------------------------------------------
def _ct(image_type: list[str]) -> Dataset:
    """A 256 x 256 CT slice with the patient's name burned in at the top left."""
    rgb, _ = render_lines([(10, 10, NAME)], shape=(256, 256), size=16, bg=30)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality, ds.ImageType = "CT", image_type
    ds.Manufacturer, ds.PatientName, ds.PatientID = "GE MEDICAL SYSTEMS", NAME, "123456"
    ds.Rows = ds.Columns = 256
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.ascontiguousarray(rgb[..., 0]).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _process(ds: Dataset, **settings: object) -> PixelResult:
    stage = BurnedInStage(PixelSettings(device="cpu", **settings))  # type: ignore[arg-type]
    return stage.process(ds, IdentityValues.from_dataset(ds), "test.dcm")


def _file(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _folder(tmp_path: Path, text: str) -> str:
    """A templates folder holding ``text`` (a folder: what every version accepted)."""
    d = tmp_path / "templates"
    d.mkdir(exist_ok=True)
    _file(d, text)
    return str(d)


# -- 2. flag templates: text in unknown places ---------------------------------------------
@pytest.mark.parametrize(("policy", "why"), [("template", "--pixels template reads no text"),
                                             ("auto", "no OCR engine")])
def test_a_flagged_image_without_ocr_is_quarantined(tmp_path: Path, policy: str,
                                                    why: str) -> None:
    ds = _ct(["DERIVED", "PRIMARY", "AXIAL"])
    with pytest.raises(DeidError) as exc:
        _process(ds, policy=policy, ocr="none", templates_dir=_folder(tmp_path, FLAG))
    assert "'derived-catchall' flags text in unknown places" in exc.value.reason
    assert why in exc.value.reason and "\n" not in str(exc.value)


def test_an_image_no_flag_matches_goes_as_before(tmp_path: Path) -> None:
    ds = _ct(["ORIGINAL", "PRIMARY", "AXIAL"])                  # CT, not at risk, not flagged
    result = _process(ds, policy="template", ocr="none",
                      templates_dir=_folder(tmp_path, FLAG))
    assert result.method == "unchecked" and not result.clean


def test_a_flagged_image_is_read_at_risk(tmp_path: Path) -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    ds = _ct(["DERIVED", "PRIMARY", "AXIAL"])
    before = ds.pixel_array.copy()
    result = _process(ds, policy="auto", ocr="rapidocr",
                      templates_dir=_folder(tmp_path, FLAG))
    assert result.redacted and result.clean
    assert int(ds.pixel_array[8:30, 8:180].max()) < int(before[8:30, 8:180].max())
    assert ds.BurnedInAnnotation == "NO"


# -- 3. the Clean Pixel Data Option only for pixels OCR checked -----------------------------
def _us_with_tech_line():
    us = make_us_frame(rows=480, columns=640, photometric="RGB", seed=11)
    ds = us.dataset
    a = np.frombuffer(ds.PixelData, np.uint8).reshape(480, 640, 3).copy()
    line, _ = render_lines([(0, 0, "TECH: ABBY QUORNDALE")], shape=(24, 260), size=18)
    a[300:324, 200:460] = np.maximum(a[300:324, 200:460], line)
    ds.PixelData = a.tobytes()
    return us


def test_pixel_result_is_clean_only_when_verified_with_nothing_left() -> None:
    assert not PixelResult(redacted=True).clean                   # redacted, never read
    assert PixelResult(verified=True).clean
    assert not PixelResult(redacted=True, verified=True, text_left=1).clean
    assert PixelResult(text_left=2).to_json()["text_left"] == 2


def test_template_without_ocr_records_no_clean_pixel_option(tmp_path: Path) -> None:
    from pixeldeid.api import DeidConfig
    from pixeldeid.batch import run_batch

    src = tmp_path / "in"
    src.mkdir()
    write(_us_with_tech_line(), src / "us.dcm")
    config = DeidConfig(key=b"templates-s14-test-key-0123456789", pixels=PixelSettings(
        policy="template", ocr="none", templates_dir=_folder(tmp_path, BAND)))
    summary = run_batch([src], tmp_path / "out", config, progress=False)
    (o,) = summary.outcomes
    assert o.status == "written" and o.details["pixels"]["redacted"]
    ds = pydicom.dcmread(tmp_path / "out" / o.output)
    assert int(ds.pixel_array[:45].max()) <= 8                    # the template did its part
    codes = [str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence]
    assert CLEAN_PIXEL_DATA not in codes and ds.BurnedInAnnotation == "YES"


def test_template_policy_leaves_unclassified_text_and_says_so(tmp_path: Path) -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    us = _us_with_tech_line()
    tdir = _folder(tmp_path, BAND)
    ds = copy.deepcopy(us.dataset)
    result = _process(ds, policy="template", ocr="rapidocr", templates_dir=tdir)
    # templates only (README): the line is left, and the header does not say NO
    assert ds.BurnedInAnnotation == "YES"
    assert result.verified and result.text_left >= 1 and not result.clean
    assert int((ds.pixel_array[300:324, 200:460].max(-1) > 200).sum()) > 100
    # auto reads and redacts it (unknown: fail closed) and may say NO
    ds = copy.deepcopy(us.dataset)
    result = _process(ds, policy="auto", ocr="rapidocr", templates_dir=tdir)
    assert result.clean and ds.BurnedInAnnotation == "NO"
    assert int((ds.pixel_array[300:324, 200:460].max(-1) > 200).sum()) == 0


# -- 4. regions and ranges that cover nothing, empty matches --------------------------------
@pytest.mark.parametrize(("match", "regions", "message"), [
    ({"Manufacturer": "ACME"}, [[640, 0, 0, 40]], "region [640, 0, 0, 40] is empty: x1 <= x0"),
    ({"Manufacturer": "ACME"}, [[10, 10, 10, 50]], "x1 <= x0"),
    ({"Manufacturer": "ACME"}, [[0, 40, 640, 0]], "y1 <= y0"),
    ({"Manufacturer": "ACME"}, [["Columns", 0, "Columns - 40", 10]], "x1 <= x0"),
    ({"Manufacturer": "ACME"}, [[0, "Rows", 10, "Rows"]], "y1 <= y0"),
    ({"Rows": {"min": 600, "max": 500}}, [[0, 0, 10, 10]], "min 600 > max 500"),
    ({"Rows": {"not": {"min": 2, "max": 1}}}, [[0, 0, 10, 10]], "range of Rows is empty"),
    ({}, [[0, 0, 10, 10]], "empty match (it would match every image)"),
    ({"any": [{}]}, [[0, 0, 10, 10]], "empty match"),
])
def test_templates_that_cover_or_match_nothing_useful_are_errors(match, regions,
                                                                 message: str) -> None:
    with pytest.raises(ProfileError) as exc:
        parse_templates([{"name": "acme", "match": match, "regions": regions}], "my.yaml")
    assert message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("regions", [
    [[0, 0, "Columns", "Rows"]],
    [["Columns - 40", 0, "Columns", 10]],
    [[0, "Rows-40", 100, "Rows"]],
    [["Columns", 0, 100, 40]],                    # depends on the image: left to match time
    [[0, 0, 1, 1], [700, 560, 800, 600]],
])
def test_regions_that_may_cover_something_load(regions: list) -> None:
    (t,) = parse_templates([{"name": "ok", "match": {"Rows": {"min": 600, "max": 600}},
                             "regions": regions}])
    assert t.regions == tuple(tuple(r) for r in regions)


def test_deid_import_skips_empty_coordinates_and_names_every_image() -> None:
    result = parse_deid_recipe("""FORMAT dicom
%filter graylist
LABEL ACME swapped
  contains Manufacturer ACME
  coordinates 640,40,0,0
LABEL ACME right
  contains Manufacturer ACME
  coordinates 0,0,640,40
LABEL Everything
  coordinates 0,0,10,10
""", "<deid>")
    assert result.skipped == [("deid-graylist-acme-swapped",
                               "coordinates '640,40,0,0' are empty: x1 <= x0")]
    right, every = result.templates
    assert right.regions == ((0, 0, 640, 40),)
    # a label without filters applies to every image: said explicitly, and it loads
    assert every.match == {"PixelData": {"present": True}}
    assert parse_templates([t.to_dict() for t in result.templates])[1].matches(_ct(["X"]))
    assert not every.matches(Dataset())


# -- 5. unquoted tag keys -------------------------------------------------------------------
def test_an_unquoted_eight_digit_tag_key_is_that_tag(tmp_path: Path) -> None:
    f = _file(tmp_path, "- name: overlay-desc\n  match:\n"
                        "    60000022: {contains: Siemens MedCom Object Graphics}\n"
                        "  regions: [[0, 0, 512, 90]]\n")
    t = next(t for t in load_templates([f]) if t.name == "overlay-desc")
    assert t.match == {"60000022": {"contains": "Siemens MedCom Object Graphics"}}
    ds = Dataset()
    ds.add_new(0x60000022, "LO", "Siemens MedCom Object Graphics")
    assert t.matches(ds)


@pytest.mark.parametrize("key", ["00100010", "0x00100010", "yes"])
def test_other_unquoted_keys_are_one_line_errors(tmp_path: Path, key: str, capsys) -> None:
    from pixeldeid.cli import main

    f = _file(tmp_path, f"- name: bad\n  match:\n    {key}: X\n  regions: [[0, 0, 1, 1]]\n")
    with pytest.raises(ProfileError, match="quote it"):
        load_templates([f])
    assert main(["templates", "list", "--templates", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pixeldeid: error:") and "quote it" in err and "\n" not in err


def test_a_quoted_tag_and_combiners_keep_their_keys() -> None:
    (t,) = parse_templates([{"name": "q", "match": {"any": [{"00080070": "ACME"},
                                                             {"Modality": "US"}]},
                             "regions": [[0, 0, 1, 1]]}])
    assert t.match == {"any": [{"00080070": "ACME"}, {"Modality": "US"}]}


# -- 6. --templates FILE --------------------------------------------------------------------
def test_templates_setting_takes_a_file(tmp_path: Path) -> None:
    f = _file(tmp_path, BAND)
    validate_settings(PixelSettings(policy="template", ocr="none", templates_dir=str(f)))
    stage = BurnedInStage(PixelSettings(policy="template", ocr="none", templates_dir=str(f)))
    assert "synth-top-band" in [t.name for t in stage.templates()]
    with pytest.raises(ProfileError, match="templates folder not found"):
        validate_settings(PixelSettings(templates_dir=str(tmp_path / "missing.yaml")))


def test_dicom_cli_takes_a_templates_file(tmp_path: Path) -> None:
    from pixeldeid.cli import main

    src = tmp_path / "in"
    src.mkdir()
    write(make_us_frame(rows=480, columns=640, seed=3), src / "us.dcm")
    key = tmp_path / "project.key"
    key.write_bytes(b"templates-s14-test-key-0123456789\n")
    out = tmp_path / "out"
    assert main(["dicom", str(src), "-o", str(out), "--key-file", str(key), "--no-progress",
                 "--pixels", "template", "--ocr", "none",
                 "--templates", str(_file(tmp_path, BAND))]) == 0
    (p,) = out.glob("*.dcm")
    assert int(pydicom.dcmread(p).pixel_array[:45].max()) <= 8
