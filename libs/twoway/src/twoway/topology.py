"""The RabbitMQ topology, declared in this one place, idempotently, at every service start.

Exchanges (durable topics) carry each kind of message; every work queue is a durable quorum queue
with a dead-letter queue beside it (`<queue>.dead`, through the `sms.dead` exchange). A message a
consumer cannot handle is never lost: it ends in the dead-letter queue with the reason in its
headers. Retries wait in delay queues (`<queue>.retry.<seconds>s`) whose TTL dead-letters the
message back into its work queue: the one retry mechanism, so waiting messages survive restarts.
Outbound's backoff is jittered: each step has a delay queue per `RETRY_JITTER` factor, and a retry
picks one at random, so that the messages a gateway outage failed together do not all come back
together. A wait longer than the longest delay queue (a gateway's long Retry-After) is parked
again each time it comes back early, until the due time in its `HEADER_RETRY_DUE` header.
Consumers dead-letter a message that keeps failing or killing them themselves, with the reason
(`twoway.broker.Consumer`, `max_deliveries`); the queues' `x-delivery-limit` is the backstop.
"""

from __future__ import annotations

import bisect
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
SUBSCRIPTIONS_EXCHANGE = "sms.subscriptions"
"""`SubscriptionChanged` events, key = the adapter that owns the event source."""

ROUTER_QUEUE = "router.inbound"
UNMATCHED_QUEUE = "router.unmatched"
OUTBOUND_QUEUE = "outbound.send"
OUTBOUND_BULK_QUEUE = "outbound.bulk"
"""Bulk OutboundSMS (broadcasts): outbound sends them after the replies waiting in
`outbound.send` (key `outbound.<gateway>.bulk`, see `outbound_key`)."""
BROADCASTS_QUEUE = "broadcaster.broadcasts"
"""`StartBroadcast` commands, published through the default exchange (key = this name)."""
BROADCAST_EVENTS_QUEUE = "broadcaster.events"
"""Delivery events of broadcast messages (adapter `BROADCAST_ADAPTER`), counted per broadcast."""
BROADCAST_ADAPTER = "broadcast"
"""The `adapter` of every OutboundSMS a broadcast sends, so its events have their own key."""

DELIVERY_LIMIT = 20
"""Failed deliveries after which the broker dead-letters a message (without our reason): the
backstop behind the consumers' own, lower `max_deliveries`. A queue argument: changing it would
make every existing queue's redeclaration fail."""

HEADER_HANDLER = "twoway-handler"
HEADER_ATTEMPT = "twoway-attempt"
HEADER_REASON = "twoway-reason"
HEADER_PARTS_SENT = "twoway-parts-sent"
"""On an outbound retry: how many parts (one request each) earlier attempts already sent."""
HEADER_CONVERSATION = "twoway-conversation"
"""Set by the router on an SMS that answers an open conversation: that question's message id."""
HEADER_REPEAT = "twoway-repeat"
"""On a message that may repeat an earlier one with the same id: an OutboundSMS published again
by a publisher that cannot tell whether its first publish reached the broker (the api taking over
a stale Idempotency-Key), or by a handling that may itself be a repeat (`Delivery.may_repeat`:
an adapter's handler or the router answering a redelivered SMS), and an SMS the router dispatches
again. Outbound looks such a message up in the log before sending it, as for a redelivery."""
HEADER_IN_DOUBT = "twoway-in-doubt"
"""On an OutboundSMS outbound holds because an attempt of it is in doubt (outbound stopped between
sending it and logging the outcome): it is not sent again, only checked for a delivery report
when it comes back, until its gateway's `in_doubt_timeout`."""
HEADER_RETRY_DUE = "twoway-retry-due"
"""On a message parked for a wait longer than its delay queue's: when the wait ends (Unix time in
milliseconds). Until then the consumer parks it again instead of handling it."""

RETRY_JITTER = (0.8, 1.0, 1.2)
"""Factors of each backoff step that have a delay queue of their own (see `jittered_delays`)."""


def inbound_key(gateway_id: str) -> str:
    return f"inbound.{gateway_id}"


def outbound_key(gateway_id: str | None, priority: str = "reply") -> str:
    """`outbound.<gateway>` for replies (queue `outbound.send`), `outbound.<gateway>.bulk` for
    bulk messages (queue `outbound.bulk`): publish with the message's `priority`."""
    key = f"outbound.{gateway_id or 'default'}"
    return f"{key}.bulk" if priority == "bulk" else key


def event_key(status: str, adapter: str | None) -> str:
    return f"{status}.{adapter or 'none'}"


def adapter_queue(adapter: str) -> str:
    return f"adapter.{adapter}"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead"


def retry_queue(queue: str, delay_seconds: float) -> str:
    """`<queue>.retry.<seconds>s`: `outbound.send.retry.30s`, `outbound.send.retry.0.8s`."""
    milliseconds = round(delay_seconds * 1000)
    seconds = milliseconds // 1000 if milliseconds % 1000 == 0 else milliseconds / 1000
    return f"{queue}.retry.{seconds}s"


def retry_delay(delays: Sequence[int], attempt: int) -> int:
    """The backoff step before the retry that follows `attempt` (1-based); the last repeats."""
    return delays[min(attempt - 1, len(delays) - 1)]


def jittered(step: float, factor: float) -> float:
    """`step` seconds times a jitter factor, to the millisecond (a delay queue's TTL)."""
    return round(step * factor, 3)


def jittered_delays(steps: Sequence[int]) -> list[float]:
    """The delays (seconds, ascending) of the delay queues of a jittered backoff: every step
    times every `RETRY_JITTER` factor."""
    return sorted({jittered(step, factor) for step in steps for factor in RETRY_JITTER})


def delay_queue_for(wait: float, delays: Sequence[float]) -> float:
    """The delay queue (of the ascending `delays`) to park a message in that must wait `wait`
    seconds: the shortest that covers the wait, else the longest (the message then comes back
    early, and is parked again until it is due)."""
    return delays[min(bisect.bisect_left(delays, wait), len(delays) - 1)]


def _quorum_arguments(dead_letter_routing_key: str, exchange: str) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": exchange,
        "x-dead-letter-routing-key": dead_letter_routing_key,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def declare_exchanges(channel: AbstractChannel) -> None:
    for name in (
        INBOUND_EXCHANGE,
        ADAPTERS_EXCHANGE,
        OUTBOUND_EXCHANGE,
        EVENTS_EXCHANGE,
        SUBSCRIPTIONS_EXCHANGE,
    ):
        await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    await channel.declare_exchange(CONTROL_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True)
    await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)


async def declare_work_queue(
    channel: AbstractChannel,
    name: str,
    *,
    exchange: str,
    binding_keys: Sequence[str],
    retry_delays: Sequence[float] = (),
) -> AbstractQueue:
    """A durable quorum work queue bound to `exchange`, with its dead-letter queue and a delay
    queue for each of `retry_delays` (seconds)."""
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
            arguments={**_quorum_arguments(name, ""), "x-message-ttl": round(delay * 1000)},
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


def subscription_events_queue(adapter: str) -> str:
    return f"adapter.{adapter}.subscriptions"


async def declare_subscription_events_queue(
    channel: AbstractChannel, adapter: str
) -> AbstractQueue:
    """The queue of `adapter`'s `SubscriptionChanged` events (its event-source callbacks)."""
    return await declare_work_queue(
        channel,
        subscription_events_queue(adapter),
        exchange=SUBSCRIPTIONS_EXCHANGE,
        binding_keys=[adapter],
    )


def delivery_events_queue(adapter: str) -> str:
    return f"adapter.{adapter}.events"


async def declare_delivery_events_queue(
    channel: AbstractChannel, adapter: str, retry_delays: Sequence[float]
) -> AbstractQueue:
    """The queue of the `DeliveryEvent`s of the messages `adapter` sent (every status: key
    `<status>.<adapter>` on `sms.events`), for its `on_delivery` callback, with a delay queue for
    each of `retry_delays`. Only an adapter with that callback declares it, so that no queue
    fills up without a consumer."""
    return await declare_work_queue(
        channel,
        delivery_events_queue(adapter),
        exchange=EVENTS_EXCHANGE,
        binding_keys=[event_key("*", adapter)],
        retry_delays=retry_delays,
    )


async def declare_broadcast_queues(channel: AbstractChannel) -> AbstractQueue:
    """The broadcaster's command queue (returned) and its delivery-events queue.

    The api declares them too, so that a broadcast requested before any broadcaster started
    waits in the queue instead of being unroutable.
    """
    await declare_work_queue(
        channel,
        BROADCAST_EVENTS_QUEUE,
        exchange=EVENTS_EXCHANGE,
        binding_keys=[
            event_key(status, BROADCAST_ADAPTER) for status in ("sent", "failed", "expired")
        ],
    )
    return await declare_work_queue(channel, BROADCASTS_QUEUE, exchange="", binding_keys=())


HEADER_BCC = "BCC"
"""RabbitMQ sender-selected distribution: extra routing keys, stripped before delivery."""


def broadcast_progress_key(broadcast_id: str) -> str:
    return f"progress.{broadcast_id}"


def broadcast_progress_queue(broadcast_id: str) -> str:
    return f"broadcaster.progress.{broadcast_id}"


async def declare_broadcast_progress_queue(
    channel: AbstractChannel, broadcast_id: str
) -> AbstractQueue:
    """A copy of every message of one broadcast published since its last checkpoint.

    The broadcaster publishes each message to `sms.outbound` with a `BCC` of
    `broadcast_progress_key`, so the broker puts it in `outbound.bulk` and here atomically:
    after a crash this queue says exactly which messages past the checkpoint were published.
    """
    queue = await channel.declare_queue(
        broadcast_progress_queue(broadcast_id), durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(OUTBOUND_EXCHANGE, routing_key=broadcast_progress_key(broadcast_id))
    return queue
