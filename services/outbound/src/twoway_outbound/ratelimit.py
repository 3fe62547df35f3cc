"""Per-gateway rate limits in segments per second, shared by every outbound replica.

Time is cut into windows (one second, or `1/rate` when the rate is below one per second) that
hold `capacity` segments. Every replica counts what it takes from a window in one MongoDB
document per gateway and window (`outbound_rate_windows`, `$inc` with upsert, expiring by TTL), so
N replicas together never take more than the capacity of a window: scaling outbound out does not
multiply the rate. To keep the database off the per-message path a replica leases segments in
chunks (a twentieth of the capacity by default) and spends them locally; a chunk only partly
inside the capacity is granted only that part. A replica asks for what its waiting sends need
(at least the chunk, at most the capacity), so under a backlog it leases once or twice a window
and a slow database round trip does not throttle it below the limit. Segments leased and not
spent before their window ends are lost: an idle replica wastes at most a chunk per window.

A lease that comes back late (a slow database round trip) after its window ended is dropped,
and the sends lease again in the new window: spent late, those segments would go out in the next
window on top of its own capacity, over the gateway's limit by up to one window's worth.

Within a replica the sends of one gateway queue for tokens in priority order: `reply` before
`bulk`, then first come first served, so replies overtake a broadcast at the bottleneck.
Clocks of replicas are assumed to agree to well within a window (NTP).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from twoway.storage import Document

WINDOWS_COLLECTION = "outbound_rate_windows"

Priority = Literal["reply", "bulk"]
_RANK: dict[str, int] = {"reply": 0, "bulk": 1}


class PriorityTurns:
    """One holder at a time; waiters get their turn by (priority, arrival)."""

    def __init__(self) -> None:
        self._held = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    async def take(self, priority: Priority) -> None:
        if not self._held and not self._waiters:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (_RANK[priority], next(self._arrivals), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.give()  # the turn came with the cancellation: pass it on
            raise

    def give(self) -> None:
        while self._waiters:
            _, _, turn = heapq.heappop(self._waiters)
            if not turn.done():
                turn.set_result(None)
                return
        self._held = False


class RateLimiter:
    """The segments-per-second limit of one gateway."""

    def __init__(
        self,
        windows: AsyncCollection[Document],
        gateway_id: str,
        rate: float,
        *,
        lease_fraction: float = 0.05,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._windows = windows
        self._gateway_id = gateway_id
        self.window = max(1.0, 1.0 / rate)
        self.capacity = max(1, round(rate * self.window))
        self._chunk = max(1, math.ceil(self.capacity * lease_fraction))
        self._clock = clock
        self._sleep = sleep
        self._turns = PriorityTurns()
        self._tokens = 0
        self._tokens_window = -1
        self._waiting = 0
        """Segments that sends of this replica wait for: what the next lease asks for."""

    async def acquire(self, segments: int, priority: Priority = "reply") -> None:
        """Wait until `segments` may be sent now (a message longer than a window's capacity
        takes it over several windows)."""
        self._waiting += segments
        needed = segments
        try:
            await self._turns.take(priority)
        except asyncio.CancelledError:
            self._waiting -= needed
            raise
        try:
            while needed > 0:
                window = self._current_window()
                if window != self._tokens_window:
                    self._tokens, self._tokens_window = 0, window
                if self._tokens == 0:
                    wanted = min(max(self._waiting, self._chunk), self.capacity)
                    granted = await self._lease(window, wanted)
                    if self._current_window() != window:
                        continue  # too late to spend: see "A lease that comes back late"
                    self._tokens = granted
                    if self._tokens == 0:
                        await self._sleep(max(0.0, (window + 1) * self.window - self._clock()))
                        continue
                taken = min(needed, self._tokens)
                self._tokens -= taken
                needed -= taken
                self._waiting -= taken
        finally:
            self._waiting -= needed
            self._turns.give()

    def _current_window(self) -> int:
        return math.floor(self._clock() / self.window)

    async def _lease(self, window: int, wanted: int) -> int:
        """Take up to `wanted` segments of `window` from the shared count; how many we got."""
        expires = datetime.fromtimestamp((window + 2) * self.window, UTC) + timedelta(minutes=1)
        document: Document | None = None
        for _ in range(2):  # two replicas upserting a new window at once: one retries
            try:
                document = await self._windows.find_one_and_update(
                    {"_id": f"{self._gateway_id}:{window}"},
                    {"$inc": {"used": wanted}, "$setOnInsert": {"expires_at": expires}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                break
            except DuplicateKeyError:
                continue
        if document is None:
            return 0
        before = int(document["used"]) - wanted
        return max(0, min(wanted, self.capacity - before))


class RateLimiters:
    """The limiters of every gateway that has a `rate_limit`."""

    def __init__(self, windows: AsyncCollection[Document], rates: Mapping[str, float]) -> None:
        self._windows = windows
        self._limiters = {
            gateway_id: RateLimiter(windows, gateway_id, rate) for gateway_id, rate in rates.items()
        }

    async def ensure_indexes(self) -> None:
        await self._windows.create_index("expires_at", expireAfterSeconds=0)

    async def acquire(self, gateway_id: str, segments: int, priority: Priority) -> None:
        limiter = self._limiters.get(gateway_id)
        if limiter is not None:
            await limiter.acquire(segments, priority)
