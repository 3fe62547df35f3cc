"""Subscriptions as every edge uses them, and the SDK's event sources with their callbacks, on a
real broker and database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import delete_queues
from tests.support.servers import serving
from twoway.broker import Publisher, PublishFailed
from twoway.messages import EventSource, Subscription
from twoway.sdk import Adapter, AdapterSettings
from twoway.sdk_subscriptions import AdapterContext
from twoway.storage import Document
from twoway.subscriptions import (
    EventSourceRegistry,
    Subscriptions,
    SubscriptionStore,
    UnknownEventSource,
)
from twoway.topology import (
    adapter_queue,
    dead_letter_queue,
    declare_exchanges,
    subscription_events_queue,
)

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

PHONE = "+15551234567"


def subscriptions_of(db: AsyncDatabase[Document], publisher: Publisher) -> Subscriptions:
    return Subscriptions(SubscriptionStore(db, "US"), EventSourceRegistry(db), publisher)


@pytest.fixture
async def publisher(amqp: AbstractRobustConnection) -> AsyncIterator[Publisher]:
    publisher = await Publisher.open(amqp, 5.0)
    await declare_exchanges(publisher.channel)
    yield publisher
    if not publisher.channel.is_closed:
        await publisher.channel.close()


async def test_a_change_the_broker_does_not_take_is_undone(
    mongo_db: AsyncDatabase[Document], publisher: Publisher
) -> None:
    await EventSourceRegistry(mongo_db).replace_adapter_sources(
        "bank", [EventSource(name="bank.News", adapter="bank")]
    )
    subscriptions = subscriptions_of(mongo_db, publisher)
    subscription, _ = await subscriptions.subscribe("bank.News", PHONE, alias="Ann")
    await publisher.channel.close()

    with pytest.raises(PublishFailed):
        await subscriptions.subscribe("bank.News", "+15557654321")
    with pytest.raises(PublishFailed):
        await subscriptions.unsubscribe("bank.News", PHONE)

    assert await subscriptions.get_subscription("bank.News", "+15557654321") is None
    assert await subscriptions.get_subscription("bank.News", PHONE) == subscription


async def test_only_declared_sources_can_be_joined_but_any_can_be_left(
    mongo_db: AsyncDatabase[Document], publisher: Publisher
) -> None:
    subscriptions = subscriptions_of(mongo_db, publisher)
    await subscriptions.store.subscribe("gone.News", PHONE)  # its adapter no longer declares it

    with pytest.raises(UnknownEventSource):
        await subscriptions.subscribe("gone.News", PHONE)
    assert await subscriptions.unsubscribe("gone.News", PHONE) is True


@pytest.fixture
async def news_adapter(amqp: AbstractRobustConnection) -> Adapter:
    queues = [adapter_queue("news"), subscription_events_queue("news")]
    await delete_queues(amqp, [*queues, *(dead_letter_queue(queue) for queue in queues)])
    return Adapter("news")


async def test_an_adapters_event_source_callbacks_run_whoever_changes_a_subscription(
    news_adapter: Adapter,
    make_settings: Callable[..., Any],
    mongo_db: AsyncDatabase[Document],
    publisher: Publisher,
) -> None:
    changes: asyncio.Queue[tuple[str, Subscription]] = asyncio.Queue()
    morning = news_adapter.event_source("Morning", description="headlines at 7")
    news_adapter.event_source("Evening")

    @morning.on_subscribe
    async def joined(context: AdapterContext, subscription: Subscription) -> None:
        assert context.adapter == "news"
        await changes.put(("joined", subscription))

    @morning.on_unsubscribe
    async def left(_context: AdapterContext, subscription: Subscription) -> None:
        await changes.put(("left", subscription))

    with pytest.raises(RuntimeError, match="not running"):
        _ = news_adapter.context
    async with serving(news_adapter.create_app(make_settings(AdapterSettings))):
        assert [s.name for s in await EventSourceRegistry(mongo_db).list()] == [
            "news.Evening",
            "news.Morning",
        ]
        elsewhere = subscriptions_of(mongo_db, publisher)  # e.g. the api, or /subscribeSMS
        subscription, _ = await elsewhere.subscribe(morning.name, PHONE)
        assert await asyncio.wait_for(changes.get(), 5) == ("joined", subscription)

        assert await news_adapter.context.unsubscribe(morning.name, PHONE)
        assert await asyncio.wait_for(changes.get(), 5) == ("left", subscription)

        await elsewhere.subscribe("news.Evening", PHONE)  # no callbacks there
        await asyncio.sleep(0.2)
        assert changes.empty()
