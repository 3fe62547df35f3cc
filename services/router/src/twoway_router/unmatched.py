"""What happens to an SMS no handler matched: the configured fallback, and a record.

The fallback is chosen per gateway and recipient (`UnmatchedFallback` rules in the settings; the
most specific rule that matches wins, the first of equals; no rule: `none`). Every unmatched SMS
is counted and recorded in MongoDB (`unmatched`, kept for `unmatched_retention_seconds`), so an
operator can see which keywords people text that nobody handles, whatever the fallback did with
it. Records are group-committed: one `insert_many` per batch, not one insert per SMS.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from twoway.batching import GroupCommit
from twoway.dedupe import DUPLICATE_KEY
from twoway.messages import InboundSMS, utc_now
from twoway.storage import Document
from twoway_router.settings import UnmatchedFallback

UNMATCHED = "unmatched"
PARK = UnmatchedFallback()


def choose_fallback(rules: Sequence[UnmatchedFallback], message: InboundSMS) -> UnmatchedFallback:
    """The rule for `message`: the most specific that matches (recipient counts more than
    gateway), the first of equals; `PARK` when none does."""
    best, best_score = PARK, -1
    for rule in rules:
        if rule.gateway_id not in (None, message.gateway_id):
            continue
        if rule.recipient not in (None, message.recipient):
            continue
        score = 2 * (rule.recipient is not None) + (rule.gateway_id is not None)
        if score > best_score:
            best, best_score = rule, score
    return best


class UnmatchedRecord:
    """The `unmatched` collection: one document per unmatched SMS, expiring after `retention`."""

    def __init__(self, db: AsyncDatabase[Document], retention: timedelta) -> None:
        self._records = db[UNMATCHED]
        self._retention = retention
        self._writer: GroupCommit[Document, None] = GroupCommit(self._insert)

    async def ensure_indexes(self) -> None:
        await self._records.create_index("expires_at", expireAfterSeconds=0)
        await self._records.create_index("keyword")

    async def record(self, message: InboundSMS, fallback: UnmatchedFallback) -> None:
        document = {
            "_id": message.message_id,
            "gateway_id": message.gateway_id,
            "sender": message.sender,
            "recipient": message.recipient,
            "keyword": message.keyword,
            "text": message.text,
            "received_at": message.received_at,
            "fallback": fallback.action,
            "expires_at": utc_now() + self._retention,
        }
        await self._writer.submit(document)

    async def _insert(self, documents: Sequence[Document]) -> list[None]:
        try:
            await self._records.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            # A redelivered SMS is recorded already: its id is the record's _id.
            if any(item["code"] != DUPLICATE_KEY for item in error.details["writeErrors"]):
                raise
        return [None] * len(documents)
