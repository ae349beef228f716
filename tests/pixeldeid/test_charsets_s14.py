"""Identity in other encodings and spellings of non-ASCII scripts (session 14 audit, charset):

- the residual check also searches the legacy encodings of the scripts the identity is
  written in (a Latin-1 or Windows-1251 vendor text, Shift-JIS or EUC-JP in an ISO 2022
  file, the Latin-1 spelling of a UTF-8 name read without a Specific Character Set);
- the burned-in text stage reads the header without changing it: kept text whose bytes
  are invalid in the declared character set is copied byte for byte (it was rewritten
  with U+FFFD);
- hiragana and katakana spell one phonetic name; the Arabic tatweel stretches a word;
- burned-in text matching folds Ø, Ł, ß... as the header's text cleaning does.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from conftest import outputs
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from pixeldeid._synth import ct_slice_dataset, write_dataset
from pixeldeid.api import _residual_search, legacy_encodings
from pixeldeid.burnedin.classify import IdentityValues
from pixeldeid.burnedin.classify import fold as ocr_fold
from pixeldeid.textclean import _folded_with_index, clean_text, fold, identity_tokens

MANUFACTURER = 0x00080070


def _slice(charset: str | None, name: bytes | str, **attrs) -> Dataset:
    """A CT slice of the synthetic corpus with ``charset``, the patient's name ``name``
    (bytes are written as they are) and ``attrs`` (keyword -> value or raw bytes)."""
    ds = ct_slice_dataset(0, 1, seed=11)
    if charset is None:
        del ds.SpecificCharacterSet
    else:
        ds.SpecificCharacterSet = charset
    ds.PatientName = name
    for kw, value in attrs.items():
        setattr(ds, kw, value)
    return ds


def _run(tmp_path: Path, run, ds: Dataset, *extra: str) -> tuple[int, list[Path], Path]:
    src = write_dataset(ds, tmp_path / "in" / "a.dcm")
    rc, out = run(src, *extra)
    return rc, outputs(out), out


# -- the residual check: legacy encodings of the identity's scripts -------------------------
@pytest.mark.parametrize(("charset", "name", "manufacturer"), [
    # no Specific Character Set, the name in UTF-8 (read as Latin-1: ZqmÃ¼ller), a vendor
    # text in Latin-1
    (None, "Zqmüller^Jürgen".encode(), "Zqmüller 1".encode("latin-1")),
    # a UTF-8 file, a Windows-1252 vendor text
    ("ISO_IR 192", "Zqmüller^Jürgen".encode(), "Zqmüller 1".encode("cp1252")),
    # ISO 8859-5 names, a Windows-1251 or KOI8-R vendor text
    ("ISO_IR 144", "Зквиванов^Фёдор".encode("iso8859_5"), "Зквиванов".encode("cp1251")),
    ("ISO_IR 144", "Зквиванов^Фёдор".encode("iso8859_5"), "Зквиванов".encode("koi8_r")),
    # a Greek name, a Windows-1253 text (Ά differs from ISO 8859-7 there)
    ("ISO_IR 126", "Άζκμαρας^Νίκος".encode("iso8859_7"), "Άζκμαρας".encode("cp1253")),
    # an ISO 2022 Japanese file, Shift-JIS and EUC-JP vendor texts
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎".encode("iso2022_jp"),
     "山田太郎".encode("shift_jis")),
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎".encode("iso2022_jp"),
     "山田太郎".encode("euc_jp")),
    # GB18030 names, a Big5 text
    ("GB18030", "王^小明".encode("gb18030"), "王小明".encode("big5")),
])
def test_a_name_in_another_encoding_of_its_script_is_found(tmp_path: Path, run, charset,
                                                           name, manufacturer) -> None:
    ds = _slice(charset, name, Manufacturer=manufacturer)
    rc, released, out = _run(tmp_path, run, ds)
    for f in released:
        assert manufacturer not in f.read_bytes()
    assert rc == 1 and released == []
    [reason] = (out / "quarantine").rglob("*.reason.txt")
    assert "identity still present" in reason.read_text()


def test_another_scripts_text_in_a_legacy_encoding_is_kept(tmp_path: Path, run) -> None:
    """A vendor text in another script's legacy encoding is no finding: Café Medical in
    Latin-1 in a file of a Japanese patient is kept, byte for byte."""
    ds = _slice("ISO_IR 192", "山田^太郎".encode(), Manufacturer=b"Caf\xe9 Medical")
    rc, [written], _ = _run(tmp_path, run, ds)
    assert rc == 0
    o = pydicom.dcmread(written)
    assert o.get_item(MANUFACTURER).value.rstrip(b" ") == b"Caf\xe9 Medical"


def test_legacy_encodings_follow_the_scripts() -> None:
    assert legacy_encodings("Zqmüller") == ("cp1252", "latin-1", "iso8859-2")
    assert {"cp1251", "koi8_r", "iso8859-5"} <= set(legacy_encodings("Фёдор"))
    assert {"iso8859-7", "cp1253"} <= set(legacy_encodings("Νίκος"))
    assert {"shift_jis", "euc_jp", "iso2022_jp", "gb18030", "big5", "euc_kr"} \
        <= set(legacy_encodings("山田"))
    assert set(legacy_encodings("やまだ")) == {"shift_jis", "euc_jp", "iso2022_jp"}
    assert legacy_encodings("홍길동") == ("euc_kr",)
    assert legacy_encodings("Smith") == ()


def test_ascii_identity_adds_no_search() -> None:
    """The common case costs nothing: ASCII tokens add no token and no encoding."""
    tokens = ("PETTIGREW", "Ottilie", "MRN7409550")
    assert _residual_search(tokens, ("iso8859",)) == (tokens, ("iso8859",))


def test_a_utf8_name_read_as_latin1_is_searched_as_what_it_is() -> None:
    tokens, encodings = _residual_search(("ZqmÃ¼ller", "Smith"), ("iso8859",))
    assert "Zqmüller" in tokens and "cp1252" in encodings
    # Latin-1 text that is no UTF-8 gives no other token
    assert _residual_search(("Zqmüller",), ("iso8859",))[0] == ("Zqmüller",)


# -- the burned-in text stage does not change the header ------------------------------------
def test_identity_values_leave_raw_elements_raw(tmp_path: Path) -> None:
    ds = _slice("ISO_IR 192", "Zqmüller^Jürgen".encode(), Manufacturer=b"Caf\xe9 Medical")
    item = Dataset()
    item.PersonName = "Zqmitem^Ана".encode()
    ds.ContentSequence = [item]
    src = write_dataset(ds, tmp_path / "a.dcm")
    read = pydicom.dcmread(src)
    values = IdentityValues.from_dataset(read)
    assert isinstance(read.get_item(MANUFACTURER), RawDataElement)
    assert isinstance(read.get_item(0x00100010), RawDataElement)
    assert isinstance(read.get_item(0x0040A730), RawDataElement)
    # the values are decoded as pydicom decodes them (the item in its parent's set)
    assert "Zqmüller^Jürgen" in values.names and "Zqmitem^Ана" in values.names


def test_kept_text_invalid_in_its_character_set_is_copied_byte_for_byte(
        tmp_path: Path, run) -> None:
    ds = _slice("ISO_IR 192", b"Doe^John", Manufacturer=b"Caf\xe9 Medical")
    rc, [written], _ = _run(tmp_path, run, ds, "--pixels", "auto", "--ocr", "none")
    assert rc == 0
    o = pydicom.dcmread(written)
    assert o.get_item(MANUFACTURER).value.rstrip(b" ") == b"Caf\xe9 Medical"


# -- folding: kana, tatweel, letters NFKD leaves alone ----------------------------------------
def test_hiragana_and_katakana_fold_alike() -> None:
    assert fold("やまだ たろう") == fold("ヤマダ タロウ")
    assert len(fold("ゝやまだゖ")) == 5  # one for one: offsets map back
    tokens = identity_tokens(["Zqmada^Tarou=山田^太郎=やまだ^たろう"])
    assert clean_text("頭部 ヤマダ タロウ", tokens) == "頭部"
    assert clean_text("頭部 ヘリカル 5mm", tokens) == "頭部 ヘリカル 5mm"


def test_the_tatweel_is_no_letter() -> None:
    assert fold("زقمحـمود") == fold("زقمحمود")
    folded, index = _folded_with_index("زقمحـمود x")
    assert len(folded) == len(index) and folded.endswith(" x") and index[-1] == 9
    assert clean_text("رأس زقمحـمود", ["زقمحمود"]) == "رأس"
    assert clean_text("رأس زقمحمودـ نص", ["زقمحمود"]) == "رأس نص"  # (the tatweel goes too)
    assert clean_text("رأس مـع تباين", ["زقمحمود"]) == "رأس مـع تباين"


def test_burned_in_matching_folds_letters_nfkd_leaves_alone() -> None:
    identity = IdentityValues(names=["Øst^Åse", "Łuk^Zqm"])
    assert ocr_fold("Øst") == ocr_fold("OST") == "OST"
    assert identity.match("OST") == "name"
    assert identity.match("LUK 3") == "name"
    assert identity.match("GAIN 45 DR 60") is None


# -- ß and ı in a descriptor are cleaned (the file is released) --------------------------------
@pytest.mark.parametrize(("name", "text"), [
    ("Großzqm^Jürgen", "Kopf Grosszqm nativ"),
    ("Yızqmaz^Ayşe", "Kopf YIZQMAZ nativ"),
])
def test_eszett_and_dotless_i_spellings_are_cleaned(tmp_path: Path, run, name, text) -> None:
    ds = _slice("ISO_IR 148" if "ş" in name else "ISO_IR 100",
                name.encode("iso8859_9" if "ş" in name else "latin-1"),
                StudyDescription=text)
    rc, [written], _ = _run(tmp_path, run, ds, "--profile", "tcia-like")
    assert rc == 0
    assert pydicom.dcmread(written).StudyDescription == "Kopf nativ"
