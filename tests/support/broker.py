"""Broker helpers for tests: a clean slate of queues, and reading what landed in a queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from twoway.topology import (
    OUTBOUND_BULK_QUEUE,
    OUTBOUND_QUEUE,
    ROUTER_QUEUE,
    UNMATCHED_QUEUE,
    adapter_queue,
    dead_letter_queue,
    declare_exchanges,
    jittered_delays,
    retry_queue,
)

RETRY_DELAYS = (1, 5, 30, 120, 600)


def topology_queues(adapters: Iterable[str] = ("echo",)) -> list[str]:
    """Every queue the services declare (outbound with its default retry delays)."""
    outbound = [OUTBOUND_QUEUE, OUTBOUND_BULK_QUEUE]
    work = [ROUTER_QUEUE, *outbound, *(adapter_queue(name) for name in adapters)]
    names = [UNMATCHED_QUEUE]
    for queue in work:
        names += [queue, dead_letter_queue(queue)]
    delays = jittered_delays(RETRY_DELAYS)
    names += [retry_queue(queue, delay) for queue in outbound for delay in delays]
    return names


def adapter_queues(adapter: str, retry_delays: Iterable[int]) -> list[str]:
    """An adapter's work queue, its dead-letter queue and its delay queues."""
    queue = adapter_queue(adapter)
    return [queue, dead_letter_queue(queue), *(retry_queue(queue, d) for d in retry_delays)]


async def delete_queues(connection: AbstractRobustConnection, names: Iterable[str]) -> None:
    """Delete the queues (a missing queue is fine) so that each test starts empty."""
    for name in names:
        channel = await connection.channel()
        try:
            await channel.queue_delete(name)
        except aio_pika.exceptions.ChannelClosed:
            pass
        finally:
            if not channel.is_closed:
                await channel.close()


async def drain(
    connection: AbstractRobustConnection, queue: str, *, expect: int, within: float = 5.0
) -> list[AbstractIncomingMessage]:
    """Take (and ack) `expect` messages from `queue`, waiting up to `within` seconds."""
    channel = await connection.channel()
    messages: list[AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + within
    try:
        declared = await channel.get_queue(queue, ensure=True)
        while len(messages) < expect and asyncio.get_running_loop().time() < deadline:
            message = await declared.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.02)
            else:
                messages.append(message)
    finally:
        await channel.close()
    return messages


async def queue_length(connection: AbstractRobustConnection, queue: str) -> int:
    channel = await connection.channel()
    try:
        declared = await channel.get_queue(queue, ensure=True)
        result = await declared.declare()
        return int(result.message_count or 0)
    finally:
        await channel.close()


async def queue_exists(connection: AbstractRobustConnection, queue: str) -> bool:
    channel = await connection.channel()
    try:
        await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()
    return True


@asynccontextmanager
async def listening(
    connection: AbstractRobustConnection, exchange: str, routing_key: str
) -> AsyncIterator[str]:
    """A private queue (exclusive, auto-deleted) bound to `exchange` with `routing_key` while the
    block runs: everything published there meanwhile, to read with `drain` or `queue_length`.
    Yields the queue's name; declares the exchanges first, so it can bind before any service."""
    channel = await connection.channel()
    await declare_exchanges(channel)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    try:
        await queue.bind(exchange, routing_key=routing_key)
        yield queue.name
    finally:
        await queue.delete(if_unused=False, if_empty=False)
        await channel.close()
