"""One writer for the invocation history, committing concurrent writes together.

Under load many invocations start and finish at once. Each writing from its own thread would
make them queue on the database's write lock (SQLite has one writer; PostgreSQL pays a commit
per transaction) and pay the ORM's per-object work. Instead, writes go through one queue to one
thread that applies everything waiting in one transaction (group commit): the invocation rows
of the batch as one statement per kind (``executemany``: an INSERT for the accepted ones, an
upsert for the finished ones: final state, timings and the whole trace document), then any other
operation. If a batch statement fails, its rows are retried one by one, each in its own
savepoint, so that one bad row cannot spoil the others. Every caller still waits for its own
write to be committed before it answers: nothing is acknowledged that is not stored.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Field

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 256

RowKind = Literal["start", "finish"]


@dataclass(frozen=True)
class Row:
    """One invocation row to write: ``values`` by column name (``Invocation`` fields)."""

    kind: RowKind
    values: dict[str, Any]


_Operation = Callable[[], Any] | Row


class RecordWriter:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-writer")
        self._queues: dict[int, asyncio.Queue[tuple[_Operation, asyncio.Future[Any]]]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # BENCH_SKIP_HISTORY (benchmark only): rows are dropped, to measure what writing them costs.
        self.skip_rows: bool = settings.PLATFORM_BENCH_SKIP_HISTORY

    async def write(self, operation: Callable[[], T]) -> T:
        """Run ``operation`` (sync ORM code) in the writer's next transaction; its result."""
        return await self._submit(operation)

    async def write_row(self, row: Row) -> None:
        """Write one invocation row in the writer's next batch statement."""
        if self.skip_rows:
            return
        await self._submit(row)

    async def _submit(self, operation: _Operation) -> Any:
        loop = asyncio.get_running_loop()
        key = id(loop)
        queue = self._queues.get(key)
        if queue is None or self._tasks[key].done():
            queue = self._queues[key] = asyncio.Queue()
            # In a context of its own: not in the name of the invocation that happened to start it (log ids).
            self._tasks[key] = loop.create_task(self._drain(queue), context=contextvars.Context())
        future: asyncio.Future[Any] = loop.create_future()
        queue.put_nowait((operation, future))
        return await asyncio.shield(future)

    async def _drain(self, queue: asyncio.Queue[tuple[_Operation, asyncio.Future[Any]]]) -> None:
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


def _apply(operations: list[_Operation]) -> list[Any]:
    """The batch in one transaction. The writer keeps its connection between batches
    (reconnecting per batch cost more than the writes); one the database dropped (a restart, a
    failover) is replaced and the batch, rolled back with it, written again on the new one."""
    try:
        return _apply_in_transaction(operations)
    except (OperationalError, InterfaceError):
        if connection.vendor == "sqlite":
            raise  # a file, not a server: e.g. locked past its busy timeout, the same again would fail alike
        connection.close()  # with a pool: handed back, and the pool discards a broken one
        return _apply_in_transaction(operations)


def _apply_in_transaction(operations: list[_Operation]) -> list[Any]:
    results: list[Any] = [None] * len(operations)
    with transaction.atomic():
        for kind in ("start", "finish"):
            indexes = [i for i, op in enumerate(operations) if isinstance(op, Row) and op.kind == kind]
            if indexes:
                for i, outcome in zip(indexes, _write_rows(kind, [operations[i] for i in indexes]), strict=True):  # type: ignore[misc]
                    results[i] = outcome
        for i, operation in enumerate(operations):
            if not isinstance(operation, Row):
                results[i] = _in_savepoint(operation)
    return results


def _in_savepoint(operation: Callable[[], Any]) -> Any:
    try:
        with transaction.atomic():  # a savepoint: one failed write leaves the others in
            return operation()
    except Exception as exc:
        return exc


def _write_rows(kind: RowKind, rows: Sequence[Row]) -> list[Any]:
    """All ``rows`` in one statement; if that fails, each in a savepoint of its own."""
    columns = list(rows[0].values)
    sql = _statement(kind, columns)
    params = [_params(row, columns) for row in rows]
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, params)
        return [None] * len(rows)
    except Exception:
        if len(rows) == 1:
            raise
        log.warning("a batch of %d %s row(s) failed; writing them one by one", len(rows), kind, exc_info=True)
    results: list[Any] = []
    for one in params:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, one)
            results.append(None)
        except Exception as exc:
            results.append(exc)
    return results


_statements: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _statement(kind: RowKind, columns: list[str]) -> str:
    from platform_core.invocations.models import Invocation

    key = (connection.vendor, kind, tuple(columns))
    if (sql := _statements.get(key)) is None:
        quote = connection.ops.quote_name
        meta = Invocation._meta
        names = [quote(str(cast(Field, meta.get_field(c)).column)) for c in columns]
        placeholders = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {quote(meta.db_table)} ({', '.join(names)}) VALUES ({placeholders})"
        pk = quote(cast(str, meta.pk.column))
        if kind == "start":
            sql += f" ON CONFLICT ({pk}) DO NOTHING"
        else:
            updates = ", ".join(
                f"{n} = excluded.{n}" for c, n in zip(columns, names, strict=True) if c in FINISH_COLUMNS
            )
            sql += f" ON CONFLICT ({pk}) DO UPDATE SET {updates}"
        _statements[key] = sql
    return sql


def _params(row: Row, columns: list[str]) -> list[Any]:
    from platform_core.invocations.models import Invocation

    meta = Invocation._meta
    return [cast(Field, meta.get_field(c)).get_db_prep_save(row.values[c], connection) for c in columns]


# What a finish writes over an invocation already recorded as running (the rest was set at its start).
FINISH_COLUMNS = frozenset(
    {
        "status",
        "http_status",
        "result",
        "error_code",
        "error_message",
        "worker_id",
        "worker_warm",
        "backend",
        "worker_log",
        "worker_log_truncated",
        "finished_at",
        "trace",
        "allocation_ms",
        "init_ms",
        "execution_ms",
        "release_ms",
        "total_ms",
    }
)

record_writer = RecordWriter()
