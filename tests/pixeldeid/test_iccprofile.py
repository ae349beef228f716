"""Tests of ICC profile text blanking (pixeldeid.iccprofile.blank_text)."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from pixeldeid.errors import InputError
from pixeldeid.iccprofile import ICCProfileError, blank_text, profile_id

NAME, PID = "Zorbaxton^Quilleran", "ZQX88231"
TEXT_TYPES = (b"desc", b"mluc", b"text", b"ncl2", b"clrt", b"dict", b"data")


# --- building profiles -----------------------------------------------------------------


def _srgb() -> bytes:
    """A real profile from LittleCMS (v4.4, mluc desc and cprt, curves, matrix)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _mluc(*records: tuple[bytes, str]) -> bytes:
    strings = [text.encode("utf-16-be") for _, text in records]
    offset = 16 + 12 * len(records)
    table = b""
    for (code, _), s in zip(records, strings, strict=True):
        table += code + struct.pack(">II", len(s), offset)
        offset += len(s)
    return b"mluc\0\0\0\0" + struct.pack(">II", len(records), 12) + table + b"".join(strings)


def _desc_v2(ascii_text: bytes, unicode_text: str, script: bytes) -> bytes:
    """v2 textDescriptionType: counts include the terminating NUL; ScriptCode is 67 bytes."""
    a = ascii_text + b"\0"
    u = (unicode_text + "\0").encode("utf-16-be")
    sc = script + b"\0"
    return (b"desc\0\0\0\0" + struct.pack(">I", len(a)) + a + struct.pack(">II", 0, len(u) // 2)
            + u + struct.pack(">HB", 0, len(sc)) + sc.ljust(67, b"\0"))


def _text(value: bytes) -> bytes:
    return b"text\0\0\0\0" + value + b"\0"


def _tags(profile: bytes) -> list[tuple[bytes, int, int]]:
    (n,) = struct.unpack_from(">I", profile, 128)
    return [struct.unpack_from(">4sII", profile, 132 + 12 * i) for i in range(n)]


def _build(base: bytes, replace: dict[bytes, bytes], *, version: bytes | None = None,
           with_id: bool = False, gap: bytes = b"") -> bytes:
    """Lay out ``base``'s tags anew with some elements replaced or added (shared data
    stays shared), ``gap`` bytes between the table and the first element."""
    old = _tags(base)
    sigs = [s for s, _, _ in old] + [s for s in replace if s not in {t[0] for t in old}]
    elements: dict[object, bytes] = {}
    keys = []
    for sig in sigs:
        if sig in replace:
            key: object = sig
            elements[key] = replace[sig]
        else:
            _, off, size = next(t for t in old if t[0] == sig)
            key = (off, size)
            elements.setdefault(key, base[off:off + size])
        keys.append(key)
    pos = 128 + 4 + 12 * len(sigs) + len(gap)
    where, data = {}, b""
    for key, element in elements.items():
        where[key] = pos + len(data)
        data += element + b"\0" * (-len(element) % 4)
    table = struct.pack(">I", len(sigs)) + b"".join(
        sig + struct.pack(">II", where[k], len(elements[k]))
        for sig, k in zip(sigs, keys, strict=True))
    header = bytearray(base[:128])
    if version:
        header[8:12] = version
    header[84:100] = bytes(16)
    out = bytearray(header + table + gap + data)
    out[:4] = struct.pack(">I", len(out))
    if with_id:
        out[84:100] = _md5_id(bytes(out))
    return bytes(out)


def _md5_id(profile: bytes) -> bytes:
    """ICC.1:2010 7.2.18, computed here independently of the module."""
    data = bytearray(profile)
    data[44:48] = data[64:68] = bytes(4)
    data[84:100] = bytes(16)
    return hashlib.md5(bytes(data)).digest()


def _forms(text: str) -> list[bytes]:
    return [text.encode(), text.encode("utf-16-be"), text.encode("utf-16-le")]


def _assert_gone(out: bytes, *texts: str) -> None:
    for text in texts:
        for part in text.split("^"):
            for form in _forms(part):
                assert form not in out, part


def _transform(profile: bytes) -> np.ndarray:
    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    lab = ImageCms.createProfile("LAB")
    return np.asarray(ImageCms.profileToProfile(img, src, lab, outputMode="LAB"))


def _same_structure(before: bytes, after: bytes) -> None:
    """Same length, header (but the ID) and tag table; every non-text element identical."""
    assert len(after) == len(before)
    n = struct.unpack_from(">I", before, 128)[0]
    assert after[:84] == before[:84] and after[128:132 + 12 * n] == before[128:132 + 12 * n]
    for _, off, size in _tags(before):
        if before[off:off + 4] not in TEXT_TYPES:
            assert after[off:off + size] == before[off:off + size]


# --- tests -----------------------------------------------------------------------------


def test_v4_mluc_text_is_blanked_in_place_and_the_transform_is_unchanged():
    base = _srgb()
    assert base[8] == 4  # LittleCMS writes v4
    prof = _build(base, {
        b"desc": _mluc((b"enUS", f"Scanner of {NAME}"), (b"deDE", f"ID {PID}")),
        b"cprt": _mluc((b"enUS", f"(c) {NAME}")),
        b"dmnd": _mluc((b"enUS", "Quilleran Medical")),
        b"dmdd": _mluc((b"enUS", f"{PID}-model")),
    }, with_id=True)
    assert NAME.encode("utf-16-be") in prof
    assert prof[84:100] == _md5_id(prof)
    out, blanked = blank_text(prof)
    assert blanked == ["ICC desc text", "ICC cprt text", "ICC dmnd text", "ICC dmdd text"]
    _assert_gone(out, NAME, PID)
    _same_structure(prof, out)
    # text became UTF-16 spaces, the mluc record tables are untouched
    _, off, size = _tags(out)[0]
    assert out[off:off + 40] == prof[off:off + 40]
    assert set(out[off + 40:off + size].decode("utf-16-be")) == {" "}
    # the profile ID is recomputed, and the profile is the same colour transform
    assert out[84:100] == _md5_id(out) != prof[84:100]
    assert profile_id(out) == out[84:100]
    np.testing.assert_array_equal(_transform(out), _transform(prof))
    # a second pass has nothing left to do
    assert blank_text(out) == (out, [])


def test_v2_text_description_all_three_parts_and_text_type():
    base = _srgb()
    prof = _build(base, {
        b"desc": _desc_v2(b"Room 4 " + PID.encode() + b"\0hidden " + NAME.encode(),
                          f"Patient {NAME}", b"Quilleran"),
        b"cprt": _text(b"Copyright " + NAME.encode()),
        b"targ": _text(PID.encode()),
    }, version=b"\x02\x10\x00\x00")
    out, blanked = blank_text(prof)
    assert blanked == ["ICC desc text", "ICC cprt text", "ICC targ text"]
    _assert_gone(out, NAME, PID, "hidden")
    _same_structure(prof, out)
    _, off, size = _tags(out)[0]
    count = struct.unpack_from(">I", out, off + 8)[0]
    assert out[off + 12:off + 12 + count] == b" " * (count - 1) + b"\0"
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(out))).strip() == ""
    np.testing.assert_array_equal(_transform(out), _transform(prof))
    assert out[84:100] == bytes(16)  # a zero profile ID stays zero


def test_short_v2_desc_without_unicode_and_scriptcode_parts():
    a = b"Zorbaxton\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(a)) + a + b"\0\0"  # cut after 2 bytes
    prof = _build(_srgb(), {b"desc": desc})
    out, blanked = blank_text(prof)
    assert blanked == ["ICC desc text", "ICC cprt text"] and b"Zorbaxton" not in out
    ImageCms.ImageCmsProfile(io.BytesIO(out))


def test_unused_bytes_reserved_header_and_slack_are_zeroed():
    gap = b"GAP " + NAME.encode() + b"\0\0\0"
    gap += b"\0" * (-len(gap) % 4)
    mluc = bytearray(_mluc((b"enUS", "sRGB")) + b"SLACK" + PID.encode() + b"\0")
    mluc += b"\0" * (-len(mluc) % 4)
    prof = bytearray(_build(_srgb(), {b"desc": bytes(mluc)}, gap=gap))
    prof[100:112] = b"RSV Zorbaxto"
    prof = bytes(prof)
    out, blanked = blank_text(prof)
    assert "ICC header reserved bytes" in blanked and "ICC unused bytes" in blanked
    assert "ICC desc text" in blanked
    _assert_gone(out, NAME, PID, "SLACK", "GAP", "RSV")
    assert out[100:128] == bytes(28)
    np.testing.assert_array_equal(_transform(out), _transform(prof))


def test_private_tag_signature_is_not_echoed_and_other_types_are_left():
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x01CD) + b"\0\0"
    prof = _build(_srgb(), {b"Zorb": _text(NAME.encode()), b"qqqq": curve})
    out, blanked = blank_text(prof)
    assert blanked == ["ICC desc text", "ICC cprt text", "ICC private tag text"]
    assert b"Zorbaxton" not in out
    _same_structure(prof, out)


def test_named_colours_colorants_dict_and_ascii_data_are_blanked():
    ncl2 = (b"ncl2\0\0\0\0" + struct.pack(">III", 0, 1, 3) + b"Pre".ljust(32, b"\0")
            + b"Suf".ljust(32, b"\0") + NAME.encode().ljust(32, b"\0") + bytes(6)
            + bytes(6))
    clrt = b"clrt\0\0\0\0" + struct.pack(">I", 1) + PID.encode().ljust(32, b"\0") + bytes(6)
    name, value = "EDID_serial".encode("utf-16-be"), PID.encode("utf-16-be")
    display = _mluc((b"enUS", NAME))
    first = 16 + 24
    dict_ = (b"dict\0\0\0\0" + struct.pack(">II", 1, 24)
             + struct.pack(">6I", first, len(name), first + len(name), len(value),
                           first + len(name) + len(value), len(display))
             + name + value + display)
    data = b"data\0\0\0\0" + struct.pack(">I", 0) + NAME.encode() + b"\0"
    prof = _build(_srgb(), {b"ncl2": ncl2, b"clrt": clrt, b"meta": dict_, b"ps2i": data})
    out, blanked = blank_text(prof)
    assert blanked == ["ICC desc text", "ICC cprt text", "ICC ncl2 text", "ICC clrt text",
                       "ICC meta text", "ICC ps2i text"]
    _assert_gone(out, NAME, PID, "EDID")
    _same_structure(prof, out)
    np.testing.assert_array_equal(_transform(out), _transform(prof))


def test_dicom_pad_byte_after_an_odd_profile_is_kept():
    prof = _build(_srgb(), {b"targ": _text(b"Zorbaxton!")})  # added last: 19 bytes, 1 pad
    prof = bytearray(prof[:-1])
    prof[:4] = struct.pack(">I", len(prof))
    assert len(prof) % 2 == 1 and _tags(bytes(prof))[-1][2] == 19
    padded = bytes(prof) + b"\0"
    out, blanked = blank_text(padded)
    assert blanked == ["ICC desc text", "ICC cprt text", "ICC targ text"]
    assert len(out) == len(padded) and out[-1] == 0
    assert b"Zorbaxton" not in out
    with pytest.raises(ICCProfileError, match="size field"):
        blank_text(bytes(prof) + b"\x01")


def _real(path: Path | None) -> bytes:
    if path is None or not Path(path).exists():
        pytest.skip("reference profile not available")
    return Path(path).read_bytes()


def test_real_v4_profiles_with_a_profile_id():
    import highdicom
    import pydicom

    paths = [Path(pydicom.__file__).parent / "data/test_files/crayons.icc",
             Path(highdicom.__file__).parent / "_icc_profiles/sRGB_v4_ICC_preference.icc"]
    for path in paths:
        prof = _real(path)
        assert prof[84:100] == _md5_id(prof) == profile_id(prof)  # the ID as ICC defines it
        out, blanked = blank_text(prof)
        assert blanked == ["ICC desc text", "ICC cprt text"]
        _same_structure(prof, out)
        assert out[84:100] == _md5_id(out)
        if prof[16:20] == b"RGB ":
            np.testing.assert_array_equal(_transform(out), _transform(prof))


def test_real_v2_profile_from_a_jp2_file():
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.encaps import generate_frames

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = get_testdata_file("GDCMJ2K_TextGBR.dcm")
    if path is None:
        pytest.skip("pydicom test file not available")
    frame = next(generate_frames(pydicom.dcmread(path).PixelData, number_of_frames=1))
    colr = frame.index(b"colr")
    (length,) = struct.unpack_from(">I", frame, colr - 4)
    prof = frame[colr + 7:colr - 4 + length]
    assert prof[8] == 2 and b"Generic GBR Profile" in prof  # a real v2 profile (Apple)
    out, blanked = blank_text(prof)
    assert blanked == ["ICC dscm text", "ICC desc text", "ICC cprt text"]
    assert b"Generic" not in out and b"Apple" not in out
    assert "Generic".encode("utf-16-be") not in out
    _same_structure(prof, out)
    np.testing.assert_array_equal(_transform(out), _transform(prof))


def _with(prof: bytes, pos: int, value: bytes) -> bytes:
    out = bytearray(prof)
    out[pos:pos + len(value)] = value
    return bytes(out)


def _malformed() -> list[tuple[str, bytes, str]]:
    base = _build(_srgb(), {b"desc": _mluc((b"enUS", NAME)),
                            b"cprt": _desc_v2(NAME.encode(), NAME, b"")})
    tags = _tags(base)
    desc_off, cprt_off = tags[0][1], tags[1][1]
    table = 132
    return [
        ("short", base[:100], "shorter than its header"),
        ("size", base[:-4], "size field"),
        ("acsp", _with(base, 36, b"xxxx"), "acsp"),
        ("count", _with(base, 128, struct.pack(">I", 10 ** 6)), "tag table"),
        ("offset", _with(base, table + 4, struct.pack(">I", len(base) - 4)), "tag 0 data"),
        ("in table", _with(base, table + 4, struct.pack(">I", 130)), "tag 0 data"),
        ("tiny tag", _with(base, table + 8, struct.pack(">I", 4)), "tag 0 shorter"),
        ("mluc record", _with(base, desc_off + 16 + 8, struct.pack(">I", 4000)), "mluc record 0"),
        ("mluc size", _with(base, desc_off + 12, struct.pack(">I", 16)), "record size"),
        ("desc ascii", _with(base, cprt_off + 8, struct.pack(">I", 4000)), "ASCII part"),
        ("desc unicode", _with(base, cprt_off + 12 + len(NAME) + 1 + 4,
                               struct.pack(">I", 4000)), "Unicode part"),
        # (cprt inside desc: desc is cut to the 4 bytes before it, too short for an mluc)
        ("overlap", _with(base, table + 12 + 4, struct.pack(">I", desc_off + 4)),
         "mluc element shorter than its header"),
        ("pseq", _with(base, desc_off, b"pseq"), "'pseq'"),
    ]


@pytest.mark.parametrize("case", range(13))
def test_profiles_that_cannot_be_parsed_are_refused_without_their_text(case):
    name, prof, why = _malformed()[case]
    with pytest.raises(ICCProfileError, match=why) as exc:
        blank_text(prof)
    assert isinstance(exc.value, ValueError) and isinstance(exc.value, InputError)
    assert "Zorb" not in str(exc.value) and "Quill" not in str(exc.value), name
