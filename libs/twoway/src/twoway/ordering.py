"""Per-key ordering inside one consumer that handles many messages at once.

A consumer with a prefetch of N runs up to N handlers concurrently, so two SMS from one sender
can finish in either order. `KeyedSequencer` runs the work for one key one at a time, in the order
`hold` was entered, while work for other keys runs alongside. aio-pika starts a task per delivery
in delivery order, so a handler that enters `hold` before its first `await` keeps delivery order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedSequencer:
    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        """Keys with work running or waiting."""
        return len(self._tails)

    @asynccontextmanager
    async def hold(self, key: str | None) -> AsyncIterator[None]:
        """Wait for every earlier `hold(key)` to finish, then run the block; None: run it now,
        unordered."""
        if key is None:
            yield
            return
        previous = self._tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = mine

        def release() -> None:
            mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]

        try:
            if previous is not None:
                await asyncio.shield(previous)
            yield
        finally:
            if previous is None or previous.done():
                release()
            else:  # cancelled while waiting: whoever comes next still waits for `previous`
                previous.add_done_callback(lambda _: release())
