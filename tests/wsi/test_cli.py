"""The ``pixeldeid wsi`` subcommand, called through its run() and through pixeldeid.cli."""

from __future__ import annotations

import argparse
import csv
import hashlib

import openslide

from wsi import cli
from wsi.synth.aperio import make_aperio
from wsi.synth.hamamatsu import make_ndpi
from wsi.tiffedit import scan_raw


def _run(argv):
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return cli.run(p.parse_args(argv))


def test_batch_with_one_bad_file(tmp_path, capsys):
    src = tmp_path / "in"
    a = make_aperio(src / "a.svs", width=800, height=600)
    n = make_ndpi(src / "b.ndpi", width=512, height=384)
    bad = src / "c.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 100)
    out = tmp_path / "out"
    rc = _run([str(src), "-o", str(out), "--value", "Jane Q Doe"])
    assert rc == 1
    err = capsys.readouterr()
    assert "c.svs" in err.err and "3 slides: 2 clean, 1 quarantined" in err.out
    outs = sorted(p.name for p in out.iterdir())
    # (the report names the inputs: in the state folder, not in the release)
    assert outs == [".pixeldeid", "SLIDE-0001.svs", "SLIDE-0002.ndpi", "quarantine"]
    for f, s in (("SLIDE-0001.svs", a), ("SLIDE-0002.ndpi", n)):
        assert scan_raw(out / f, s.planted) == []
    assert openslide.OpenSlide(str(out / "SLIDE-0002.ndpi")).properties["openslide.vendor"] == "hamamatsu"
    assert len(list((out / "quarantine").glob("*.reason.txt"))) == 1
    assert "quarantined" in (out / ".pixeldeid" / "wsi-report.csv").read_text()


def test_in_place_and_options(tmp_path):
    s = make_aperio(tmp_path / "x.svs", width=800, height=600)
    before = hashlib.sha256(s.path.read_bytes()).hexdigest()
    rc = _run([str(s.path), "--in-place", "--label", "replace", "--macro", "redact",
               "--redact", "10,10,100,100", "--pseudonym", "P-7", "--shift-days", "3"])
    assert rc == 1  # a kept macro cannot take mapped regions: quarantined, input untouched
    assert hashlib.sha256(s.path.read_bytes()).hexdigest() == before
    rc = _run([str(s.path), "--in-place", "--label", "replace", "--macro", "remove",
               "--redact", "10,10,100,100", "--pseudonym", "P-7", "--shift-days", "3"])
    assert rc == 0
    o = openslide.OpenSlide(str(s.path))
    assert set(o.associated_images) == {"label", "thumbnail"}
    assert o.properties["aperio.Date"] == "11/26/26"
    assert scan_raw(s.path, s.planted[:5]) == []
    assert not list(tmp_path.glob(".pixeldeid-tmp-*"))


def test_usage_errors(tmp_path, capsys):
    s = make_aperio(tmp_path / "x.svs", width=400, height=300)
    assert _run([str(s.path)]) == 2
    assert _run([str(s.path), "-o", str(tmp_path / "o"), "--ocr", "easyocr"]) == 2
    assert _run([str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o")]) == 1
    assert "error" in capsys.readouterr().err


def test_registered_in_pixeldeid_cli(tmp_path):
    from pixeldeid.cli import main

    s = make_aperio(tmp_path / "x.svs", width=400, height=300)
    assert main(["wsi", str(s.path), "-o", str(tmp_path / "o"), "--pseudonym", "Q1"]) == 0
    assert (tmp_path / "o" / "Q1.svs").is_file()


def test_dicom_wsi_folder_grouped(tmp_path, capsys):
    from wsi.synth.dicomwsi import make_dicom_wsi

    make_dicom_wsi(tmp_path / "in" / "dcm")
    make_aperio(tmp_path / "in" / "a.svs", width=400, height=300)
    key = tmp_path / "k.key"
    key.write_bytes(b"0123456789abcdef0123456789abcdef")
    rc = _run([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--key-file", str(key)])
    assert rc == 0, capsys.readouterr().err
    assert "2 slides: 2 clean" in capsys.readouterr().out
    # every input has its row in the report, the DICOM instances too (they had none)
    rows = list(csv.DictReader(open(tmp_path / "out" / ".pixeldeid" / "wsi-report.csv")))
    dcm = [r for r in rows if r["vendor"] == "dicom"]
    assert len(dcm) == len(list((tmp_path / "in" / "dcm").iterdir()))
    assert {r["status"] for r in rows} == {"clean"} and not (tmp_path / "out" / "wsi-report.csv").exists()
    assert _run([str(tmp_path / "in"), "--in-place"]) == 2


def test_a_pseudonym_map_that_is_not_utf8_is_a_usage_error(tmp_path, capsys):
    """A Latin-1 export was a UnicodeDecodeError traceback."""
    from pixeldeid.cli import main
    from wsi.synth.aperio import make_aperio

    make_aperio(tmp_path / "in" / "case.svs", width=400, height=300)
    pmap = tmp_path / "map.csv"
    pmap.write_bytes(b"source,pseudonym\ncase.svs,S\xe91\n")
    assert main(["wsi", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--pseudonym-map", str(pmap)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not UTF-8" in err and str(pmap) in err
    assert not (tmp_path / "out").exists()


def test_pseudonyms_that_give_the_same_file_name_are_a_usage_error(tmp_path, capsys):
    """Pseudonyms "P 1" and "P_1" passed the duplicate check (raw names compared) but became
    both P_1.svs: one slide silently replaced the other."""
    src = tmp_path / "in"
    make_aperio(src / "x1.svs", width=400, height=300, seed=1)
    make_aperio(src / "x2.svs", width=400, height=300, seed=2)
    m = tmp_path / "map.csv"
    m.write_text("source,pseudonym\nx1.svs,P 1\nx2.svs,P_1\n", encoding="utf-8")
    out = tmp_path / "out"
    assert _run([str(src), "-o", str(out), "--pseudonym-map", str(m)]) == 2
    err = capsys.readouterr().err
    assert "P_1.svs" in err and "'P 1'" in err and "'P_1'" in err
    assert not out.exists() or not list(out.glob("*.svs"))
    # distinct written names are fine
    m.write_text("source,pseudonym\nx1.svs,P 1\nx2.svs,P 2\n", encoding="utf-8")
    assert _run([str(src), "-o", str(out), "--pseudonym-map", str(m)]) == 0
    assert sorted(p.name for p in out.glob("*.svs")) == ["P_1.svs", "P_2.svs"]


def test_working_copies_a_killed_run_left_are_removed(tmp_path):
    """kill -9 mid-slide left OUT/.pixeldeid-tmp-*.svs, a copy of the input with its
    identity, and a rerun finished with exit 0 leaving it there."""
    s = make_aperio(tmp_path / "in" / "a.svs", width=400, height=300)
    out = tmp_path / "out"
    (out / "quarantine").mkdir(parents=True)
    stale = [out / ".pixeldeid-tmp-k1l2m3.svs", out / "quarantine" / ".pixeldeid-tmp-x9.svs"]
    for p in stale:
        p.write_bytes(s.path.read_bytes())
    assert _run([str(s.path), "-o", str(out), "--pseudonym", "T1"]) == 0
    assert not [p for p in out.rglob("*") if p.name.startswith(".pixeldeid-tmp-")]
    assert [p for p in out.rglob("*") if p.is_file() and scan_raw(p, s.planted)] == []


def test_folder_entries_are_never_dropped_silently(tmp_path, capsys):
    """A folder named quarantine, a .mrxs slide, a FIFO, a link to /dev/zero and a
    dangling link were skipped without a word ("1 slides: 1 clean", exit 0)."""
    import os

    src = tmp_path / "slides"
    a = make_aperio(src / "a.svs", width=400, height=300, seed=1)
    b = make_aperio(src / "quarantine" / "b.svs", width=400, height=300, seed=2)
    (src / "c.mrxs").write_text("[GENERAL]\nSLIDE_ID=1\n")
    os.mkfifo(src / "fifo.svs")
    (src / "zero.svs").symlink_to("/dev/zero")
    (src / "dangling.svs").symlink_to(tmp_path / "nonexistent" / "x.svs")
    (src / "notes.txt").write_text("scanned 2024\n")
    out = src / "out"  # OUT inside SRC: its own quarantine is not an input
    (out / "quarantine").mkdir(parents=True)
    (out / "quarantine" / "0123456789abcdef.svs").write_bytes(a.path.read_bytes())
    assert _run([str(src), "-o", str(out)]) == 1
    err = capsys.readouterr()
    assert "6 slides: 2 clean, 4 quarantined" in err.out
    rows = {os.path.basename(r["source"]): r
            for r in csv.DictReader(open(out / ".pixeldeid" / "wsi-report.csv"))}
    assert set(rows) == {"a.svs", "b.svs", "c.mrxs", "fifo.svs", "zero.svs", "dangling.svs"}
    assert rows["a.svs"]["status"] == rows["b.svs"]["status"] == "clean"
    assert "unsupported format" in rows["c.mrxs"]["reason"]
    for name in ("fifo.svs", "zero.svs"):
        assert "not a regular file" in rows[name]["reason"]
    assert "dangling" in rows["dangling.svs"]["reason"]
    for name in ("c.mrxs", "fifo.svs", "zero.svs", "dangling.svs"):
        lines = [ln for ln in err.err.splitlines() if f"/{name}: " in ln]
        assert len(lines) == 1 and lines[0].endswith(rows[name]["reason"])
    assert "notes.txt" in err.err  # no slide: skipped, but said so
    assert len(list((out / "quarantine").glob("*.reason.txt"))) == 4
    for s in (a, b):
        assert not [p for p in out.glob("*.svs") if scan_raw(p, s.planted)]


def test_a_source_folder_named_quarantine_is_read(tmp_path):
    s = make_aperio(tmp_path / "quarantine" / "b.svs", width=400, height=300)
    assert _run([str(s.path.parent), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "SLIDE-0001.svs").is_file()


def test_a_rerun_with_out_inside_the_source_takes_no_output_for_an_input(tmp_path, capsys):
    """OUT inside SRC: a rerun read OUT's cleaned slides as new inputs and wrote them again
    under other pseudonyms (only OUT's quarantine and state folders were left out)."""
    src = tmp_path / "slides"
    make_aperio(src / "a.svs", width=400, height=300, seed=1)
    out = src / "out"
    assert _run([str(src), "-o", str(out)]) == 0
    first = sorted(p.name for p in out.glob("*.svs"))
    capsys.readouterr()
    assert _run([str(src), "-o", str(out)]) == 0
    assert "1 slides" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.svs")) == first == ["SLIDE-0001.svs"]


def test_without_openslide_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    """Without the [slides] extra every slide was processed, then quarantined (a copy of
    each) with three lines apiece: one usage line now, naming the extra."""
    import sys

    make_aperio(tmp_path / "in" / "a.svs", width=400, height=300)
    monkeypatch.setitem(sys.modules, "openslide", None)
    assert _run([str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pixeldeid[slides]" in err
    assert not (tmp_path / "out").exists()
