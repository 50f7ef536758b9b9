"""Convert jobs in worker processes, in order, surviving workers that die inside the parser.

A crashing C++ parser (segfault, abort) kills its worker and breaks a
``ProcessPoolExecutor`` (``BrokenProcessPool``); every job then in flight is re-run alone in
a fresh pool, and the one that breaks it again is reported as a crash. At most ``window``
jobs are in flight, so memory stays bounded however long the stream is.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

IN_FLIGHT_PER_WORKER = 8
CRASH_REASON = "worker process crashed while parsing (segfault/abort in the parser)"
PR_SET_PDEATHSIG = 1
"""Linux prctl option: a signal the kernel sends a process when its parent exits."""


def _die_with_parent(parent: int) -> None:
    """Worker initializer: exit when the parent dies, even by SIGKILL (no orphaned workers)."""
    import ctypes
    import os
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown still stops workers
        return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _pool(workers: int, context) -> ProcessPoolExecutor:
    import os

    return ProcessPoolExecutor(workers, mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),))


class CrashedJob:
    """Result placeholder for a job whose worker died."""

    reason = CRASH_REASON


def run_ordered(
    func: Callable[..., Any], jobs: Iterable[Any], args: tuple, workers: int
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(job, func(job, *args))`` in job order; a crashed job yields a :class:`CrashedJob`.

    ``workers=0`` runs in this process (no crash protection; for debugging).
    """
    if workers <= 0:
        for job in jobs:
            yield job, func(job, *args)
        return
    context = multiprocessing.get_context("spawn")
    window = workers * IN_FLIGHT_PER_WORKER
    pool = _pool(workers, context)
    pending: deque[tuple[Any, Future]] = deque()
    try:
        for job in jobs:
            pending.append((job, pool.submit(func, job, *args)))
            while len(pending) >= window:
                pool = yield from _drain_one(pending, pool, func, args, workers, context)
        while pending:
            pool = yield from _drain_one(pending, pool, func, args, workers, context)
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _drain_one(pending, pool, func, args, workers, context):
    job, future = pending[0]
    try:
        result = future.result()
    except BrokenProcessPool:
        pool.shutdown(wait=True, cancel_futures=True)
        suspects = list(pending)
        pending.clear()
        solo = _pool(1, context)  # one suspect at a time names the culprit
        try:
            for suspect, done in suspects:
                if done.done() and not done.cancelled() and done.exception() is None:
                    yield suspect, done.result()
                    continue
                try:
                    yield suspect, solo.submit(func, suspect, *args).result()
                except BrokenProcessPool:
                    yield suspect, CrashedJob()
                    solo.shutdown(wait=True, cancel_futures=True)
                    solo = _pool(1, context)
        finally:
            solo.shutdown(wait=True, cancel_futures=True)
        return _pool(workers, context)
    pending.popleft()
    yield job, result
    return pool
