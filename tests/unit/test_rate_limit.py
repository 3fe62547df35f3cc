"""The shared rate limit's rules, on a fake clock and an in-memory window count."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from twoway_outbound.ratelimit import PriorityTurns, RateLimiter


class Windows:
    """The two MongoDB operations the limiter uses, in memory."""

    def __init__(self) -> None:
        self.used: Counter[str] = Counter()
        self.calls = 0

    async def find_one_and_update(
        self, query: dict[str, Any], update: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(0)  # a round trip: other sends queue up meanwhile
        self.used[query["_id"]] += update["$inc"]["used"]
        return {"_id": query["_id"], "used": self.used[query["_id"]]}


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def limiter(windows: Windows, clock: Clock, rate: float, gateway: str = "g") -> RateLimiter:
    return RateLimiter(windows, gateway, rate, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


async def test_within_capacity_no_wait_and_few_leases() -> None:
    windows, clock = Windows(), Clock()
    rate = limiter(windows, clock, 100)
    for _ in range(100):
        await rate.acquire(1)
    assert clock.slept == []
    assert windows.calls == 20  # leased five at a time, not one write per message


async def test_beyond_capacity_waits_for_the_next_window() -> None:
    windows, clock = Windows(), Clock(1000.25)
    rate = limiter(windows, clock, 10)
    for _ in range(25):
        await rate.acquire(1)
    assert clock.slept == [0.75, 1.0]
    # a full window's count goes one lease past capacity: the lease that was refused
    assert windows.used == {"g:1000": 11, "g:1001": 11, "g:1002": 5}


async def test_replicas_sharing_the_count_never_exceed_a_window() -> None:
    windows, clock = Windows(), Clock()
    replicas = [limiter(windows, clock, 20) for _ in range(3)]
    sent: Counter[int] = Counter()
    for n in range(120):
        await replicas[n % 3].acquire(1)
        sent[int(clock.now)] += 1
    assert max(sent.values()) <= 20
    assert sum(sent.values()) == 120


class SlowWindows(Windows):
    """A database whose first answer arrives after the window it was asked about ended."""

    def __init__(self, clock: Clock, delay: float) -> None:
        super().__init__()
        self.clock, self.delay = clock, delay

    async def find_one_and_update(
        self, query: dict[str, Any], update: dict[str, Any], **options: Any
    ) -> dict[str, Any]:
        answer = await super().find_one_and_update(query, update, **options)
        if self.calls == 1:
            self.clock.now += self.delay
        return answer


async def test_a_lease_that_comes_back_after_its_window_is_not_spent_in_the_next() -> None:
    clock = Clock(1000.9)
    windows = SlowWindows(clock, delay=0.3)  # asked in window 1000, answered in 1001
    rate = limiter(windows, clock, 10)
    sent: Counter[int] = Counter()
    for _ in range(12):
        await rate.acquire(1)
        sent[int(clock.now)] += 1

    assert windows.used["g:1000"] >= 1  # the late lease counted where it was asked for
    assert max(sent.values()) <= 10  # but nothing was sent on it in window 1001
    assert sum(sent.values()) == 12


@pytest.mark.parametrize(
    ("rate", "window", "capacity"),
    [(100, 1.0, 100), (2.5, 1.0, 2), (0.5, 2.0, 1), (0.1, 10.0, 1)],
    ids=["per-second", "fraction-rounds", "below-one-per-second", "one-per-ten-seconds"],
)
def test_window_and_capacity(rate: float, window: float, capacity: int) -> None:
    limited = limiter(Windows(), Clock(), rate)
    assert (limited.window, limited.capacity) == (window, capacity)


async def test_a_message_longer_than_a_window_spans_windows() -> None:
    windows, clock = Windows(), Clock(1000.0)
    await limiter(windows, clock, 2).acquire(5)
    assert clock.slept == [1.0, 1.0]


async def test_replies_get_their_turn_before_bulk() -> None:
    turns = PriorityTurns()
    order: list[str] = []
    await turns.take("bulk")  # someone holds the turn

    async def wait(name: str, priority: Any) -> None:
        await turns.take(priority)
        order.append(name)
        turns.give()

    waiting = [
        asyncio.create_task(wait("bulk-1", "bulk")),
        asyncio.create_task(wait("bulk-2", "bulk")),
        asyncio.create_task(wait("reply-1", "reply")),
        asyncio.create_task(wait("reply-2", "reply")),
    ]
    await asyncio.sleep(0)
    turns.give()
    await asyncio.gather(*waiting)
    assert order == ["reply-1", "reply-2", "bulk-1", "bulk-2"]


async def test_a_cancelled_waiter_does_not_keep_the_turn() -> None:
    turns = PriorityTurns()
    await turns.take("reply")
    cancelled = asyncio.create_task(turns.take("reply"))
    later = asyncio.create_task(turns.take("bulk"))
    await asyncio.sleep(0)
    cancelled.cancel()
    turns.give()
    await asyncio.wait_for(later, 1)
    turns.give()
    await asyncio.wait_for(turns.take("reply"), 1)


async def test_waiting_sends_lease_together() -> None:
    windows, clock = Windows(), Clock()
    rate = limiter(windows, clock, 100)
    await asyncio.gather(*(rate.acquire(1) for _ in range(60)))
    assert clock.slept == []
    # the first send leases a chunk; meanwhile the others queue up and lease together
    assert windows.calls == 2
    assert windows.used == {"g:1000": 60}
