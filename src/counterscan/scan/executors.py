"""Where a scan's partitions run: in this process, in a local process pool, or on a Dask cluster."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

from counterscan.errors import ExternalError, UserError
from counterscan.records import ListingToScan
from counterscan.scan.partition import MatchContext, PartitionResult, match_partition
from counterscan.store.holders import die_with_parent

Partition = tuple[Sequence[ListingToScan], dict[str, dict[str, bytes]]]


class Executor(Protocol):
    workers: int

    def start(self, context: MatchContext) -> None: ...

    def submit(self, partitions: Sequence[Partition]) -> Any:
        """Start matching ``partitions``; returns a handle for :meth:`gather`."""
        ...

    def gather(self, handle: Any) -> list[PartitionResult]: ...

    def close(self) -> None: ...


def _start_worker(threads: int, parent: int) -> None:
    die_with_parent(parent)
    limit_native_threads(threads)


def limit_native_threads(threads: int) -> None:
    """Cap the native thread pools of this process (OpenMP of FAISS, OpenCV, BLAS) at ``threads``.

    Called in each scan worker process, never in the caller's: with one worker per core, every
    library's own pool of one thread per core only oversubscribes the cores (measured: one thread
    per worker cut a scan's CPU time by 11-21%). The environment variables reach libraries that
    start their pools later (onnxruntime reads OMP_NUM_THREADS when a session is made).
    """
    import cv2
    import faiss
    from threadpoolctl import threadpool_limits

    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    threadpool_limits(threads)
    faiss.omp_set_num_threads(threads)
    cv2.setNumThreads(threads)


def native_threads() -> dict[str, int]:
    """The thread counts :func:`limit_native_threads` sets, as this process has them now."""
    import cv2
    import faiss

    return {"faiss": int(faiss.omp_get_max_threads()), "opencv": int(cv2.getNumThreads())}


class InlineExecutor:
    """Runs partitions here, one after another."""

    workers = 1

    def __init__(self) -> None:
        self._context: MatchContext | None = None

    def start(self, context: MatchContext) -> None:
        self._context = context

    def submit(self, partitions: Sequence[Partition]) -> list[PartitionResult]:
        assert self._context is not None
        return [match_partition(self._context, items, cached) for items, cached in partitions]

    def gather(self, handle: list[PartitionResult]) -> list[PartitionResult]:
        return handle

    def close(self) -> None:
        self._context = None


def _run_in_worker(
    context: MatchContext, items: Sequence[ListingToScan], cached: dict[str, dict[str, bytes]]
) -> PartitionResult:
    return match_partition(context, items, cached)


class ProcessExecutor:
    """A local pool of worker processes; each keeps its indexes between partitions."""

    def __init__(self, workers: int, *, threads: int = 1) -> None:
        self.workers = workers
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None
        self._context: MatchContext | None = None
        self.pools_started = 0
        """How many times worker processes were started (a small scan starts none)."""

    def start(self, context: MatchContext) -> None:
        self._context = context

    def submit(self, partitions: Sequence[Partition]) -> list[Future[PartitionResult]]:
        assert self._context is not None
        if len(partitions) == 1:  # nothing to share out: skip the pool (and starting it)
            items, cached = partitions[0]
            done: Future[PartitionResult] = Future()
            done.set_result(match_partition(self._context, items, cached))
            return [done]
        pool = self.pool()
        return [pool.submit(_run_in_worker, self._context, items, cached) for items, cached in partitions]

    def pool(self) -> ProcessPoolExecutor:
        """The worker processes, started on first use."""
        if self._pool is None:
            # Spawned, not forked: a fork of a process whose OpenMP (FAISS) threads are running can hang.
            # Workers end with the scan, even when it is killed with -9 (no orphans hold memory or cores).
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self.threads, os.getpid()),
            )
            self.pools_started += 1
        return self._pool

    def gather(self, handle: list[Future[PartitionResult]]) -> list[PartitionResult]:
        return [future.result() for future in handle]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """Partitions as Dask tasks; the context is scattered to every worker once per scan."""

    def __init__(self, scheduler: str | None = None, *, client: Any = None, threads: int | None = 1) -> None:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - distributed is a dependency
            raise UserError("the dask executor needs the 'distributed' package") from exc
        try:
            self._client = client if client is not None else Client(scheduler, timeout="30s")

        except OSError as exc:
            raise ExternalError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        self._own_client = client is None
        self.workers = max(1, len(self._client.scheduler_info().get("workers", {})))
        if threads is not None:  # None: leave the cluster's workers as their operator set them
            self._client.run(limit_native_threads, threads)
        self._context: Any = None

    def start(self, context: MatchContext) -> None:
        self._context = self._client.scatter(context, broadcast=True)

    def submit(self, partitions: Sequence[Partition]) -> list[Any]:
        return [
            self._client.submit(match_partition, self._context, items, cached, pure=False)
            for items, cached in partitions
        ]

    def gather(self, handle: list[Any]) -> list[PartitionResult]:
        return [future.result() for future in handle]

    def close(self) -> None:
        if self._own_client:
            self._client.close()


def make_executor(kind: str, *, workers: int | None = None, scheduler: str | None = None, threads: int = 1) -> Executor:
    """``threads``: native threads per worker process (``scan_worker_threads``)."""
    if kind == "local":
        count = workers if workers is not None else (os.cpu_count() or 1)
        if count < 1:
            raise UserError(f"--workers must be at least 1, not {count}")
        return InlineExecutor() if count == 1 else ProcessExecutor(count, threads=threads)
    if kind == "dask":
        return DaskExecutor(scheduler, threads=threads)
    raise UserError(f"unknown executor {kind!r} (local or dask)")
