"""The RabbitMQ topology, declared in this one place, idempotently, at every service start.

Exchanges (durable topics) carry each kind of message; every work queue is a durable quorum queue
with a dead-letter queue beside it (`<queue>.dead`, through the `sms.dead` exchange). A message a
consumer cannot handle is never lost: it ends in the dead-letter queue with the reason in its
headers. Retries wait in delay queues (`<queue>.retry.<seconds>s`) whose TTL dead-letters the
message back into its work queue: the one retry mechanism, so waiting messages survive restarts.
`x-delivery-limit` only guards against poison messages that crash a consumer over and over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

INBOUND_EXCHANGE = "sms.inbound"
ADAPTERS_EXCHANGE = "sms.adapters"
OUTBOUND_EXCHANGE = "sms.outbound"
EVENTS_EXCHANGE = "sms.events"
CONTROL_EXCHANGE = "sms.control"
DEAD_LETTER_EXCHANGE = "sms.dead"

ROUTER_QUEUE = "router.inbound"
UNMATCHED_QUEUE = "router.unmatched"
OUTBOUND_QUEUE = "outbound.send"

DELIVERY_LIMIT = 20
"""Deliveries after which a message that keeps failing its consumer is dead-lettered."""

HEADER_HANDLER = "twoway-handler"
HEADER_ATTEMPT = "twoway-attempt"
HEADER_REASON = "twoway-reason"


def inbound_key(gateway_id: str) -> str:
    return f"inbound.{gateway_id}"


def outbound_key(gateway_id: str | None) -> str:
    return f"outbound.{gateway_id or 'default'}"


def event_key(status: str, adapter: str | None) -> str:
    return f"{status}.{adapter or 'none'}"


def adapter_queue(adapter: str) -> str:
    return f"adapter.{adapter}"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead"


def retry_queue(queue: str, delay_seconds: int) -> str:
    return f"{queue}.retry.{delay_seconds}s"


def _quorum_arguments(dead_letter_routing_key: str, exchange: str) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": exchange,
        "x-dead-letter-routing-key": dead_letter_routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def declare_exchanges(channel: AbstractChannel) -> None:
    for name in (INBOUND_EXCHANGE, ADAPTERS_EXCHANGE, OUTBOUND_EXCHANGE, EVENTS_EXCHANGE):
        await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(CONTROL_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
    await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)


async def declare_work_queue(
    channel: AbstractChannel,
    name: str,
    *,
    exchange: str,
    binding_keys: Sequence[str],
    retry_delays: Sequence[int] = (),
) -> AbstractQueue:
    """A durable quorum work queue bound to `exchange`, with its dead-letter and delay queues."""
    dead = await channel.declare_queue(
        dead_letter_queue(name), durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(DEAD_LETTER_EXCHANGE, routing_key=name)
    arguments = _quorum_arguments(name, DEAD_LETTER_EXCHANGE)
    queue = await channel.declare_queue(
        name, durable=True, arguments={**arguments, "x-delivery-limit": DELIVERY_LIMIT}
    )
    for key in binding_keys:
        await queue.bind(exchange, routing_key=key)
    for delay in retry_delays:
        # Expired messages go back through the default exchange, straight into the work queue.
        await channel.declare_queue(
            retry_queue(name, delay),
            durable=True,
            arguments={**_quorum_arguments(name, ""), "x-message-ttl": delay * 1000},
        )
    return queue


async def declare_unmatched_queue(channel: AbstractChannel) -> None:
    """Where the router parks inbound SMS that no handler matched, for inspection and replay."""
    queue = await channel.declare_queue(
        UNMATCHED_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(DEAD_LETTER_EXCHANGE, routing_key=UNMATCHED_QUEUE)


async def declare_control_queue(channel: AbstractChannel) -> AbstractQueue:
    """A private, auto-deleted queue on `sms.control` for one router replica."""
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(CONTROL_EXCHANGE)
    return queue
