"""Outbound's dead letters: list them and replay them (for the api's operators).

A message outbound gave up on (a permanent gateway error, too many attempts, a retry that would
pass its deadline, an unknown gateway, a text over the gateway's segment limit) waits in
`outbound.send.dead` or `outbound.bulk.dead` with the reason in its `twoway-reason` header.
`list_dead_letters` looks at them without taking them; `replay_dead_letters` publishes the chosen
ones back to `sms.outbound` as fresh first attempts (reason, attempt, retry and in-doubt headers
dropped: a message given up on in doubt is then sent again, on the operator's word)
and removes each from the dead-letter queue only once the broker confirmed its replay.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import ValidationError

from twoway.broker import Publisher
from twoway.messages import OutboundSMS
from twoway.topology import (
    HEADER_ATTEMPT,
    HEADER_IN_DOUBT,
    HEADER_PARTS_SENT,
    HEADER_REASON,
    HEADER_RETRY_DUE,
    OUTBOUND_BULK_QUEUE,
    OUTBOUND_EXCHANGE,
    OUTBOUND_QUEUE,
    dead_letter_queue,
    outbound_key,
)

OUTBOUND_DEAD_LETTER_QUEUES = (
    dead_letter_queue(OUTBOUND_QUEUE),
    dead_letter_queue(OUTBOUND_BULK_QUEUE),
)

_DROPPED_HEADERS = frozenset(
    {HEADER_REASON, HEADER_ATTEMPT, HEADER_PARTS_SENT, HEADER_RETRY_DUE, HEADER_IN_DOUBT}
)


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str | None
    reason: str
    message: OutboundSMS | None
    """None when the body is not an OutboundSMS (it was dead-lettered as a bad payload)."""


def _dead_letter(queue: str, incoming: AbstractIncomingMessage) -> DeadLetter:
    try:
        message: OutboundSMS | None = OutboundSMS.model_validate_json(incoming.body)
    except ValidationError:
        message = None
    reason = str(incoming.headers.get(HEADER_REASON, ""))
    return DeadLetter(queue, incoming.message_id, reason, message)


async def _take(channel: AbstractChannel, queue: str, limit: int) -> list[AbstractIncomingMessage]:
    declared = await channel.get_queue(queue, ensure=True)
    taken: list[AbstractIncomingMessage] = []
    while len(taken) < limit:
        incoming = await declared.get(no_ack=False, fail=False)
        if incoming is None:
            break
        taken.append(incoming)
    return taken


async def list_dead_letters(
    channel: AbstractChannel, queue: str, limit: int = 100
) -> list[DeadLetter]:
    """Up to `limit` dead letters of `queue`, oldest first; they stay in the queue."""
    taken = await _take(channel, queue, limit)
    try:
        return [_dead_letter(queue, incoming) for incoming in taken]
    finally:
        for incoming in taken:
            await incoming.nack(requeue=True)


async def replay_dead_letters(
    channel: AbstractChannel,
    publisher: Publisher,
    queue: str,
    message_ids: Collection[str] | None = None,
    limit: int = 1000,
) -> int:
    """Send the dead letters of `queue` with these message ids (all when None) again; returns
    how many were replayed. Others stay in the queue; so does one whose replay failed."""
    replayed = 0
    for incoming in await _take(channel, queue, limit):
        dead = _dead_letter(queue, incoming)
        wanted = message_ids is None or dead.message_id in message_ids
        if not wanted or dead.message is None:
            await incoming.nack(requeue=True)
            continue
        try:
            await publisher.publish_body(
                incoming.body,
                exchange=OUTBOUND_EXCHANGE,
                routing_key=outbound_key(dead.message.gateway_id, dead.message.priority),
                headers={k: v for k, v in incoming.headers.items() if k not in _DROPPED_HEADERS},
                message_id=incoming.message_id,
                correlation_id=incoming.correlation_id,
                message_type=incoming.type,
            )
        except Exception:
            await incoming.nack(requeue=True)
            raise
        await incoming.ack()
        replayed += 1
    return replayed
