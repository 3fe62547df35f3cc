"""The message log: every outbound message's status history, in MongoDB (`message_log`).

One document per message (`_id` = its message id) with its gateway, adapter and gateway id, and
`history`: every `DeliveryEvent` (accepted, one `retrying` per failed attempt, sent, delivered,
failed, expired) with its time and detail. The services that make events write them: outbound
what it did with a message, ingress the gateways' delivery reports. Writes are group commits,
one `bulk_write` per batch and one update per message (outbound writes a message's `accepted`
together with the outcome of its first attempt); a write returns once it is in the database,
so a message is acked only after its events are logged. `EventRecorder` then publishes them on
`sms.events`, for the adapters' `on_delivery` and the broadcaster: whatever anyone hears of is
already in the log. Documents expire `ttl` after their last event.

Events from outbound and from a gateway race (a fast gateway reports delivery before outbound's
`sent` event is written), so the write order is not the story: `MessageLog.get` orders the history
by stage (accepted, retrying, sent, then a final status) and time, and the message's status is the
last of that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from twoway.batching import GroupCommit
from twoway.broker import Publisher
from twoway.messages import DeliveryEvent, DeliveryStatus
from twoway.storage import Document
from twoway.topology import EVENTS_EXCHANGE, event_key

LOG_COLLECTION = "message_log"

STAGES: dict[str, int] = {
    "accepted": 0,
    "retrying": 1,
    "sent": 2,
    "delivered": 3,
    "failed": 3,
    "expired": 3,
}
"""Where a status comes in a message's life; final statuses share the last stage."""


@dataclass(frozen=True)
class MessageRecord:
    """A message's log: its status and history, in the order things happened to it."""

    message_id: str
    status: DeliveryStatus
    gateway_id: str | None
    adapter: str | None
    gateway_message_id: str | None
    history: list[Document]
    updated_at: datetime


class MessageLog:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._commit: GroupCommit[Sequence[DeliveryEvent], None] = GroupCommit(self._write)

    async def ensure_indexes(self, ttl_seconds: int) -> None:
        await self._collection.create_index("updated_at", expireAfterSeconds=ttl_seconds)

    async def add(self, *events: DeliveryEvent) -> None:
        """Append `events` (of one message) to its history in one update; returns once
        written."""
        if events:
            await self._commit.submit(events)

    async def get(self, message_id: str) -> MessageRecord | None:
        """The log of `message_id` (None if nothing happened to it, or it expired)."""
        document = await self._collection.find_one({"_id": message_id})
        if document is None:
            return None
        history = sorted(document["history"], key=lambda e: (STAGES[e["status"]], e["at"]))
        return MessageRecord(
            message_id,
            history[-1]["status"],
            document.get("gateway_id"),
            document.get("adapter"),
            document.get("gateway_message_id"),
            history,
            document["updated_at"],
        )

    async def _write(self, batch: Sequence[Sequence[DeliveryEvent]]) -> list[None]:
        await self._collection.bulk_write([_update(events) for events in batch], ordered=False)
        return [None] * len(batch)


def _update(events: Sequence[DeliveryEvent]) -> UpdateOne:
    fields: dict[str, Any] = {}
    for event in events:  # what the later events know wins
        known = {
            "gateway_id": event.gateway_id,
            "adapter": event.adapter,
            "gateway_message_id": event.gateway_message_id,
        }
        fields |= {key: value for key, value in known.items() if value is not None}
    entries = [
        {
            "status": event.status,
            "at": event.at,
            "detail": event.detail,
            "gateway_message_id": event.gateway_message_id,
            "event_id": event.message_id,
        }
        for event in events
    ]
    return UpdateOne(
        {"_id": events[0].outbound_id},
        {
            "$set": fields,
            "$max": {"updated_at": max(event.at for event in events)},
            "$push": {"history": {"$each": entries}},
        },
        upsert=True,
    )


class EventRecorder:
    """Log, then tell: a message's events into the message log (one write), then on
    `sms.events` (routing key `<status>.<adapter>`)."""

    def __init__(self, message_log: MessageLog, publisher: Publisher) -> None:
        self.message_log = message_log
        self._publisher = publisher

    async def record(self, *events: DeliveryEvent) -> None:
        await self.message_log.add(*events)
        await self.announce(*events)

    async def announce(self, *events: DeliveryEvent) -> None:
        """Publish `events` without logging them (the log already has what they say), in
        order, all in flight at once."""
        await self._publisher.publish_many(
            [(event, event_key(event.status, event.adapter)) for event in events],
            exchange=EVENTS_EXCHANGE,
            mandatory=False,
        )
