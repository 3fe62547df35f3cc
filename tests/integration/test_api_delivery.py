"""The api's view of what became of messages, on a real broker and database: a message's status
from the message log, and outbound's dead letters listed and replayed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.integration.test_api import TOKEN, Api, running_api
from tests.support.broker import drain, queue_length
from twoway.broker import Publisher
from twoway.dead_letters import OUTBOUND_DEAD_LETTER_QUEUES
from twoway.message_log import LOG_COLLECTION, AttemptStarted, MessageLog
from twoway.messages import OutboundSMS
from twoway.storage import Document
from twoway.topology import (
    DEAD_LETTER_EXCHANGE,
    HEADER_REASON,
    OUTBOUND_EXCHANGE,
    OUTBOUND_QUEUE,
    declare_exchanges,
    declare_work_queue,
)
from twoway_api.delivery import DELIVERY_OPERATIONS

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

DEAD = OUTBOUND_DEAD_LETTER_QUEUES[0]
UNKNOWN_ID = "01JAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture
async def api(make_settings: Callable[..., Any]) -> AsyncIterator[Api]:
    async with running_api(make_settings) as api:
        yield api


@pytest.fixture
async def publisher(amqp: AbstractRobustConnection) -> AsyncIterator[Publisher]:
    """A publisher, with outbound's work queue and dead-letter queue declared (as outbound
    does)."""
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    await declare_exchanges(publisher.channel)
    await declare_work_queue(
        publisher.channel, OUTBOUND_QUEUE, exchange=OUTBOUND_EXCHANGE, binding_keys=["outbound.*"]
    )
    yield publisher
    await publisher.channel.close()


async def dead_letter(publisher: Publisher, *texts: str) -> list[OutboundSMS]:
    """Dead-letter an outbound SMS per text, as outbound does when it gives up."""
    messages = [OutboundSMS(to="+15551234567", text=text, gateway_id="sim") for text in texts]
    for message in messages:
        await publisher.publish(
            message,
            exchange=DEAD_LETTER_EXCHANGE,
            routing_key=OUTBOUND_QUEUE,
            headers={HEADER_REASON: f"HTTP 400 for {message.text}"},
        )
    return messages


def _error(body: dict[str, Any], code: str, field: str | None) -> None:
    assert (body["error"], body.get("field")) == (code, field)
    assert body["message"]


def _sample_path(path: str) -> str:
    return path.replace("{message_id}", UNKNOWN_ID).replace("{queue}", DEAD)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param(op.method, _sample_path(op.path), id=op.operation_id)
        for op in DELIVERY_OPERATIONS
    ],
)
@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        pytest.param(None, 401, "unauthorized", id="missing"),
        pytest.param("wrong-token", 403, "forbidden", id="wrong-token"),
    ],
)
async def test_every_call_needs_the_token_and_changes_nothing_without_it(
    api: Api,
    publisher: Publisher,
    amqp: AbstractRobustConnection,
    method: str,
    path: str,
    token: str | None,
    status: int,
    code: str,
) -> None:
    await dead_letter(publisher, "kept")
    got, body = await api.call(method, path, token=token, json={})
    assert got == status
    _error(body, code, None)
    assert await queue_length(amqp, DEAD) == 1


async def test_a_sent_message_shows_its_status_once_logged(
    api: Api,
    publisher: Publisher,
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> None:
    async with api.http.post(
        f"{api.url}/messages",
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k-1"},
        json={"to": "+15551234567", "text": "Your statement is ready.", "gateway_id": "sim"},
    ) as response:
        assert response.status == 202
        message_id = (await response.json())["message_id"]
    path = f"/messages/{message_id}"
    status, body = await api.call("GET", path)
    assert status == 404  # nothing logged yet
    _error(body, "not_found", "message_id")

    [published] = await drain(amqp, OUTBOUND_QUEUE, expect=1)
    message = OutboundSMS.model_validate_json(published.body)
    message_log = MessageLog(mongo_db[LOG_COLLECTION])
    # The gateway's event is logged before outbound's: the history is still in stage order.
    await message_log.add(message.event("sent", "sim", gateway_message_id="g-1"))
    await message_log.add(message.event("accepted", "sim"))

    status, body = await api.call("GET", path)
    assert status == 200
    assert (body["message_id"], body["status"], body["gateway_id"]) == (message_id, "sent", "sim")
    assert body["gateway_message_id"] == "g-1"
    assert [change["status"] for change in body["history"]] == ["accepted", "sent"]


async def test_a_message_in_doubt_shows_unknown_with_the_attempt_and_why(
    api: Api, mongo_db: AsyncDatabase[Document]
) -> None:
    """As outbound logs it: the attempt noted before its request went out, then (redelivered
    with no outcome logged) `unknown`; a delivery report settles it and clears the attempt."""
    message = OutboundSMS(to="+15551234567", text="Your code is 482910", gateway_id="sim")
    message_log = MessageLog(mongo_db[LOG_COLLECTION])
    started = AttemptStarted(1, "sim", datetime(2026, 12, 7, 21, 0, tzinfo=UTC))
    await message_log.start_attempt(message.message_id, started, message.event("accepted", "sim"))
    await message_log.add(message.event("unknown", "sim", "in doubt: attempt 1 to sim ..."))
    path = f"/messages/{message.message_id}"

    status, body = await api.call("GET", path)
    assert status == 200
    assert body["status"] == "unknown"
    assert body["attempt"] == {"attempt": 1, "gateway_id": "sim", "at": "2026-12-07T21:00:00Z"}
    assert body["history"][-1]["detail"] == "in doubt: attempt 1 to sim ..."

    await message_log.add(message.event("delivered", "sim", gateway_message_id="g-1"))
    status, body = await api.call("GET", path)
    assert (body["status"], body["attempt"]) == ("delivered", None)
    assert [change["status"] for change in body["history"]] == ["accepted", "unknown", "delivered"]


async def test_an_unknown_message_is_404(api: Api) -> None:
    status, body = await api.call("GET", f"/messages/{UNKNOWN_ID}")
    assert status == 404
    _error(body, "not_found", "message_id")


async def test_dead_letters_are_listed_oldest_first_and_stay(
    api: Api, publisher: Publisher, amqp: AbstractRobustConnection
) -> None:
    first, second, _ = await dead_letter(publisher, "one", "two", "three")

    status, body = await api.call("GET", f"/dead-letters/{DEAD}", params={"limit": 2})

    assert status == 200
    assert [(item["message_id"], item["reason"]) for item in body["items"]] == [
        (first.message_id, "HTTP 400 for one"),
        (second.message_id, "HTTP 400 for two"),
    ]
    assert body["items"][0]["queue"] == DEAD
    assert OutboundSMS.model_validate(body["items"][0]["message"]) == first
    assert await queue_length(amqp, DEAD) == 3


async def test_a_queue_outbound_never_declared_has_no_dead_letters(
    api: Api, amqp: AbstractRobustConnection
) -> None:
    # the amqp fixture deleted outbound's queues
    assert await api.call("GET", f"/dead-letters/{DEAD}") == (200, {"items": []})
    assert await api.call("POST", f"/dead-letters/{DEAD}/replay") == (
        200,
        {"queue": DEAD, "replayed": 0},
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/dead-letters/sms.router.dead", id="list-other-queue"),
        pytest.param("GET", f"/dead-letters/{OUTBOUND_QUEUE}", id="list-work-queue"),
        pytest.param("POST", f"/dead-letters/{OUTBOUND_QUEUE}/replay", id="replay-work-queue"),
    ],
)
async def test_only_outbounds_dead_letter_queues_are_served(
    api: Api, publisher: Publisher, amqp: AbstractRobustConnection, method: str, path: str
) -> None:
    await publisher.publish(
        OutboundSMS(to="+15551234567", text="waiting"),
        exchange=OUTBOUND_EXCHANGE,
        routing_key="outbound.default",
    )
    status, body = await api.call(method, path)
    assert status == 404
    _error(body, "unknown_queue", "queue")
    assert await queue_length(amqp, OUTBOUND_QUEUE) == 1


@pytest.mark.parametrize(
    "limit",
    [pytest.param(0, id="zero"), pytest.param(1001, id="too-many"), pytest.param("x", id="nan")],
)
async def test_a_bad_limit_is_422(api: Api, limit: object) -> None:
    status, body = await api.call("GET", f"/dead-letters/{DEAD}", params={"limit": limit})
    assert status == 422
    _error(body, "invalid_field", "limit")


async def test_replay_sends_the_named_dead_letters_back_and_keeps_the_rest(
    api: Api, publisher: Publisher, amqp: AbstractRobustConnection
) -> None:
    chosen, kept = await dead_letter(publisher, "chosen", "kept")

    status, body = await api.call(
        "POST", f"/dead-letters/{DEAD}/replay", json={"message_ids": [chosen.message_id, "gone"]}
    )

    assert (status, body) == (200, {"queue": DEAD, "replayed": 1})
    [again] = await drain(amqp, OUTBOUND_QUEUE, expect=1)
    assert again.message_id == chosen.message_id
    assert HEADER_REASON not in again.headers
    status, body = await api.call("GET", f"/dead-letters/{DEAD}")
    assert [item["message_id"] for item in body["items"]] == [kept.message_id]


async def test_replay_without_a_body_sends_every_dead_letter_back(
    api: Api, publisher: Publisher, amqp: AbstractRobustConnection
) -> None:
    messages = await dead_letter(publisher, "one", "two")

    status, body = await api.call("POST", f"/dead-letters/{DEAD}/replay")

    assert (status, body) == (200, {"queue": DEAD, "replayed": 2})
    again = await drain(amqp, OUTBOUND_QUEUE, expect=2)
    assert [m.message_id for m in again] == [m.message_id for m in messages]
    assert await queue_length(amqp, DEAD) == 0


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "field"),
    [
        pytest.param(
            {"json": {"message_ids": []}}, 422, "invalid_field", "message_ids", id="no-ids"
        ),
        pytest.param(
            {"json": {"message_ids": "m-1"}}, 422, "invalid_field", "message_ids", id="not-a-list"
        ),
        pytest.param({"json": {"ids": ["m-1"]}}, 422, "invalid_field", "ids", id="unknown-field"),
        pytest.param({"json": ["m-1"]}, 400, "invalid_json", None, id="not-an-object"),
        pytest.param({"data": b"message_ids=m-1"}, 415, "unsupported_media_type", None, id="form"),
    ],
)
async def test_a_bad_replay_body_is_refused_and_nothing_is_replayed(
    api: Api,
    publisher: Publisher,
    amqp: AbstractRobustConnection,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    await dead_letter(publisher, "kept")
    got, body = await api.call("POST", f"/dead-letters/{DEAD}/replay", **kwargs)
    assert got == status
    _error(body, code, field)
    assert await queue_length(amqp, DEAD) == 1
