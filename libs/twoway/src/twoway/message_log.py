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

Outbound also writes `attempt` (`AttemptStarted`: which attempt, to which gateway, when) right
before it sends a request to a gateway, together with the `accepted` event on a first attempt;
any later event but `accepted` and `unknown` (the attempt's outcome, or a delivery report) clears
it. An `attempt` still there when a message comes back to outbound is an attempt in doubt: the
gateway may or may not have the message (`twoway_outbound.in_doubt`).

Events from outbound and from a gateway race (a fast gateway reports delivery before outbound's
`sent` event is written), so the write order is not the story: `MessageLog.get` orders the history
by stage (accepted, retrying, sent, then a final status) and time, and the message's status is the
last of that order.
"""

from __future__ import annotations

import dataclasses
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
    "unknown": 2,
    "delivered": 3,
    "failed": 3,
    "expired": 3,
}
"""Where a status comes in a message's life; final statuses share the last stage."""

SETTLES_ATTEMPT = frozenset(STAGES) - {"accepted", "unknown"}
"""Statuses that tell how an attempt went (its outcome, or the gateway's report on the message)."""


@dataclass(frozen=True)
class AttemptStarted:
    """Outbound is sending (or was, if it stopped before logging the outcome) an attempt."""

    attempt: int
    gateway_id: str
    at: datetime


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
    attempt: AttemptStarted | None = None
    """The attempt whose outcome is not logged (yet): in flight, or in doubt."""


@dataclass(frozen=True)
class _Write:
    """One message's part of a group commit: its events, and the attempt it starts."""

    message_id: str
    events: Sequence[DeliveryEvent]
    attempt: AttemptStarted | None


class MessageLog:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._commit: GroupCommit[_Write, None] = GroupCommit(self._write)

    async def ensure_indexes(self, ttl_seconds: int) -> None:
        await self._collection.create_index("updated_at", expireAfterSeconds=ttl_seconds)

    async def add(self, *events: DeliveryEvent) -> None:
        """Append `events` (of one message) to its history in one update; returns once
        written."""
        if events:
            await self._commit.submit(_Write(events[0].outbound_id, events, None))

    async def start_attempt(
        self, message_id: str, attempt: AttemptStarted, *events: DeliveryEvent
    ) -> None:
        """Note that `attempt` of `message_id` is about to be sent, with `events` (`accepted`),
        in one update; returns once written."""
        await self._commit.submit(_Write(message_id, events, attempt))

    async def get(self, message_id: str) -> MessageRecord | None:
        """The log of `message_id` (None if nothing happened to it, or it expired)."""
        document = await self._collection.find_one({"_id": message_id})
        if document is None:
            return None
        history = sorted(document["history"], key=lambda e: (STAGES[e["status"]], e["at"]))
        attempt = document.get("attempt")
        return MessageRecord(
            message_id,
            history[-1]["status"],
            document.get("gateway_id"),
            document.get("adapter"),
            document.get("gateway_message_id"),
            history,
            document["updated_at"],
            None if attempt is None else AttemptStarted(**attempt),
        )

    async def _write(self, batch: Sequence[_Write]) -> list[None]:
        await self._collection.bulk_write([_update(write) for write in batch], ordered=False)
        return [None] * len(batch)


def _update(write: _Write) -> UpdateOne:
    events = write.events
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
    times = [event.at for event in events] + ([write.attempt.at] if write.attempt else [])
    update: dict[str, Any] = {
        "$max": {"updated_at": max(times)},
        "$push": {"history": {"$each": entries}},
    }
    if write.attempt is not None:
        fields["attempt"] = dataclasses.asdict(write.attempt)
    elif any(event.status in SETTLES_ATTEMPT for event in events):
        update["$unset"] = {"attempt": ""}
    if fields:
        update["$set"] = fields
    return UpdateOne({"_id": write.message_id}, update, upsert=True)


class EventRecorder:
    """Log, then tell: a message's events into the message log (one write), then on
    `sms.events` (routing key `<status>.<adapter>`)."""

    def __init__(self, message_log: MessageLog, publisher: Publisher) -> None:
        self.message_log = message_log
        self._publisher = publisher

    async def record(self, *events: DeliveryEvent, logged: Sequence[DeliveryEvent] = ()) -> None:
        """Log `events`, then publish `logged` (earlier events of the message, already in the
        log but not told yet) and them, in that order."""
        await self.message_log.add(*events)
        await self.announce(*logged, *events)

    async def announce(self, *events: DeliveryEvent) -> None:
        """Publish `events` without logging them (the log already has what they say), in
        order, all in flight at once."""
        await self._publisher.publish_many(
            [(event, event_key(event.status, event.adapter)) for event in events],
            exchange=EVENTS_EXCHANGE,
            mandatory=False,
        )
