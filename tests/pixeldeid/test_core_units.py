"""Units of the header core: UIDs, dates, pseudonyms, profiles, text cleaning."""

from __future__ import annotations

import multiprocessing as mp
import re
from pathlib import Path

import pytest

from pixeldeid import dates
from pixeldeid.errors import DeidError, ProfileError
from pixeldeid.profiles import load_profile, parse_profile, profile_names
from pixeldeid.pseudonyms import PseudonymMap, load_map_csv
from pixeldeid.textclean import clean_text, identity_tokens
from pixeldeid.uids import UIDMapper

UID_RE = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


def test_uid_mapping_is_keyed_deterministic_and_valid():
    a, b = UIDMapper(b"k" * 16), UIDMapper(b"k" * 16)
    c = UIDMapper(b"j" * 16)
    uid = "1.3.12.2.1107.5.1.4.1001.30000019012313483281200000011"
    assert a(uid) == b(uid) != c(uid)
    assert UID_RE.match(a(uid)) and len(a(uid)) <= 64
    assert a("1.2.840.10008.5.1.4.1.1.2") == "1.2.840.10008.5.1.4.1.1.2"
    assert a(uid + "\x00") == a(uid)
    assert len({a(f"1.2.3.{i}") for i in range(5000)}) == 5000
    assert UIDMapper(b"k" * 16, {uid: "1.2.3.4"})(uid) == "1.2.3.4"


@pytest.mark.parametrize("value,days,secs,expected", [
    ("20200301", -1, 0, "20200229"),
    ("2020.03.01", -1, 0, "20200229"),
    ("20200101-20200131", -10, 0, "20191222-20200121"),
])
def test_shift_date(value, days, secs, expected):
    assert dates.shift_date(value, dates.DateOffset(days, secs)) == expected


def test_shift_time_keeps_precision_and_carries():
    off = dates.DateOffset(0, 3600)
    assert dates.shift_time("233015.123456", off) == ("003015.123456", 1)
    assert dates.shift_time("2330", off) == ("0030", 1)
    assert dates.shift_time("10", off) == ("11", 0)
    assert dates.shift_pair("20201231", "233000", off) == ("20210101", "003000")


def test_shift_datetime_keeps_precision_and_offset_suffix():
    off = dates.DateOffset(-2, 60)
    assert dates.shift_datetime("20200102101112.5+0100", off) == "20191231101212.5+0100"
    assert dates.shift_datetime("2020", off) == "2019"
    assert dates.shift_datetime("202001", off) == "201912"


@pytest.mark.parametrize("bad", ["20201341", "2020", "abc", "20200230"])
def test_invalid_dates_raise(bad):
    with pytest.raises(DeidError, match="invalid DA"):
        dates.shift_date(bad, dates.DateOffset(-1))


def test_offsets_per_patient_are_keyed_and_in_range():
    o1 = dates.offset_for(b"k" * 16, "P1")
    assert o1 == dates.offset_for(b"k" * 16, "P1")
    assert o1 != dates.offset_for(b"k" * 16, "P2")
    assert -dates.MAX_SHIFT_DAYS <= o1.days <= -dates.MIN_SHIFT_DAYS
    assert 0 <= o1.seconds < 86400


def test_age_and_clipping():
    assert dates.age_string("19300101", "20250615") == "095Y"
    assert dates.clip_age("095Y") == "090Y"
    assert dates.clip_age("089Y") == "089Y"
    assert dates.age_string("20250101", "20250315") == "002M"


def _alloc(db: str, ids: list[str], q) -> None:
    m = PseudonymMap(db, b"k" * 16, "EMORY")
    q.put({i: m(i) for i in ids})


def test_pseudonyms_in_order_persisted_and_shared_across_processes(tmp_path: Path):
    db = tmp_path / "s.sqlite"
    m = PseudonymMap(db, b"k" * 16, "EMORY")
    assert [m("A"), m("B"), m("A")] == ["EMORY_001", "EMORY_002", "EMORY_001"]
    m.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_alloc, args=(str(db), [f"P{i}" for i in range(20)], q))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert results[0] == results[1]
    assert len(set(results[0].values())) == 20
    m2 = PseudonymMap(db, b"k" * 16, "EMORY")
    assert m2("B") == "EMORY_002"
    assert PseudonymMap(None, b"k" * 16, "X", {"A": "HIRO-7"})("A") == "HIRO-7"
    m2.close()
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("s.sqlite*"))
    assert b"EMORY_020" in stored or b"EMORY_022" in stored
    assert b"P17" not in stored  # only keyed hashes of original IDs are stored


def test_map_csv(tmp_path: Path):
    p = tmp_path / "m.csv"
    p.write_text("id_old,id_new\nPAT1,S1\n1.2.3.4,2.25.55\n")
    assert load_map_csv(p) == ({"PAT1": "S1"}, {"1.2.3.4": "2.25.55"})
    p.write_text("old,new\nA,B\n")
    with pytest.raises(ProfileError, match="id_old,id_new"):
        load_map_csv(p)


@pytest.mark.parametrize(("body", "match"), [
    (b"id_old,id_new\nP1,M\xfcller\n", "not UTF-8"),  # a Latin-1 export
    (b"id_old,id_new\nP1,S1\nP1,S2\n", "line 3: id_old on line 2 is given again"),
    (b"id_old,id_new\n1.2.3,2.25.7\n1.2.4,2.25.7\n", "line 3: new UID '2.25.7' is also given"),
    (b"id_old,id_new\n1.2.3,1.02.3\n", "not a valid UID"),  # leading zero (PS3.5 9.1)
    (b"id_old,id_new\nP1,A\\B\n", "backslash"),  # would be a Patient ID of VM 2
    (b"id_old,id_new\nP1,\xc3\x9cML\n", "non-ASCII"),
    (b"id_old,id_new\nP1," + b"9" * 65 + b"\n", "longer than 64"),
    (b'id_old,id_new\nP1,"S1\n', "not valid CSV"),
])
def test_map_csv_refuses_what_cannot_be_written_faithfully(tmp_path: Path, body: bytes, match: str):
    p = tmp_path / "m.csv"
    p.write_bytes(body)
    with pytest.raises(ProfileError, match=match) as info:
        load_map_csv(p)
    assert str(p) in str(info.value)


def test_map_csv_accepts_a_bom_crlf_and_a_repeated_row(tmp_path: Path):
    p = tmp_path / "m.csv"
    p.write_bytes(b"\xef\xbb\xbfid_old,id_new\r\nP1,S1\r\nP1,S1\r\n1.2.3,2.25.0\r\n")
    assert load_map_csv(p) == ({"P1": "S1"}, {"1.2.3": "2.25.0"})


def test_allocated_pseudonyms_never_share_a_supplied_one(tmp_path: Path):
    db, key = tmp_path / "s.sqlite", b"k" * 16
    m = PseudonymMap(db, key, "SUBJ", {"P1": "SUBJ_001", "P2": "SUBJ_003"})
    assert [m("P1"), m("P7"), m("P8"), m("P2")] == ["SUBJ_001", "SUBJ_002", "SUBJ_004", "SUBJ_003"]
    m.close()
    later = PseudonymMap(db, key, "SUBJ")  # a later batch without the subject map
    assert [later("P9"), later("P1"), later("P7")] == ["SUBJ_005", "SUBJ_001", "SUBJ_002"]
    later.close()
    with pytest.raises(ProfileError, match="'SUBJ_002', which this pseudonym map already"):
        PseudonymMap(db, key, "SUBJ", {"P5": "SUBJ_002"})
    PseudonymMap(db, key, "SUBJ", {"P7": "SUBJ_002"}).close()  # the same patient: fine


def test_shipped_profiles_and_did_you_mean(tmp_path: Path):
    assert {"basic", "tcia-like", "limited-dataset"} <= set(profile_names())
    tcia = load_profile("tcia-like")
    assert "retain-longitudinal-modified-dates" in tcia.options
    assert "retain-longitudinal-full-dates" in load_profile("limited-dataset").options
    with pytest.raises(ProfileError, match="did you mean 'tcia-like'"):
        load_profile("tcia_like")
    with pytest.raises(ProfileError, match="did you mean"):
        parse_profile({"name": "x", "options": ["retain-uid"]})
    with pytest.raises(ProfileError, match="invalid profile"):
        parse_profile({"name": "x", "options": [], "python": "import os"})
    with pytest.raises(ProfileError):
        tcia.with_options(["retain-longitudinal-full-dates"])  # conflicts with modified dates


def test_clean_text_removes_identity_in_any_spelling():
    toks = identity_tokens(["Doe^John^Q", "00012345", "19510829"])
    assert "12345" in toks
    out = clean_text("CT head for John DOE, MRN 12345 DOB 08/29/1951 29-AUG-1951 at 10:42", toks)
    for s in ("John", "DOE", "12345", "1951", "10:42"):
        assert s.lower() not in out.lower()
    assert "CT head" in out
    assert clean_text("Chest for Dr Lockhart", []) == "Chest for"


def test_find_tokens_prefilter_finds_what_the_whole_regex_finds() -> None:
    import random

    from pixeldeid.textclean import _encoded_forms, _inside, _token_regex, find_tokens

    rng = random.Random(5)
    words = ["smith", "john", "john smith", "ann", "anna", "12345", "jürgen", "o'neil",
             "mc-donald", "x9"]
    for _ in range(400):
        tokens = rng.sample(words, rng.randint(1, len(words)))
        parts = [rng.choice(words + ["the", "ANNA", "Smithers", "JOHN SMITH", "^", " ", "1",
                                     "JÜRGEN", "\x00", "-"]) for _ in range(rng.randint(0, 12))]
        data = "".join(parts).encode("utf-8")
        toks = {f.lower(): t for t in tokens for f in _encoded_forms(t, ()) if len(f) >= 3}
        # (a name inside a login name, "smithj": the token of the form in it)
        want = sorted({_inside(m.group(0).lower(), toks) for m in
                       _token_regex(tuple(sorted(toks))).finditer(data)}) if toks else []
        assert sorted(find_tokens(data, tokens)) == want, (tokens, data)


def test_find_tokens_matches_non_ascii_names_in_any_case_and_in_the_data_sets_charset() -> None:
    from pixeldeid.textclean import find_tokens

    # bytes are case-folded for ASCII letters only: Ø/ø and Ü/ü are other bytes
    assert find_tokens("ØDEGÅRD^ÅSE".encode(), ["Ødegård"]) == ["Ødegård"]
    assert find_tokens("scan by jürgen".encode(), ["JÜRGEN"]) == ["JÜRGEN"]
    latin1 = "CT Müller".encode("latin-1")
    assert find_tokens(latin1, ["Müller"]) == []  # UTF-8 only: not found
    assert find_tokens(latin1, ["Müller"], ["latin_1"]) == ["Müller"]
    assert find_tokens("头部 王小明".encode("gb18030"), ["王小明"], ["GB18030"]) == ["王小明"]
    assert find_tokens(b"CT Mueller", ["Müller"], ["latin_1"]) == []


def test_identity_tokens_of_cjk_names() -> None:
    from pixeldeid.textclean import distinctive

    toks = identity_tokens(["王^小明", "Yamada^Tarou=山田^太郎=やまだ^たろう"])
    # family + given as written without a separator; a one-ideograph family name
    for t in ("王小明", "王", "小明", "山田太郎", "山田", "太郎", "YamadaTarou", "Yamada"):
        assert t in toks, t
    assert "A" not in identity_tokens(["Doe^A"])  # a Latin initial is no token
    out = clean_text("头部 王小明 王先生 平扫", toks)
    assert "王" not in out and "小明" not in out and "头部" in out and "平扫" in out
    assert distinctive("小明") and not distinctive("王")
    assert not distinctive("Jo") and distinctive("Doe") and distinctive("Doe", 4) is False
