"""The per-recipient cap's counts in MongoDB: places in a window, batches, replicas, races."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from twoway.gateways.destinations import RecipientLimit
from twoway.storage import Document
from twoway_outbound.recipient_caps import COUNTS_COLLECTION, RecipientCap, WindowCounts

pytestmark = pytest.mark.mongo

ANN, BOB = "+14155550001", "+14155550002"


class Counted:
    """A collection that counts the operations made on it (and can lose a race once)."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection
        self.calls: Counter[str] = Counter()
        self.lose_race = False
        """The next write finds the window just created by another replica."""
        self.write_error = 0
        """A write error of this code on the next bulk write."""

    async def find_one_and_update(self, query: Document, update: Document, **options: Any) -> Any:
        self.calls["find_one_and_update"] += 1
        if self.lose_race:
            self.lose_race = False
            await self.collection.insert_one({"_id": query["_id"], "count": 1})
            raise DuplicateKeyError("E11000 duplicate key error")
        return await self.collection.find_one_and_update(query, update, **options)

    async def bulk_write(self, operations: list[Any], **options: Any) -> Any:
        self.calls["bulk_write"] += 1
        if self.lose_race or self.write_error:
            code, self.lose_race, self.write_error = self.write_error or 11000, False, 0
            first = operations[0]._filter["_id"]
            await self.collection.insert_one({"_id": first, "count": 1})
            await self.collection.bulk_write(operations[1:], **options)
            raise BulkWriteError({"writeErrors": [{"index": 0, "code": code, "errmsg": "x"}]})
        return await self.collection.bulk_write(operations, **options)

    def find(self, *args: Any, **options: Any) -> Any:
        self.calls["find"] += 1
        return self.collection.find(*args, **options)


class Clock:
    def __init__(self, now: float = 6_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counts(mongo_db: AsyncDatabase[Document]) -> Counted:
    return Counted(mongo_db[COUNTS_COLLECTION])


def cap(counted: Counted, clock: Clock, count: int = 3, gateway: str = "g") -> RecipientCap:
    windows = WindowCounts(counted)  # type: ignore[arg-type]
    return RecipientCap(windows, gateway, RecipientLimit(count=count, seconds=60), clock=clock)


async def test_a_lone_reply_costs_nothing_and_the_second_writes_both(
    counts: Counted, mongo_db: AsyncDatabase[Document]
) -> None:
    limited = cap(counts, Clock())
    assert await limited.allows(ANN)
    assert counts.calls == {}
    assert await limited.allows(ANN)
    assert counts.calls == {"find_one_and_update": 1}
    [document] = await mongo_db[COUNTS_COLLECTION].find().to_list()
    assert document["count"] == 2


async def test_the_cap_stops_the_next_reply_to_that_number_only(counts: Counted) -> None:
    clock = Clock()
    limited = cap(counts, clock)
    assert [await limited.allows(ANN) for _ in range(4)] == [True, True, True, False]
    assert await limited.allows(BOB)


async def test_a_capped_number_costs_nothing_more_until_the_window_ends(counts: Counted) -> None:
    clock = Clock()
    limited = cap(counts, clock, count=1)
    assert [await limited.allows(ANN) for _ in range(2)] == [True, False]
    asked = counts.calls.total()
    assert not await limited.allows(ANN)
    assert counts.calls.total() == asked
    clock.now += 60
    assert await limited.allows(ANN)


async def test_concurrent_replies_are_counted_in_one_batch(counts: Counted) -> None:
    limited = cap(counts, Clock(), count=5)
    await limited.allows(BOB)  # counted in memory; its next reply writes both
    counts.calls.clear()
    allowed = await asyncio.gather(*(limited.allows(ANN) for _ in range(8)), limited.allows(BOB))
    assert allowed == [True] * 5 + [False] * 3 + [True]
    assert counts.calls == {"bulk_write": 1, "find": 1}


async def test_replicas_share_the_count(counts: Counted) -> None:
    clock = Clock()
    first, second = cap(counts, clock), cap(counts, clock)
    assert [await first.allows(ANN), await second.allows(ANN)] == [True, True]  # in memory
    assert [await second.allows(ANN), await first.allows(ANN)] == [True, False]  # 2, then 4


async def test_two_replicas_let_at_most_one_more_through(counts: Counted) -> None:
    clock = Clock()
    first, second = cap(counts, clock), cap(counts, clock)
    assert [await first.allows(ANN) for _ in range(4)] == [True, True, True, False]
    assert [await second.allows(ANN) for _ in range(2)] == [True, False]  # its first: unshared


async def test_gateways_count_apart(counts: Counted) -> None:
    clock = Clock()
    first = cap(counts, clock, count=1, gateway="a")
    assert [await first.allows(ANN), await first.allows(ANN)] == [True, False]
    assert await cap(counts, clock, count=1, gateway="b").allows(ANN)


async def test_a_window_created_meanwhile_by_another_replica_is_counted_in(
    counts: Counted,
) -> None:
    limited = cap(counts, Clock(), count=3)
    assert await limited.allows(ANN)  # in memory
    counts.lose_race = True
    assert await limited.allows(ANN)  # the other replica's one, then our two
    assert not await limited.allows(ANN)


async def test_a_batch_that_loses_a_race_counts_again(counts: Counted) -> None:
    limited = cap(counts, Clock(), count=3)
    await limited.allows(BOB)
    await limited.allows(ANN)
    counts.lose_race = True
    allowed = await asyncio.gather(*(limited.allows(n) for n in (ANN, ANN, BOB)))
    assert allowed == [True, False, True]  # ANN: the other replica's first, then our three


async def test_another_write_error_fails_the_batch(counts: Counted) -> None:
    limited = cap(counts, Clock())
    await limited.allows(BOB)
    await limited.allows(ANN)
    counts.write_error = 121
    results = await asyncio.gather(limited.allows(ANN), limited.allows(BOB), return_exceptions=True)
    assert [type(result) for result in results] == [BulkWriteError, BulkWriteError]


async def test_counts_expire(counts: Counted, mongo_db: AsyncDatabase[Document]) -> None:
    await WindowCounts(mongo_db[COUNTS_COLLECTION]).ensure_indexes()
    indexes = await mongo_db[COUNTS_COLLECTION].index_information()
    assert any(index.get("expireAfterSeconds") == 0 for index in indexes.values())
    limited = cap(counts, Clock(6_000.0))
    await limited.allows(ANN)
    await limited.allows(ANN)
    [document] = await mongo_db[COUNTS_COLLECTION].find().to_list()
    assert ANN not in str(document)
    assert document["expires_at"].timestamp() == 6_000.0 + 60 + 60
