"""Importing CTP pixel-anonymizer scripts and deid recipes as templates; the CLI."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from pydicom.dataset import Dataset

from pixeldeid.burnedin.template_import import (
    import_ctp_script,
    import_deid_recipe,
    import_file,
    parse_ctp_script,
    parse_deid_recipe,
)
from pixeldeid.burnedin.templates import (
    Template,
    load_templates,
    matching_templates,
    parse_templates,
    template_boxes,
)
from pixeldeid.errors import ProfileError

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "pixel-templates"
CTP = SHARED / "ctp-example-dicom-pixel-anonymizer.script"
DEID = SHARED / "deid-deid.dicom"


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} not present (../shared reference data)")
    return path


def _by_desc(templates: list[Template], text: str) -> list[Template]:
    return [t for t in templates if text in t.description]


def _ds(**kw: object) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _round_trip(templates: list[Template]) -> list[Template]:
    data = yaml.safe_load(yaml.safe_dump([t.to_dict() for t in templates], sort_keys=False))
    return parse_templates(data, "round-trip.yaml")


@pytest.fixture(scope="module")
def ctp() -> list[Template]:
    return import_ctp_script(_need(CTP))


@pytest.fixture(scope="module")
def deid() -> list[Template]:
    return import_deid_recipe(_need(DEID))


@pytest.mark.shared
def test_ctp_example_script(ctp: list[Template]) -> None:
    assert len(ctp) == 44
    assert len({t.name for t in ctp}) == 44
    assert sum("-us-" in t.name for t in ctp) == 21       # the US section holds 21 signatures
    assert [t.to_dict() for t in _round_trip(ctp)] == [t.to_dict() for t in ctp]
    # ANTARES: (0,0,1024,60) (200,60,20,20) (800,65,104,14) as x, y, w, h
    (antares,) = _by_desc(ctp, 'containsIgnoreCase("ANTARES")')
    assert antares.regions == ((0, 0, 1024, 60), (200, 60, 220, 80), (800, 65, 904, 79))
    assert antares.matches(_ds(Modality="US", Manufacturer="Siemens", Rows=768, Columns=1024,
                               ManufacturerModelName="ACUSON Antares"))
    assert not antares.matches(_ds(Modality="US", Manufacturer="Siemens", Rows=600,
                                   Columns=1024, ManufacturerModelName="ACUSON Antares"))
    # Vitrea: ( SeriesDescription "AAA" + SeriesDescription "Report" ) is an or
    (vitrea,) = _by_desc(ctp, "VITAL Images")
    assert vitrea.regions == ((0, 0, 795, 150),)
    for desc, ok in (("AAA stent", True), ("Report", True), ("CTA", False)):
        ds = _ds(Manufacturer="VITAL Images", SeriesDescription=desc, Rows=1041)
        assert vitrea.matches(ds) is ok
    # [gggg,eeee] tags: Philips GEMINI PET 446 x 245 -> Rows/Columns keywords
    gemini = _by_desc(ctp, '[0028,0010].equals("446")')
    assert len(gemini) == 1 and gemini[0].match["Rows"] == 446
    assert gemini[0].match["Columns"] == 245 and gemini[0].regions == ((0, 0, 125, 50),)
    # a repeating-group element (overlay) kept as a hex tag
    (overlay,) = _by_desc(ctp, "[6000,0022]")
    ds = Dataset()
    ds.add_new(0x60000022, "LO", "Siemens MedCom Object Graphics")
    assert overlay.matches(ds) and overlay.regions == ((0, 0, 512, 90),)
    # the two regions of ADAC, the second 80 rows from row 762
    adac = _by_desc(ctp, 'Manufacturer.containsIgnoreCase("ADAC")')
    assert adac[0].regions == ((0, 0, 1024, 80), (0, 762, 1024, 842))


@pytest.mark.shared
def test_ctp_templates_match_the_real_captures(ctp: list[Template]) -> None:
    import pydicom

    deid_data = pytest.importorskip("deid_data", reason="deid-data not installed")
    ds = pydicom.dcmread(Path(deid_data.__file__).parent / "data" / "ultrasounds" /
                         "RGB_IMAGE.dcm", stop_before_pixels=True)   # Siemens S2000 1024 x 768
    names = [t.name for t in matching_templates(ds, ctp)]
    assert len(names) == 1 and "siemens" in names[0]
    assert [(b.x0, b.y0, b.x1, b.y1) for b in template_boxes(ds, ctp)] == [(0, 0, 1024, 60)]


@pytest.mark.shared
def test_deid_recipe(deid: list[Template]) -> None:
    assert len(deid) == 118
    assert [t.to_dict() for t in _round_trip(deid)] == [t.to_dict() for t in deid]
    actions = {t.action for t in deid}
    assert actions == {"clean", "flag", "redact"}
    assert [t.name for t in deid if t.action == "clean"] == [
        "deid-whitelist-ct-siemens-sensation-64-catch-all",
        "deid-whitelist-marked-as-clean-catch-all"]
    (dose,) = _by_desc(deid, "LightSpeed Dose Report")
    assert dose.regions == ((0, 0, 512, 121),)                       # coordinates x0,y0,x1,y1
    base = {"ManufacturerModelName": "LightSpeed VCT", "Modality": "CT"}
    assert dose.matches(_ds(**base, SeriesDescription="Dose Info"))
    assert dose.matches(_ds(**base, ImageType=["DERIVED", "SCREEN SAVE"]))
    assert not dose.matches(_ds(**base, SeriesDescription="Axial"))
    (mrcp,) = _by_desc(deid, "Volume Rendering - MRCP")
    assert mrcp.regions == ((350, 0, 512, 30), (390, 80, 512, 95))   # ctpcoordinates x,y,w,h
    (lab3d,) = _by_desc(deid, "3D Lab reconstructions")              # "450,0,672, 85"
    assert lab3d.regions == ((450, 0, 672, 85),)
    (s2000,) = _by_desc(deid, "SIEMMENS")
    assert s2000.regions == ((0, 0, 1024, 60),) and s2000.match["Rows"] == 768
    # "contains X a|b" is deid's regular-expression search
    (vitrea,) = _by_desc(deid, "stent planning worksheet")
    assert vitrea.matches(_ds(Modality="CT", Manufacturer="VITREA", Rows=1041,
                              SeriesDescription="AAA"))
    # a misspelt keyword in the recipe is read as the one meant, and said so
    adac = _by_desc(deid, "keyword Manfacturer read as Manufacturer")
    assert len(adac) == 2 and adac[0].match["Manufacturer"] == {"contains": "ADAC"}
    # lines join left to right: (missing || empty) + contains ImageType ...
    (recon,) = _by_desc(deid, "Stanford Med Reconstruction")
    assert recon.action == "flag"
    assert recon.matches(_ds(ImageType=["DERIVED", "SECONDARY"]))
    assert not recon.matches(_ds(Manufacturer="GE", ImageType=["DERIVED", "SECONDARY"]))


def test_deid_ultrasound_recipe_of_the_installed_package() -> None:
    deid_pkg = pytest.importorskip("deid", reason="deid not installed")
    path = Path(deid_pkg.__file__).parent / "data" / "deid.dicom.ultrasound"
    if not path.is_file():
        pytest.skip("deid has no deid.dicom.ultrasound")
    result = parse_deid_recipe(path.read_text(), str(path))
    # "Blank Image" (coordinates all) is undone in deid by the later keepcoordinates rule;
    # as a box it would blank every image, so it is skipped by name
    assert result.skipped[0][0] == "deid-graylist-blank-image"
    clean, keep = result.templates
    assert (clean.action, keep.action) == ("clean", "keep-us-regions")
    assert keep.match == {"SequenceOfUltrasoundRegions": {"present": True}}
    ds = _ds(Rows=100, Columns=200)
    item = Dataset()
    item.RegionLocationMinX0, item.RegionLocationMinY0 = 10, 20
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = 189, 89
    ds.SequenceOfUltrasoundRegions = [item]
    boxes = template_boxes(ds, [clean, keep])
    assert boxes and {b.source for b in boxes} == {"us-regions"}
    assert sum(b.area for b in boxes) == 100 * 200 - 180 * 70
    assert template_boxes(_ds(Rows=100, Columns=200), [keep]) == []   # no sequence: no match
    # without a keep rule after it, "coordinates all" blanks the whole image, as in deid
    (blank,) = parse_deid_recipe("%filter graylist\nLABEL All\n  coordinates all\n").templates
    assert blank.match == {"PixelData": {"present": True}}
    assert blank.regions == ((0, 0, "Columns", "Rows"),)
    ds.PixelData = b"\x00\x00"  # (a deid label with no filter matches images: pixel data)
    assert [(b.x0, b.y0, b.x1, b.y1) for b in template_boxes(ds, [blank])] == [(0, 0, 200, 100)]


# -- rules that cannot be expressed are skipped by name, never guessed --------------------
def test_ctp_grammar_and_skipped_rules(caplog: pytest.LogCaptureFixture) -> None:
    text = """
**************
     US
**************
Vendor A
  { Modality.equals("US") + Manufacturer.equals("A") * !Rows.equals("600") }
  (0,0,100,10)
  (0,90,100,10) (5,5,1,1)
Vendor B
  { Rows.isLessThan("600") }
  (0,0,10,10)
Vendor C
  { Manufacturer.matches("AC.*") * ! ( Rows.equals("1") + Columns.equals("2") ) }
  (0,0,10,10)
Vendor D
  { Manufacturer.startsWith("X") }
"""
    with caplog.at_level(logging.WARNING):
        result = parse_ctp_script(text, "t.script")
    assert [s[0] for s in result.skipped] == ["ctp-02-us-vendor-b", "ctp-04-us-vendor-d"]
    assert "isLessThan" in result.skipped[0][1] and "no regions" in result.skipped[1][1]
    assert "ctp-02-us-vendor-b" in caplog.text
    a, c = result.templates
    assert a.regions == ((0, 0, 100, 10), (0, 90, 100, 100), (5, 5, 6, 6))
    # '*' binds tighter than '+'
    assert a.matches(_ds(Modality="US", Manufacturer="B", Rows=600))
    assert a.matches(_ds(Modality="CT", Manufacturer="A", Rows=480))
    assert not a.matches(_ds(Modality="CT", Manufacturer="A", Rows=600))
    assert c.matches(_ds(Manufacturer="ACME", Rows=5, Columns=5))
    assert not c.matches(_ds(Manufacturer="ACME", Rows=5, Columns=2))
    assert not c.matches(_ds(Manufacturer="XACME", Rows=5, Columns=5))   # matches = whole


def test_deid_skipped_rules_and_expressions(caplog: pytest.LogCaptureFixture) -> None:
    text = """FORMAT dicom
%filter graylist
LABEL Keep box
  contains Modality US
  keepcoordinates 0,0,10,10
LABEL From field
  coordinates from:SomeField
LABEL Unknown
  contains NoSuchThingAtAll US
  coordinates 0,0,5,5
LABEL Columns wide # (me)
  equals Rows 480
  + notequals Modality CT
  coordinates 0,0,Columns,60
LABEL Nothing
%header
REMOVE PatientName
"""
    with caplog.at_level(logging.WARNING):
        result = parse_deid_recipe(text, "r.dicom")
    assert [s[0] for s in result.skipped] == [
        "deid-graylist-keep-box", "deid-graylist-from-field", "deid-graylist-unknown",
        "deid-graylist-nothing"]
    assert "NoSuchThingAtAll" in result.skipped[2][1]
    (wide,) = result.templates
    assert wide.regions == ((0, 0, "Columns", 60),) and wide.description.endswith("(me)")
    ds = _ds(Rows=480, Columns=640, Modality="US")
    assert [(b.x0, b.y0, b.x1, b.y1) for b in template_boxes(ds, [wide])] == [(0, 0, 640, 60)]
    assert not wide.matches(_ds(Rows=480, Columns=640, Modality="CT"))


def test_import_file_detects_format(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("nothing to see")
    with pytest.raises(ProfileError, match="neither"):
        import_file(f)
    f.write_text('{ Rows.equals("1") }\n(0,0,1,1)\n')
    assert len(import_file(f).templates) == 1
    with pytest.raises(ProfileError, match="cannot read"):
        import_file(tmp_path / "missing.script")


# -- CLI -----------------------------------------------------------------------------------
def test_cli_import_list_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pydicom.data import get_testdata_file

    from pixeldeid.cli import main

    src = tmp_path / "rules.script"
    src.write_text('ALOKA 640\n  { Manufacturer.containsIgnoreCase("ALOKA") * Rows.equals("480") }'
                   '\n  (0,0,640,24)\nBad\n  { Rows.isLessThan("5") }\n  (0,0,1,1)\n')
    out = tmp_path / "mine"
    assert main(["templates", "import", str(src), "-o", str(out)]) == 1    # one rule skipped
    written = out / "rules-script.yaml"
    assert "skipped: ctp-02-bad" in capsys.readouterr().err
    (t,) = [t for t in load_templates([out]) if t.source == str(written.resolve())]
    assert t.regions == ((0, 0, 640, 24),) and "skipped ctp-02-bad" in written.read_text()
    assert main(["templates", "import", str(src), "-o", str(out)]) == 2    # exists
    assert main(["templates", "import", str(src), "-o", str(out), "--force"]) == 1
    capsys.readouterr()
    assert main(["templates", "list", "--templates", str(out)]) == 0
    listed = capsys.readouterr().out
    assert "ctp-01-aloka-640" in listed and "philips-epiq5g-800x600" in listed
    aloka = get_testdata_file("gdcm-US-ALOKA-16.dcm", download=False)
    if aloka is None:
        pytest.skip("pydicom-data not installed")
    assert main(["templates", "match", aloka, "--templates", str(out)]) == 0
    assert "aloka-ssd4000-640x480 (redact), ctp-01-aloka-640 (redact)" in capsys.readouterr().out
    assert main(["templates"]) == 2


def test_cli_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    from pixeldeid.cli import main

    with pytest.raises(SystemExit):
        main(["templates", "--help"])
    text = capsys.readouterr().out
    assert "pixeldeid templates import" in text and "examples:" in text
