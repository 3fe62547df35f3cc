"""Publishing and consuming on a real RabbitMQ: confirms, mandatory, acks and dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.support.broker import drain, queue_length
from twoway.broker import Consumer, Publisher, PublishFailed, Reject
from twoway.consumed import Delivery
from twoway.messages import InboundSMS
from twoway.topology import (
    INBOUND_EXCHANGE,
    ROUTER_QUEUE,
    dead_letter_queue,
    declare_exchanges,
    declare_work_queue,
    inbound_key,
)

pytestmark = pytest.mark.rabbit

MAX_DELIVERIES = 3


def inbound(text: str = "ECHO hi") -> InboundSMS:
    return InboundSMS(gateway_id="sim", sender="+15551234567", recipient="12345", text=text)


@pytest.fixture
async def publisher(amqp: AbstractRobustConnection) -> AsyncIterator[Publisher]:
    publisher = await Publisher.open(amqp, confirm_timeout=5.0)
    await declare_exchanges(publisher.channel)
    await declare_work_queue(
        publisher.channel, ROUTER_QUEUE, exchange=INBOUND_EXCHANGE, binding_keys=["inbound.#"]
    )
    yield publisher
    await publisher.channel.close()


async def consume_with(
    amqp: AbstractRobustConnection, publisher: Publisher, handle: object
) -> Consumer[InboundSMS]:
    channel = await amqp.channel()
    await channel.set_qos(prefetch_count=8)
    queue = await channel.get_queue(ROUTER_QUEUE)
    consumer = Consumer(
        queue,
        InboundSMS,
        handle,  # type: ignore[arg-type]
        publisher,
        max_deliveries=MAX_DELIVERIES,
    )
    await consumer.start()
    return consumer


async def test_a_confirmed_message_is_in_its_queue_persistent_and_intact(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    message = inbound()
    await publisher.publish(message, exchange=INBOUND_EXCHANGE, routing_key=inbound_key("sim"))

    [delivered] = await drain(amqp, ROUTER_QUEUE, expect=1)
    assert InboundSMS.model_validate_json(delivered.body) == message
    assert delivered.delivery_mode == 2
    assert delivered.message_id == message.message_id


async def test_an_unroutable_publish_fails_instead_of_vanishing(publisher: Publisher) -> None:
    with pytest.raises(PublishFailed, match=r"unroutable|NO_ROUTE|returned|Returned"):
        await publisher.publish(inbound(), exchange="sms.adapters", routing_key="nobody")


async def test_publishing_on_a_closed_connection_fails_cleanly(
    amqp: AbstractRobustConnection,
) -> None:
    publisher = await Publisher.open(amqp, confirm_timeout=1.0)
    await publisher.channel.close()
    with pytest.raises(PublishFailed):
        await publisher.publish(inbound(), exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")


async def test_publish_many_confirms_every_message_with_its_ids_and_the_headers(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    messages = [inbound(f"ECHO {n}") for n in range(50)]
    await publisher.publish_many(
        [(message, inbound_key("sim")) for message in messages],
        exchange=INBOUND_EXCHANGE,
        headers={"x-batch": "b1"},
    )

    delivered = await drain(amqp, ROUTER_QUEUE, expect=50)
    assert [InboundSMS.model_validate_json(d.body) for d in delivered] == messages
    assert [d.message_id for d in delivered] == [m.message_id for m in messages]
    assert {(d.headers["x-batch"], d.delivery_mode, d.content_type) for d in delivered} == {
        ("b1", 2, "application/json")
    }


async def test_publish_many_fails_when_one_message_is_unroutable(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    routable, lost = inbound("ECHO routable"), inbound("ECHO lost")
    with pytest.raises(PublishFailed, match="of 2 messages"):
        await publisher.publish_many(
            [(routable, inbound_key("sim")), (lost, "nowhere")], exchange=INBOUND_EXCHANGE
        )

    [delivered] = await drain(amqp, ROUTER_QUEUE, expect=1)
    assert delivered.message_id == routable.message_id
    assert await queue_length(amqp, ROUTER_QUEUE) == 0


async def test_a_handled_message_is_acked(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    handled: list[InboundSMS] = []

    async def handle(message: InboundSMS, _delivery: Delivery) -> None:
        handled.append(message)

    consumer = await consume_with(amqp, publisher, handle)
    await publisher.publish(inbound(), exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")
    for _ in range(100):
        if handled:
            break
        await asyncio.sleep(0.02)
    await consumer.stop(grace=2)
    assert len(handled) == 1
    assert await queue_length(amqp, ROUTER_QUEUE) == 0


async def test_a_bad_payload_is_dead_lettered_with_the_reason(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    async def handle(_message: InboundSMS, _delivery: Delivery) -> None:
        raise AssertionError("a bad payload must never reach the handler")

    consumer = await consume_with(amqp, publisher, handle)
    await publisher.publish_body(
        b'{"not": "an sms"}', exchange=INBOUND_EXCHANGE, routing_key="inbound.sim"
    )
    [dead] = await drain(amqp, dead_letter_queue(ROUTER_QUEUE), expect=1)
    await consumer.stop(grace=2)
    assert dead.body == b'{"not": "an sms"}'
    assert str(dead.headers["twoway-reason"]).startswith("bad payload")
    assert await queue_length(amqp, ROUTER_QUEUE) == 0


async def test_a_rejected_message_is_dead_lettered_with_the_handlers_reason(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    async def handle(_message: InboundSMS, _delivery: Delivery) -> None:
        raise Reject("this can never be handled")

    consumer = await consume_with(amqp, publisher, handle)
    message = inbound()
    await publisher.publish(message, exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")
    [dead] = await drain(amqp, dead_letter_queue(ROUTER_QUEUE), expect=1)
    await consumer.stop(grace=2)
    assert dead.headers["twoway-reason"] == "this can never be handled"
    assert InboundSMS.model_validate_json(dead.body) == message


async def test_a_handler_that_keeps_failing_is_dead_lettered_with_its_error_after_n_deliveries(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    tries: list[int] = []
    handled: list[InboundSMS] = []

    async def handle(message: InboundSMS, delivery: Delivery) -> None:
        if message.text == "ECHO poison":
            tries.append(delivery.number)
            raise RuntimeError("back-end down")
        handled.append(message)

    consumer = await consume_with(amqp, publisher, handle)
    poison, good = inbound("ECHO poison"), inbound("ECHO good")
    await publisher.publish(poison, exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")
    [dead] = await drain(amqp, dead_letter_queue(ROUTER_QUEUE), expect=1)
    await publisher.publish(good, exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")
    for _ in range(250):
        if handled:
            break
        await asyncio.sleep(0.02)
    await consumer.stop(grace=2)

    assert tries == [1, 2, 3], "tried once per delivery, then given up"
    assert dead.headers["twoway-reason"] == "failed 3 times; last: RuntimeError: back-end down"
    assert InboundSMS.model_validate_json(dead.body) == poison
    assert dead.message_id == poison.message_id
    assert handled == [good], "the message after it is handled"
    assert await queue_length(amqp, ROUTER_QUEUE) == 0


async def test_a_handler_that_succeeds_on_its_last_delivery_is_acked(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    tries: list[int] = []

    async def handle(_message: InboundSMS, delivery: Delivery) -> None:
        tries.append(delivery.number)
        if not delivery.final:
            raise ConnectionError("database restarting")

    consumer = await consume_with(amqp, publisher, handle)
    await publisher.publish(inbound(), exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")
    for _ in range(250):
        if len(tries) == MAX_DELIVERIES:
            break
        await asyncio.sleep(0.02)
    await consumer.stop(grace=2)
    assert tries == [1, 2, 3]
    assert await queue_length(amqp, ROUTER_QUEUE) == 0
    assert await queue_length(amqp, dead_letter_queue(ROUTER_QUEUE)) == 0


async def test_a_retry_copy_counts_its_own_deliveries_from_one(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    await declare_work_queue(
        publisher.channel,
        ROUTER_QUEUE,
        exchange=INBOUND_EXCHANGE,
        binding_keys=["inbound.#"],
        retry_delays=[1],
    )
    seen: list[tuple[int, int]] = []

    async def handle(_message: InboundSMS, delivery: Delivery) -> None:
        seen.append((delivery.attempt, delivery.number))
        if delivery.attempt == 1 and delivery.number == 1:
            raise ConnectionError("database restarting")  # redelivered: x-delivery-count 1
        if delivery.attempt == 1:
            await publisher.retry_later(delivery, ROUTER_QUEUE, 1, 2)

    consumer = await consume_with(amqp, publisher, handle)
    await publisher.publish(inbound(), exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")
    for _ in range(250):
        if len(seen) == 3:
            break
        await asyncio.sleep(0.02)
    await consumer.stop(grace=2)
    assert seen == [(1, 1), (1, 2), (2, 1)], "the copy does not inherit the first's deliveries"


async def test_a_message_whose_deliveries_keep_ending_without_an_ack_is_dead_lettered_unhandled(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    message = inbound("ECHO kills the process")
    await publisher.publish(message, exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")
    for _ in range(MAX_DELIVERIES):  # each time, the consumer dies holding it: no ack, no nack
        channel = await amqp.channel()
        queue = await channel.get_queue(ROUTER_QUEUE)
        taken = None
        for _ in range(250):
            taken = await queue.get(no_ack=False, fail=False)
            if taken is not None:
                break
            await asyncio.sleep(0.02)
        assert taken is not None
        assert taken.message_id == message.message_id
        await channel.close()

    handled: list[InboundSMS] = []

    async def handle(message: InboundSMS, _delivery: Delivery) -> None:
        handled.append(message)

    consumer = await consume_with(amqp, publisher, handle)
    [dead] = await drain(amqp, dead_letter_queue(ROUTER_QUEUE), expect=1)
    await consumer.stop(grace=2)
    assert dead.headers["twoway-reason"] == "redelivered 3 times without an outcome"
    assert InboundSMS.model_validate_json(dead.body) == message
    assert handled == []
    assert await queue_length(amqp, ROUTER_QUEUE) == 0


async def test_a_header_of_the_wrong_type_is_dead_lettered_with_the_reason(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    async def handle(_message: InboundSMS, _delivery: Delivery) -> None:
        raise AssertionError("a message whose headers do not parse must never reach the handler")

    consumer = await consume_with(amqp, publisher, handle)
    message = inbound()
    await publisher.publish(
        message,
        exchange=INBOUND_EXCHANGE,
        routing_key="inbound.sim",
        headers={"twoway-attempt": "second"},
    )
    [dead] = await drain(amqp, dead_letter_queue(ROUTER_QUEUE), expect=1)
    await consumer.stop(grace=2)
    assert str(dead.headers["twoway-reason"]).startswith("bad header twoway-attempt: 'second'")
    assert InboundSMS.model_validate_json(dead.body) == message
    assert await queue_length(amqp, ROUTER_QUEUE) == 0


async def test_stop_waits_for_the_message_in_flight(
    amqp: AbstractRobustConnection, publisher: Publisher
) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def handle(message: InboundSMS, _delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(message.message_id)

    consumer = await consume_with(amqp, publisher, handle)
    await publisher.publish(inbound(), exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")
    await asyncio.wait_for(started.wait(), 5)
    await consumer.stop(grace=5)
    assert len(finished) == 1
    assert await queue_length(amqp, ROUTER_QUEUE) == 0
