"""Dedupe of inbound SMS: a gateway that posts the same SMS twice reaches an adapter once.

A gateway retries a post it thinks failed (a timeout, a 5xx), so ingress can accept the same SMS
twice under two message ids. The router claims a key for each SMS before it acts on it:
- the gateway's own id, when it sent one: `gateway_id` + `gateway_message_id`, remembered for
  `id_retention` (a day by default: gateways retry for minutes, not days);
- otherwise the content: `gateway_id` + sender + recipient + text, remembered for a short
  `content_window`, because a person may well send the same text again later (set the window
  to 0 to turn content dedupe off for gateways that never retry).

Claims live in MongoDB (`inbound_dedupe`: the key is the `_id`, so the unique index is free; a
TTL index on `expires_at` removes old claims), so every router replica sees them. The key is a
SHA-256 digest: the collection holds no phone numbers and no text. A claim records the message id
that made it, so a redelivery of that same message (the router failed after claiming) is handled
again rather than taken for a duplicate.

Writes are group-committed (`twoway.batching`): one `insert_many` per batch of concurrent claims,
because one insert per SMS would cap the router at the database's write rate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from twoway.batching import GroupCommit
from twoway.messages import InboundSMS, utc_now
from twoway.storage import Document

DEDUPE = "inbound_dedupe"
DUPLICATE_KEY = 11000


@dataclass(frozen=True)
class DedupeKey:
    digest: str
    ttl: timedelta


def dedupe_key(
    message: InboundSMS, *, id_retention: timedelta, content_window: timedelta
) -> DedupeKey | None:
    """The key under which `message` is claimed; None when it is not deduped at all."""
    if message.gateway_message_id:
        parts = ["id", message.gateway_id, message.gateway_message_id]
        ttl = id_retention
    elif content_window > timedelta(0):
        parts = ["content", message.gateway_id, message.sender, message.recipient, message.text]
        ttl = content_window
    else:
        return None
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return DedupeKey(digest, ttl)


@dataclass(frozen=True)
class Claim:
    key: DedupeKey
    message_id: str


class DedupeStore:
    """Claims of dedupe keys in MongoDB, written in batches."""

    def __init__(
        self, db: AsyncDatabase[Document], clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._claims = db[DEDUPE]
        self._clock = clock
        self._writer: GroupCommit[Claim, bool] = GroupCommit(self._claim_batch)

    async def ensure_indexes(self) -> None:
        await self._claims.create_index("expires_at", expireAfterSeconds=0)

    async def claim(self, key: DedupeKey, message_id: str) -> bool:
        """True if `message_id` holds the claim on `key` (the first copy, or a redelivery of
        it); False if another message holds it: this one is a duplicate."""
        return await self._writer.submit(Claim(key, message_id))

    async def _claim_batch(self, claims: Sequence[Claim]) -> list[bool]:
        now = self._clock()
        documents = [
            {"_id": c.key.digest, "message_id": c.message_id, "expires_at": now + c.key.ttl}
            for c in claims
        ]
        try:
            await self._claims.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            errors = error.details["writeErrors"]
            if any(item["code"] != DUPLICATE_KEY for item in errors):
                raise
            taken = {item["index"] for item in errors}
            return [
                await self._settle(claim, now) if index in taken else True
                for index, claim in enumerate(claims)
            ]
        return [True] * len(claims)

    async def _settle(self, claim: Claim, now: datetime) -> bool:
        """A key someone holds already: ours if it is our own message's or it has expired.

        Only duplicates and redeliveries come here, so these reads and writes stay rare.
        """
        holder = await self._claims.find_one({"_id": claim.key.digest})
        if holder is not None and holder["message_id"] == claim.message_id:
            return True
        try:
            await self._claims.update_one(
                {"_id": claim.key.digest, "expires_at": {"$lte": now}},
                {"$set": {"message_id": claim.message_id, "expires_at": now + claim.key.ttl}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True
