"""Tests of pixeldeid.standard: the PS3.15 Annex E tables loaded from configs/ps315."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from types import MappingProxyType

import pytest

from pixeldeid import standard
from pixeldeid.errors import ProfileError
from pixeldeid.standard import (
    ACTION_CODES,
    DEID_METHOD_CODES,
    OPTIONS,
    PIXEL_OPTIONS,
    Rule,
    action_for,
    check_options,
    release,
    rule_for,
    rules,
    safe_private,
    safe_private_for,
)
from tests.conftest import REPO

FULL = "retain-longitudinal-full-dates"
MODIFIED = "retain-longitudinal-modified-dates"


def test_release_and_size():
    assert release() == "2024c"
    assert len(rules()) > 500
    assert rules() is rules()  # cached
    assert all(isinstance(r, Rule) for r in rules())


@pytest.mark.parametrize(
    ("tag", "options", "expected"),
    [
        (0x00100010, (), "Z"),  # Patient's Name
        (0x00100010, OPTIONS[:6] + OPTIONS[7:], "Z"),  # no option has a cell for it
        (0x00080020, (), "Z"),  # Study Date
        (0x00080020, (FULL,), "K"),
        (0x00080020, (MODIFIED,), "C"),
        (0x0020000D, (), "U"),  # Study Instance UID
        (0x0020000D, ("retain-uids",), "K"),  # option overrides, even when less protective
        (0x0020000D, ("retain-device-identity",), "U"),  # option without a cell: basic
        (0x00080080, (), "X/Z/D"),  # Institution Name
        (0x00080080, ("retain-institution-identity",), "K"),
        (0x00101010, (), "X"),  # Patient's Age
        (0x00101010, ("retain-patient-characteristics", "clean-descriptors"), "K"),
        (0x00184000, ("clean-descriptors",), "C"),  # Acquisition Comments
        (0x00181200, ("retain-device-identity",), "K"),  # Date of Last Calibration
        # Two options disagree (K and C): the more protective C wins.
        (0x00181200, ("retain-device-identity", MODIFIED), "C"),
        (0x00181200, ("retain-device-identity", FULL), "K"),
        (0x50020010, (), "X"),  # curve, any group 50xx
        (0x501E3000, ("clean-graphics",), "C"),
        (0x60023000, (), "X"),  # overlay data in group 6002
        (0x60023000, ("clean-graphics",), "C"),
        (0x00091010, (), "X"),  # private
        (0x00091010, ("retain-safe-private",), "C"),
        (0x00280010, ("retain-uids",), None),  # Rows: not in the table
        (0x7FE00010, (), None),  # Pixel Data
    ],
)
def test_action_for(tag, options, expected):
    assert action_for(tag, options) == expected
    assert action_for(tag, frozenset(options)) == expected


def test_action_for_matches_rule_cells():
    """For every row and every single option, the action is the cell or else the basic code."""
    for rule in rules():
        if rule.kind != "exact":
            continue
        tag = (rule.group << 16) | rule.element
        assert action_for(tag, ()) == rule.basic
        for opt in OPTIONS:
            assert action_for(tag, [opt]) == rule.options.get(opt, rule.basic)


def test_most_protective_wins_in_documented_order():
    assert ACTION_CODES == (
        "X", "X/Z/U*", "X/Z/D", "X/Z", "X/D", "Z", "Z/D", "D", "C", "U", "K",
    )  # fmt: skip
    for i, strong in enumerate(ACTION_CODES):
        for weak in ACTION_CODES[i + 1 :]:
            rule = Rule(
                name="Test",
                tag="(0009,0001)",
                group=9,
                element=1,
                group_mask=0xFFFF,
                element_mask=0xFFFF,
                retired=False,
                in_std_comp_iod=False,
                basic="K",
                options=MappingProxyType({"clean-graphics": weak, "retain-uids": strong}),
            )
            assert rule.action({"clean-graphics", "retain-uids"}) == strong
            assert rule.action({"clean-graphics"}) == weak
            assert rule.action(()) == "K"


def test_unknown_option_did_you_mean():
    with pytest.raises(ProfileError, match="did you mean 'retain-uids'"):
        action_for(0x00100010, ["retain-uid"])
    with pytest.raises(ProfileError, match="did you mean 'retain-safe-private'"):
        check_options({"retain_safe_private"})
    with pytest.raises(ProfileError, match="did you mean 'retain-patient-characteristics'"):
        check_options(["patient-characteristics"])
    with pytest.raises(ProfileError, match="unknown PS3.15 option 'bogus'") as info:
        check_options(["bogus"])
    assert isinstance(info.value, ValueError)


def test_conflicting_date_options():
    with pytest.raises(ProfileError, match="exclude each other"):
        check_options([FULL, MODIFIED])
    with pytest.raises(ProfileError, match="exclude each other"):
        action_for(0x00080020, frozenset({FULL, MODIFIED, "retain-uids"}))


def test_check_options_accepts_known_names():
    assert check_options(()) == frozenset()
    assert check_options(None) == frozenset()
    assert check_options("retain-uids") == frozenset({"retain-uids"})
    assert check_options(list(OPTIONS[:6]) + list(PIXEL_OPTIONS)) == frozenset(
        OPTIONS[:6] + PIXEL_OPTIONS
    )
    # Pixel options have no column in Table E.1-1: they leave header actions alone.
    assert action_for(0x00100010, PIXEL_OPTIONS) == "Z"


def test_rule_for_masks():
    curve = rule_for(0x50020010)
    assert curve is not None and curve.name == "Curve Data" and curve.kind == "masked"
    assert rule_for(0x50000000) is curve and rule_for(0x501EFFFF) is curve
    overlay = rule_for(0x60023000)
    assert overlay is not None and overlay.name == "Overlay Data"
    assert rule_for(0x60004000).name == "Overlay Comments"
    assert rule_for(0x60020010) is None  # Overlay Rows are not in the table
    assert rule_for(0x00280010) is None  # Rows
    assert rule_for(0x51000000) is None  # not a curve group
    # Odd groups are private, whatever the low bits look like.
    for tag in (0x00090010, 0x00191010, 0x60013000, 0x50010000, 0x7FE10010):
        r = rule_for(tag)
        assert r is not None and r.kind == "private", hex(tag)
        assert not curve.matches(tag) and not overlay.matches(tag)
    exact = rule_for(0x00100010)
    assert exact.name == "Patient's Name" and exact.kind == "exact"
    assert exact.matches(0x00100010) and not exact.matches(0x00100011)


def test_every_exact_rule_found_by_its_own_tag():
    for rule in rules():
        if rule.kind == "exact":
            tag = (rule.group << 16) | rule.element
            assert rule_for(tag) is rule
            assert rule.matches(tag)


def test_rules_are_immutable_and_hashable():
    rule = rule_for(0x00100010)
    with pytest.raises(TypeError):
        rule.options["retain-uids"] = "K"  # type: ignore[index]
    assert len({r for r in rules()}) == len(rules())


def test_safe_private_lookups():
    table = safe_private()
    b_value = table["SIEMENS MR HEADER"][(0x0019, 0x0C)]
    assert (b_value.vr, b_value.vm, b_value.name) == ("IS", "1", "B Value")
    assert b_value.tag == "(0019,xx0C)"
    assert safe_private_for("SIEMENS MR HEADER", 0x0019, 0x0C) is b_value
    # DICOM pads LO with spaces; creators are compared without case and padding.
    assert safe_private_for("siemens mr header ", 0x0019, 0x100C) is b_value
    assert safe_private_for("SIEMENS MR HEADER", 0x0019, 0x0B) is None
    assert safe_private_for("SIEMENS MR HEADER", 0x0029, 0x0C) is None
    assert safe_private_for("SIEMENS CSA HEADER", 0x0029, 0x10) is None
    suv = safe_private_for("Philips PET Private Group", 0x7053, 0x00)
    assert suv is not None and suv.vr == "DS" and suv.name.startswith("SUV Factor")
    assert safe_private_for("GEMS_ACQU_01", 0x0019, 0x23).name == "Table Speed [mm/rotation]"
    assert safe_private_for("HOLOGIC, Inc.", 0x7E01, 0x12).vr == "OB"
    assert all(item.group % 2 == 1 for items in table.values() for item in items.values())


def test_deid_method_codes_match_pydicom_cid_7050():
    try:
        from pydicom.sr._concepts_dict import concepts  # PS3.16 codes, generated by pydicom
    except ImportError:
        pytest.skip("pydicom's PS3.16 concept dictionary is not importable")

    dcm = {code: meaning for v in concepts["DCM"].values() for code, (meaning, _) in v.items()}
    assert set(DEID_METHOD_CODES) == {"basic", *OPTIONS, *PIXEL_OPTIONS}
    for value, meaning in DEID_METHOD_CODES.values():
        assert dcm[value] == meaning
    assert sorted(v for v, _ in DEID_METHOD_CODES.values()) == [
        str(n) for n in range(113100, 113113)
    ]


# --------------------------------------------------------------------- missing/corrupt data


@pytest.fixture
def fake_configs(tmp_path, monkeypatch):
    """Point the loader at a scratch configs/ folder, with fresh caches."""
    monkeypatch.setattr(standard, "configs_dir", lambda: tmp_path)
    standard._cache_clear()
    yield tmp_path
    monkeypatch.undo()
    standard._cache_clear()


def test_missing_table_names_file_and_fix(fake_configs):
    with pytest.raises(ProfileError, match="run scripts/generate_ps315.py") as info:
        rules()
    assert "table_e1_1.json" in str(info.value)
    with pytest.raises(ProfileError, match="table_e3_10_1.json"):
        safe_private_for("SIEMENS MR HEADER", 0x19, 0x0C)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"release": "2024c", "rows": []}',
        '{"release": "2024c", "options": [], "rows": [{"name": "x"}]}',
        json.dumps(
            {
                "release": "2024c",
                "options": list(OPTIONS),
                "rows": [
                    {
                        "name": "x",
                        "tag": "(0010,0010)",
                        "group": 16,
                        "element": 16,
                        "group_mask": 65535,
                        "element_mask": 65535,
                        "retired": "false",
                        "in_std_comp_iod": True,
                        "basic": "Z",
                        "options": {},
                    }
                ],
            }
        ),
    ],
)
def test_corrupt_table(fake_configs, content):
    (fake_configs / "ps315").mkdir()
    (fake_configs / "ps315" / "table_e1_1.json").write_text(content, encoding="utf-8")
    with pytest.raises(ProfileError, match="generate_ps315") as info:
        action_for(0x00100010, ())
    assert "table_e1_1.json" in str(info.value)


def test_unknown_action_code_in_table_rejected(fake_configs):
    src = REPO / "configs" / "ps315" / "table_e1_1.json"
    data = json.loads(src.read_text(encoding="utf-8"))
    data["rows"][0]["basic"] = "Q"
    (fake_configs / "ps315").mkdir()
    (fake_configs / "ps315" / "table_e1_1.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProfileError, match="unknown action code 'Q'"):
        rules()


def test_copied_tables_load_the_same(fake_configs):
    shutil.copytree(REPO / "configs" / "ps315", fake_configs / "ps315")
    assert release() == "2024c"
    assert action_for(0x00080020, [FULL]) == "K"


def test_import_reads_nothing():
    """Importing the module must not read the tables (lazy loading)."""
    code = (
        "import builtins, pathlib, sys\n"
        "opened = []\n"
        "orig = pathlib.Path.read_text\n"
        "pathlib.Path.read_text = lambda self, *a, **k: opened.append(self) or orig(self, *a, **k)\n"
        "import pixeldeid.standard as s\n"
        "assert not opened, opened\n"
        "s.rule_for(0x00100010)\n"
        "assert any(p.name == 'table_e1_1.json' for p in opened), opened\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_tables_of_different_releases_rejected(fake_configs):
    shutil.copytree(REPO / "configs" / "ps315", fake_configs / "ps315")
    path = fake_configs / "ps315" / "table_e3_10_1.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["release"] = "2019a"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProfileError, match="disagree"):
        safe_private()
