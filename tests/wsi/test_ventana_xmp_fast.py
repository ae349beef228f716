"""The bulk check of a Ventana EncodeInfo tile-joint run (``strip_uniform_block``) never
accepts a packet the attribute-by-attribute rules would reject."""

from __future__ import annotations

import random

from wsi import metadata_rules as mr
from wsi.synth.ventana import _encode_info
from wsi.ventana import ENCODE_INFO_KEEP, ISCAN_KEEP, JOINT_WORDS, clean_xmp

KEEP = ISCAN_KEEP | ENCODE_INFO_KEEP


def _fast(data: bytes) -> bool:
    s = mr.strip_uniform_block(data, b"TileJointInfo", ENCODE_INFO_KEEP, JOINT_WORDS)
    return s is not None and mr.xml_needs_no_cleaning(s.decode("utf-8", "replace"), KEEP)


def test_scanner_packet_is_taken_in_bulk_and_kept_byte_identical():
    data = _encode_info(12, 9, 256).encode()
    stripped = mr.strip_uniform_block(data, b"TileJointInfo", ENCODE_INFO_KEEP, JOINT_WORDS)
    assert stripped is not None and b"TileJointInfo" not in stripped
    assert b"<ImageInfo" in stripped and b"AoiOrigin" in stripped
    assert clean_xmp(data, None) == (data, [])


def test_planted_identity_in_the_run_is_refused():
    data = _encode_info(6, 4, 256).encode()
    joint = b'OverlapY="0" Confidence="100"/>'
    k = data.index(joint, len(data) // 2)
    cases = [
        data[:k] + b'OverlapY="0" Confidence="JANEDOE"/>' + data[k + len(joint):],
        data[:k] + joint + b"MRN 4411" + data[k + len(joint):],
        data[:k] + b'OverlapY="0" Operator="jsmith" Confidence="100"/>' + data[k + len(joint):],
        data[:k] + b'OverlapY="0" Con12345678fidence="100"/>' + data[k + len(joint):],
        data[:k] + joint + b"<!--Jane Doe-->" + data[k + len(joint):],
        data[:k] + b'OverlapY="0" Confidence="TIGER"/>' + data[k + len(joint):],  # word letters
        data[:k] + b'OverlapY="0" Confidence="1" 2"/>' + data[k + len(joint):],
        data.replace(b'Direction="UP"', b'Direction="UPDOE"', 1),
        data.replace(b'Direction="UP"', b'Direction="UP2"', 1),  # a word with digits
        data.replace(b'Tile2="', b'Tile2="-1e', 1),  # "e": not a number character
        data[:k] + joint + b'<TileJointInfo Direction="UP" Tile1="1" Tile2="2"/>'
        + data[k + len(joint):],
    ]
    for bad in cases:
        assert mr.strip_uniform_block(bad, b"TileJointInfo", ENCODE_INFO_KEEP, JOINT_WORDS) is None
    # the general path then removes what is not allowlisted
    new, removed = clean_xmp(cases[2], None)
    assert b"jsmith" not in new and "jsmith" in removed


def test_random_damage_never_passes_the_bulk_check_alone():
    rng = random.Random(5)
    data = _encode_info(5, 4, 256).encode()
    assert _fast(data)
    alphabet = b'0123456789AZaz"<>=/ \n-!'
    lo = data.index(b"<TileJointInfo")
    hi = data.index(b"</ImageInfo>")  # damage only the run: the rest goes the usual way
    accepted = 0
    for _ in range(3000):
        b = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(lo, hi)
            op = rng.random()
            ch = alphabet[rng.randrange(len(alphabet))]
            if op < 0.4:
                b[pos] = ch
            elif op < 0.7:
                b.insert(pos, ch)
            else:
                del b[pos]
        b = bytes(b)
        if _fast(b):
            accepted += 1
            # anything taken in bulk passes the attribute-by-attribute rules too
            assert mr.xml_needs_no_cleaning(b.decode("utf-8", "replace"), KEEP), b
            run = b[b.index(b"<TileJointInfo"):b.index(b">", b.rindex(b"<TileJointInfo")) + 1]
            assert not set(run.translate(None, b"0123456789.+-\n ")) - set(
                b'<>/="TileJointInfoDirectionRIGHTUPOverlapXYConfidence'), run
    assert accepted > 40  # digit edits inside values are still taken in bulk
