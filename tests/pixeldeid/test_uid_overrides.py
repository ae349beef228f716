"""A ``--map-csv`` new UID never merges two originals under one UID (session 14 audit, uids
item 3): the UID that the project key gives another original may not be taken by an
override, in one batch, nor across batches into one output folder in either order."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from corpus import make_ct_series

from pixeldeid.errors import DeidError
from pixeldeid.quarantine import QUARANTINE_DIRNAME
from pixeldeid.uids import UIDMapper, keyed_uid

KEY = b"k" * 32


def test_a_keyed_uid_that_an_override_gives_is_refused():
    a, b, c = "1.2.826.0.1.3680043.10.7.1", "1.2.826.0.1.3680043.10.7.2", "1.2.3.4.5"
    uids = UIDMapper(KEY, {a: keyed_uid(KEY, b)})
    assert uids(a) == keyed_uid(KEY, b)
    assert uids(c) == keyed_uid(KEY, c)  # other UIDs: the key's, as before
    with pytest.raises(DeidError, match="the map CSV gives another UID") as exc:
        uids(b)
    assert b not in str(exc.value) and a not in str(exc.value)  # (no original named)
    with pytest.raises(DeidError):  # every file that holds it: not cached as mapped
        uids(b)
    assert b not in uids.mapping and b not in uids.drain()


def test_an_earlier_batchs_override_is_checked_without_the_map():
    """A later batch gets the output folder's record only (by keyed UID)."""
    a, b = "1.2.826.0.1.3680043.10.7.1", "1.2.826.0.1.3680043.10.7.2"
    record = {keyed_uid(KEY, a): keyed_uid(KEY, b)}
    uids = UIDMapper(KEY, by_key=record)
    assert uids(a) == keyed_uid(KEY, b)
    with pytest.raises(DeidError, match="an earlier batch's map CSV"):
        uids(b)
    # B given a row of its own: no merge, no refusal
    z = "1.2.826.0.1.3680043.10.99.1"
    assert UIDMapper(KEY, {b: z}, record)(b) == z
    # an override to the original's own keyed UID takes nothing from anyone
    assert UIDMapper(KEY, {a: keyed_uid(KEY, a)})(a) == keyed_uid(KEY, a)


def _patients(tmp_path: Path) -> tuple[Path, Path, pydicom.Dataset, pydicom.Dataset]:
    [fa] = make_ct_series(tmp_path / "src" / "A", 1, seed=11)
    [fb] = make_ct_series(tmp_path / "src" / "B", 1, seed=12)
    return fa.parent, fb.parent, pydicom.dcmread(fa), pydicom.dcmread(fb)


def _released(out: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(out.rglob("*.dcm"))
            if not {".pixeldeid", QUARANTINE_DIRNAME} & set(p.relative_to(out).parts)]


def _no_uid_shared(out: Path, keyword: str) -> None:
    owners: dict[str, set[str]] = {}
    for ds in _released(out):
        owners.setdefault(str(getattr(ds, keyword)), set()).add(str(ds.PatientID))
    assert all(len(p) == 1 for p in owners.values()), owners


def _map(tmp_path: Path, rows: dict[str, str]) -> Path:
    m = tmp_path / "map.csv"
    m.write_text("id_old,id_new\n" + "".join(f"{o},{n}\n" for o, n in rows.items()))
    return m


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID",
                                     "FrameOfReferenceUID"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_one_batch_never_merges_two_patients(tmp_path, run, key_file, keyword, jobs):
    """A's UID mapped to the UID the key gives B's: B is quarantined (it merged, exit 0)."""
    src_a, src_b, a, b = _patients(tmp_path)
    key = key_file.read_bytes().strip()
    taken = keyed_uid(key, str(getattr(b, keyword)))
    m = _map(tmp_path, {str(getattr(a, keyword)): taken})
    status, out = run([src_a, src_b], "--map-csv", str(m), "-j", jobs)
    assert status == 1
    released = _released(out)
    assert [str(ds.PatientID) for ds in released] == ["SUBJ_001"]
    assert str(getattr(released[0], keyword)) == taken  # A keeps its row
    _no_uid_shared(out, keyword)


def test_map_first_then_the_other_patient_without_it(tmp_path, run, key_file, capsys):
    """The map's values are in force in a later batch without it: B is quarantined there,
    and released once it gets a row of its own."""
    src_a, src_b, a, b = _patients(tmp_path)
    key = key_file.read_bytes().strip()
    taken = keyed_uid(key, str(b.StudyInstanceUID))
    out = tmp_path / "out"
    assert run(src_a, "--map-csv", str(_map(tmp_path, {str(a.StudyInstanceUID): taken})),
               out=out)[0] == 0
    capsys.readouterr()
    assert run(src_b, out=out)[0] == 1
    assert "an earlier batch's map CSV" in capsys.readouterr().err
    assert [str(ds.PatientID) for ds in _released(out)] == ["SUBJ_001"]
    own = "1.2.826.0.1.3680043.10.99.12"
    assert run(src_b, "--map-csv", str(_map(tmp_path, {str(b.StudyInstanceUID): own})),
               out=out)[0] == 0
    assert {str(ds.StudyInstanceUID) for ds in _released(out)} == {taken, own}
    _no_uid_shared(out, "StudyInstanceUID")


def test_the_other_patient_first_then_the_map_is_still_refused(tmp_path, run, key_file,
                                                              capsys):
    src_a, src_b, a, b = _patients(tmp_path)
    key = key_file.read_bytes().strip()
    taken = keyed_uid(key, str(b.StudyInstanceUID))
    out = tmp_path / "out"
    assert run(src_b, out=out)[0] == 0
    capsys.readouterr()
    m = _map(tmp_path, {str(a.StudyInstanceUID): taken})
    assert run(src_a, "--map-csv", str(m), out=out)[0] == 2  # before any file is read
    assert "which another UID already has" in capsys.readouterr().err
    assert len(_released(out)) == 1
