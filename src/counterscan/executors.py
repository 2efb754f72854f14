"""Where a scan's partitions run: in this process, in a local process pool, or on a Dask cluster."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

from counterscan.errors import ExternalError, UserError
from counterscan.records import ListingToScan
from counterscan.scan_work import MatchContext, PartitionResult, match_partition

Partition = tuple[Sequence[ListingToScan], dict[str, dict[str, bytes]]]


class Executor(Protocol):
    workers: int

    def start(self, context: MatchContext) -> None: ...

    def submit(self, partitions: Sequence[Partition]) -> Any:
        """Start matching ``partitions``; returns a handle for :meth:`gather`."""
        ...

    def gather(self, handle: Any) -> list[PartitionResult]: ...

    def close(self) -> None: ...


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

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._context: MatchContext | None = None

    def start(self, context: MatchContext) -> None:
        self._context = context

    def submit(self, partitions: Sequence[Partition]) -> list[Future[PartitionResult]]:
        assert self._context is not None
        if len(partitions) == 1:  # nothing to share out: skip the pool (and starting it)
            items, cached = partitions[0]
            done: Future[PartitionResult] = Future()
            done.set_result(match_partition(self._context, items, cached))
            return [done]
        if self._pool is None:
            # Spawned, not forked: a fork of a process whose OpenMP (FAISS) threads are running can hang.
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))

        return [self._pool.submit(_run_in_worker, self._context, items, cached) for items, cached in partitions]

    def gather(self, handle: list[Future[PartitionResult]]) -> list[PartitionResult]:
        return [future.result() for future in handle]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """Partitions as Dask tasks; the context is scattered to every worker once per scan."""

    def __init__(self, scheduler: str | None = None, *, client: Any = None) -> None:
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


def make_executor(kind: str, *, workers: int | None = None, scheduler: str | None = None) -> Executor:
    if kind == "local":
        count = workers if workers is not None else (os.cpu_count() or 1)
        if count < 1:
            raise UserError(f"--workers must be at least 1, not {count}")
        return InlineExecutor() if count == 1 else ProcessExecutor(count)
    if kind == "dask":
        return DaskExecutor(scheduler)
    raise UserError(f"unknown executor {kind!r} (local or dask)")
