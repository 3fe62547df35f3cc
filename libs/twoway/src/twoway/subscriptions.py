"""Subscriptions of phone numbers to event sources (MobileFirst `subscribeSMS`, `unsubscribeSMS`,
`getSMSSubscription`), kept in MongoDB.

- `SubscriptionStore` is the repository of the `subscriptions` collection, unique on
  (event_source, phone). Numbers are normalised to E.164 first (an invalid number raises
  `InvalidPhoneNumber` and is never stored); `subscribe` is an idempotent upsert that says whether
  it created the subscription. Lists page by keyset on the phone number (never `skip`), and
  `recipients` streams an event source's numbers in that order for a broadcast.
- `EventSourceRegistry` holds the event sources adapters declared (MobileFirst
  `createEventSource`), named `Adapter.Source`.
- `Subscriptions` is what every edge uses (the SDK, the api, `/subscribeSMS`, JOIN/LEAVE): a number
  joins only a declared event source, and each change is announced on `sms.subscriptions` to the
  source's adapter (its on-subscribe / on-unsubscribe callbacks). A change that cannot be announced
  is undone, so the store and the callbacks never disagree.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import structlog
from pydantic import JsonValue
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from twoway.broker import Publisher
from twoway.messages import (
    EVENT_SOURCE_PATTERN,
    EventSource,
    Subscription,
    SubscriptionChanged,
)
from twoway.phone import normalise_phone
from twoway.storage import Document, stored_now
from twoway.topology import SUBSCRIPTIONS_EXCHANGE

log = structlog.get_logger(__name__)

SUBSCRIPTIONS = "subscriptions"
EVENT_SOURCES = "event_sources"
MAX_PAGE = 1000

_EVENT_SOURCE = re.compile(EVENT_SOURCE_PATTERN)


class InvalidEventSource(ValueError):
    """An event source name that is not `Adapter.Source`."""


class UnknownEventSource(LookupError):
    """No adapter declared this event source."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no adapter declared the event source {name!r}")
        self.name = name


def check_event_source(name: str) -> str:
    """`name` if it is a valid event source name (`Adapter.Source`), else `InvalidEventSource`."""
    if not _EVENT_SOURCE.fullmatch(name):
        raise InvalidEventSource(
            f"{name!r} is not an event source name: Adapter.Source, letters, digits, _ and -"
        )
    return name


@dataclass(frozen=True)
class Page:
    """One page of a list: at most `limit` items after the phone number `after`."""

    limit: int = 100
    after: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"a page holds 1 to {MAX_PAGE} items, not {self.limit}")


@dataclass(frozen=True)
class SubscriptionPage:
    items: list[Subscription]
    next_after: str | None
    """Pass as `Page.after` for the next page; None on the last page."""


class Recipient(NamedTuple):
    """What a broadcast needs of a subscription."""

    phone: str
    gateway_id: str | None


RecipientBatch = list[Recipient]

_NO_ID = {"_id": 0}


class SubscriptionStore:
    """The `subscriptions` collection: one document per (event source, phone)."""

    def __init__(self, db: AsyncDatabase[Document], default_region: str) -> None:
        self._subscriptions = db[SUBSCRIPTIONS]
        self._default_region = default_region

    async def ensure_indexes(self) -> None:
        await self._subscriptions.create_index(
            [("event_source", ASCENDING), ("phone", ASCENDING)], unique=True
        )

    def _key(self, event_source: str, phone: str) -> Document:
        return {
            "event_source": check_event_source(event_source),
            "phone": normalise_phone(phone, self._default_region),
        }

    async def subscribe(
        self,
        event_source: str,
        phone: str,
        gateway_id: str | None = None,
        user_id: str | None = None,
        alias: str | None = None,
        options: dict[str, JsonValue] | None = None,
    ) -> tuple[Subscription, bool]:
        """Subscribe `phone` (idempotent): the subscription, and whether this call created it.

        Subscribing again keeps the subscription (and its `created_at`) and updates the details
        given (those left None stay as they were).
        """
        key = self._key(event_source, phone)
        details = {
            name: value
            for name, value in (
                ("gateway_id", gateway_id),
                ("user_id", user_id),
                ("alias", alias),
                ("options", options),
            )
            if value is not None
        }
        created_at = stored_now()
        update: Document = {"$setOnInsert": {"created_at": created_at}}
        if details:
            update["$set"] = details
        try:
            before = await self._upsert(key, update)
        except DuplicateKeyError:
            # A concurrent subscribe inserted it between our match and our insert: now it matches.
            before = await self._upsert(key, update)
        document = {**key, "created_at": created_at, **(before or {}), **details}
        return Subscription.model_validate(document), before is None

    async def _upsert(self, key: Document, update: Document) -> Document | None:
        return await self._subscriptions.find_one_and_update(
            key, update, _NO_ID, upsert=True, return_document=ReturnDocument.BEFORE
        )

    async def remove(self, event_source: str, phone: str) -> Subscription | None:
        """Unsubscribe `phone`; the subscription removed, or None if there was none."""
        document = await self._subscriptions.find_one_and_delete(
            self._key(event_source, phone), _NO_ID
        )
        return None if document is None else Subscription.model_validate(document)

    async def unsubscribe(self, event_source: str, phone: str) -> bool:
        """Unsubscribe `phone`; whether it was subscribed."""
        return await self.remove(event_source, phone) is not None

    async def restore(self, subscription: Subscription) -> None:
        """Put back a subscription exactly as it was (undoes `remove`)."""
        await self._subscriptions.replace_one(
            {"event_source": subscription.event_source, "phone": subscription.phone},
            subscription.model_dump(),
            upsert=True,
        )

    async def get_subscription(self, event_source: str, phone: str) -> Subscription | None:
        document = await self._subscriptions.find_one(self._key(event_source, phone), _NO_ID)
        return None if document is None else Subscription.model_validate(document)

    def _after(self, event_source: str, after: str | None) -> Document:
        query: Document = {"event_source": check_event_source(event_source)}
        if after is not None:
            query["phone"] = {"$gt": after}
        return query

    async def list(self, event_source: str, page: Page) -> SubscriptionPage:
        """One page of `event_source`'s subscriptions, by phone number (keyset: no `skip`)."""
        cursor = (
            self._subscriptions.find(self._after(event_source, page.after), _NO_ID)
            .sort("phone", ASCENDING)
            .limit(page.limit + 1)
        )
        items = [Subscription.model_validate(document) async for document in cursor]
        more = len(items) > page.limit
        items = items[: page.limit]
        return SubscriptionPage(items, items[-1].phone if more else None)

    async def count(self, event_source: str) -> int:
        return await self._subscriptions.count_documents(
            {"event_source": check_event_source(event_source)}
        )

    async def recipients(
        self, event_source: str, *, after: str | None = None, batch_size: int = 1000
    ) -> AsyncGenerator[RecipientBatch, None]:
        """`event_source`'s numbers after `after`, by phone, in lists of up to `batch_size`.

        One cursor streams them (the server hands over `batch_size` documents at a time), so the
        memory used is one batch, however many subscribers there are.
        """
        cursor = (
            self._subscriptions.find(
                self._after(event_source, after), {"_id": 0, "phone": 1, "gateway_id": 1}
            )
            .sort("phone", ASCENDING)
            .batch_size(batch_size)
        )
        batch: RecipientBatch = []
        async with cursor:
            async for document in cursor:
                batch.append(Recipient(document["phone"], document.get("gateway_id")))
                if len(batch) == batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch


class EventSourceRegistry:
    """The `event_sources` collection: the event sources adapters declared, by name."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._sources = db[EVENT_SOURCES]

    async def ensure_indexes(self) -> None:
        await self._sources.create_index([("adapter", ASCENDING)])

    async def replace_adapter_sources(self, adapter: str, sources: Sequence[EventSource]) -> None:
        """Make `sources` the whole set `adapter` declares (idempotent, like its handlers).

        A source dropped from the set keeps its subscriptions: declaring it again brings them
        back, and its subscribers can still leave meanwhile.
        """
        for source in sources:
            if source.adapter != adapter:
                raise ValueError(f"event source {source.name!r} belongs to another adapter")
            await self._sources.replace_one(
                {"_id": source.name}, {"_id": source.name, **source.model_dump()}, upsert=True
            )
        names = [source.name for source in sources]
        await self._sources.delete_many({"adapter": adapter, "_id": {"$nin": names}})

    async def get(self, name: str) -> EventSource | None:
        document = await self._sources.find_one({"_id": name}, _NO_ID)
        return None if document is None else EventSource.model_validate(document)

    async def require(self, name: str) -> EventSource:
        """The event source called `name`; `InvalidEventSource` or `UnknownEventSource`."""
        source = await self.get(check_event_source(name))
        if source is None:
            raise UnknownEventSource(name)
        return source

    async def list(self) -> list[EventSource]:
        cursor = self._sources.find({}, _NO_ID).sort("_id", ASCENDING)
        return [EventSource.model_validate(document) async for document in cursor]


Change = Literal["subscribed", "unsubscribed"]


class Subscriptions:
    """Subscribe, unsubscribe and look up, as every edge does it: declared sources only, and
    every change announced to the source's adapter (or undone if it cannot be)."""

    def __init__(
        self, store: SubscriptionStore, sources: EventSourceRegistry, publisher: Publisher
    ) -> None:
        self.store = store
        self.sources = sources
        self._publisher = publisher

    async def ensure_indexes(self) -> None:
        await self.store.ensure_indexes()
        await self.sources.ensure_indexes()

    async def subscribe(
        self,
        event_source: str,
        phone: str,
        *,
        gateway_id: str | None = None,
        user_id: str | None = None,
        alias: str | None = None,
        options: dict[str, JsonValue] | None = None,
    ) -> tuple[Subscription, bool]:
        """`SubscriptionStore.subscribe` on a declared event source (else `UnknownEventSource`)."""
        source = await self.sources.require(event_source)
        subscription, created = await self.store.subscribe(
            source.name, phone, gateway_id, user_id, alias, options
        )
        if created:
            try:
                await self._announce("subscribed", source, subscription)
            except Exception:
                await self.store.unsubscribe(subscription.event_source, subscription.phone)
                raise
        return subscription, created

    async def unsubscribe(self, event_source: str, phone: str) -> bool:
        """Unsubscribe `phone`; whether it was subscribed. A number can leave an event source
        that is no longer declared (nobody is told then)."""
        removed = await self.store.remove(event_source, phone)
        if removed is None:
            return False
        source = await self.sources.get(removed.event_source)
        if source is not None:
            try:
                await self._announce("unsubscribed", source, removed)
            except Exception:
                await self.store.restore(removed)
                raise
        return True

    async def get_subscription(self, event_source: str, phone: str) -> Subscription | None:
        return await self.store.get_subscription(event_source, phone)

    async def _announce(
        self, change: Change, source: EventSource, subscription: Subscription
    ) -> None:
        await self._publisher.publish(
            SubscriptionChanged(change=change, subscription=subscription),
            exchange=SUBSCRIPTIONS_EXCHANGE,
            routing_key=source.adapter,
            mandatory=False,  # an adapter without callbacks has no queue for them
        )
        log.info(
            "subscription_changed",
            change=change,
            event_source=source.name,
            phone=subscription.phone,
        )
