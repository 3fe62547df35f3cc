"""Subscriptions and broadcast fan-out: subscribe rate, messages queued per second, and the
broadcaster's peak memory, on throwaway servers (twoway_devstack). Prints each round and the
median of the rounds.

- subscribe/s: `Subscriptions.subscribe`, what every edge calls (the SDK, the api,
  `/subscribeSMS`, JOIN): the event source looked up, the idempotent upsert, the change announced
  on `sms.subscriptions` with a confirm; and the bare upsert (`SubscriptionStore.subscribe`) for
  comparison. Each round subscribes `--sample` fresh numbers, 16 at a time. The rest of the
  subscribers are bulk-inserted (setup, not measured).
- fan-out: the broadcaster runs as its own process (`twoway-broadcaster`, logs at WARNING) and
  fans a broadcast out to every subscriber into `outbound.bulk` (no outbound consumer: the
  figure is messages queued, each confirmed by the broker), once per round. 1% of the numbers
  opted out. The rate is queued / (finished_at - started_at) from the broadcast's own record.
- memory: the broadcaster's peak resident set (VmHWM), after a small broadcast and after the big
  ones, to show it does not grow with the subscriber count.
- cost: CPU milliseconds per subscriber of each process (the broadcaster, RabbitMQ, SecantusDB)
  and database operations per subscriber over the big rounds: on 2 cores the three share the
  machine, so the rate is bounded by their sum, and the broadcaster's own share says what one
  broadcaster process could fan out with the broker and database elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from benchmarks.cost import ProcessCpu, database_operations, print_cost
from twoway.broadcasts import Broadcast, Broadcasts, BroadcastStore
from twoway.broker import Publisher, connect
from twoway.messages import EventSource, utc_now
from twoway.optouts import OPTOUTS
from twoway.storage import Document
from twoway.subscriptions import (
    SUBSCRIPTIONS,
    EventSourceRegistry,
    Subscriptions,
    SubscriptionStore,
)
from twoway.topology import (
    OUTBOUND_BULK_QUEUE,
    OUTBOUND_EXCHANGE,
    declare_broadcast_queues,
    declare_exchanges,
    declare_work_queue,
    outbound_key,
)
from twoway_devstack import provide_servers

DATABASE = "bench_broadcast"
SHORT_CODE = "12345"


def phone(n: int) -> str:
    return f"+1555{n:07d}"


Subscribe = Callable[[str, str], Awaitable[object]]


async def subscribe_rate(subscribe: Subscribe, source: str, numbers: range) -> float:
    """Subscriptions per second: each of `numbers` subscribed to `source`, 16 at a time."""
    pending = iter(numbers)
    started = time.perf_counter()

    async def worker() -> None:
        for n in pending:
            await subscribe(source, phone(n))

    await asyncio.gather(*(worker() for _ in range(16)))
    return len(numbers) / (time.perf_counter() - started)


async def subscribe_rounds(
    subscriptions: Subscriptions, source: str, sample: int, rounds: int
) -> int:
    """Print each kind of subscribe's rate per round (the kinds take turns, so each meets the
    same collection sizes) and their medians; returns how many numbers were subscribed (0 up
    to that)."""
    kinds: list[tuple[str, Subscribe]] = [
        ("Subscriptions.subscribe", subscriptions.subscribe),
        ("SubscriptionStore.subscribe (upsert only)", subscriptions.store.subscribe),
    ]
    rates: dict[str, list[float]] = {label: [] for label, _ in kinds}
    next_number = 0
    for number in range(1, rounds + 1):
        for label, subscribe in kinds:
            numbers = range(next_number, next_number + sample)
            next_number += sample
            rates[label].append(await subscribe_rate(subscribe, source, numbers))
            print(f"round {number}: {label} {rates[label][-1]:,.0f} subscriptions/s", flush=True)
    medians = "; ".join(f"{label} {statistics.median(rates[label]):,.0f}/s" for label, _ in kinds)
    print(
        f"median of {rounds}: {medians} ({sample:,} fresh numbers a round, 16 at a time)",
        flush=True,
    )
    return next_number


async def bulk_subscribe(db: AsyncDatabase[Document], source: str, start: int, end: int) -> None:
    created_at = utc_now()
    for first in range(start, end, 10_000):
        await db[SUBSCRIPTIONS].insert_many(
            [
                {"event_source": source, "phone": phone(n), "created_at": created_at}
                for n in range(first, min(first + 10_000, end))
            ],
            ordered=False,
        )


async def opt_out_every_hundredth(db: AsyncDatabase[Document], count: int) -> None:
    at = utc_now()
    await db[OPTOUTS].insert_many(
        [
            {"phone": phone(n), "short_code": SHORT_CODE, "opted_out_at": at}
            for n in range(0, count, 100)
        ]
    )


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


async def run_broadcast(broadcasts: Broadcasts, source: str) -> Broadcast:
    requested = await broadcasts.request(source, "Benchmark broadcast: markets are up today.")
    while True:
        broadcast = await broadcasts.store.get(requested.broadcast_id)
        assert broadcast is not None
        if broadcast.status in ("completed", "failed"):
            return broadcast
        await asyncio.sleep(0.2)


def fan_out_rate(broadcast: Broadcast) -> float:
    assert broadcast.started_at is not None
    assert broadcast.finished_at is not None
    return broadcast.queued / (broadcast.finished_at - broadcast.started_at).total_seconds()


def report(label: str, broadcast: Broadcast) -> float:
    """Print one broadcast's figures; returns its rate (messages queued/s)."""
    rate = fan_out_rate(broadcast)
    print(
        f"{label}: {broadcast.status}, {broadcast.queued:,} queued, "
        f"{broadcast.skipped_opted_out:,} skipped (opted out) = {rate:,.0f} messages queued/s",
        flush=True,
    )
    return rate


async def measure(
    folder: Path,
    amqp_url: str,
    mongo_url: str,
    subscribers: int,
    sample: int,
    batch: int,
    rounds: int,
) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    await client.drop_database(DATABASE)
    db = client[DATABASE]
    connection = await connect(amqp_url, "bench-broadcast")
    publisher = await Publisher.open(connection, 30.0)
    await declare_exchanges(publisher.channel)
    await declare_broadcast_queues(publisher.channel)
    bulk_queue = await declare_work_queue(
        publisher.channel,
        OUTBOUND_BULK_QUEUE,
        exchange=OUTBOUND_EXCHANGE,
        binding_keys=[outbound_key("*", "bulk")],
    )
    registry = EventSourceRegistry(db)
    small, big = "bench.Small", "bench.Big"
    await registry.replace_adapter_sources(
        "bench", [EventSource(name=small, adapter="bench"), EventSource(name=big, adapter="bench")]
    )
    subscriptions = Subscriptions(SubscriptionStore(db, "US"), registry, publisher)
    await subscriptions.ensure_indexes()

    subscribed = await subscribe_rounds(subscriptions, big, sample, rounds)
    started = time.perf_counter()
    await bulk_subscribe(db, big, subscribed, subscribers)
    await bulk_subscribe(db, small, 0, subscribers // 10)
    await opt_out_every_hundredth(db, subscribers)
    print(
        f"setup: {max(subscribers - subscribed, 0):,} + {subscribers // 10:,} subscriptions "
        f"bulk-inserted in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

    gateways = folder / "gateways.yaml"
    gateways.write_text(
        "default_gateway: sim\ngateways:\n  - id: sim\n    type: mobilefirst-http\n"
        f"    url: http://127.0.0.1:9/sendSMS\n    default_sender: '{SHORT_CODE}'\n"
    )
    env = {
        **os.environ,
        "TWOWAY_AMQP_URL": amqp_url,
        "TWOWAY_MONGO_URL": mongo_url,
        "TWOWAY_MONGO_DATABASE": DATABASE,
        "TWOWAY_PORT": "0",
        "TWOWAY_LOG_LEVEL": "WARNING",
        "TWOWAY_GATEWAYS_FILE": str(gateways),
        "TWOWAY_BATCH_SIZE": str(batch),
        "TWOWAY_SLICE_SECONDS": "600",
    }
    with (folder / "broadcaster.log").open("wb") as log:
        worker = await asyncio.create_subprocess_exec(
            Path(sys.executable).parent / "twoway-broadcaster", env=env, stdout=log, stderr=log
        )
    try:
        broadcasts = Broadcasts(BroadcastStore(db), registry, publisher)
        await asyncio.sleep(3)
        print(f"broadcaster started: peak RSS {peak_memory_mb(worker.pid):.0f} MB", flush=True)
        report(
            f"warm-up, {subscribers // 10:,} subscribers", await run_broadcast(broadcasts, small)
        )
        small_peak = peak_memory_mb(worker.pid)
        rates = []
        processes = ProcessCpu(str(folder))
        cpu_before, operations_before = processes.sample(), database_operations(mongo_url)
        for number in range(1, rounds + 1):
            await bulk_queue.purge()  # each round fans out into an empty queue
            broadcast = await run_broadcast(broadcasts, big)
            rates.append(report(f"round {number}, {subscribers:,} subscribers", broadcast))
        cpu_after, operations_after = processes.sample(), database_operations(mongo_url)
        print(
            f"median of {rounds}: fan-out {statistics.median(rates):,.0f} messages queued/s "
            f"to {subscribers:,} subscribers (batch {batch:,}; {os.cpu_count()} cores); "
            f"broadcaster peak RSS {small_peak:.0f} MB after {subscribers // 10:,}, "
            f"{peak_memory_mb(worker.pid):.0f} MB after {subscribers:,}",
            flush=True,
        )
        print_cost(
            (cpu_before, cpu_after),
            (operations_before, operations_after),
            rounds * subscribers,
            "subscriber",
        )
    finally:
        worker.terminate()
        await worker.wait()
        await connection.close()
        await client.drop_database(DATABASE)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.broadcast", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument(
        "--sample", type=int, default=2_000, help="numbers subscribed one by one, each round"
    )
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    args, _ = parser.parse_known_args()
    print(f"machine: {os.cpu_count()} cores", flush=True)
    # This process logs at WARNING too (each subscribe logs at INFO): logging is not measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with (
        tempfile.TemporaryDirectory(prefix="bench-broadcast-") as folder,
        provide_servers(Path(folder), persistent=False) as urls,
    ):
        asyncio.run(
            measure(
                Path(folder),
                urls.amqp_url,
                urls.mongo_url,
                args.subscribers,
                args.sample,
                args.batch_size,
                args.rounds,
            )
        )


if __name__ == "__main__":
    main()
