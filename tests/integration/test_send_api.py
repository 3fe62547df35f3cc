"""`POST /messages` on the api: authentication, validation and idempotency, on a real broker and
database (the test reads what the api published to `sms.outbound`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import drain, queue_length
from tests.support.servers import serving
from twoway.broker import Publisher
from twoway.messages import OutboundSMS
from twoway.storage import Document
from twoway.topology import OUTBOUND_EXCHANGE, declare_exchanges
from twoway_api.app import create_app
from twoway_api.messages import IDEMPOTENCY_KEYS
from twoway_api.settings import ApiSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

TOKEN = "test-token"
SENT = "test.api.sent"
BODY = {"to": "+15551234567", "text": "Your statement is ready."}


@dataclass(frozen=True)
class Api:
    url: str
    http: aiohttp.ClientSession
    amqp: AbstractRobustConnection

    async def post(
        self, body: Any, key: str | None = "key-1", token: str | None = TOKEN, **options: Any
    ) -> tuple[int, dict[str, Any], Any]:
        headers = {}
        if key is not None:
            headers["Idempotency-Key"] = key
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.post(
            f"{self.url}/messages", json=body, headers=headers, **options
        ) as response:
            return response.status, dict(response.headers), await response.json()

    async def sent(self, expect: int) -> list[OutboundSMS]:
        messages = await drain(self.amqp, SENT, expect=expect)
        return [OutboundSMS.model_validate_json(message.body) for message in messages]


@pytest.fixture
async def api(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection
) -> AsyncIterator[Api]:
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    await declare_exchanges(publisher.channel)
    sent = await publisher.channel.declare_queue(SENT, exclusive=True)
    await sent.bind(OUTBOUND_EXCHANGE, routing_key="outbound.default")
    await sent.bind(OUTBOUND_EXCHANGE, routing_key="outbound.sim")
    settings = make_settings(ApiSettings, api_token=TOKEN, publish_timeout=2.0)
    async with serving(create_app(settings)) as url, aiohttp.ClientSession() as http:
        yield Api(url, http, amqp)
    await publisher.channel.close()


async def test_a_message_is_accepted_with_its_id_and_published(api: Api) -> None:
    status, _, body = await api.post({**BODY, "gateway_id": "sim", "in_reply_to": "inbound-1"})

    assert status == 202
    assert body["status"] == "accepted"
    [message] = await api.sent(1)
    assert message.message_id == body["message_id"]
    assert (message.to, message.text, message.gateway_id) == (BODY["to"], BODY["text"], "sim")
    assert (message.in_reply_to, message.correlation_id) == ("inbound-1", "inbound-1")


async def test_a_national_number_is_normalised(api: Api) -> None:
    status, _, _ = await api.post({**BODY, "to": "(555) 123-4567"})
    assert status == 202
    [message] = await api.sent(1)
    assert message.to == "+15551234567"


AUTH = [
    pytest.param(None, 401, "unauthorized", id="no-token"),
    pytest.param("wrong", 403, "forbidden", id="wrong-token"),
]


@pytest.mark.parametrize(("token", "status", "error"), AUTH)
async def test_without_the_token_nothing_is_sent(
    api: Api, token: str | None, status: int, error: str
) -> None:
    answer, _, body = await api.post(BODY, token=token)
    assert (answer, body["error"]) == (status, error)
    assert await queue_length(api.amqp, SENT) == 0


INVALID = [
    pytest.param({"text": "hi"}, {}, 422, "invalid_field", "to", id="missing-to"),
    pytest.param({"to": "+15551234567"}, {}, 422, "invalid_field", "text", id="missing-text"),
    pytest.param({**BODY, "text": ""}, {}, 422, "invalid_field", "text", id="empty-text"),
    pytest.param({**BODY, "to": "not a number"}, {}, 422, "invalid_field", "to", id="bad-to"),
    pytest.param({**BODY, "cc": "x"}, {}, 422, "invalid_field", "cc", id="unknown-field"),
    pytest.param(
        BODY, {"key": None}, 400, "missing_idempotency_key", "Idempotency-Key", id="no-key"
    ),
    pytest.param(
        BODY, {"key": "k" * 256}, 422, "invalid_field", "Idempotency-Key", id="key-too-long"
    ),
    pytest.param(["not", "an", "object"], {}, 400, "invalid_json", None, id="not-an-object"),
]


@pytest.mark.parametrize(("body", "options", "status", "error", "field"), INVALID)
async def test_invalid_requests_are_refused_naming_the_field(
    api: Api,
    body: Any,
    options: dict[str, Any],
    status: int,
    error: str,
    field: str | None,
) -> None:
    answer, _, refusal = await api.post(body, **options)
    assert (answer, refusal["error"], refusal.get("field")) == (status, error, field)
    assert refusal["message"]
    assert await queue_length(api.amqp, SENT) == 0


async def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    async with api.http.post(
        f"{api.url}/messages",
        data="to=+15551234567",
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k"},
    ) as response:
        assert response.status == 415
        assert (await response.json())["error"] == "unsupported_media_type"


async def test_a_repeated_key_answers_the_same_id_and_sends_nothing(api: Api) -> None:
    first_status, first_headers, first = await api.post(BODY, key="repeat")
    again_status, again_headers, again = await api.post(BODY, key="repeat")

    assert (first_status, again_status) == (202, 202)
    assert again["message_id"] == first["message_id"]
    assert "Idempotent-Replayed" not in first_headers
    assert again_headers["Idempotent-Replayed"] == "true"
    [message] = await api.sent(1)
    assert message.message_id == first["message_id"]
    assert await queue_length(api.amqp, SENT) == 0


async def test_concurrent_duplicates_send_exactly_once(api: Api) -> None:
    answers = await asyncio.gather(*(api.post(BODY, key="storm") for _ in range(20)))

    assert {status for status, _, _ in answers} == {202}
    assert len({body["message_id"] for _, _, body in answers}) == 1
    assert sum(1 for _, headers, _ in answers if "Idempotent-Replayed" not in headers) == 1
    [message] = await api.sent(1)
    assert message.message_id == answers[0][2]["message_id"]
    assert await queue_length(api.amqp, SENT) == 0


async def test_different_keys_send_different_messages(api: Api) -> None:
    answers = await asyncio.gather(api.post(BODY, key="a"), api.post(BODY, key="b"))
    assert len({body["message_id"] for _, _, body in answers}) == 2
    assert len(await api.sent(2)) == 2


async def test_a_key_reused_for_another_request_is_refused(api: Api) -> None:
    await api.post(BODY, key="reused")
    status, _, body = await api.post({**BODY, "text": "Something else"}, key="reused")
    assert (status, body["error"], body["field"]) == (
        422,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    assert len(await api.sent(1)) == 1
    assert await queue_length(api.amqp, SENT) == 0


async def test_a_failed_publish_releases_the_key_for_a_retry(
    api: Api, mongo_db: AsyncDatabase[Document]
) -> None:
    unroutable = {**BODY, "gateway_id": "nowhere"}  # no queue is bound: the broker returns it
    for _ in range(2):
        status, _, body = await api.post(unroutable, key="retry-me")
        assert (status, body["error"]) == (503, "broker_unavailable")
    assert await mongo_db[IDEMPOTENCY_KEYS].count_documents({}) == 0


async def test_the_openapi_document_describes_the_operation(api: Api) -> None:
    async with api.http.get(f"{api.url}/openapi.json") as response:
        document = await response.json()
    operation = document["paths"]["/messages"]["post"]
    assert operation["operationId"] == "sendMessage"
    assert set(operation["responses"]) >= {"202", "401", "403", "409", "422", "503"}
    assert document["components"]["schemas"]["NewMessage"]["required"] == ["to", "text"]
