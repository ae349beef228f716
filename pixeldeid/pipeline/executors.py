"""Executors: where the worker function runs. A small registry with lazy imports.

``local``
    A process pool on this machine (``-j N``; ``-j 1`` is one worker process).
``dask``
    A Dask distributed cluster: ``--scheduler tcp://HOST:8786`` (a cluster started by
    ``dask scheduler``/``dask worker``, or dask-jobqueue on Slurm), or a LocalCluster of
    ``-j N`` single-threaded worker processes when no address is given. Needs the
    ``dask`` extra.

Every executor yields ``(item, result)`` pairs as they finish (any order). A worker that
dies (killed, out of memory, a crash in a decoder) yields a result with status ``lost``;
the runner then does each lost item alone in a fresh process (:func:`run_isolated`).

Each worker process's OCR sessions get ``CPUs / workers`` intra-op threads
(``PIXELDEID_OCR_THREADS``, unless set by the user; on a Dask cluster: the worker's CPUs /
its threads), so N workers share the cores instead of each starting a thread per core;
the OCR results do not depend on the thread count. A forked worker builds its own engines
(the parent's onnxruntime sessions do not survive fork).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import DeidError, MissingDependencyError, ProfileError

logger = logging.getLogger(__name__)

__all__ = ["Executor", "LocalExecutor", "DaskExecutor", "EXECUTORS", "get_executor",
           "available_executors", "run_isolated", "run_in_order"]

Work = Callable[[dict, dict], dict]


class Executor:
    """Base class: run ``fn(item, settings)`` for each item."""

    name = ""
    extra = ""

    def __init__(self, jobs: int = 1, scheduler: str | None = None) -> None:
        self.jobs = max(1, int(jobs))
        self.scheduler = scheduler

    @classmethod
    def is_available(cls) -> bool:
        return True

    def map_unordered(self, fn: Work, items: Sequence[dict],
                      settings: dict) -> Iterator[tuple[dict, dict]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lost(item: dict, exc: BaseException) -> dict:
    return {"id": item["id"], "status": "lost",
            "reason": f"worker failed: {type(exc).__name__}: {exc}".splitlines()[0]}


def _warm_caches() -> None:
    """Load the PS3.15, IOD and vocabulary tables once, so forked workers share them."""
    from ..iodtypes import warm
    from ..standard import rules, safe_private
    from ..textclean import dicom_vocabulary

    rules()
    safe_private()
    dicom_vocabulary()
    warm()


OCR_THREADS_ENV = "PIXELDEID_OCR_THREADS"


def cpus() -> int:
    """CPUs this process may run on."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def ocr_threads(workers: int, cores: int | None = None) -> str:
    """Intra-op threads of each worker's OCR session: the cores shared out among workers.

    ``PIXELDEID_OCR_THREADS`` set by the user wins. The OCR results do not depend on it.
    """
    import os

    user = os.environ.get(OCR_THREADS_ENV, "").strip()
    if user:
        return user
    return str(max(1, (cores or cpus()) // max(1, workers)))


#: engines a forked worker inherited: kept alive, never used nor freed (freeing an
#: onnxruntime session whose pool threads stayed in the parent hangs the worker)
_INHERITED: list = []


def _forget_inherited_engines() -> None:
    """In a forked worker: stop using the engines the parent had built (an onnxruntime
    session's thread pool does not survive fork, and its thread count was the parent's)."""
    import sys

    from . import stages

    _INHERITED.append(dict(stages._CACHE))
    stages._CACHE.clear()
    ocr = sys.modules.get("pixeldeid.burnedin.ocr")
    if ocr is not None:
        _INHERITED.append(dict(ocr._CACHE))
        ocr._CACHE.clear()


#: how often a worker process looks whether its parent still lives (seconds)
PARENT_CHECK_S = 1.0


def die_with_parent() -> None:
    """In a pool's worker process: exit when the process that started it is gone (killed
    with SIGKILL, or by the OOM killer: the pool's shutdown never comes, and the workers
    would wait forever, holding the caller's stdout open: ``pixeldeid dicom ... | tee``
    would never end). A daemon thread compares ``os.getppid()`` once a second."""
    import os
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="pixeldeid-parent-watch", daemon=True).start()


def _set_ocr_threads(value: str) -> None:
    """Pool initializer: the OCR thread count of this worker process, fresh engines."""
    import os

    die_with_parent()
    os.environ[OCR_THREADS_ENV] = value
    _forget_inherited_engines()


def _dask_worker_threads(dask_worker=None) -> None:
    """On a Dask worker: share the host's cores among the worker's threads, fresh engines."""
    import os

    _forget_inherited_engines()
    if os.environ.get(OCR_THREADS_ENV, "").strip():
        return
    nthreads = getattr(getattr(dask_worker, "state", dask_worker), "nthreads", 1) or 1
    os.environ[OCR_THREADS_ENV] = str(max(1, cpus() // max(1, int(nthreads))))


class LocalExecutor(Executor):
    """A process pool on this machine (``fork`` on Linux), also for ``jobs=1``: every item
    runs in a worker, so one that crashes a decoder or is killed for memory costs that
    item (``lost``, then :func:`run_isolated`), never the run."""

    name = "local"

    def map_unordered(self, fn: Work, items: Sequence[dict],
                      settings: dict) -> Iterator[tuple[dict, dict]]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        _warm_caches()
        todo = iter(items)
        window = self.jobs * 4  # a bounded window of submitted items keeps memory flat
        exhausted = False
        while not exhausted:  # a new pool after a worker died, for the items left
            with _worker_pool(self.jobs) as pool:
                pending: dict[Any, dict] = {}
                broken = False
                while True:
                    while not broken and len(pending) < window:
                        item = next(todo, None)
                        if item is None:
                            exhausted = True
                            break
                        try:
                            pending[pool.submit(fn, item, settings)] = item
                        except BrokenProcessPool as exc:
                            broken = True
                            yield item, _lost(item, exc)
                    if not pending:
                        break
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        item = pending.pop(fut)
                        try:
                            yield item, fut.result()
                        except Exception as exc:  # noqa: BLE001 - a dead worker
                            broken = broken or isinstance(exc, BrokenProcessPool)
                            yield item, _lost(item, exc)


def fork_context():
    """The start method of every worker pool: ``fork`` on Linux (workers start in
    milliseconds with the parent's warm tables), else the platform's default (None)."""
    import multiprocessing as mp
    import sys

    if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods():
        return mp.get_context("fork")
    return None


def _worker_pool(jobs: int):
    """A process pool of ``jobs`` workers (:func:`fork_context`), each with its share of the
    cores for OCR."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs, mp_context=fork_context(),
                               initializer=_set_ocr_threads, initargs=(ocr_threads(jobs),))


class DaskExecutor(Executor):
    """Dask distributed: a scheduler address, or a LocalCluster of ``jobs`` processes."""

    name = "dask"
    extra = "dask"

    def __init__(self, jobs: int = 1, scheduler: str | None = None, *,
                 processes: bool = True) -> None:
        super().__init__(jobs, scheduler)
        if not self.is_available():
            raise MissingDependencyError("the dask executor", "dask", "distributed")
        import sys

        import dask
        from distributed import Client, LocalCluster

        self._cluster = None
        if scheduler:
            try:
                self._client = Client(scheduler)
            except (OSError, TimeoutError, ValueError) as exc:
                raise DeidError(f"cannot reach the Dask scheduler: {' '.join(str(exc).split())}",
                                scheduler) from None
        else:
            # on Linux the local workers are forked from this process, like the local pool:
            # they start in milliseconds with the PS3.15 and vocabulary tables already loaded
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            if processes and method == "fork":
                _warm_caches()
            with dask.config.set({"distributed.worker.multiprocessing-method": method,
                                  # the statistical profiler samples the task thread every
                                  # 10 ms: it took ~25 % of each worker on a 2-core machine
                                  "distributed.worker.profile.enabled": False}):
                kw = {"env": {OCR_THREADS_ENV: ocr_threads(self.jobs)}} if processes else {}
                self._cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1,
                                             processes=processes, dashboard_address=None,
                                             silence_logs=logging.ERROR, **kw)
            self._client = Client(self._cluster)
        if scheduler or processes:  # each worker: its share of the cores, fresh engines
            self._client.run(_dask_worker_threads)

    @classmethod
    def is_available(cls) -> bool:
        import importlib.util

        return all(importlib.util.find_spec(m) is not None for m in ("dask", "distributed"))

    def map_unordered(self, fn: Work, items: Sequence[dict],
                      settings: dict) -> Iterator[tuple[dict, dict]]:
        from distributed import as_completed

        if not items:
            return
        shared = self._client.scatter(settings, broadcast=True)
        futures = {self._client.submit(fn, item, shared, pure=False,
                                       key=f"pixeldeid-item-{item['id']}-{id(items)}"): item
                   for item in items}
        for fut in as_completed(futures):
            item = futures[fut]
            try:
                yield item, fut.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker (KilledWorker)
                yield item, _lost(item, exc)
            finally:
                fut.release()

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def run_isolated(fn: Work, item: dict, settings: dict) -> dict:
    """Run one item alone in a fresh worker process.

    For items whose worker died: the ones that died with a crashing neighbour finish
    here; an item that kills its worker again is quarantined (a crash in a decoder on a
    hostile file must not stop every later run).
    """
    with _worker_pool(1) as pool:
        try:
            return pool.submit(fn, item, settings).result()
        except Exception as exc:  # noqa: BLE001 - the worker died on this item
            return {"id": item["id"], "status": "quarantined",
                    "reason": f"the worker process died on this input ({type(exc).__name__}); "
                              "a crash in a decoder or out of memory"}


def run_in_order(fn: Work, items: Sequence[dict], settings: dict) -> Iterator[tuple[dict, dict]]:
    """Run ``items`` one after another, in order, in one worker process (for items whose
    order decides the outcome: several inputs with one SOP Instance UID). An item whose
    worker dies is run again alone (:func:`run_isolated`) before the next one starts."""
    from concurrent.futures.process import BrokenProcessPool

    _warm_caches()
    todo = list(items)
    i = 0
    while i < len(todo):
        with _worker_pool(1) as pool:
            while i < len(todo):
                item = todo[i]
                i += 1
                try:
                    res = pool.submit(fn, item, settings).result()
                except BrokenProcessPool:
                    yield item, run_isolated(fn, item, settings)
                    break  # a new worker for the rest
                except Exception as exc:  # noqa: BLE001 - as map_unordered reports it
                    res = _lost(item, exc)
                yield item, res


EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor, "dask": DaskExecutor}


def available_executors() -> list[str]:
    return [n for n, c in EXECUTORS.items() if c.is_available()]


def get_executor(name: str = "local", jobs: int = 1, scheduler: str | None = None,
                 **kwargs: Any) -> Executor:
    """Build an executor by name; unknown names give "did you mean"."""
    import difflib

    cls = EXECUTORS.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, list(EXECUTORS), n=2, cutoff=0.4)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ProfileError(f"unknown executor {name!r}{hint} (known: {', '.join(EXECUTORS)})")
    if scheduler and name != "dask":
        raise ProfileError("--scheduler needs --executor dask")
    return cls(jobs, scheduler, **kwargs)
