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
