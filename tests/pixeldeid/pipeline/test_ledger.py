"""The run ledger: a damaged file is set aside and a fresh ledger opened (the run plans again)."""

from __future__ import annotations

from pixeldeid.pipeline.ledger import RunLedger


def test_damaged_run_ledger_is_set_aside(tmp_path):
    path = tmp_path / ".pixeldeid" / "run.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"this is not a database" * 10)
    (path.parent / "run.sqlite-wal").write_bytes(b"junk")
    led = RunLedger(path)
    try:
        led.set_meta(profile="basic")
        assert led.meta()["profile"] == "basic"
        assert list(led.items()) == []
    finally:
        led.close()
    assert (path.parent / "run.sqlite.damaged").read_bytes() == b"this is not a database" * 10
    assert not (path.parent / "run.sqlite-wal").exists() or \
        (path.parent / "run.sqlite-wal").read_bytes() != b"junk"
