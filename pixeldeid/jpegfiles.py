"""Scratch files for jpeglib, which reads and writes JPEG files only (no byte buffers)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

__all__ = ["jpeglib_files"]


@contextlib.contextmanager
def jpeglib_files(data: bytes, tmpdir: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(src, dst)``: ``src`` holds ``data``, ``dst`` is where to write the result.

    Both are removed afterwards, and so is the folder unless the caller gave ``tmpdir``
    (a folder reused across many frames). A new folder goes to ``/dev/shm`` when there is
    one (memory, not disk).
    """
    own = tmpdir is None
    if own:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        tmpdir = tempfile.mkdtemp(prefix="pixeldeid-jpeg-", dir=shm)
    src, dst = os.path.join(tmpdir, "in.jpg"), os.path.join(tmpdir, "out.jpg")
    try:
        with open(src, "wb") as fh:
            fh.write(data)
        yield src, dst
    finally:
        for p in (src, dst):
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)
        if own:
            os.rmdir(tmpdir)
