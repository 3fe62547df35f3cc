"""The message log: every outbound message's status history, in MongoDB (`message_log`).

One document per message (`_id` = its message id) with its gateway, adapter and gateway id, and
`history`: every `DeliveryEvent` (accepted, one `retrying` per failed attempt, sent, delivered,
failed, expired) with its time and detail. Events come from `sms.events` (what outbound did, and
the gateways' delivery reports through ingress) and are written in group commits, one
`bulk_write` per batch; each event is acked only once written. Documents expire `ttl` after
their last event.

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
from twoway.messages import DeliveryEvent, DeliveryStatus
from twoway.storage import Document

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
        self._commit: GroupCommit[DeliveryEvent, None] = GroupCommit(self._write)

    async def ensure_indexes(self, ttl_seconds: int) -> None:
        await self._collection.create_index("updated_at", expireAfterSeconds=ttl_seconds)

    async def add(self, event: DeliveryEvent) -> None:
        """Append `event` to its message's history; returns once written."""
        await self._commit.submit(event)

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

    async def _write(self, events: Sequence[DeliveryEvent]) -> list[None]:
        await self._collection.bulk_write([_update(event) for event in events], ordered=False)
        return [None] * len(events)


def _update(event: DeliveryEvent) -> UpdateOne:
    entry = {
        "status": event.status,
        "at": event.at,
        "detail": event.detail,
        "gateway_message_id": event.gateway_message_id,
        "event_id": event.message_id,
    }
    known: dict[str, Any] = {
        "gateway_id": event.gateway_id,
        "adapter": event.adapter,
        "gateway_message_id": event.gateway_message_id,
    }
    fields = {key: value for key, value in known.items() if value is not None}
    return UpdateOne(
        {"_id": event.outbound_id},
        {
            "$set": fields,
            "$max": {"updated_at": event.at},
            "$push": {"history": entry},
        },
        upsert=True,
    )
