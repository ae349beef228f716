"""Atomic output: write to a temporary name in the target folder, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TMP_PREFIX = ".pixeldeid-tmp-"


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder (made when missing): (fd, name). An
    OSError names ``path``, not the temporary name."""
    try:
        try:
            return tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
        except FileNotFoundError:  # the first file of its folder
            path.parent.mkdir(parents=True, exist_ok=True)
            return tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def probe_writable(path: str | os.PathLike) -> None:
    """Raise OSError unless :func:`atomic_output` can write ``path`` (its folder is made
    when missing): a temporary file is created beside it and removed."""
    fd, tmp = _temporary_beside(Path(path))
    os.close(fd)
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is untouched, so a
    reader never sees a partial file. The data is flushed and fsynced before the rename.

    Examples
    --------
    >>> with atomic_output(out / "a.dcm") as fh:  # doctest: +SKIP
    ...     fh.write(data)
    """
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_output(path) as fh:
        fh.write(data)
    return Path(path)


def remove_stale_temporaries(folder: str | os.PathLike) -> int:
    """Delete temporary files and folders (with everything in them) left by an interrupted
    run below ``folder``; return the count. Links are removed, never followed."""
    n = 0
    for p in sorted(Path(folder).rglob(TMP_PREFIX + "*")):  # a folder before its entries
        with contextlib.suppress(OSError):  # FileNotFoundError: went with its folder
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
    return n


class FileParts:
    """File contents given as bytes and slices of other files (:class:`pixeldeid.rawds.FileSlice`).

    Written with ``os.copy_file_range`` for the slices: their bytes are copied by the
    kernel, never read into Python. Each slice's source is checked to be the file that was
    parsed (same size and modification time) before it is copied.
    """

    def __init__(self, chunks: list) -> None:
        self.chunks = chunks

    def __len__(self) -> int:
        return sum(len(c) for c in self.chunks)

    def __bytes__(self) -> bytes:
        return b"".join(c if isinstance(c, bytes) else c.read() for c in self.chunks)

    def write_to(self, fh: BinaryIO) -> None:
        """Write everything to the open binary file ``fh``."""
        for chunk in self.chunks:
            if isinstance(chunk, bytes):
                fh.write(chunk)
                continue
            fh.flush()
            with open(chunk.path, "rb") as src:
                chunk.check(src.fileno())
                copy_range(src.fileno(), fh.fileno(), chunk.offset, chunk.length)
            fh.seek(0, os.SEEK_END)


def copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Copy ``length`` bytes at ``offset`` of ``src`` to the end of ``dst``."""
    os.lseek(dst, 0, os.SEEK_END)
    done = 0
    use_cfr = hasattr(os, "copy_file_range")
    while done < length:
        n = 0
        if use_cfr:
            try:
                n = os.copy_file_range(src, dst, length - done, offset + done)
            except OSError:  # other file systems, old kernels: plain reads and writes
                use_cfr = False
                continue
        else:
            block = os.pread(src, min(length - done, 1 << 20), offset + done)
            n = os.write(dst, block) if block else 0
        if n <= 0:
            raise OSError(f"source ended {length - done} bytes early")
        done += n


def _write(fh: BinaryIO, data) -> None:
    if isinstance(data, FileParts):
        data.write_to(fh)
    else:
        fh.write(data)


def write_exclusive(path: str | os.PathLike, data: bytes, *, durable: bool = False) -> str:
    """Write ``data`` to ``path`` atomically unless another file already took the name.

    Returns ``"written"``, ``"identical"`` (the name exists with the same bytes: a rerun
    or an exact duplicate) or ``"conflict"`` (the name exists with other bytes; nothing is
    written). The check and the creation are one atomic step (a hard link), so two
    workers can never overwrite each other. ``durable`` also fsyncs the data (survives a
    power cut, not only a killed process; much slower on many small files).
    """
    path = Path(path)
    fd, tmp = _temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write(fh, data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            return "written"
        except FileExistsError:
            try:
                same = path.stat().st_size == len(data) and path.read_bytes() == bytes(data)
            except OSError:
                same = False
            return "identical" if same else "conflict"
        except OSError:  # file systems without hard links: fall back to a plain rename
            if path.exists():
                same = path.read_bytes() == bytes(data)
                return "identical" if same else "conflict"
            os.replace(tmp, path)
            return "written"
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
