"""Listing and replaying outbound's dead letters on a real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from tests.support.broker import drain, queue_length
from twoway.broker import Publisher
from twoway.dead_letters import OUTBOUND_DEAD_LETTER_QUEUES, list_dead_letters, replay_dead_letters
from twoway.messages import OutboundSMS
from twoway.topology import (
    DEAD_LETTER_EXCHANGE,
    HEADER_ATTEMPT,
    HEADER_IN_DOUBT,
    HEADER_REASON,
    OUTBOUND_BULK_QUEUE,
    OUTBOUND_EXCHANGE,
    OUTBOUND_QUEUE,
    declare_exchanges,
    declare_work_queue,
)

pytestmark = pytest.mark.rabbit

DEAD = OUTBOUND_DEAD_LETTER_QUEUES[0]


@pytest.fixture
async def broker(
    amqp: AbstractRobustConnection,
) -> AsyncIterator[tuple[AbstractChannel, Publisher]]:
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    await declare_exchanges(publisher.channel)
    for queue, key in ((OUTBOUND_QUEUE, "*"), (OUTBOUND_BULK_QUEUE, "*.bulk")):
        await declare_work_queue(
            publisher.channel, queue, exchange=OUTBOUND_EXCHANGE, binding_keys=[f"outbound.{key}"]
        )
    channel = await amqp.channel()
    yield channel, publisher
    await channel.close()
    await publisher.channel.close()


async def dead_letter(publisher: Publisher, message: OutboundSMS, reason: str) -> None:
    await publisher.publish(
        message,
        exchange=DEAD_LETTER_EXCHANGE,
        routing_key=OUTBOUND_QUEUE,
        headers={HEADER_REASON: reason, HEADER_ATTEMPT: 6, HEADER_IN_DOUBT: 1},
    )


async def test_list_leaves_them_and_replay_sends_the_chosen_back(
    broker: tuple[AbstractChannel, Publisher], amqp: AbstractRobustConnection
) -> None:
    channel, publisher = broker
    reply = OutboundSMS(to="+15551234567", text="one", gateway_id="sim")
    bulk = OutboundSMS(to="+15551234568", text="two", gateway_id="sim", priority="bulk")
    kept = OutboundSMS(to="+15551234569", text="three")
    for message, reason in ((reply, "HTTP 400"), (bulk, "too long"), (kept, "HTTP 403")):
        await dead_letter(publisher, message, reason)

    listed = await list_dead_letters(channel, DEAD)
    assert [(d.message_id, d.reason) for d in listed] == [
        (reply.message_id, "HTTP 400"),
        (bulk.message_id, "too long"),
        (kept.message_id, "HTTP 403"),
    ]
    assert listed[0].message == reply
    assert len(await list_dead_letters(channel, DEAD)) == 3  # still there

    replayed = await replay_dead_letters(
        channel, publisher, DEAD, {reply.message_id, bulk.message_id}
    )
    assert replayed == 2
    [again] = await drain(amqp, OUTBOUND_QUEUE, expect=1)
    assert again.message_id == reply.message_id
    assert HEADER_REASON not in again.headers
    assert HEADER_ATTEMPT not in again.headers
    assert HEADER_IN_DOUBT not in again.headers  # held, given up on: the operator resends it
    [again_bulk] = await drain(amqp, OUTBOUND_BULK_QUEUE, expect=1)
    assert again_bulk.message_id == bulk.message_id
    assert [d.message_id for d in await list_dead_letters(channel, DEAD)] == [kept.message_id]


async def test_a_bad_payload_is_listed_but_never_replayed(
    broker: tuple[AbstractChannel, Publisher], amqp: AbstractRobustConnection
) -> None:
    channel, publisher = broker
    await publisher.publish_body(
        b"{not json",
        exchange=DEAD_LETTER_EXCHANGE,
        routing_key=OUTBOUND_QUEUE,
        headers={HEADER_REASON: "bad payload"},
        message_id="m-bad",
    )
    [listed] = await list_dead_letters(channel, DEAD)
    assert (listed.message_id, listed.reason, listed.message) == ("m-bad", "bad payload", None)
    assert await replay_dead_letters(channel, publisher, DEAD) == 0
    assert await queue_length(amqp, DEAD) == 1
