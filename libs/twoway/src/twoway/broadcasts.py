"""Broadcasts: a notification to every subscriber of an event source, and how far it got.

A broadcast is requested (the api's `POST /event-sources/{id}/notifications`, the SDK's
`notify`) by writing its record to the `broadcasts` collection and publishing a
`StartBroadcast` command; the broadcaster worker fans it out (see twoway_broadcaster). The record
holds the progress counts the api reports (targeted, queued, skipped opted-out, sent, failed) and
the worker's resume state: the phone number up to which every message is published and counted
(`checkpoint`), and a lease, so that only one worker runs a broadcast at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from ulid import ULID

from twoway.broker import Publisher
from twoway.messages import StartBroadcast, derive_message_id, utc_now
from twoway.storage import Document, stored_now
from twoway.subscriptions import EventSourceRegistry, Subscriptions, SubscriptionStore
from twoway.topology import BROADCASTS_QUEUE, declare_broadcast_queues

BROADCASTS = "broadcasts"

BroadcastStatus = Literal["queued", "running", "completed", "failed"]
DeliveryCount = Literal["sent", "failed"]


class Broadcast(BaseModel):
    """A broadcast as the api shows it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    broadcast_id: str
    event_source: str
    text: str
    gateway_id: str | None = None
    sender: str | None = Field(default=None, description="None: the gateway's default sender")
    not_after: AwareDatetime | None = None
    status: BroadcastStatus = "queued"
    detail: str = ""
    targeted: int = Field(default=0, description="Subscribers when it started; exact once done")
    queued: int = Field(default=0, description="Messages the broker confirmed")
    skipped_opted_out: int = 0
    sent: int = Field(default=0, description="Messages the gateway accepted")
    failed: int = Field(default=0, description="Messages that failed or expired")
    created_at: AwareDatetime = Field(default_factory=utc_now)
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None


@dataclass(frozen=True)
class BroadcastRun:
    """A broadcast a worker holds the lease of, and where to resume it."""

    broadcast: Broadcast
    checkpoint: str | None
    """Every subscriber up to this phone number (in sort order) has been dealt with."""


def broadcast_message_id(broadcast: Broadcast, phone: str) -> str:
    """The message id of `broadcast`'s SMS to `phone`: the same however often it is published
    (`derive_message_id`)."""
    return derive_message_id(broadcast.broadcast_id, phone)


class LeaseLost(Exception):
    """Another worker took over the broadcast (this one was too slow to renew its lease)."""


def _in_force(worker: str, now: datetime) -> Document:
    """Query part: the lease is free, expired, or `worker`'s."""
    return {"$or": [{"lease_until": None}, {"lease_until": {"$lt": now}}, {"lease_owner": worker}]}


class BroadcastStore:
    """The `broadcasts` collection."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._broadcasts = db[BROADCASTS]

    async def create(
        self,
        event_source: str,
        text: str,
        *,
        gateway_id: str | None = None,
        sender: str | None = None,
        not_after: datetime | None = None,
        broadcast_id: str | None = None,
    ) -> tuple[Broadcast, bool]:
        """Record a new broadcast (a new id unless `broadcast_id` is given); with the id of one
        that exists, that one, and False: whether it was created."""
        broadcast = Broadcast(
            broadcast_id=broadcast_id or str(ULID()),
            event_source=event_source,
            text=text,
            gateway_id=gateway_id,
            sender=sender,
            not_after=not_after,
            created_at=stored_now(),
        )
        document = broadcast.model_dump()
        try:
            await self._broadcasts.insert_one(
                {"_id": broadcast.broadcast_id, **document, "checkpoint": None, "lease_until": None}
            )
        except DuplicateKeyError:
            existing = await self.get(broadcast.broadcast_id)
            if existing is None:  # gone again at once: only an operator deletes broadcasts
                raise
            return existing, False
        return broadcast, True

    async def get(self, broadcast_id: str) -> Broadcast | None:
        document = await self._broadcasts.find_one({"_id": broadcast_id})
        return None if document is None else Broadcast.model_validate(document)

    async def fail(self, broadcast_id: str, detail: str) -> None:
        await self._broadcasts.update_one(
            {"_id": broadcast_id},
            {"$set": {"status": "failed", "detail": detail, "finished_at": utc_now()}},
        )

    async def claim(self, broadcast_id: str, worker: str, lease: timedelta) -> BroadcastRun | None:
        """Take the lease of an unfinished broadcast; None if another worker holds it.

        Raises `LookupError` if the broadcast does not exist or is finished.
        """
        now = utc_now()
        document = await self._broadcasts.find_one_and_update(
            {
                "_id": broadcast_id,
                "status": {"$in": ["queued", "running"]},
                **_in_force(worker, now),
            },
            {"$set": {"status": "running", "lease_owner": worker, "lease_until": now + lease}},
            return_document=ReturnDocument.AFTER,
        )
        if document is not None:
            return BroadcastRun(Broadcast.model_validate(document), document.get("checkpoint"))
        existing = await self.get(broadcast_id)
        if existing is None or existing.status not in ("queued", "running"):
            raise LookupError(
                f"broadcast {broadcast_id} is {existing.status if existing else None}"
            )
        return None

    async def start(self, broadcast_id: str, worker: str, targeted: int) -> None:
        """Record the first start of a fan-out: when, and how many subscribers it targets."""
        await self._update(
            broadcast_id, worker, {"$set": {"started_at": utc_now(), "targeted": targeted}}
        )

    async def checkpoint(
        self,
        broadcast_id: str,
        worker: str,
        position: str,
        *,
        queued: int,
        skipped: int,
        lease: timedelta,
    ) -> None:
        """Every subscriber up to `position` is dealt with: count them, renew the lease."""
        await self._update(
            broadcast_id,
            worker,
            {
                "$set": {"checkpoint": position, "lease_until": utc_now() + lease},
                "$inc": {"queued": queued, "skipped_opted_out": skipped},
            },
        )

    async def complete(self, broadcast_id: str, worker: str) -> Broadcast:
        """Mark the fan-out done; `targeted` becomes what it really reached."""
        document = await self._broadcasts.find_one(
            {"_id": broadcast_id, "lease_owner": worker}, {"queued": 1, "skipped_opted_out": 1}
        )
        if document is None:
            raise LeaseLost(broadcast_id)
        targeted = document["queued"] + document["skipped_opted_out"]
        update = {
            "$set": {
                "status": "completed",
                "finished_at": utc_now(),
                "targeted": targeted,
                "lease_until": None,
            }
        }
        await self._update(broadcast_id, worker, update)
        completed = await self.get(broadcast_id)
        assert completed is not None
        return completed

    async def release(self, broadcast_id: str, worker: str) -> None:
        """Give the lease up (a worker that stops mid-broadcast), so another takes over at once."""
        await self._broadcasts.update_one(
            {"_id": broadcast_id, "lease_owner": worker}, {"$set": {"lease_until": None}}
        )

    async def _update(self, broadcast_id: str, worker: str, update: Document) -> None:
        result = await self._broadcasts.update_one(
            {"_id": broadcast_id, "lease_owner": worker}, update
        )
        if result.matched_count == 0:
            raise LeaseLost(broadcast_id)

    async def add_delivery_counts(self, counts: Mapping[str, Mapping[DeliveryCount, int]]) -> None:
        """Add sent / failed counts to many broadcasts in one bulk write."""
        if counts:
            await self._broadcasts.bulk_write(
                [
                    UpdateOne({"_id": broadcast_id}, {"$inc": dict(by_status)})
                    for broadcast_id, by_status in counts.items()
                ],
                ordered=False,
            )


class Broadcasts:
    """Requesting a broadcast, as the api and the SDK do it."""

    def __init__(
        self, store: BroadcastStore, sources: EventSourceRegistry, publisher: Publisher
    ) -> None:
        self.store = store
        self._sources = sources
        self._publisher = publisher

    async def request(
        self,
        event_source: str,
        text: str,
        *,
        gateway_id: str | None = None,
        sender: str | None = None,
        not_after: datetime | None = None,
        correlation_id: str | None = None,
        broadcast_id: str | None = None,
    ) -> Broadcast:
        """Record a broadcast to `event_source`'s subscribers and queue it for the broadcaster.

        A `broadcast_id` given makes the request idempotent: a second request with it (a
        handler that runs again) is the broadcast the first made, queued again only if it never
        started (the first may have stopped before queueing it; a second command for it is
        harmless, since the broadcaster runs a broadcast once).
        Raises `UnknownEventSource`, or `PublishFailed` (the broadcast is then marked failed).
        """
        source = await self._sources.require(event_source)
        broadcast, created = await self.store.create(
            source.name,
            text,
            gateway_id=gateway_id,
            sender=sender,
            not_after=not_after,
            broadcast_id=broadcast_id,
        )
        if not created and broadcast.status != "queued":
            return broadcast
        command = StartBroadcast(
            broadcast_id=broadcast.broadcast_id,
            correlation_id=correlation_id or broadcast.broadcast_id,
        )
        try:
            await self._publisher.publish(command, exchange="", routing_key=BROADCASTS_QUEUE)
        except Exception:
            await self.store.fail(broadcast.broadcast_id, "the broker did not take the broadcast")
            raise
        return broadcast


async def open_subscription_services(
    db: AsyncDatabase[Document], publisher: Publisher, default_region: str
) -> tuple[Subscriptions, Broadcasts]:
    """The subscription and broadcast use cases over `db` and `publisher`, for a service that
    offers them (the api, an adapter): indexes ensured, the broadcaster's queues declared."""
    sources = EventSourceRegistry(db)
    subscriptions = Subscriptions(SubscriptionStore(db, default_region), sources, publisher)
    await subscriptions.ensure_indexes()
    await declare_broadcast_queues(publisher.channel)
    return subscriptions, Broadcasts(BroadcastStore(db), sources, publisher)
