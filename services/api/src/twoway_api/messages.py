"""`POST /messages`: send an SMS through the api, e.g. a back-end's late answer to a texter.

The body names `to`, `text`, and optionally `gateway_id` and `in_reply_to` (the message id of
the SMS this answers, which becomes the correlation id). The `Idempotency-Key` header is
required: the same key never sends twice. The answer is 202 with the message's id once the broker
confirmed it; a repeat of the request with the same key (and the same body) answers 202 with the
same id and `Idempotent-Replayed: true`, and sends nothing; the same key with another body is
refused (422).

How a key sends once, even when duplicates arrive at the same time on several api replicas: the
first request inserts the key (collection `idempotency_keys`, `_id` = the key, so MongoDB's
unique `_id` picks one winner) with the message it is about to publish, state `pending`; it
publishes, then marks the key `accepted`. A duplicate finds the key and waits while it is
`pending`, then answers the winner's message id (202, replayed); one that has waited twice
`stale_after` without an answer gets 409. If the winner's publish fails, it deletes the key (the
client's retry may send). If the winner died (or lost the database) after its insert, the key
stays `pending` past `stale_after` and the next duplicate takes it over. The winner may have
died before or after its publish, which the key cannot tell, so the taker first looks for the
message in the message log: anything outbound logged of it (accepted, sent, failed, ...) shows
it was published, and the key is marked `accepted` without publishing again. Otherwise it
publishes the very same message (same id), marked `HEADER_REPEAT`: outbound looks a marked copy
up in the message log before sending it, and handles copies of one id one after the other, so
when the winner had published and died while outbound was down or far behind, the copy that
comes second is not sent. What this leaves open: two replicas of outbound handling both copies
at the same moment (see `twoway_outbound.ledger`). Keys are forgotten
`idempotency_key_retention_seconds` after their first use.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, Field
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from twoway.broker import Publisher, PublishFailed
from twoway.http_errors import InvalidRequest
from twoway.message_log import MessageLog
from twoway.messages import OutboundSMS, utc_now
from twoway.phone import InvalidPhoneNumber, normalise_phone
from twoway.service import MONGO_DB, PUBLISHER, CleanupContext
from twoway.storage import Document
from twoway.topology import HEADER_REPEAT, OUTBOUND_EXCHANGE, outbound_key
from twoway_api.delivery import MESSAGE_LOG
from twoway_api.operations import (
    ErrorBody,
    HeaderParameter,
    Operation,
    Response,
    json_model_response,
    parse_body,
)
from twoway_api.schemas import GatewayId, Request
from twoway_api.settings import ApiSettings

log = structlog.get_logger(__name__)

IDEMPOTENCY_KEYS = "idempotency_keys"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
PENDING, ACCEPTED = "pending", "accepted"


class NewMessage(Request):
    to: str = Field(
        min_length=1, max_length=32, description="E.164, or national in the default region"
    )
    text: str = Field(min_length=1, max_length=1600)
    gateway_id: GatewayId | None = Field(default=None, description="None: the routing default")
    in_reply_to: str | None = Field(
        default=None, max_length=64, description="The message id of the SMS this answers"
    )


class MessageAccepted(BaseModel):
    message_id: str
    status: Literal["accepted"] = "accepted"


def idempotency_key(header: str | None) -> str:
    """The request's idempotency key; 400 when missing, 422 when unusable."""
    key = (header or "").strip()
    if not key:
        raise InvalidRequest(
            400,
            "missing_idempotency_key",
            f"send an {IDEMPOTENCY_HEADER} header (any unique string; a retry repeats it)",
            IDEMPOTENCY_HEADER,
        )
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(
            422,
            "invalid_field",
            f"{IDEMPOTENCY_HEADER}: at most {MAX_KEY_LENGTH} printable characters",
            IDEMPOTENCY_HEADER,
        )
    return key


def fingerprint(body: NewMessage) -> str:
    """What makes two requests with one key the same request."""
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()


def outbound_message(body: NewMessage, default_region: str) -> OutboundSMS:
    try:
        to = normalise_phone(body.to, default_region)
    except InvalidPhoneNumber as error:
        raise InvalidRequest(422, "invalid_field", f"to: {error}", "to") from error
    return OutboundSMS(
        correlation_id=body.in_reply_to,
        to=to,
        text=body.text,
        gateway_id=body.gateway_id,
        in_reply_to=body.in_reply_to,
    )


class KeyReused(InvalidRequest):
    def __init__(self) -> None:
        super().__init__(
            422,
            "idempotency_key_reused",
            f"this {IDEMPOTENCY_HEADER} was used for another request",
            IDEMPOTENCY_HEADER,
        )


class StillInProgress(InvalidRequest):
    def __init__(self) -> None:
        super().__init__(
            409,
            "request_in_progress",
            f"a request with this {IDEMPOTENCY_HEADER} is still being sent; retry later",
            IDEMPOTENCY_HEADER,
        )


@dataclass(frozen=True)
class Claim:
    """This request holds the key, since `claimed_at`, and publishes `message`."""

    message: OutboundSMS
    claimed_at: datetime
    taken_over: bool = False
    """Taken over from a request that died: its publish may have reached the broker."""


class Outbox:
    """Publishes each message once per idempotency key."""

    def __init__(
        self,
        db: AsyncDatabase[Document],
        publisher: Publisher,
        message_log: MessageLog,
        *,
        stale_after: float,
        retention: float,
        poll_interval: float = 0.05,
    ) -> None:
        self._keys = db[IDEMPOTENCY_KEYS]
        self._publisher = publisher
        self._message_log = message_log
        self._stale_after = timedelta(seconds=stale_after)
        self._retention = retention
        self._poll_interval = poll_interval

    async def ensure_indexes(self) -> None:
        await self._keys.create_index(
            [("created_at", ASCENDING)], expireAfterSeconds=int(self._retention)
        )

    async def send_once(
        self, key: str, request_fingerprint: str, message: OutboundSMS
    ) -> tuple[str, bool]:
        """Publish `message` unless `key` was used; (the key's message id, whether sent now)."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + 2 * self._stale_after.total_seconds()
        while True:
            claim, record = await self._claim(key, request_fingerprint, message)
            if claim is not None:
                await self._publish(key, claim)
                return claim.message.message_id, True
            if record is None:
                continue  # released by a failed publish: this request may send
            if record["fingerprint"] != request_fingerprint:
                raise KeyReused
            if record["state"] == ACCEPTED:
                return str(record["message_id"]), False
            if loop.time() > give_up_at:
                raise StillInProgress
            await asyncio.sleep(self._poll_interval)

    async def _claim(
        self, key: str, request_fingerprint: str, message: OutboundSMS
    ) -> tuple[Claim | None, Document | None]:
        """(the claim, None) when this request holds the key now; else (None, the key's
        record, or None if it was just released)."""
        now = utc_now()
        try:
            await self._keys.insert_one(
                {
                    "_id": key,
                    "fingerprint": request_fingerprint,
                    "message_id": message.message_id,
                    "message": message.model_dump(mode="json"),
                    "state": PENDING,
                    "claimed_at": now,
                    "created_at": now,
                }
            )
        except DuplicateKeyError:
            pass
        else:
            return Claim(message, now), None
        abandoned = await self._keys.find_one_and_update(
            {
                "_id": key,
                "fingerprint": request_fingerprint,
                "state": PENDING,
                "claimed_at": {"$lt": now - self._stale_after},
            },
            {"$set": {"claimed_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if abandoned is None:
            return None, await self._keys.find_one({"_id": key})
        message_id = abandoned["message_id"]
        if await self._message_log.get(message_id) is not None:
            # The request that died had published it: outbound has logged it.
            log.warning("idempotency_key_taken_over", message_id=message_id, published=True)
            await self._keys.update_one(
                {"_id": key, "state": PENDING, "claimed_at": now}, {"$set": {"state": ACCEPTED}}
            )
            return None, {**abandoned, "state": ACCEPTED}
        log.warning("idempotency_key_taken_over", message_id=message_id, published=False)
        return Claim(OutboundSMS.model_validate(abandoned["message"]), now, taken_over=True), None

    async def _publish(self, key: str, claim: Claim) -> None:
        message = claim.message
        try:
            await self._publisher.publish(
                message,
                exchange=OUTBOUND_EXCHANGE,
                routing_key=outbound_key(message.gateway_id, message.priority),
                headers={HEADER_REPEAT: True} if claim.taken_over else None,
            )
        except PublishFailed:
            # Release the key (unless taken over meanwhile): the client's retry may send.
            await self._keys.delete_one(
                {"_id": key, "state": PENDING, "claimed_at": claim.claimed_at}
            )
            raise
        await self._keys.update_one({"_id": key}, {"$set": {"state": ACCEPTED}})
        log.info("api_message_accepted", message_id=message.message_id, to=message.to)


OUTBOX = web.AppKey("outbox", Outbox)
MESSAGES_SETTINGS = web.AppKey("messages_settings", ApiSettings)


async def send_message(request: web.Request) -> web.Response:
    key = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
    body = await parse_body(request, NewMessage)
    message = outbound_message(body, request.app[MESSAGES_SETTINGS].default_region)
    message_id, sent = await request.app[OUTBOX].send_once(key, fingerprint(body), message)
    headers = {} if sent else {"Idempotent-Replayed": "true"}
    return json_model_response(MessageAccepted(message_id=message_id), 202, headers=headers)


def messages_context(settings: ApiSettings) -> CleanupContext:
    """The outbox over the api's database, publisher and message log (after their contexts)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        outbox = Outbox(
            app[MONGO_DB],
            app[PUBLISHER],
            app[MESSAGE_LOG],
            stale_after=2 * settings.publish_timeout + 5,
            retention=settings.idempotency_key_retention_seconds,
        )
        await outbox.ensure_indexes()
        app[OUTBOX] = outbox
        app[MESSAGES_SETTINGS] = settings
        yield

    return context


_ERROR = Response("The request is refused (`error` says why; `field` names the culprit)", ErrorBody)

MESSAGE_OPERATIONS = [
    Operation(
        "POST",
        "/messages",
        send_message,
        operation_id="sendMessage",
        summary="Send an SMS (an asynchronous reply, a notification). Requires an "
        "Idempotency-Key header: the same key never sends twice",
        tag="messages",
        body=NewMessage,
        headers=(
            HeaderParameter(
                IDEMPOTENCY_HEADER,
                "Any unique printable string: a retry repeats it, and the same key never "
                "sends twice (remembered for TWOWAY_IDEMPOTENCY_KEY_RETENTION_SECONDS)",
                MAX_KEY_LENGTH,
            ),
        ),
        responses={
            202: Response("Accepted: confirmed by the broker, on its way", MessageAccepted),
            400: _ERROR,
            409: Response("The first request with this key is still being sent", ErrorBody),
            415: _ERROR,
            422: _ERROR,
            503: Response("The broker is unreachable: retry with the same key", ErrorBody),
        },
    ),
]
