"""UID overrides (``--map-csv``) remembered per output folder.

A study must keep one set of new UIDs across the batches written into one output folder.
Without a record, an override given in one batch and missing from the next would give the
next batch's instances of the same study other UIDs (the key's), and an override given
after the key had already released a UID would do the same the other way round. So the
overrides in force are recorded in ``OUT/.pixeldeid/uid-overrides.csv`` by the UID the
key gives the original (:func:`~pixeldeid.uids.keyed_uid`; no original is stored) and
applied in every later batch, and a batch whose map contradicts the record is refused
before any file is read.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from .atomic import atomic_output
from .errors import DeidError
from .uids import keyed_uid

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

OVERRIDES_NAME = "uid-overrides.csv"
HEADER = ("keyed_uid", "new_uid")


def read_overrides(path: Path) -> dict[str, str]:
    """The overrides recorded in ``path`` (keyed UID -> new UID); none when it is missing.
    A file that cannot be read is a :class:`DeidError`: the overrides in force there are
    unknown, and guessing would split studies."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise DeidError(f"cannot read the UID overrides of this output folder ({exc}); "
                        "restore the file, or use another output folder", str(path)) from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(rows[0]) != HEADER or any(len(r) != 2 for r in rows[1:]):
        raise DeidError("the UID overrides of this output folder are damaged; restore the "
                        "file, or use another output folder", str(path))
    return {k: v for k, v in rows[1:]}


def reconcile_overrides(out: Path, key: bytes, overrides: Mapping[str, str],
                        released: Callable[[Path], set[str]] | None = None, *,
                        record_new: bool = True) -> dict[str, str]:
    """Check this batch's UID ``overrides`` (original -> new) against the record of the
    output folder ``out``, record the new ones, and return every override in force there,
    by keyed UID (:class:`~pixeldeid.uids.UIDMapper`'s ``by_key``).

    Refused (:class:`DeidError`, before any file is read), naming the original:

    * an override that gives an original another new UID than an earlier batch did;
    * an override of a UID that the key already released in an earlier batch
      (``released(out)``, default :func:`released_uids`: read only when there is a new
      override);
    * a new UID that another original already has there.

    ``record_new=False`` checks without writing the record (a dry run).

    The overrides returned hold in every later batch, with or without a map: the
    :class:`~pixeldeid.uids.UIDMapper` given them quarantines a file whose UID the key
    would give one of their new UIDs (two studies merged), so a batch with no new
    override needs no check here.
    """
    from .batch import STATE_DIRNAME

    path = out / STATE_DIRNAME / OVERRIDES_NAME
    record = read_overrides(path)
    keyed = {old: keyed_uid(key, old) for old in overrides}
    added: dict[str, str] = {}
    for old, new in overrides.items():
        by_key = keyed[old]
        earlier = record.get(by_key)
        if earlier is None:
            added[by_key] = new
        elif earlier != new:
            raise DeidError(f"the map CSV gives UID {old} the new UID {new}, but an earlier "
                            f"batch into this output folder gave it {earlier}; its study "
                            "would be split. Give the earlier value, or use another output "
                            "folder", str(path))
    if not added:
        return record
    owners = {new: k for k, new in record.items()}
    taken = (released or released_uids)(out)
    for old, new in overrides.items():
        by_key = keyed[old]
        if by_key not in added:
            continue
        # (a UID there that an override gave is that override's, not this original's:
        # the mapper never lets the key give it, so this original may get a row now)
        if by_key in taken and by_key not in owners:
            raise DeidError(f"the map CSV gives UID {old} the new UID {new}, but an earlier "
                            f"batch into this output folder released it as {by_key}; its "
                            "study would be split. Drop that row, or use another output "
                            "folder", str(path))
        if owners.get(new, by_key) != by_key or new in taken:
            raise DeidError(f"the map CSV gives UID {old} the new UID {new}, which another "
                            "UID already has in this output folder", str(path))
    record.update(added)
    if not record_new:
        return record
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([HEADER, *sorted(record.items())])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as fh:
        fh.write(buf.getvalue().encode("ascii"))
    logger.info("%d UID override(s) recorded for this output folder", len(added))
    return record


def released_uids(out: Path) -> set[str]:
    """Every UID in the headers of the DICOM files in the output folder ``out`` (at any
    depth: references too; its state and quarantine folders left out)."""
    import pydicom

    from .verify.checks import iter_outputs

    uids: set[str] = set()
    for path in iter_outputs(out):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            for elem in ds.iterall():
                if elem.VR == "UI" and elem.value:
                    value = elem.value
                    uids.update((value,) if isinstance(value, str) else map(str, value))
        except Exception:  # noqa: BLE001 - not DICOM (a slide, a NIfTI, a report)
            continue
    return uids

