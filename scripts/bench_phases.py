#!/usr/bin/env python
"""Where the time of ``pixeldeid dicom -j 1 --pixels off`` goes, per file.

Wraps the real functions of one in-process run with a timer (reading the header, applying
the profile, encoding, writing, the ledger signature) on the cached CT files of
``scripts/bench_header.py`` and prints milliseconds per file for each phase and for the
rest of the batch. The timer itself adds about a microsecond per call.

The outputs are written ahead by a background thread (``pixeldeid.atomic.BackgroundWriter``)
unless ``PIXELDEID_WRITER_THREAD=0``: then the main thread makes the temporary file, writes
the header and opens the input ("write ahead"), the thread copies the pixel data
(overlapped: not part of the total), and the main thread links the file into place in its
turn ("write", which includes any wait for the thread).

Examples
--------
python scripts/bench_phases.py                     # 1000 files, outputs in a temp folder
python scripts/bench_phases.py -n 200 --work /dev/shm --repeat 3
PIXELDEID_WRITER_THREAD=0 python scripts/bench_phases.py  # each output written at once
"""

from __future__ import annotations

import argparse
import collections
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_header import make_cache  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000, help="number of CT files (default 1000)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder for outputs")
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs; the last is reported (the first warms caches)")
    args = ap.parse_args(argv)

    import pixeldeid.api as api
    import pixeldeid.atomic as atomic
    import pixeldeid.batch as batch
    import pixeldeid.derive as derive
    import pixeldeid.rawds as rawds
    from pixeldeid.cli import main as cli

    cache = Path.home() / ".cache" / "pixeldeid" / f"bench_header_{args.n}"
    files = make_cache(cache, args.n)
    for f in files:
        f.read_bytes()
    acc: collections.Counter = collections.Counter()
    lock = threading.Lock()  # the writer thread's timer adds to acc too

    def timed(owner, name: str, label: str) -> None:
        real = getattr(owner, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                with lock:
                    acc[label] += time.perf_counter() - t0

        setattr(owner, name, wrapper)

    timed(batch.Ledger, "signature", "ledger signature")
    timed(rawds, "read_raw", "read the header (rawds.read_raw)")
    timed(api.Deidentifier, "deidentify_dataset", "apply the profile (deidentify_dataset)")
    timed(api.Deidentifier, "encode", "encode (+ residual check)")
    timed(batch, "write_exclusive", "write (temp file, copy, link; or the link)")
    timed(atomic.StagedFile, "__init__", "write ahead (temp file, header, open input)")
    timed(atomic.StagedFile, "wait", WAIT)
    timed(atomic, "_write_rest", THREAD)
    timed(derive.Deriver, "derive", "derive from the template (derive.Deriver.derive)")

    work = Path(tempfile.mkdtemp(prefix="pixeldeid-phases-", dir=args.work))
    key = work / "key"
    key.write_bytes(secrets.token_bytes(32))
    out = work / "out"
    try:
        for _ in range(max(1, args.repeat)):
            shutil.rmtree(out, ignore_errors=True)
            acc.clear()
            t0 = time.perf_counter()
            rc = cli(["-q", "dicom", str(cache), "-o", str(out), "-j", "1", "--no-progress",
                      "--key-file", str(key), "--pixels", "off"])
            total = time.perf_counter() - t0
            if rc != 0:
                print(f"pixeldeid exited with {rc}", file=sys.stderr)
                return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(files)
    waited, overlapped = acc.pop(WAIT, 0.0), acc.pop(THREAD, 0.0)
    print(f"{n} files, ms per file (last of {args.repeat} runs)")
    for label, seconds in acc.most_common():
        print(f"  {label:<50}{seconds * 1000 / n:7.3f}")
    rest = total - sum(acc.values())
    print(f"  {'rest (batch loop, listing, ledger, summary)':<50}{rest * 1000 / n:7.3f}")
    print(f"  {'total':<50}{total * 1000 / n:7.3f}")
    if overlapped:
        print(f"  {WAIT + ' (in write)':<50}{waited * 1000 / n:7.3f}")
        print(f"  {THREAD + ' (overlapped)':<50}{overlapped * 1000 / n:7.3f}")
    return 0


WAIT = "waiting for the writer thread"
THREAD = "writer thread: copy the pixel data"


if __name__ == "__main__":
    sys.exit(main())
