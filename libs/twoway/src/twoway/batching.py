"""Group commit: many concurrent callers, one database write per batch.

A consumer with a prefetch of N handles up to N messages at once; when each needs a write, one
write per message caps throughput at the database's write rate (SecantusDB does about 1,000 small
writes/s, but 10,000 documents/s in one `insert_many`). `GroupCommit` collects what callers submit
while the previous batch is being written and writes it as the next batch, so batches grow with
load and an idle system still writes at once (no timer, no added latency when there is no queue).
Each caller awaits its own item's result, so a message is still acked only after its write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class GroupCommit(Generic[T, R]):
    """Writes submitted items in batches with `flush`, which returns one result per item.

    If `flush` raises, every caller of that batch gets the exception.
    """

    def __init__(self, flush: Flush[T, R], max_batch: int = 1000) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        return await future

    async def _write_batches(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._flush([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"flush returned {len(results)} results for {len(batch)}")
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
