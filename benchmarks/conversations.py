"""The router's conversation lookup: what it costs per inbound SMS.

Every inbound SMS that passes opt-out and HELP is looked up in `conversations` by its
(sender, recipient) `_id` (`ConversationStore.find_open`) before keyword matching. This opens
`--open` conversations, then prints, for numbers with and without an open conversation:
- a plain point read (`find_one` by `_id`): latency one at a time (p50, p99), and reads/s at the
  router's concurrency (its prefetch);
- the router's lookup, which batches concurrent lookups into one `$in` query: the same figures.
Against the throwaway servers of twoway_devstack (SecantusDB here, unless TWOWAY_MONGO_URL names
a real MongoDB).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from pymongo import AsyncMongoClient

from twoway.conversations import CONVERSATIONS, Conversation, ConversationStore, conversation_key
from twoway.messages import utc_now
from twoway.storage import Document
from twoway_devstack import provide_servers

RECIPIENT = "12345"


def number(index: int) -> str:
    return f"+1555{index:07d}"


async def open_conversations(store: ConversationStore, count: int) -> None:
    expires = utc_now() + timedelta(hours=1)
    await asyncio.gather(
        *(
            store.open(
                Conversation(
                    sender=number(index),
                    recipient=RECIPIENT,
                    adapter="bank",
                    handler="transfer_amount",
                    question_id=f"q{index}",
                    state={"step": 1},
                    expires_at=expires,
                )
            )
            for index in range(count)
        )
    )


async def latencies(lookup: Callable[[int], Awaitable[object]], count: int) -> list[float]:
    seconds = []
    for index in range(count):
        started = time.perf_counter()
        await lookup(index)
        seconds.append(time.perf_counter() - started)
    return seconds


async def rate(lookup: Callable[[int], Awaitable[object]], count: int, concurrency: int) -> float:
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:
            await lookup(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def describe(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"p50 {statistics.median(ordered) * 1e6:,.0f} µs, p99 {p99 * 1e6:,.0f} µs"


async def run(mongo_url: str, opened: int, lookups: int, concurrency: int) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    database = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        store = ConversationStore(client[database])
        await store.ensure_indexes()
        await open_conversations(store, opened)

        collection = client[database][CONVERSATIONS]

        def point_read(offset: int) -> Callable[[int], Awaitable[object]]:
            async def lookup(index: int) -> object:
                key = conversation_key(number(offset + index % opened), RECIPIENT)
                return await collection.find_one({"_id": key, "expires_at": {"$gt": utc_now()}})

            return lookup

        def batched(offset: int) -> Callable[[int], Awaitable[object]]:
            async def lookup(index: int) -> object:
                return await store.find_open(number(offset + index % opened), RECIPIENT)

            return lookup

        await latencies(batched(opened), 200)  # warm-up
        print(f"{opened:,} open conversations ({os.cpu_count()} cores)", flush=True)
        for kind, make in (("point read", point_read), ("router lookup (batched)", batched)):
            for name, offset in (("no conversation", opened), ("open conversation", 0)):
                one_at_a_time = describe(await latencies(make(offset), lookups))
                concurrent = await rate(make(offset), lookups, concurrency)
                print(
                    f"{kind}, {name}: {one_at_a_time}; "
                    f"{concurrent:,.0f} lookups/s at concurrency {concurrency}",
                    flush=True,
                )
    finally:
        await client.drop_database(database)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.conversations")
    parser.add_argument("--open", type=int, default=10_000, help="open conversations")
    parser.add_argument("--lookups", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args, _ = parser.parse_known_args()
    with (
        tempfile.TemporaryDirectory(prefix="twoway-bench-") as folder,
        provide_servers(Path(folder), persistent=False) as urls,
    ):
        asyncio.run(run(urls.mongo_url, args.open, args.lookups, args.concurrency))


if __name__ == "__main__":
    main()
