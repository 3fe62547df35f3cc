"""The message log: every outbound message's status history, in MongoDB (`message_log`).

One document per message (`_id` = its message id) with the latest `status`, its gateway, adapter
and gateway id, and `history`: every `DeliveryEvent` (accepted, sent, delivered, failed, expired)
with its time and detail, in the order they were written. Events come from `sms.events` (what
outbound did, and the gateways' delivery reports through ingress) and are written in group
commits, one `bulk_write` per batch; each event is acked only once written. Documents expire
`ttl` after their last event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from twoway.batching import GroupCommit
from twoway.messages import DeliveryEvent
from twoway.storage import Document

LOG_COLLECTION = "message_log"


class MessageLog:
    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self._collection = collection
        self._commit: GroupCommit[DeliveryEvent, None] = GroupCommit(self._write)

    async def ensure_indexes(self, ttl_seconds: int) -> None:
        await self._collection.create_index("updated_at", expireAfterSeconds=ttl_seconds)

    async def add(self, event: DeliveryEvent) -> None:
        """Append `event` to its message's history; returns once written."""
        await self._commit.submit(event)

    async def get(self, message_id: str) -> Document | None:
        return await self._collection.find_one({"_id": message_id})

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
            "$set": {"status": event.status, "updated_at": event.at, **fields},
            "$push": {"history": entry},
        },
        upsert=True,
    )
