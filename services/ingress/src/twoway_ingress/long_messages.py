"""Long MO posted part by part: kept in MongoDB until the last part, then published whole.

Some gateways (Vonage) post each part of a long SMS on its own, saying which part of how many of
which reference it is (`twoway.gateways.parts`). Ingress answers a part only once it is stored:
collection `inbound_parts`, one document per part whose `_id` is the set's key (gateway, sender,
reference and part count) and the part number, so that a gateway's retry of a part is stored
once (the first copy wins). The post that finds every part of its set stored publishes one
`InboundSMS` (`assemble`): the parts' texts in order, the keyword of the whole text, and part 1's
sender, recipient, gateway message id and params.

Once, even when the last two parts arrive together on two replicas: each request that finds the
set complete claims it by inserting `inbound_long_messages` `{_id: the set's key}`, and MongoDB's
unique `_id` lets one insert win. The claim holds the assembled message, id included, so the
message keeps one id whoever publishes it. The winner publishes, then marks the claim
`published`; the others wait for that and answer as the winner did. If the publish fails, the
winner releases the claim and answers 503: the next post of the set (the gateway retries) takes
it over and publishes the same message; so does a post arriving `stale_after` after the claim
was made by a request that died.

Parts and claims expire an hour (`TWOWAY_LONG_MESSAGE_TTL_SECONDS`) after they were written (TTL
index on `expires_at`): a set still incomplete then never completes and is dropped silently.
Keys are SHA-256 digests; the parts hold the sender and text until they expire. Handsets number
their long SMS with a small counter (one octet on many), so a sender's reference comes back after
256 long SMS: a second long SMS with the same sender, reference and part count within the hour
would be taken for a retry of the first (logged as `long_message_reference_reused`).

Whole SMS never come here: ingress keeps taking them while MongoDB is down; parts then get 503.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web
from pymongo import ASCENDING, ReturnDocument, WriteConcern
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from twoway.gateways.parts import MessagePart
from twoway.messages import InboundSMS, derive_keyword, new_message_id, utc_now
from twoway.service import MONGO_DB, CleanupContext
from twoway.storage import Document
from twoway_ingress.settings import IngressSettings

log = structlog.get_logger(__name__)

PARTS = "inbound_parts"
CLAIMS = "inbound_long_messages"
PENDING, PUBLISHED = "pending", "published"
RELEASED = datetime(1970, 1, 1, tzinfo=UTC)
"""`claimed_at` of a claim given up by a failed publish: stale at once, any post takes it over."""


class StillAssembling(Exception):
    """Another request holds the claim and did not publish in time; the gateway should retry."""


def assemble(parts: Sequence[InboundSMS], message_id: str) -> InboundSMS:
    """One SMS from all its parts, in order."""
    first = parts[0]
    # A keyword the gateway took from part 1's first word is the whole text's first word.
    keyword = "" if first.keyword == derive_keyword(first.text) else first.keyword
    return InboundSMS(
        message_id=message_id,
        gateway_id=first.gateway_id,
        gateway_message_id=first.gateway_message_id,
        sender=first.sender,
        recipient=first.recipient,
        text="".join(part.text for part in parts),
        keyword=keyword,
        params=first.params,
        received_at=max(part.received_at for part in parts),
    )


def set_key(message: InboundSMS, part: MessagePart) -> str:
    names = (message.gateway_id, message.sender, part.reference, str(part.total))
    return hashlib.sha256("\x1f".join(names).encode()).hexdigest()


def _of_another_sms(stored: Document, message: InboundSMS) -> bool:
    """Whether the stored part with `message`'s number is of another SMS: the gateway's ids of
    the two differ (a retry has the same)."""
    first = stored["message"].get("gateway_message_id")
    return bool(first and message.gateway_message_id and first != message.gateway_message_id)


@dataclass(frozen=True)
class Claim:
    """This request's right to publish the long SMS `message` (the set `key`)."""

    key: str
    message: InboundSMS
    claimed_at: datetime


class LongMessages:
    """Parts of long SMS in MongoDB, and the claims that publish each SMS once."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        ttl: timedelta,
        stale_after: timedelta,
        poll_interval: float = 0.05,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        durable = WriteConcern(w="majority")
        self._parts = db.get_collection(PARTS, write_concern=durable)
        self._claims = db.get_collection(CLAIMS, write_concern=durable)
        self._ttl = ttl
        self._stale_after = stale_after
        self._poll_interval = poll_interval
        self._clock = clock
        self._indexed = False

    async def ensure_indexes(self) -> None:
        """Done by the first part each process stores, not at start, which must not wait for
        the database."""
        await self._parts.create_index("expires_at", expireAfterSeconds=0)
        await self._parts.create_index([("set", ASCENDING), ("number", ASCENDING)])
        await self._claims.create_index("expires_at", expireAfterSeconds=0)
        self._indexed = True

    async def add(self, message: InboundSMS, part: MessagePart) -> Claim | None:
        """Store `part` (its text and fields are `message`). The claim to publish the whole SMS
        when this post completed its set; None while parts are missing, or once the SMS is
        published. `StillAssembling` if another request claimed it and has not published it
        yet; `ConnectionFailure` without the database."""
        if not self._indexed:
            await self.ensure_indexes()
        key = set_key(message, part)
        await self._store(key, message, part)
        parts = await self._complete_set(key, part.total)
        if parts is None:
            return None
        return await self._claim(key, parts)

    async def release(self, claim: Claim) -> None:
        """Give the claim up (its publish failed): the next post of the set takes it over."""
        await self._claims.update_one(
            {"_id": claim.key, "state": PENDING, "claimed_at": claim.claimed_at},
            {"$set": {"claimed_at": RELEASED}},
        )

    async def published(self, claim: Claim) -> None:
        await self._claims.update_one({"_id": claim.key}, {"$set": {"state": PUBLISHED}})

    async def _store(self, key: str, message: InboundSMS, part: MessagePart) -> None:
        now = self._clock()
        document = {
            "_id": f"{key}:{part.number}",
            "set": key,
            "number": part.number,
            "message": message.model_dump(mode="json"),
            "expires_at": now + self._ttl,
        }
        try:
            await self._parts.insert_one(document)
            return
        except DuplicateKeyError:
            pass
        # A retry of a stored part, or a part that expired (the TTL monitor runs once a minute).
        stale = await self._parts.replace_one(
            {"_id": document["_id"], "expires_at": {"$lte": now}}, document
        )
        if stale.modified_count:
            return
        stored = await self._parts.find_one({"_id": document["_id"]})
        if stored is not None and _of_another_sms(stored, message):
            log.warning(
                "long_message_reference_reused", gateway_message_id=message.gateway_message_id
            )

    async def _complete_set(self, key: str, total: int) -> list[InboundSMS] | None:
        """The set's parts in order, once every one is stored."""
        cursor = self._parts.find({"set": key, "expires_at": {"$gt": self._clock()}})
        documents = await cursor.sort("number", ASCENDING).to_list()
        if [document["number"] for document in documents] != list(range(1, total + 1)):
            return None
        return [InboundSMS.model_validate(document["message"]) for document in documents]

    async def _claim(self, key: str, parts: Sequence[InboundSMS]) -> Claim | None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._stale_after.total_seconds()
        while True:
            now = self._clock()
            message = assemble(parts, new_message_id())
            try:
                await self._claims.insert_one(
                    {
                        "_id": key,
                        "message": message.model_dump(mode="json"),
                        "state": PENDING,
                        "claimed_at": now,
                        "expires_at": now + self._ttl,
                    }
                )
            except DuplicateKeyError:
                pass
            else:
                return Claim(key, message, now)
            abandoned = await self._claims.find_one_and_update(
                {"_id": key, "state": PENDING, "claimed_at": {"$lt": now - self._stale_after}},
                {"$set": {"claimed_at": now}},
                return_document=ReturnDocument.AFTER,
            )
            if abandoned is not None:
                log.info(
                    "long_message_claim_taken_over", message_id=abandoned["message"]["message_id"]
                )
                return Claim(key, InboundSMS.model_validate(abandoned["message"]), now)
            record = await self._claims.find_one({"_id": key}, {"state": True})
            if record is not None and record["state"] == PUBLISHED:
                return None
            if loop.time() > give_up_at:
                raise StillAssembling("another request is publishing this long SMS")
            if record is not None:
                await asyncio.sleep(self._poll_interval)


LONG_MESSAGES = web.AppKey("long_messages", LongMessages)


def long_messages_context(settings: IngressSettings) -> CleanupContext:
    """The parts store over the app's database (after the MongoDB context)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        app[LONG_MESSAGES] = LongMessages(
            app[MONGO_DB],
            ttl=timedelta(seconds=settings.long_message_ttl_seconds),
            stale_after=timedelta(seconds=2 * settings.publish_timeout + 5),
        )
        yield

    return context
