"""What outbound sent, so that a redelivered message is never sent twice.

The guarantee: a message outbound acked as sent has its record in MongoDB (collection
`outbound_sent`, keyed by message id) *before* the ack, written in group commits
(`twoway.batching.GroupCommit`: one `bulk_write` per batch, so the database's ~1,000 writes/s on
the local stack bound batches, not messages). A delivery that RabbitMQ flags `redelivered`
(the consumer died or lost its channel before acking) is looked up first and, if it was sent, not
sent again; the same process also remembers the last ids it sent, so a duplicate delivery there
costs no lookup. What is not covered: a crash between the gateway's answer and the batch write
(a few milliseconds) resends that message, and a gateway timeout after the gateway accepted is
indistinguishable from a failure (at-least-once towards the gateway, as with any HTTP API that has
no idempotency key).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection

from twoway.batching import GroupCommit
from twoway.messages import utc_now
from twoway.storage import Document

SENT_COLLECTION = "outbound_sent"


@dataclass(frozen=True)
class SentRecord:
    message_id: str
    gateway_id: str
    gateway_message_id: str | None
    sent_at: datetime


class SentLedger:
    def __init__(self, collection: AsyncCollection[Document], remember: int = 100_000) -> None:
        self._collection = collection
        self._remember = remember
        self._recent: OrderedDict[str, SentRecord] = OrderedDict()
        self._commit: GroupCommit[SentRecord, None] = GroupCommit(self._write)

    async def ensure_indexes(self, ttl_seconds: int) -> None:
        """Records expire after `ttl_seconds` (longer than any message waits for a retry)."""
        await self._collection.create_index("sent_at", expireAfterSeconds=ttl_seconds)

    async def find(self, message_id: str, *, redelivered: bool) -> SentRecord | None:
        """The record of `message_id` if it was sent; the database is asked on redelivery only."""
        record = self._recent.get(message_id)
        if record is not None or not redelivered:
            return record
        document = await self._collection.find_one({"_id": message_id})
        if document is None:
            return None
        return SentRecord(
            message_id,
            document["gateway_id"],
            document.get("gateway_message_id"),
            document["sent_at"],
        )

    async def record(
        self, message_id: str, gateway_id: str, gateway_message_id: str | None
    ) -> None:
        """Record a send; returns once the record is in the database."""
        record = SentRecord(message_id, gateway_id, gateway_message_id, utc_now())
        await self._commit.submit(record)
        self._recent[message_id] = record
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)

    async def _write(self, records: Sequence[SentRecord]) -> list[None]:
        await self._collection.bulk_write(
            [
                ReplaceOne(
                    {"_id": record.message_id},
                    {
                        "gateway_id": record.gateway_id,
                        "gateway_message_id": record.gateway_message_id,
                        "sent_at": record.sent_at,
                    },
                    upsert=True,
                )
                for record in records
            ],
            ordered=False,
        )
        return [None] * len(records)
