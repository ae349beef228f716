"""Test corpus: realistic synthetic DICOM with planted identity.

Thin re-export of :mod:`pixeldeid._synth` so tests import ``tests.pixeldeid.corpus``
(or ``from corpus import ...`` when the folder is on ``sys.path``) while scripts, which
must not import from ``tests/``, use ``pixeldeid._synth`` directly.
"""

from __future__ import annotations

from pathlib import Path

from pixeldeid._synth import (
    SAFE_PRIVATE_CT,
    PlantedStrings,
    SynthPatient,
    ct_slice_dataset,
    jpeg_with_identity,
    make_ct_series,
    make_patient,
    make_planted_dataset,
    write_dataset,
)

__all__ = [
    "damaged_copies",
    "SAFE_PRIVATE_CT",
    "PlantedStrings",
    "SynthPatient",
    "ct_slice_dataset",
    "jpeg_with_identity",
    "make_ct_series",
    "make_patient",
    "make_planted_dataset",
    "write_dataset",
    "write_planted",
    "leaked",
]


def write_planted(path: str | Path, **kwargs) -> tuple[Path, PlantedStrings]:
    """Write ``make_planted_dataset(**kwargs)`` to ``path``; return the path and planted strings."""
    ds, planted = make_planted_dataset(**kwargs)
    return write_dataset(ds, path), planted


def leaked(data: bytes, planted: PlantedStrings | list[str]) -> list[str]:
    """Return the planted strings (with their location when known) found in raw ``data``."""
    where = getattr(planted, "where", {})
    return [f"{s!r} ({where.get(s, '?')})" for s in planted if s.encode("utf-8") in data]


def damaged_copies(files: list[Path], out: Path, n: int, seed: int) -> list[Path]:
    """``n`` damaged copies of ``files`` (in turn) in ``out``, each its own instance (SOP
    Instance UID), deterministic for ``seed``: cut at a random place; header bytes
    overwritten; a 16-bit value length changed; a bit of a header byte flipped (a tag, a VR
    or a length); two header bytes swapped. Returns the copies."""
    import random
    import struct

    import pydicom

    rng = random.Random(seed)
    out.mkdir(parents=True)
    made = []
    for k in range(n):
        src = files[k % len(files)]
        data = src.read_bytes()
        uid = str(pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID).encode()
        data = bytearray(data.replace(uid, uid[:-4] + b"%04d" % k))
        head = min(len(data), 8192)
        kind = k % 5
        if kind == 0:  # cut, in the header or in the pixel data
            cut = rng.randrange(132, head) if rng.random() < 0.7 else rng.randrange(head, len(data))
            data = data[:cut]
        elif kind == 1:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(132, head)] = rng.randrange(256)
        elif kind == 2:
            pos = rng.randrange(140, head - 8)
            old = struct.unpack_from("<H", data, pos)[0]
            struct.pack_into("<H", data, pos, max(0, old + rng.choice((-4, -2, 2, 4, 64))) & 0xFFFF)
        elif kind == 3:
            data[rng.randrange(132, head)] ^= 1 << rng.randrange(8)
        else:
            a, b = rng.randrange(132, head), rng.randrange(132, head)
            data[a], data[b] = data[b], data[a]
        path = out / f"m{k:03d}.dcm"
        path.write_bytes(bytes(data))
        made.append(path)
    return made
