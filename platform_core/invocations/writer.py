"""One writer for the invocation history, committing concurrent writes together.

Under load many invocations finish at once. Each writing from its own thread would make them
queue on the database's write lock (SQLite has one writer; PostgreSQL pays a commit per row).
Instead, writes go through one queue to one thread that applies everything waiting in one
transaction (group commit), each write in its own savepoint so that one failure cannot undo
the others. Every caller still waits for its own write to be committed before it answers:
nothing is acknowledged that is not stored.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections, transaction

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 256


class RecordWriter:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-writer")
        self._queues: dict[int, asyncio.Queue[tuple[Callable[[], Any], asyncio.Future[Any]]]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def write(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` (sync ORM code) in the writer's next transaction; its result."""
        loop = asyncio.get_running_loop()
        key = id(loop)
        queue = self._queues.get(key)
        if queue is None or self._tasks[key].done():
            queue = self._queues[key] = asyncio.Queue()
            # In a context of its own: not in the name of the invocation that happened to start it (log ids).
            self._tasks[key] = loop.create_task(self._drain(queue), context=contextvars.Context())
        future: asyncio.Future[T] = loop.create_future()
        queue.put_nowait((operation, future))
        return await asyncio.shield(future)

    async def _drain(self, queue: asyncio.Queue[tuple[Callable[[], Any], asyncio.Future[Any]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < MAX_BATCH:
                batch.append(queue.get_nowait())
            try:
                results = await loop.run_in_executor(self._executor, _apply, [op for op, _ in batch])
            except Exception as exc:  # the whole transaction failed: every caller learns it
                log.exception("writing %d invocation record(s) failed", len(batch))
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def _apply(operations: list[Callable[[], Any]]) -> list[Any]:
    close_old_connections()  # a connection the database dropped is replaced, not reused
    results: list[Any] = []
    with transaction.atomic():
        for operation in operations:
            try:
                with transaction.atomic():  # a savepoint: one failed write leaves the others in
                    results.append(operation())
            except Exception as exc:
                results.append(exc)
    return results


record_writer = RecordWriter()
