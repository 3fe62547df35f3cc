"""`POST /messages` while an earlier request with the same Idempotency-Key is still sending, or
died half-way, on a real broker and database: a duplicate waits for the first request and
answers its message id; a stale claim is taken over and its message sent once, and not again
when the request that died had published it; a claim that stays fresh past the wait is 409."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import drain, listening, queue_length
from tests.support.servers import serving
from twoway.broker import Publisher
from twoway.message_log import LOG_COLLECTION, MessageLog
from twoway.messages import Envelope, OutboundSMS, utc_now
from twoway.storage import Document
from twoway.topology import HEADER_REPEAT, OUTBOUND_EXCHANGE
from twoway_api.app import create_app
from twoway_api.messages import (
    ACCEPTED,
    IDEMPOTENCY_KEYS,
    NewMessage,
    Outbox,
    StillInProgress,
    fingerprint,
    outbound_message,
)
from twoway_api.settings import ApiSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

TOKEN = "test-token"
KEY = "loan-decision-42"
BODY = {"to": "+15551234567", "text": "Your loan is approved."}
REQUEST = NewMessage.model_validate(BODY)


class HeldPublisher(Publisher):
    """The publisher of a first request that stops inside `publish` until `released`: before
    the broker has the message, or (`publish_first`) after, as a request that dies there would."""

    def __init__(self, publisher: Publisher, *, publish_first: bool = False) -> None:
        super().__init__(publisher.channel, timeout=5.0)
        self.publish_first = publish_first
        self.reached = asyncio.Event()
        self.released = asyncio.Event()

    async def publish(self, message: Envelope, **options: Any) -> None:
        if self.publish_first:
            await super().publish(message, **options)
        self.reached.set()
        await self.released.wait()
        if not self.publish_first:
            await super().publish(message, **options)


@dataclass
class World:
    """The api, the queue that sees what is published to `sms.outbound`, and the database."""

    url: str
    http: aiohttp.ClientSession
    amqp: AbstractRobustConnection
    sent_queue: str
    db: AsyncDatabase[Document]
    publisher: Publisher

    async def post(self, body: dict[str, Any] = BODY) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": KEY}
        async with self.http.post(f"{self.url}/messages", json=body, headers=headers) as response:
            return response.status, dict(response.headers), await response.json()

    async def sent(self) -> list[OutboundSMS]:
        """Everything published so far (waits a little for stragglers)."""
        messages = await drain(self.amqp, self.sent_queue, expect=100, within=0.5)
        return [OutboundSMS.model_validate_json(message.body) for message in messages]

    async def first_request(
        self, *, publish_first: bool = False, stale_after: float = 60.0
    ) -> tuple[asyncio.Task[tuple[str, bool]], HeldPublisher, OutboundSMS]:
        """A first request (the outbox of another api replica), stopped inside its publish."""
        held = HeldPublisher(self.publisher, publish_first=publish_first)
        outbox = Outbox(
            self.db,
            held,
            MessageLog(self.db[LOG_COLLECTION]),
            stale_after=stale_after,
            retention=3600,
        )
        message = outbound_message(REQUEST, "US")
        task = asyncio.create_task(outbox.send_once(KEY, fingerprint(REQUEST), message))
        await asyncio.wait_for(held.reached.wait(), 5)
        return task, held, message

    async def kill(self, task: asyncio.Task[tuple[str, bool]], *, ago: timedelta) -> None:
        """The request dies where it stands; its claim dates from `ago` ago."""
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await self.db[IDEMPOTENCY_KEYS].update_one(
            {"_id": KEY}, {"$set": {"claimed_at": utc_now() - ago}}
        )

    async def key_state(self) -> str:
        record = await self.db[IDEMPOTENCY_KEYS].find_one({"_id": KEY})
        assert record is not None
        return str(record["state"])


@pytest.fixture
async def world(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> AsyncIterator[World]:
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    settings = make_settings(ApiSettings, api_token=TOKEN, publish_timeout=2.0)
    async with (
        listening(amqp, OUTBOUND_EXCHANGE, "outbound.#") as sent_queue,
        serving(create_app(settings)) as url,
        aiohttp.ClientSession() as http,
    ):
        yield World(url, http, amqp, sent_queue, mongo_db, publisher)
    await publisher.channel.close()


async def test_a_duplicate_waits_for_the_first_request_and_answers_its_id(world: World) -> None:
    first, held, message = await world.first_request()
    duplicate = asyncio.create_task(world.post())
    await asyncio.sleep(0.5)
    assert not duplicate.done()  # waiting, not sending, not refusing

    held.released.set()
    assert await first == (message.message_id, True)
    status, headers, body = await duplicate

    assert (status, body["message_id"], headers["Idempotent-Replayed"]) == (
        202,
        message.message_id,
        "true",
    )
    assert [sent.message_id for sent in await world.sent()] == [message.message_id]


async def test_a_stale_claim_that_never_published_is_taken_over_and_sent_once(
    world: World,
) -> None:
    first, _, message = await world.first_request()
    await world.kill(first, ago=timedelta(hours=1))
    assert await world.sent() == []

    status, headers, body = await world.post()

    assert (status, body["message_id"]) == (202, message.message_id)
    assert "Idempotent-Replayed" not in headers  # this request sent it
    [sent] = await world.sent()
    assert sent.model_dump() == message.model_dump()  # the very message the first one claimed
    assert await world.key_state() == ACCEPTED
    status, headers, body = await world.post()  # and from now on, a replay
    assert (status, body["message_id"], headers["Idempotent-Replayed"]) == (
        202,
        message.message_id,
        "true",
    )
    assert await world.sent() == []


async def test_a_stale_claim_whose_message_outbound_logged_is_not_sent_again(
    world: World,
) -> None:
    first, _, message = await world.first_request(publish_first=True)
    await world.kill(first, ago=timedelta(hours=1))  # after its publish, before "accepted"
    [published] = await world.sent()
    assert published.message_id == message.message_id
    await MessageLog(world.db[LOG_COLLECTION]).add(  # what outbound logs when it takes it
        published.event("accepted", "sim", "for sim: 1 GSM-7 segment(s)")
    )

    status, headers, body = await world.post()

    assert (status, body["message_id"], headers["Idempotent-Replayed"]) == (
        202,
        message.message_id,
        "true",
    )
    assert await world.sent() == []
    assert await world.key_state() == ACCEPTED


async def test_a_stale_claim_published_but_not_yet_logged_is_sent_again_marked_a_repeat(
    world: World,
) -> None:
    """The case the api cannot tell apart from a request that died before its publish (see
    twoway_api.messages): the copy carries the same message id and `HEADER_REPEAT`, for
    outbound to look it up before sending (tests/integration/test_outbound.py)."""
    first, _, message = await world.first_request(publish_first=True)
    await world.kill(first, ago=timedelta(hours=1))

    status, _, body = await world.post()

    assert (status, body["message_id"]) == (202, message.message_id)
    published = await drain(world.amqp, world.sent_queue, expect=2)
    assert [copy.message_id for copy in published] == [message.message_id] * 2
    assert [HEADER_REPEAT in copy.headers for copy in published] == [False, True]


async def test_a_claim_that_stays_fresh_past_the_wait_is_409_and_sends_nothing(
    world: World,
) -> None:
    first, held, message = await world.first_request(stale_after=0.2)
    # Stamped by a replica whose clock runs an hour ahead: it never looks stale here.
    await world.db[IDEMPOTENCY_KEYS].update_one(
        {"_id": KEY}, {"$set": {"claimed_at": utc_now() + timedelta(hours=1)}}
    )
    duplicate = Outbox(
        world.db,
        world.publisher,
        MessageLog(world.db[LOG_COLLECTION]),
        stale_after=0.2,
        retention=3600,
    )
    started = asyncio.get_running_loop().time()
    with pytest.raises(StillInProgress) as refused:
        await duplicate.send_once(KEY, fingerprint(REQUEST), outbound_message(REQUEST, "US"))
    assert refused.value.status == 409
    assert asyncio.get_running_loop().time() - started < 2
    assert await queue_length(world.amqp, world.sent_queue) == 0

    held.released.set()
    assert await first == (message.message_id, True)
    assert [sent.message_id for sent in await world.sent()] == [message.message_id]
