"""The subscription store and the event-source registry on a real MongoDB-speaking server."""

from __future__ import annotations

import asyncio

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from twoway.messages import EventSource
from twoway.phone import InvalidPhoneNumber
from twoway.storage import Document
from twoway.subscriptions import (
    SUBSCRIPTIONS,
    EventSourceRegistry,
    InvalidEventSource,
    Page,
    SubscriptionStore,
)

pytestmark = pytest.mark.mongo

NEWS = "bank.News"
PHONE = "+15551234567"


@pytest.fixture
async def store(mongo_db: AsyncDatabase[Document]) -> SubscriptionStore:
    store = SubscriptionStore(mongo_db, default_region="US")
    await store.ensure_indexes()
    return store


async def test_subscribing_twice_creates_once_and_keeps_the_first_creation_time(
    store: SubscriptionStore,
) -> None:
    first, created = await store.subscribe(NEWS, PHONE, alias="Ann")
    again, created_again = await store.subscribe(NEWS, PHONE)

    assert (created, created_again) == (True, False)
    assert again == first
    assert await store.get_subscription(NEWS, PHONE) == first
    assert await store.count(NEWS) == 1


async def test_subscribing_again_updates_the_details_given_and_keeps_the_others(
    store: SubscriptionStore,
) -> None:
    await store.subscribe(NEWS, PHONE, gateway_id="sim", alias="Ann", options={"lang": "en"})
    updated, created = await store.subscribe(NEWS, PHONE, alias="Annie")

    assert not created
    assert (updated.gateway_id, updated.alias, updated.options) == ("sim", "Annie", {"lang": "en"})
    assert await store.get_subscription(NEWS, PHONE) == updated


async def test_fifty_concurrent_subscribes_of_one_number_store_one_and_create_once(
    store: SubscriptionStore, mongo_db: AsyncDatabase[Document]
) -> None:
    results = await asyncio.gather(*(store.subscribe(NEWS, PHONE) for _ in range(50)))

    assert sum(created for _, created in results) == 1
    assert all(subscription == results[0][0] for subscription, _ in results)
    assert await mongo_db[SUBSCRIPTIONS].count_documents({}) == 1


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        pytest.param("+15551234567", "+15551234567", id="international"),
        pytest.param("(555) 123-4567", "+15551234567", id="national-default-region"),
        pytest.param("+1 555 123 4567", "+15551234567", id="spaces"),
        pytest.param("011 44 7911 123456", "+447911123456", id="international-prefix"),
        pytest.param("+44 7911 123456", "+447911123456", id="other-country"),
    ],
)
async def test_numbers_are_stored_in_e164_and_found_in_any_format(
    store: SubscriptionStore, given: str, stored: str
) -> None:
    subscription, _ = await store.subscribe(NEWS, given)

    assert subscription.phone == stored
    assert await store.get_subscription(NEWS, stored) == subscription
    assert await store.get_subscription(NEWS, given) == subscription


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("", id="empty"),
        pytest.param("not a number", id="letters"),
        pytest.param("123", id="too-short"),
        pytest.param("+1 555 123 4567 8901 2345", id="too-long"),
    ],
)
async def test_an_invalid_number_is_refused_and_never_stored(
    store: SubscriptionStore, mongo_db: AsyncDatabase[Document], given: str
) -> None:
    with pytest.raises(InvalidPhoneNumber):
        await store.subscribe(NEWS, given)
    assert await mongo_db[SUBSCRIPTIONS].count_documents({}) == 0


@pytest.mark.parametrize("name", ["News", "bank.", ".News", "bank.News!", "bank News"])
async def test_an_invalid_event_source_name_is_refused(store: SubscriptionStore, name: str) -> None:
    with pytest.raises(InvalidEventSource):
        await store.subscribe(name, PHONE)


async def test_unsubscribe_says_whether_it_removed_and_only_that_source(
    store: SubscriptionStore,
) -> None:
    await store.subscribe(NEWS, PHONE)
    await store.subscribe("bank.Alerts", PHONE)

    assert await store.unsubscribe(NEWS, "(555) 123-4567") is True
    assert await store.unsubscribe(NEWS, PHONE) is False
    assert await store.get_subscription(NEWS, PHONE) is None
    assert await store.get_subscription("bank.Alerts", PHONE) is not None


async def test_restore_puts_back_exactly_what_remove_took(store: SubscriptionStore) -> None:
    subscription, _ = await store.subscribe(NEWS, PHONE, user_id="u1", options={"n": 1})
    removed = await store.remove(NEWS, PHONE)
    assert removed == subscription

    await store.restore(subscription)
    assert await store.get_subscription(NEWS, PHONE) == subscription


async def test_pages_walk_every_subscription_once_in_phone_order(
    store: SubscriptionStore,
) -> None:
    phones = [f"+1555000{n:04d}" for n in range(25)]
    for phone in reversed(phones):
        await store.subscribe(NEWS, phone)
    await store.subscribe("bank.Other", "+15559999999")

    seen: list[str] = []
    page = Page(limit=10)
    while True:
        result = await store.list(NEWS, page)
        seen += [subscription.phone for subscription in result.items]
        if result.next_after is None:
            break
        page = Page(limit=10, after=result.next_after)

    assert seen == phones
    assert await store.count(NEWS) == 25


async def test_an_exactly_full_last_page_has_no_next_page(store: SubscriptionStore) -> None:
    for n in range(4):
        await store.subscribe(NEWS, f"+1555000{n:04d}")

    first = await store.list(NEWS, Page(limit=2))
    second = await store.list(NEWS, Page(limit=2, after=first.next_after))

    assert first.next_after == "+15550000001"
    assert [s.phone for s in second.items] == ["+15550000002", "+15550000003"]
    assert second.next_after is None


async def test_recipients_stream_in_batches_from_a_position(store: SubscriptionStore) -> None:
    phones = [f"+1555000{n:04d}" for n in range(7)]
    for phone in phones:
        await store.subscribe(NEWS, phone, gateway_id="sim" if phone.endswith("3") else None)

    batches = [batch async for batch in store.recipients(NEWS, after=phones[1], batch_size=2)]

    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert [r.phone for batch in batches for r in batch] == phones[2:]
    assert [r.gateway_id for r in batches[0]] == [None, "sim"]


async def test_an_adapters_event_sources_are_replaced_as_a_set(
    mongo_db: AsyncDatabase[Document],
) -> None:
    registry = EventSourceRegistry(mongo_db)
    await registry.ensure_indexes()
    news = EventSource(name="bank.News", adapter="bank", description="headlines")
    alerts = EventSource(name="bank.Alerts", adapter="bank")
    other = EventSource(name="shop.Offers", adapter="shop")
    await registry.replace_adapter_sources("bank", [news, alerts])
    await registry.replace_adapter_sources("shop", [other])

    await registry.replace_adapter_sources("bank", [news])

    assert await registry.list() == [news, other]
    assert await registry.get("bank.Alerts") is None
    assert await registry.require("bank.News") == news
    with pytest.raises(ValueError, match="another adapter"):
        await registry.replace_adapter_sources("bank", [other])
