#!/usr/bin/env python
"""Benchmark DICOM header de-identification: pixeldeid against peer tools, same files.

Generates N synthetic 512 x 512 CT slices once (10 patients/series; pixeldeid._synth)
into a cache folder, then in one run times, on the same files, each writing to its
own fresh output folder:

* ``pixeldeid dicom SRC -o OUT -j 1`` and ``-j 2`` (in process, ``pixeldeid.cli.main``;
  ``--pixels off``: the header work, not burned-in text)
* dicognito (Python API: read, ``Anonymizer.anonymize``, write to OUT; its CLI edits
  in place, so the API on read/write is the like-for-like measure)
* deid (``deid.dicom.replace_identifiers`` with its default recipe), when importable
* dicom-anonymizer (``dicomanonymizer.anonymize_dicom_file``), when importable

and prints files/s for each and the ratio pixeldeid / peer (> 1: pixeldeid faster).

Examples
--------
python scripts/bench_header.py                 # 1000 files, cache in ~/.cache
python scripts/bench_header.py -n 200 --peers dicognito
python scripts/bench_header.py --repeat 3 --io-floor  # medians; I/O floor
python scripts/bench_header.py --read-baseline   # also pydicom's read alone (context)
python scripts/bench_header.py --jobs 1,2,4 --peers ''  # -j N scaling only

The cost of writing new files varies a lot on virtual machines (from 0.3 to 1 ms per
512 KB file on the same one within an hour), whichever tool writes: the tools take turns
round by round, and ``--io-floor`` measures the writing alone before and after them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pydicom

from pixeldeid._synth import make_ct_series
from pixeldeid.atomic import _Temporary, copy_range

PEERS = ("dicognito", "deid", "dicom-anonymizer")


def make_cache(folder: Path, n: int, series: int = 10) -> list[Path]:
    """Return the N cached CT files, generating them on first use."""
    files = sorted(folder.rglob("*.dcm")) if folder.is_dir() else []
    if len(files) == n:
        return files
    shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    per = [n // series + (1 if k < n % series else 0) for k in range(series)]
    t0 = time.perf_counter()
    for k, m in enumerate(per):
        if m:
            make_ct_series(tmp / f"series{k:02d}", m, seed=1000 + k)
    tmp.rename(folder)
    print(f"generated {n} CT files in {time.perf_counter() - t0:.1f} s -> {folder}")
    return sorted(folder.rglob("*.dcm"))


def _count(out: Path) -> int:
    return sum(1 for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")
               and p.name != "DICOMDIR" and ".pixeldeid" not in p.parts)


def run_pixeldeid(src: Path, out: Path, files: list[Path], jobs: int, key: Path) -> None:
    from pixeldeid.cli import main

    rc = main(["-q", "dicom", str(src), "-o", str(out), "-j", str(jobs), "--no-progress",
               "--key-file", str(key), "--pixels", "off"])   # header work only
    if rc != 0:
        raise RuntimeError(f"pixeldeid exited with {rc}")


def run_dicognito(src: Path, out: Path, files: list[Path], jobs: int, key: Path) -> None:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer(seed="pixeldeid-bench")
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        anonymizer.anonymize(ds)
        ds.save_as(out / f"{i:06d}.dcm", enforce_file_format=True)


def run_deid(src: Path, out: Path, files: list[Path], jobs: int, key: Path) -> None:
    os.environ.setdefault("MESSAGELEVEL", "CRITICAL")
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers

    recipe = DeidRecipe()  # deid's default "dicom" recipe

    # deid names outputs by input basename: give each series its own folder
    by_dir: dict[Path, list[str]] = {}
    for f in files:
        by_dir.setdefault(f.parent, []).append(str(f))
    for d, group in by_dir.items():
        target = out / d.name
        target.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):
            replace_identifiers(dicom_files=group, deid=recipe, save=True, output_folder=str(target),
                                overwrite=True, remove_private=True)


def run_pydicom_read(src: Path, out: Path, files: list[Path], jobs: int, key: Path) -> None:
    """Context, not a peer: pydicom's read of each file alone (nothing changed or written)."""
    for f in files:
        pydicom.dcmread(f)


def run_dicom_anonymizer(src: Path, out: Path, files: list[Path], jobs: int, key: Path) -> None:
    from dicomanonymizer import anonymize_dicom_file

    for i, f in enumerate(files):
        anonymize_dicom_file(str(f), str(out / f"{i:06d}.dcm"))


def _time_all(entries: list[tuple[str, Callable, int]], src: Path, files: list[Path],
              work: Path, key: Path, warm: list[Path], repeat: int = 1) -> list[dict]:
    """Median seconds of ``repeat`` timed runs of each tool of ``entries`` (name, runner,
    jobs). The tools take turns, round by round, so a drift of the machine (page cache,
    memory the host backs) falls on every tool alike. Each run is a process of its own
    (forked from this one, which runs no tool itself): the warm-up run, then
    the timed one, so no tool runs in a heap or with caches another tool left. Each run
    writes into a fresh folder after the page cache's dirty pages were written back (no
    tool pays for another's writes). A tool that fails gets its error instead (the others
    go on)."""
    runs: dict[str, dict] = {name: {"times": [], "cpu": [], "written": 0, "error": None}
                             for name, _fn, _jobs in entries}
    for _ in range(repeat):
        for name, fn, jobs in entries:
            r = runs[name]
            if r["error"] is not None:
                continue
            got = _in_child(_run_once, name, fn, src, files, work, jobs, key, warm)
            if "error" in got:
                r["error"] = got["error"]
            else:
                r["times"].append(got["seconds"])
                r["cpu"].append(got["cpu"])
                r["written"] = got["written"]
    results = []
    for name, _fn, _jobs in entries:
        r = runs[name]
        if r["error"] is not None or not r["times"]:
            results.append({"tool": name, "error": r["error"] or "no run"})
            continue
        dt = statistics.median(r["times"])
        nearest = min(range(len(r["times"])), key=lambda i: abs(r["times"][i] - dt))
        user, sys_ = r["cpu"][nearest]
        results.append({"tool": name, "seconds": dt, "written": r["written"],
                        "rate": len(files) / dt, "user": user, "sys": sys_})
    return results


def _run_once(name: str, fn: Callable, src: Path, files: list[Path], work: Path, jobs: int,
              key: Path, warm: list[Path]) -> dict:
    """One timed run of one tool (in a process of its own), after an untimed warm-up run
    on ``warm`` (imports, recipe/profile loading, worker start-up code paths)."""
    out = work / name.replace(" ", "_")
    try:
        if warm:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            fn(warm[0].parent, out, warm, jobs, key)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        if hasattr(os, "sync"):
            os.sync()
        r0 = _rusage()
        t0 = time.perf_counter()
        fn(src, out, files, jobs, key)
        dt = time.perf_counter() - t0
        r1 = _rusage()
        return {"seconds": dt, "cpu": (r1[0] - r0[0], r1[1] - r0[1]), "written": _count(out)}
    except ImportError as exc:
        return {"error": f"not installed ({exc.name})"}
    except Exception as exc:  # a peer failing must not stop the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _in_child(fn: Callable, *args) -> dict:
    """``fn(*args)`` (a dict) in a forked child process; an error dict when it dies."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn, args))
    proc.start()
    send.close()
    try:
        got = recv.recv()
    except EOFError:
        got = None
    proc.join()
    return got if got is not None else {"error": f"the run's process died ({proc.exitcode})"}


def _child_main(send, fn: Callable, args: tuple) -> None:
    send.send(fn(*args))
    send.close()


def _rusage() -> tuple[float, float]:
    """CPU seconds (user, system) of this process and its finished child processes."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + b.ru_utime, a.ru_stime + b.ru_stime


def io_floor(files: list[Path], work: Path) -> float:
    """Seconds per file of the I/O alone that pixeldeid's fast path does: read the first
    64 KB, create a temporary output (unnamed where the system has them), write a header,
    copy the rest of the input file to file and link the output into place (no parsing)."""
    out = work / "io-floor"
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(os, "sync"):
        os.sync()
    t0 = time.perf_counter()
    for i, f in enumerate(files):
        with open(f, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(1 << 16)
            target = out / f"{i:06d}.dcm"
            temporary = _Temporary(target)  # what the fast path writes into
            try:
                os.write(temporary.fd, head[:4096])
                off = min(len(head), 4096)
                copy_range(fh.fileno(), temporary.fd, off, size - off)
                temporary.link(target)
            finally:
                temporary.close()
    dt = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return dt / len(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000, help="number of CT files (default 1000)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder of generated inputs (default ~/.cache/pixeldeid/bench_header_N)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder for outputs")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma-separated peers to run (default {','.join(PEERS)}; '' for none)")
    ap.add_argument("--jobs", default="1,2", help="pixeldeid -j values (default 1,2)")
    ap.add_argument("--io-floor", action="store_true",
                    help="also time the I/O alone that pixeldeid's fast path does per file")
    ap.add_argument("--read-baseline", action="store_true",
                    help="also time pydicom's read of each file alone (context, not a peer)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="timed rounds, the tools taking turns; medians reported (default 1)")
    ap.add_argument("--warmup", type=int, default=5,
                    help="untimed warm-up run of each tool on this many other files (default 5)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    cache = args.cache or Path.home() / ".cache" / "pixeldeid" / f"bench_header_{args.n}"
    files = make_cache(cache, args.n)
    total_mb = sum(f.stat().st_size for f in files) / 2**20
    for f in files:  # warm the page cache so the first tool is not penalized
        f.read_bytes()
    work = Path(tempfile.mkdtemp(prefix="pixeldeid-bench-", dir=args.work))
    key = work / "key"
    key.write_bytes(secrets.token_bytes(32))
    warm: list[Path] = []
    if args.warmup > 0:
        wdir = work / "warmup-src" / "series"
        wdir.mkdir(parents=True)
        for i, f in enumerate(files[:args.warmup]):
            warm.append(Path(shutil.copyfile(f, wdir / f"W{i:05d}.dcm")))
    print(f"{len(files)} CT files, {total_mb:.0f} MiB, in {cache}; "
          f"{os.cpu_count()} CPUs; pydicom {pydicom.__version__}")

    results = []
    floor = None
    floors: list[float] = []
    try:
        if args.io_floor:  # before and after the tools
            floors.append(io_floor(files, work))
        runners = {"dicognito": run_dicognito, "deid": run_deid,
                   "dicom-anonymizer": run_dicom_anonymizer}
        entries: list[tuple[str, Callable, int]] = [
            (f"pixeldeid -j {j}", run_pixeldeid, j)
            for j in [int(x) for x in args.jobs.split(",") if x]]
        for peer in [p.strip() for p in args.peers.split(",") if p.strip()]:
            if peer not in runners:
                ap.error(f"unknown peer {peer!r}")
            entries.append((peer, runners[peer], 1))
        if args.read_baseline:
            entries.append(("pydicom read only", run_pydicom_read, 1))
        results = _time_all(entries, cache, files, work, key, warm, args.repeat)
        for r in results:
            if r["tool"] == "pydicom read only":
                r["context"] = True
        if floors:
            floors.append(io_floor(files, work))
            floor = statistics.median(floors)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours = [r for r in results if r["tool"].startswith("pixeldeid") and "rate" in r]
    print(f"\n{'tool':<20}{'seconds':>9}{'files/s':>9}{'written':>9}{'user s':>8}{'sys s':>7}  "
          + "  ".join(f"{r['tool']}/peer" for r in ours))
    for r in results:
        if "error" in r:
            print(f"{r['tool']:<20}  {r['error']}")
            continue
        ratios = "" if r["tool"].startswith("pixeldeid") else "  ".join(
            f"{o['rate'] / r['rate']:>{len(o['tool']) + 5}.2f}" for o in ours)
        written = "-" if r.get("context") else r["written"]
        print(f"{r['tool']:<20}{r['seconds']:>9.2f}{r['rate']:>9.1f}{written:>9}"
              f"{r['user']:>8.2f}{r['sys']:>7.2f}  {ratios}")
    if floor is not None:
        peers = [r for r in results if not r["tool"].startswith("pixeldeid") and "rate" in r
                 and not r.get("context")]
        rel = "".join(f", {1 / (floor * r['rate']):.1f}x {r['tool']}" for r in peers)
        print(f"I/O floor (read header, create, copy pixels file to file, link): "
              f"{floor * 1000:.3f} ms per file{rel} (before the tools "
              f"{floors[0] * 1000:.3f}, after {floors[-1] * 1000:.3f})")
    one = next((r for r in ours if r["tool"] == "pixeldeid -j 1"), None)
    for r in ours:
        if one is not None and r is not one:
            print(f"{r['tool']}: {r['rate'] / one['rate']:.2f}x pixeldeid -j 1 "
                  f"({os.cpu_count()} CPUs)")
    bad = [r for r in results if not r.get("context")
           and r.get("written", len(files)) != len(files)]
    for r in bad:
        print(f"note: {r['tool']} wrote {r['written']} of {len(files)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
