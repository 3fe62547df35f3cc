"""The broadcaster on a real broker and database: one bulk message per subscriber that did not
opt out, exactly once, also when a worker fails between its confirms and its checkpoint, when a
broadcast is cut into slices, and when two workers get the same broadcast."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase
from ulid import ULID

from tests.support.broker import delete_queues, drain, queue_length
from tests.support.servers import serving
from tests.support.stack import gateways_file
from twoway.broadcasts import Broadcast, Broadcasts, BroadcastStore, broadcast_message_id
from twoway.broker import Publisher
from twoway.messages import (
    DeliveryEvent,
    EventSource,
    OutboundSMS,
    StartBroadcast,
    derive_message_id,
)
from twoway.optouts import OptOutStore
from twoway.storage import Document
from twoway.subscriptions import EventSourceRegistry, RecipientBatch, SubscriptionStore
from twoway.topology import (
    BROADCAST_ADAPTER,
    BROADCAST_EVENTS_QUEUE,
    BROADCASTS_QUEUE,
    EVENTS_EXCHANGE,
    HEADER_BCC,
    HEADER_REASON,
    OUTBOUND_BULK_QUEUE,
    OUTBOUND_EXCHANGE,
    dead_letter_queue,
    declare_broadcast_queues,
    declare_exchanges,
    declare_work_queue,
    event_key,
    outbound_key,
)
from twoway_broadcaster.app import create_app
from twoway_broadcaster.settings import BroadcasterSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

NEWS = "bank.News"
PHONES = [f"+1555000{n:04d}" for n in range(23)]
OPTED_OUT = PHONES[4]
OPTED_OUT_ELSEWHERE = PHONES[7]
"""Opted out of another short code only: still gets the broadcast."""


@pytest.fixture
async def publisher(amqp: AbstractRobustConnection) -> AsyncIterator[Publisher]:
    await delete_queues(
        amqp,
        [
            q
            for queue in (BROADCASTS_QUEUE, BROADCAST_EVENTS_QUEUE)
            for q in (queue, dead_letter_queue(queue))
        ],
    )
    publisher = await Publisher.open(amqp, 5.0)
    await declare_exchanges(publisher.channel)
    await declare_work_queue(
        publisher.channel,
        OUTBOUND_BULK_QUEUE,
        exchange=OUTBOUND_EXCHANGE,
        binding_keys=[outbound_key("*", "bulk")],
    )
    yield publisher
    await publisher.channel.close()


@pytest.fixture
async def broadcasts(mongo_db: AsyncDatabase[Document], publisher: Publisher) -> Broadcasts:
    sources = EventSourceRegistry(mongo_db)
    await sources.replace_adapter_sources("bank", [EventSource(name=NEWS, adapter="bank")])
    store = SubscriptionStore(mongo_db, "US")
    await store.ensure_indexes()
    for phone in PHONES:
        await store.subscribe(NEWS, phone, gateway_id="sim" if phone == PHONES[0] else None)
    await store.subscribe("bank.Other", "+15559999999")
    optouts = OptOutStore(mongo_db)
    await optouts.opt_out(OPTED_OUT, "12345")
    await optouts.opt_out(OPTED_OUT_ELSEWHERE, "99999")
    return Broadcasts(BroadcastStore(mongo_db), sources, publisher)


@pytest.fixture
def worker_settings(make_settings: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    def settings(**overrides: Any) -> BroadcasterSettings:
        values: dict[str, Any] = {
            "gateways_file": gateways_file(tmp_path, "http://127.0.0.1:9"),
            "batch_size": 5,
            "lease_seconds": 1.0,
            **overrides,
        }
        return make_settings(BroadcasterSettings, **values)  # type: ignore[no-any-return]

    return settings


async def finished(store: BroadcastStore, broadcast_id: str, within: float = 15.0) -> Broadcast:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        broadcast = await store.get(broadcast_id)
        assert broadcast is not None
        if broadcast.status != "running" and broadcast.status != "queued":
            return broadcast
        assert asyncio.get_running_loop().time() < deadline, broadcast
        await asyncio.sleep(0.05)


async def published(amqp: AbstractRobustConnection, expect: int) -> list[AbstractIncomingMessage]:
    messages = await drain(amqp, OUTBOUND_BULK_QUEUE, expect=expect + 1, within=1.0)
    assert len(messages) == expect
    return messages


def assert_once_each(messages: list[AbstractIncomingMessage], broadcast: Broadcast) -> None:
    sms = [OutboundSMS.model_validate_json(message.body) for message in messages]
    counts = Counter(message.to for message in sms)
    assert sorted(counts) == sorted(set(PHONES) - {OPTED_OUT})
    assert set(counts.values()) == {1}
    for message, outbound in zip(messages, sms, strict=True):
        assert outbound.message_id == broadcast_message_id(broadcast, outbound.to)
        assert message.message_id == outbound.message_id
        assert HEADER_BCC not in message.headers
        assert (outbound.priority, outbound.adapter) == ("bulk", BROADCAST_ADAPTER)
        assert outbound.correlation_id == broadcast.broadcast_id
        assert outbound.text == "Markets are up"
    assert {s.to: s.gateway_id for s in sms}[PHONES[0]] == "sim"


def assert_counts(broadcast: Broadcast) -> None:
    assert broadcast.status == "completed"
    assert (broadcast.targeted, broadcast.queued, broadcast.skipped_opted_out) == (
        len(PHONES),
        len(PHONES) - 1,
        1,
    )
    assert broadcast.started_at is not None
    assert broadcast.finished_at is not None


async def test_every_subscriber_but_the_opted_out_gets_one_bulk_message(
    broadcasts: Broadcasts, worker_settings: Callable[..., Any], amqp: AbstractRobustConnection
) -> None:
    async with serving(create_app(worker_settings())):
        requested = await broadcasts.request(NEWS, "Markets are up")
        broadcast = await finished(broadcasts.store, requested.broadcast_id)

    assert_counts(broadcast)
    assert_once_each(await published(amqp, len(PHONES) - 1), broadcast)


async def test_a_failure_between_confirms_and_checkpoint_resends_nothing(
    broadcasts: Broadcasts,
    worker_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint = BroadcastStore.checkpoint
    calls = 0

    async def fail_the_third(self: BroadcastStore, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # batch 3 is published and confirmed, but not checkpointed
            raise ConnectionError("database gone")
        await checkpoint(self, *args, **kwargs)

    monkeypatch.setattr(BroadcastStore, "checkpoint", fail_the_third)
    async with serving(create_app(worker_settings())):
        requested = await broadcasts.request(NEWS, "Markets are up")
        broadcast = await finished(broadcasts.store, requested.broadcast_id)

    assert calls > 3
    assert_counts(broadcast)
    assert_once_each(await published(amqp, len(PHONES) - 1), broadcast)


async def test_a_broadcast_cut_into_slices_sends_each_number_once(
    broadcasts: Broadcasts, worker_settings: Callable[..., Any], amqp: AbstractRobustConnection
) -> None:
    async with serving(create_app(worker_settings(slice_seconds=0.001))):
        requested = await broadcasts.request(NEWS, "Markets are up")
        broadcast = await finished(broadcasts.store, requested.broadcast_id)

    assert_counts(broadcast)
    assert_once_each(await published(amqp, len(PHONES) - 1), broadcast)


async def test_two_workers_given_the_same_broadcast_send_it_once(
    broadcasts: Broadcasts,
    worker_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    publisher: Publisher,
) -> None:
    async with AsyncExitStack() as workers:
        for _ in range(2):
            await workers.enter_async_context(serving(create_app(worker_settings())))
        requested = await broadcasts.request(NEWS, "Markets are up")
        await publisher.publish(  # a duplicate command, as a crash during a hand-over leaves
            StartBroadcast(broadcast_id=requested.broadcast_id),
            exchange="",
            routing_key=BROADCASTS_QUEUE,
        )
        broadcast = await finished(broadcasts.store, requested.broadcast_id)

    assert_counts(broadcast)
    assert_once_each(await published(amqp, len(PHONES) - 1), broadcast)


async def test_a_broadcast_that_fails_on_every_try_ends_failed_with_the_reason(
    broadcasts: Broadcasts,
    worker_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tries = 0

    async def cursor_dies(*_args: Any, **_kwargs: Any) -> AsyncGenerator[RecipientBatch, None]:
        nonlocal tries
        tries += 1
        raise ConnectionError("the subscriptions cursor died")
        yield []  # never reached: an async generator, as `recipients` is

    monkeypatch.setattr(SubscriptionStore, "recipients", cursor_dies)
    settings = worker_settings(max_deliveries=3)
    async with serving(create_app(settings)):
        requested = await broadcasts.request(NEWS, "Markets are up")
        broadcast = await finished(broadcasts.store, requested.broadcast_id)
        [command] = await drain(amqp, dead_letter_queue(BROADCASTS_QUEUE), expect=1)

    assert broadcast.status == "failed"
    assert "the subscriptions cursor died" in broadcast.detail
    assert broadcast.finished_at is not None
    assert tries == settings.max_deliveries
    assert StartBroadcast.model_validate_json(command.body).broadcast_id == broadcast.broadcast_id
    assert command.headers[HEADER_REASON] == broadcast.detail
    await published(amqp, 0)


async def test_delivery_events_are_counted_per_broadcast(
    broadcasts: Broadcasts, worker_settings: Callable[..., Any], publisher: Publisher
) -> None:
    async with serving(create_app(worker_settings())):
        first = await broadcasts.request(NEWS, "one")
        second = await broadcasts.request(NEWS, "two")
        events = [
            (first, "sent"),
            (first, "sent"),
            (first, "failed"),
            (first, "expired"),
            (second, "sent"),
        ]
        await asyncio.gather(
            *(
                publisher.publish(
                    DeliveryEvent(
                        correlation_id=broadcast.broadcast_id,
                        outbound_id="x",
                        status=status,
                        adapter=BROADCAST_ADAPTER,
                    ),
                    exchange=EVENTS_EXCHANGE,
                    routing_key=event_key(status, BROADCAST_ADAPTER),
                )
                for broadcast, status in events
            )
        )
        await finished(broadcasts.store, first.broadcast_id)
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            one = await broadcasts.store.get(first.broadcast_id)
            two = await broadcasts.store.get(second.broadcast_id)
            assert one is not None
            assert two is not None
            if (one.sent, one.failed, two.sent) == (2, 2, 1):
                break
            assert asyncio.get_running_loop().time() < deadline, (one, two)
            await asyncio.sleep(0.05)


async def test_a_request_again_with_its_id_is_the_same_broadcast_queued_again_until_it_starts(
    broadcasts: Broadcasts, publisher: Publisher, amqp: AbstractRobustConnection
) -> None:
    """What a handler's `notify` does when the handler runs again: the broadcast the first run
    made, its command queued again while no worker has taken it (the first run may have died
    before queueing it), and not once a worker has."""
    await declare_broadcast_queues(publisher.channel)
    broadcast_id = derive_message_id(str(ULID()), "bank", "news", "1")
    first = await broadcasts.request(NEWS, "Markets are up", broadcast_id=broadcast_id)
    again = await broadcasts.request(NEWS, "Markets are up", broadcast_id=broadcast_id)
    assert (again.broadcast_id, again.status, again.created_at) == (
        broadcast_id,
        "queued",
        first.created_at,
    )
    assert await queue_length(amqp, BROADCASTS_QUEUE) == 2

    await broadcasts.store.claim(broadcast_id, "worker", timedelta(seconds=30))
    running = await broadcasts.request(NEWS, "Markets are up", broadcast_id=broadcast_id)
    assert running.status == "running"
    assert await queue_length(amqp, BROADCASTS_QUEUE) == 2
