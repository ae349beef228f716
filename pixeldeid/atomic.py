"""Atomic output: write to a temporary file in the target folder (unnamed where the system
has them), then give it its name."""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import logging
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

try:
    import fcntl
except ImportError:  # (no file locks: a temporary's writer is told by its pid alone)
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

TMP_PREFIX = ".pixeldeid-tmp-"


#: flags of a new temporary file, as :func:`tempfile.mkstemp` opens it (mode 0600)
_TMP_FLAGS = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
              | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


#: temporary names: a random part per process and a counter (O_EXCL makes each unique)
_NAMES = {"pid": None, "prefix": "", "count": itertools.count()}


def _temporary_name() -> str:
    """``p<pid>-<token>-<counter>``: ``<token>`` is drawn anew by each process, so a
    process tells its own temporaries from those of a dead process that had its pid (a
    container's runs are all pid 1), :func:`_is_mine`."""
    if _NAMES["pid"] != os.getpid():  # (a forked worker draws its own)
        _NAMES.update(pid=os.getpid(), prefix=f"p{os.getpid()}-{secrets.token_hex(6)}-",
                      count=itertools.count())
    return f"{_NAMES['prefix']}{next(_NAMES['count']):x}"


_OWNER = re.compile(r"p(\d+)-")


def _is_mine(name: str) -> bool:
    """Whether the temporary ``name`` was made by this very process (its token, not its
    pid: an earlier run in a container had the same pid)."""
    return _NAMES["pid"] == os.getpid() and name.startswith(TMP_PREFIX + _NAMES["prefix"])


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (a zombie counts: only for file
    systems without locks, :func:`_stale`)."""
    if pid == os.getpid():  # (not :func:`_is_mine`: a dead run that had our pid)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # (EPERM: another user's process, alive)
        return True
    return True


def _hold(fd: int, name: str) -> bool:
    """Lock the new temporary file ``fd`` (at ``name``) while it is open: the lock goes with
    its writer (killed, or a zombie not yet reaped), so a clean-up of another process tells
    a live writer from a dead one whatever their pids (:func:`_stale`). False when a
    clean-up took the file between its creation and the lock (and removes it)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # a clean-up holds it
        return False
    except OSError:  # a file system without locks: the pid in the name tells
        return True
    try:  # the clean-up locks, then removes: the name must still be this file
        return os.path.samestat(os.stat(name), os.fstat(fd))
    except FileNotFoundError:
        return False


#: how a clean-up opens a temporary to try its lock (never blocks on a FIFO, never follows)
_PROBE_FLAGS = os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _try_lock(path: Path) -> int | None:
    """An open descriptor of the regular file ``path`` holding its lock (its writer is
    gone), -1 when another process holds the lock (a live writer), None when that cannot
    be told (no locks here, not a regular file, not ours to open)."""
    if fcntl is None or not stat.S_ISREG(path.lstat().st_mode):
        return None
    for mode in (os.O_RDWR, os.O_RDONLY):  # (NFS locks a file open for writing only)
        try:
            fd = os.open(path, mode | _PROBE_FLAGS)
        except PermissionError:
            continue
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
            return -1
        except OSError:
            os.close(fd)
    return None


@contextlib.contextmanager
def _stale(path: Path) -> Iterator[bool]:
    """Whether the temporary ``path`` is left by a writer that is gone; while the caller
    removes it, its lock is held (a writer that made it just now and has not locked it
    yet gives the name up, :func:`_hold`). Names without a process (other writers, such
    as :mod:`pixeldeid.layout`'s) are always stale."""
    m = _OWNER.match(path.name[len(TMP_PREFIX):])
    if not m:
        yield True
        return
    if _is_mine(path.name):
        yield False
        return
    try:
        fd = _try_lock(path)
    except FileNotFoundError:  # (went with its folder, or its writer finished)
        fd = -1
    if fd is None:
        yield not _pid_alive(int(m.group(1)))
        return
    try:
        yield fd >= 0
    finally:
        if fd >= 0:
            os.close(fd)


def _mkstemp(folder: str, suffix: str) -> tuple[int, str]:
    """:func:`tempfile.mkstemp` without its per-call overhead, locked (:func:`_hold`):
    (fd, name)."""
    for _ in range(100):
        name = os.path.join(folder, f"{TMP_PREFIX}{_temporary_name()}{suffix}")
        try:
            fd = os.open(name, _TMP_FLAGS, 0o600)
        except FileExistsError:
            continue
        if _hold(fd, name):
            return fd, name
        os.close(fd)  # (a clean-up of another process removes it)
    raise FileExistsError(errno.EEXIST, "no usable temporary name", folder)


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s folder (made when missing): (fd, name). An
    OSError names ``path``, not the temporary name."""
    folder = os.fspath(path.parent)
    try:
        try:
            return _mkstemp(folder, path.suffix)
        except FileNotFoundError:  # the first file of its folder
            path.parent.mkdir(parents=True, exist_ok=True)
            return _mkstemp(folder, path.suffix)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def probe_writable(path: str | os.PathLike) -> None:
    """Raise OSError unless :func:`atomic_output` can write ``path`` (its folder is made
    when missing): a temporary file is created beside it and removed."""
    fd, tmp = _temporary_beside(Path(path))
    try:  # (removed while locked: another run's clean-up would take it otherwise)
        os.unlink(tmp)
    finally:
        os.close(fd)


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
            os.replace(tmp, path)  # (while open: its lock keeps other clean-ups off, _hold)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_output(path) as fh:
        fh.write(data)
    return Path(path)


def remove_stale_temporaries(folder: str | os.PathLike, *, recursive: bool = True,
                             owned_only: bool = False) -> int:
    """Delete temporary files and folders (with everything in them) left by an interrupted
    run below ``folder`` (in it only, unless ``recursive``); return the count. Links are
    removed, never followed. Those of a process still running (another batch writing into
    the same folder: its temporaries are locked, :func:`_stale`) are left alone;
    ``owned_only``: only those whose name says which process wrote them (a folder that is
    not ours)."""
    n = 0
    found = Path(folder).rglob(TMP_PREFIX + "*") if recursive else \
        Path(folder).glob(TMP_PREFIX + "*")
    for p in sorted(found):  # a folder before its entries
        if owned_only and not _OWNER.match(p.name[len(TMP_PREFIX):]):
            continue
        # (FileNotFoundError: went with its folder)
        with contextlib.suppress(OSError), _stale(p) as stale:
            if not stale:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            n += 1
    return n


class FileParts:
    """File contents given as bytes and slices of other files (:class:`pixeldeid.rawds.FileSlice`).

    Written with ``os.copy_file_range`` (else ``os.sendfile``) for the slices: their bytes
    are copied by the kernel, never read into Python. Each slice's source is checked to be
    the file that was parsed (same size and modification time) before it is copied.
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

    def write_fd(self, fd: int, folder: str | None = None) -> None:
        """Write everything at the position of the open file descriptor ``fd`` (a file
        written from its start: as few system calls as can be); ``folder``, the file's,
        lets the copies remember where ``os.copy_file_range`` fails (:func:`_copy`)."""
        pending: list[bytes] = []
        for chunk in self.chunks:
            if isinstance(chunk, bytes):
                pending.append(chunk)
                continue
            if pending:
                _write_all(fd, b"".join(pending))
                pending = []
            src = os.open(chunk.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                chunk.check(src)
                route = (os.path.dirname(chunk.path), folder) if folder else None
                _copy(src, fd, chunk.offset, chunk.length, route)
            finally:
                os.close(src)
        if pending:
            _write_all(fd, b"".join(pending))


def copy_range(src: int, dst: int, offset: int, length: int) -> None:
    """Copy ``length`` bytes at ``offset`` of ``src`` to the end of ``dst``."""
    os.lseek(dst, 0, os.SEEK_END)
    _copy(src, dst, offset, length)


#: (source folder, target folder) pairs where ``os.copy_file_range`` failed (other file
#: systems): their copies start with ``os.sendfile``
_NO_CFR: set[tuple[str, str]] = set()


def _copy(src: int, dst: int, offset: int, length: int,
          route: tuple[str, str] | None = None) -> None:
    """Copy ``length`` bytes at ``offset`` of ``src`` to ``dst`` at its position: by
    ``os.copy_file_range`` (one file system), else ``os.sendfile`` (across file systems),
    else plain reads and writes. ``route`` (source folder, target folder) remembers that
    ``copy_file_range`` fails there, and does not try it again."""
    done = 0
    cfr = hasattr(os, "copy_file_range") and route not in _NO_CFR
    how = "cfr" if cfr else "sendfile"
    while done < length:
        n = 0
        try:
            if how == "cfr":
                n = os.copy_file_range(src, dst, length - done, offset + done)
            elif how == "sendfile":
                n = os.sendfile(dst, src, offset + done, length - done)
            else:
                block = os.pread(src, min(length - done, 1 << 20), offset + done)
                n = _write_all(dst, block) if block else 0
        except (OSError, AttributeError):  # other file systems, old kernels, other systems
            if how == "rw":
                raise
            if how == "cfr" and route is not None and len(_NO_CFR) < 1024:
                _NO_CFR.add(route)
            how = "sendfile" if how == "cfr" else "rw"
            continue
        if n <= 0:
            raise OSError(f"source ended {length - done} bytes early")
        done += n


def _write_all(fd: int, data) -> int:
    """``os.write`` until all of ``data`` is written; return its length."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def _write(fd: int, data, folder: str) -> None:
    if isinstance(data, FileParts):
        data.write_fd(fd, folder)
    else:
        _write_all(fd, data)


def write_exclusive(path: str | os.PathLike, data, *, durable: bool = False) -> str:
    """Write ``data`` to ``path`` atomically unless another file already took the name.

    Returns ``"written"``, ``"identical"`` (the name exists with the same bytes: a rerun
    or an exact duplicate) or ``"conflict"`` (the name exists with other bytes; nothing is
    written). The check and the creation are one atomic step (a hard link), so two
    workers can never overwrite each other. ``durable`` also fsyncs the data (survives a
    power cut, not only a killed process; much slower on many small files).

    The data goes to an unnamed temporary file in the target folder where the system has
    them (:class:`_Temporary`): no directory entry is made or removed but the output's,
    so workers writing into one folder do not wait on each other, and a killed process
    leaves nothing behind.

    ``data`` is bytes, :class:`FileParts`, or a :class:`StagedFile` of ``path`` (written
    ahead into its temporary file, by a :class:`BackgroundWriter`): then this waits for
    it, raises what its writing raised, and links it into place (``durable`` was its own).
    """
    path = Path(path)
    if isinstance(data, StagedFile):
        if data.path != path:
            raise ValueError(f"{data.path} was staged, not {path}")
        try:
            data.wait()
            return data.temporary.link(path)
        finally:
            data.discard()
    temporary = _Temporary(path)
    try:
        _write(temporary.fd, data, os.path.dirname(path))
        if durable:
            os.fsync(temporary.fd)
        return temporary.link(path)
    finally:
        temporary.close()


#: where unnamed temporary files cannot be made or linked (other file systems, no /proc):
#: folders, or "" for everywhere (also with ``PIXELDEID_UNNAMED_TEMPORARIES=0``)
_NO_UNNAMED: set[str] = {""} if os.environ.get("PIXELDEID_UNNAMED_TEMPORARIES") == "0" else set()

#: errors of ``open(O_TMPFILE)`` on file systems without unnamed files
_UNNAMED_REFUSED = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOTSUP}


class _Temporary:
    """A new temporary file in the folder of ``path`` (made when missing), open for reading
    and writing at :attr:`fd`, to :meth:`link` into place as ``path``.

    Unnamed (Linux ``O_TMPFILE``, :attr:`name` None) where the file system has them, else
    a named file (:data:`TMP_PREFIX`) beside ``path``. :meth:`close` closes it and
    removes the name; a linked output stays (a hard link of its own). An OSError names
    ``path``, not the temporary name.
    """

    __slots__ = ("fd", "name")

    def __init__(self, path: Path) -> None:
        self.name: str | None = None
        fd = _open_unnamed(path)
        if fd is None:
            fd, self.name = _temporary_beside(path)
        self.fd = fd

    def link(self, path: Path) -> str:
        """Give the file the name ``path`` unless another file has it: ``"written"``, or
        ``"identical"``/``"conflict"`` when the name was taken (same bytes or not)."""
        try:
            if self.name is None:
                try:
                    _link_unnamed(self.fd, path)
                except FileExistsError:
                    raise
                except OSError:  # no /proc, or a file system that refuses: name it first
                    _NO_UNNAMED.add(os.fspath(path.parent))
                    self._give_name(path)
            if self.name is not None:
                _link_named(self.name, path)
            return "written"
        except FileExistsError:
            return "identical" if self._same_as(path) else "conflict"

    def close(self) -> None:
        """Close the file and remove its temporary name (twice is harmless)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name)
            self.name = None

    def read(self) -> bytes:
        """Everything written so far."""
        return os.pread(self.fd, os.fstat(self.fd).st_size, 0)

    def _give_name(self, path: Path) -> None:
        """Copy the unnamed file into a new named temporary file beside ``path`` (synced:
        the unnamed one may have been, for a durable write)."""
        fd, name = _temporary_beside(path)
        try:
            _copy(self.fd, fd, 0, os.fstat(self.fd).st_size)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(name)
            raise
        os.close(self.fd)
        self.fd, self.name = fd, name

    def _same_as(self, path: Path) -> bool:
        try:
            return (path.stat().st_size == os.fstat(self.fd).st_size
                    and path.read_bytes() == self.read())
        except OSError:
            return False


def _open_unnamed(path: Path) -> int | None:
    """An unnamed new file in ``path``'s folder (made when missing), or None where the
    system or its file system has none."""
    flag = getattr(os, "O_TMPFILE", 0)
    folder = os.fspath(path.parent)
    if not flag or "" in _NO_UNNAMED or folder in _NO_UNNAMED:
        return None
    flags = flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            return os.open(folder, flags, 0o600)
        except FileNotFoundError:  # the first file of its folder
            path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(folder, flags, 0o600)
    except OSError as exc:
        if exc.errno not in _UNNAMED_REFUSED:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        if len(_NO_UNNAMED) < 1024:
            _NO_UNNAMED.add(folder)
        return None


def _link_unnamed(fd: int, path: Path) -> None:
    """Give the unnamed file ``fd`` the name ``path`` (FileExistsError when taken)."""
    folder = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    try:  # linkat(AT_SYMLINK_FOLLOW) of its /proc link: a directory fd makes os.link use it
        os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=folder, follow_symlinks=True)
    except FileNotFoundError:
        if not os.path.isdir("/proc/self/fd"):
            _NO_UNNAMED.add("")
        raise OSError(errno.ENOENT, "cannot link an unnamed file", str(path)) from None
    finally:
        os.close(folder)


def _link_named(name: str, path: Path) -> None:
    """Give the temporary file ``name`` the name ``path`` too (FileExistsError when taken);
    a plain rename on file systems without hard links."""
    try:
        os.link(name, path)
    except FileExistsError:
        raise
    except OSError:
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(name, path)


# -- writing ahead in a background thread -------------------------------------------------
class WriteJob:
    """One call handed to a :class:`BackgroundWriter`: its result, once it has run."""

    __slots__ = ("fn", "args", "_done", "_result", "_error", "cancelled")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn, self.args = fn, args
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        #: True when the writer was closed before the job ran (it did nothing)
        self.cancelled = False

    def done(self) -> bool:
        """Whether the job has run (or was cancelled)."""
        return self._done.is_set()

    def wait(self) -> None:
        """Wait until the job has run (or was cancelled)."""
        self._done.wait()

    def result(self) -> Any:
        """Wait for the job; return what the call returned or raise what it raised."""
        self._done.wait()
        if self.cancelled:
            raise OSError(errno.ECANCELED, "the write was cancelled: its writer was closed")
        if self._error is not None:
            raise self._error
        return self._result

    def _run(self) -> None:
        try:
            self._result = self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc
        self._done.set()

    def _cancel(self) -> None:
        self.cancelled = True
        self._done.set()


class BackgroundWriter:
    """One background thread that runs jobs (writes) one at a time, in the order submitted.

    The system calls of a write (``copy_file_range``, ``sendfile``) release the GIL, so
    the caller prepares the next file meanwhile. Each job hands back its result or its
    exception (:class:`WriteJob`); the thread goes on with the next job either way.
    :meth:`close` waits for the job running (a write is never cut short); the jobs not
    started are run first, or dropped with ``cancel=True``.

    Parameters
    ----------
    name : str, optional
        The thread's name.

    Examples
    --------
    >>> with BackgroundWriter() as writer:  # doctest: +SKIP
    ...     staged = StagedFile(out / "a.dcm", data, writer)  # the copy runs meanwhile
    ...     prepare_the_next_file()
    ...     status = write_exclusive(out / "a.dcm", staged)  # waits for it, links it
    """

    def __init__(self, name: str = "pixeldeid-writer") -> None:
        self._cond = threading.Condition()
        self._todo: collections.deque[WriteJob] = collections.deque()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> WriteJob:
        """Queue ``fn(*args)`` after the jobs submitted before; return its :class:`WriteJob`.
        The caller bounds the queue (it waits for its oldest jobs)."""
        job = WriteJob(fn, args)
        with self._cond:
            if self._closing:
                raise RuntimeError("the background writer is closed")
            self._todo.append(job)
            self._cond.notify()
        return job

    def close(self, *, cancel: bool = False) -> None:
        """Stop the thread and wait for it (the job running always finishes). The jobs not
        started are run first, or dropped with ``cancel=True`` (their
        :meth:`WriteJob.result` raises OSError)."""
        with self._cond:
            self._closing = True
            if cancel and self._todo:
                logger.debug("background writer: %d job(s) not started, dropped",
                             len(self._todo))
                for job in self._todo:
                    job._cancel()
                self._todo.clear()
            self._cond.notify()
        self._thread.join()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and not self._todo:
                    self._cond.wait()
                if not self._todo:  # closing
                    return
                job = self._todo.popleft()
            job._run()


class StagedFile:
    """A file written ahead into a temporary file in the folder of ``path``
    (:class:`_Temporary`), for :func:`write_exclusive` to link into place later.

    The temporary file is made and the bytes before the first slice are written here; the
    slices' sources are opened and checked (:meth:`pixeldeid.rawds.FileSlice.check`) here
    too, then a :class:`BackgroundWriter` copies the slices (and writes the bytes after
    them; fsyncs when ``durable``): the one long system call of a write runs while this
    thread goes on. Nothing is visible at ``path`` until :func:`write_exclusive`; a staged
    file that is not written is :meth:`discard` -ed (its temporary file removed).

    Parameters
    ----------
    path : path
        Where the file will go.
    data : bytes or FileParts
        Its contents.
    writer : BackgroundWriter
        The thread that copies the slices.
    durable : bool, optional
        Fsync the temporary file (see :func:`write_exclusive`).

    Raises
    ------
    OSError
        The temporary file cannot be made or written, or a slice's source cannot be
        opened or has changed since it was parsed (nothing is left behind).
    """

    def __init__(self, path: str | os.PathLike, data, writer: BackgroundWriter, *,
                 durable: bool = False) -> None:
        self.path = Path(path)
        self._size = len(data)
        self._fds: list[int] = []  # the slices' sources
        self._job: WriteJob | None = None
        self._discarded = False
        self.temporary = _Temporary(self.path)
        fd = self.temporary.fd
        try:
            chunks = data.chunks if isinstance(data, FileParts) else [data]
            first = next((i for i, c in enumerate(chunks) if not isinstance(c, bytes)),
                         len(chunks))
            _write_all(fd, b"".join(chunks[:first]))
            rest: list = []  # bytes, or (source fd, offset, length, route)
            for chunk in chunks[first:]:
                if isinstance(chunk, bytes):
                    rest.append(chunk)
                    continue
                src = os.open(chunk.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                self._fds.append(src)
                chunk.check(src)
                route = (os.path.dirname(chunk.path), os.fspath(self.path.parent))
                rest.append((src, chunk.offset, chunk.length, route))
            if rest or durable:
                self._job = writer.submit(_write_rest, fd, rest, durable)
        except BaseException:
            self.discard()
            raise

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        """What was written (read back from the temporary file, once the writer is done)."""
        if self._job is not None:
            self._job.wait()
        return self.temporary.read()

    def ready(self) -> bool:
        """Whether the writer's part is done (:meth:`wait` will not block)."""
        return self._job is None or self._job.done()

    def wait(self) -> None:
        """Wait for the writer; raise what its part raised. The sources are closed."""
        try:
            if self._job is not None:
                self._job.result()
        finally:
            self._close()

    def discard(self) -> None:
        """Close and remove the temporary file (after the writer's part, which is never
        cut short); an output put into place stays (a hard link of its own)."""
        if self._discarded:
            return
        self._discarded = True
        if self._job is not None:
            self._job.wait()
        self._close()
        self.temporary.close()

    def _close(self) -> None:
        while self._fds:
            os.close(self._fds.pop())


def _write_rest(fd: int, rest: list, durable: bool) -> None:
    """The background part of a :class:`StagedFile`: ``rest`` at the end of ``fd``."""
    for item in rest:
        if isinstance(item, bytes):
            _write_all(fd, item)
        else:
            src, offset, length, route = item
            _copy(src, fd, offset, length, route)
    if durable:
        os.fsync(fd)
