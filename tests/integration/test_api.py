"""The api's REST contract on real sockets, RabbitMQ and MongoDB: status codes, JSON error
bodies (also without the database or the broker: 503, never a crash) and the bearer token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import delete_queues, drain
from tests.support.proxy import DatabaseProxy, database_proxy
from tests.support.servers import serving
from tests.support.waiting import until
from twoway.broadcasts import BROADCASTS
from twoway.dead_letters import OUTBOUND_DEAD_LETTER_QUEUES
from twoway.messages import EventSource, HandlerRegistration, StartBroadcast
from twoway.registry import HandlerRegistry
from twoway.service import AMQP_CONNECTION, PUBLISHER
from twoway.storage import Document
from twoway.subscriptions import SUBSCRIPTIONS, EventSourceRegistry, SubscriptionStore
from twoway.topology import BROADCAST_EVENTS_QUEUE, BROADCASTS_QUEUE, dead_letter_queue
from twoway_api.app import ALL_OPERATIONS, OPENAPI, create_app
from twoway_api.operations import Operation
from twoway_api.resources import OPERATIONS
from twoway_api.settings import ApiSettings
from twoway_devstack import ServerUrls

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

TOKEN = "test-token"
NEWS = "bank.News"
PHONE = "+15551234567"
BROADCAST_QUEUES = [
    name
    for queue in (BROADCASTS_QUEUE, BROADCAST_EVENTS_QUEUE)
    for name in (queue, dead_letter_queue(queue))
]


@dataclass(frozen=True)
class Api:
    url: str
    http: aiohttp.ClientSession
    app: web.Application

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        async with self.http.request(
            method, self.url + path, headers=headers, **kwargs
        ) as response:
            if response.status == 204:
                return 204, None
            assert response.content_type == "application/json", await response.text()
            return response.status, await response.json()


@asynccontextmanager
async def running_api(make_settings: Callable[..., Any], **overrides: Any) -> AsyncIterator[Api]:
    app = create_app(make_settings(ApiSettings, api_token=TOKEN, **overrides))
    async with serving(app) as url, aiohttp.ClientSession() as http:
        yield Api(url, http, app)


async def declare_news(amqp: AbstractRobustConnection, db: AsyncDatabase[Document]) -> None:
    """No broadcast commands left from other tests; the event source NEWS declared."""
    await delete_queues(amqp, BROADCAST_QUEUES)
    await EventSourceRegistry(db).replace_adapter_sources(
        "bank", [EventSource(name=NEWS, adapter="bank", description="headlines")]
    )


@pytest.fixture
async def api(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> AsyncIterator[Api]:
    await declare_news(amqp, mongo_db)
    async with running_api(make_settings) as api:
        yield api


def _error(body: dict[str, Any], code: str, field: str | None = None) -> None:
    assert body["error"] == code
    assert body["message"]
    assert body.get("field") == field


SAMPLE_PATHS = {
    "{event_source}": NEWS,
    "{phone}": PHONE,
    "{broadcast_id}": "01JAAAAAAAAAAAAAAAAAAAAAAA",
    "{message_id}": "01JAAAAAAAAAAAAAAAAAAAAAAA",
    "{queue}": OUTBOUND_DEAD_LETTER_QUEUES[0],
}
SAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "subscribe": {"phone": "+15557654321"},
    "notify": {"text": "Markets are up"},
    "sendMessage": {"to": PHONE, "text": "Your statement is ready."},
}


def _sample_path(path: str) -> str:
    for placeholder, value in SAMPLE_PATHS.items():
        path = path.replace(placeholder, value)
    return path


def _sample_call(operation: Operation) -> tuple[str, str, dict[str, Any]]:
    """A well-formed call of `operation`: method, path and request options."""
    options: dict[str, Any] = {"headers": {"Idempotency-Key": f"key-{operation.operation_id}"}}
    if operation.body is not None:
        options["json"] = SAMPLE_BODIES.get(operation.operation_id, {})
    return operation.method, _sample_path(operation.path), options


DATABASE_CALLS = [
    operation
    for operation in ALL_OPERATIONS
    if not operation.public and not operation.path.startswith("/dead-letters")
]
"""Every call that reads or writes the database (all but the dead letters' and the document)."""
BROKER_CALLS = [operation for operation in ALL_OPERATIONS if 503 in operation.responses]
"""Every call that needs the broker: publishes, or works on outbound's dead-letter queues."""


PROTECTED = [
    pytest.param(op.method, _sample_path(op.path), id=f"{op.method} {op.path}") for op in OPERATIONS
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        pytest.param(None, 401, "unauthorized", id="missing"),
        pytest.param("Basic dGVzdDp0ZXN0", 401, "unauthorized", id="not-bearer"),
        pytest.param("Bearer ", 401, "unauthorized", id="empty-bearer"),
        pytest.param("Bearer wrong-token", 403, "forbidden", id="wrong-token"),
    ],
)
async def test_every_call_needs_the_token(
    api: Api, method: str, path: str, authorization: str | None, status: int, code: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    async with api.http.request(
        method, api.url + path, headers=headers, json={"phone": PHONE, "text": "hi"}
    ) as response:
        assert response.status == status
        body = await response.json()
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    _error(body, code)


async def test_the_openapi_document_is_public(api: Api) -> None:
    status, document = await api.call("GET", "/openapi.json", token=None)
    assert status == 200
    assert document["openapi"].startswith("3.1")
    assert "/event-sources/{event_source}/notifications" in document["paths"]


async def test_subscribe_creates_then_updates(api: Api) -> None:
    path = f"/event-sources/{NEWS}/subscriptions"
    status, created = await api.call("POST", path, json={"phone": "(555) 123-4567"})
    assert status == 201
    assert (created["event_source"], created["phone"], created["alias"]) == (NEWS, PHONE, None)

    status, again = await api.call("POST", path, json={"phone": PHONE, "alias": "Ann"})
    assert status == 200
    assert again == {**created, "alias": "Ann"}

    status, fetched = await api.call("GET", f"{path}/%2B15551234567")
    assert (status, fetched) == (200, again)


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "field"),
    [
        pytest.param(
            {"json": {"phone": "not a number"}}, 422, "invalid_field", "phone", id="phone"
        ),
        pytest.param({"json": {}}, 422, "invalid_field", "phone", id="no-phone"),
        pytest.param(
            {"json": {"phone": PHONE, "colour": "red"}}, 422, "invalid_field", "colour", id="extra"
        ),
        pytest.param(
            {"json": {"phone": PHONE, "options": "x"}},
            422,
            "invalid_field",
            "options",
            id="options",
        ),
        pytest.param({"json": [PHONE]}, 400, "invalid_json", None, id="not-an-object"),
        pytest.param(
            {"data": b'{"phone": ', "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
            None,
            id="broken-json",
        ),
        pytest.param({"data": {"phone": PHONE}}, 415, "unsupported_media_type", None, id="form"),
    ],
)
async def test_a_bad_subscription_body_is_refused_naming_the_field(
    api: Api, kwargs: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    async with api.http.post(
        f"{api.url}/event-sources/{NEWS}/subscriptions", headers=headers, **kwargs
    ) as response:
        assert response.status == status
        _error(await response.json(), code, field)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/event-sources/{}", None, id="get-source"),
        pytest.param("GET", "/event-sources/{}/subscriptions", None, id="list"),
        pytest.param("GET", "/event-sources/{}/subscriptions/count", None, id="count"),
        pytest.param("POST", "/event-sources/{}/subscriptions", {"phone": PHONE}, id="subscribe"),
        pytest.param("POST", "/event-sources/{}/notifications", {"text": "hi"}, id="notify"),
    ],
)
@pytest.mark.parametrize(
    ("source", "status", "code"),
    [
        pytest.param("bank.Unknown", 404, "unknown_event_source", id="undeclared"),
        pytest.param("no-dot", 422, "invalid_field", id="malformed"),
    ],
)
async def test_an_undeclared_event_source_is_404_and_a_malformed_one_422(
    api: Api,
    method: str,
    path: str,
    body: dict[str, str] | None,
    source: str,
    status: int,
    code: str,
) -> None:
    got, error = await api.call(method, path.format(source), json=body)
    assert got == status
    _error(error, code, "event_source")


async def test_get_and_delete_of_an_absent_subscription_are_404(api: Api) -> None:
    path = f"/event-sources/{NEWS}/subscriptions/{PHONE}"
    for method in ("GET", "DELETE"):
        status, body = await api.call(method, path)
        assert status == 404
        _error(body, "not_subscribed", "phone")
    status, body = await api.call("GET", f"/event-sources/{NEWS}/subscriptions/12")
    assert status == 422
    _error(body, "invalid_field", "phone")
    # not even shaped like a number (the documented pattern): no such resource
    status, body = await api.call("GET", f"/event-sources/{NEWS}/subscriptions/not-a-number")
    assert status == 404
    _error(body, "not_found")


async def test_delete_unsubscribes(api: Api) -> None:
    path = f"/event-sources/{NEWS}/subscriptions"
    await api.call("POST", path, json={"phone": PHONE})
    assert await api.call("DELETE", f"{path}/{PHONE}") == (204, None)
    status, _ = await api.call("GET", f"{path}/{PHONE}")
    assert status == 404


async def test_list_pages_with_a_cursor_and_count(api: Api) -> None:
    path = f"/event-sources/{NEWS}/subscriptions"
    phones = [f"+1555000{n:04d}" for n in range(5)]
    for phone in phones:
        await api.call("POST", path, json={"phone": phone})

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        status, page = await api.call("GET", path, params=params)
        assert status == 200
        seen += [item["phone"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": page["next_cursor"]}

    assert seen == phones
    assert await api.call("GET", f"{path}/count") == (200, {"event_source": NEWS, "count": 5})


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": 0}, "limit", id="limit-zero"),
        pytest.param({"limit": 5000}, "limit", id="limit-too-big"),
        pytest.param({"limit": "many"}, "limit", id="limit-not-a-number"),
        pytest.param({"cursor": "%%%"}, "cursor", id="bad-cursor"),
        pytest.param({"sort": "phone"}, "sort", id="unknown-parameter"),
    ],
)
async def test_bad_list_parameters_are_422(api: Api, params: dict[str, Any], field: str) -> None:
    status, body = await api.call("GET", f"/event-sources/{NEWS}/subscriptions", params=params)
    assert status == 422
    _error(body, "invalid_field", field)


async def test_event_sources_are_listed_and_fetched(api: Api) -> None:
    source = {"name": NEWS, "adapter": "bank", "description": "headlines"}
    assert await api.call("GET", "/event-sources") == (200, {"items": [source]})
    assert await api.call("GET", f"/event-sources/{NEWS}") == (200, source)
    status, body = await api.call("GET", "/event-sources/bank.Unknown")
    assert status == 404
    _error(body, "unknown_event_source", "event_source")


async def test_a_notification_is_accepted_and_queued_for_the_broadcaster(
    api: Api, amqp: AbstractRobustConnection
) -> None:
    async with api.http.post(
        f"{api.url}/event-sources/{NEWS}/notifications",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"text": "Markets are up", "sender": "12345"},
    ) as response:
        assert response.status == 202
        broadcast = await response.json()
        assert response.headers["Location"] == f"/broadcasts/{broadcast['broadcast_id']}"
    assert (broadcast["status"], broadcast["text"], broadcast["event_source"]) == (
        "queued",
        "Markets are up",
        NEWS,
    )

    [command] = await drain(amqp, BROADCASTS_QUEUE, expect=1)
    assert (
        StartBroadcast.model_validate_json(command.body).broadcast_id == broadcast["broadcast_id"]
    )
    status, progress = await api.call("GET", f"/broadcasts/{broadcast['broadcast_id']}")
    assert status == 200
    assert {key: progress[key] for key in ("targeted", "queued", "skipped_opted_out")} == {
        "targeted": 0,
        "queued": 0,
        "skipped_opted_out": 0,
    }


@pytest.mark.parametrize(
    ("source", "body", "status", "code", "field"),
    [
        pytest.param(NEWS, {"text": ""}, 422, "invalid_field", "text", id="empty-text"),
        pytest.param(NEWS, {}, 422, "invalid_field", "text", id="no-text"),
        pytest.param(
            NEWS,
            {"text": "x", "not_after": "tomorrow"},
            422,
            "invalid_field",
            "not_after",
            id="bad-expiry",
        ),
        pytest.param(
            "bank.Unknown",
            {"text": "x"},
            404,
            "unknown_event_source",
            "event_source",
            id="unknown-source",
        ),
    ],
)
async def test_a_bad_notification_is_refused_and_nothing_is_queued(
    api: Api,
    amqp: AbstractRobustConnection,
    source: str,
    body: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    got, error = await api.call("POST", f"/event-sources/{source}/notifications", json=body)
    assert got == status
    _error(error, code, field)
    assert await drain(amqp, BROADCASTS_QUEUE, expect=1, within=0.2) == []


CHANGES: list[tuple[str, str, dict[str, str] | None]] = [
    ("POST", f"/event-sources/{NEWS}/subscriptions", {"phone": "+15557654321"}),
    ("DELETE", f"/event-sources/{NEWS}/subscriptions/{PHONE}", None),
    ("POST", f"/event-sources/{NEWS}/notifications", {"text": "Markets are up"}),
]
"""Subscribe, unsubscribe and notify: the calls that need the broker as well as the database."""


async def test_without_the_broker_changes_are_503_and_nothing_changes(
    api: Api, mongo_db: AsyncDatabase[Document]
) -> None:
    subscriptions = f"/event-sources/{NEWS}/subscriptions"
    await api.call("POST", subscriptions, json={"phone": PHONE})
    await api.app[AMQP_CONNECTION].close()

    for method, path, body in CHANGES:
        status, error = await api.call(method, path, json=body)
        assert status == 503, (method, path)
        _error(error, "broker_unavailable")

    status, page = await api.call("GET", subscriptions)
    assert (status, [item["phone"] for item in page["items"]]) == (200, [PHONE])
    [broadcast] = await mongo_db[BROADCASTS].find().to_list()
    assert (broadcast["status"], broadcast["detail"]) == (
        "failed",
        "the broker did not take the broadcast",
    )


@pytest.mark.usefixtures("mongo_db")  # drops the api's database afterwards
async def test_without_the_database_every_call_is_a_json_503(
    make_settings: Callable[..., Any], servers: ServerUrls
) -> None:
    assert {"subscribe", "sendMessage", "getMessage", "listHandlers"} <= {
        operation.operation_id for operation in DATABASE_CALLS
    }
    async with (
        database_proxy(servers.mongo_url) as proxy,
        running_api(make_settings, mongo_url=proxy.mongo_url) as api,
    ):
        proxy.cut()
        calls = [_sample_call(operation) for operation in DATABASE_CALLS]
        answers = await asyncio.gather(
            *(api.call(method, path, **options) for method, path, options in calls)
        )
    for (method, path, _), (status, error) in zip(calls, answers, strict=True):
        assert status == 503, (method, path, error)
        _error(error, "database_unavailable")


def broker_url_through(proxy: DatabaseProxy, url: str) -> str:
    """The broker's `url` through `proxy` (a plain TCP proxy, whatever the server speaks), so
    that a test can take the broker away from a running service with `proxy.cut()`."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(
        parts._replace(netloc=f"{credentials}@127.0.0.1:{urlsplit(proxy.mongo_url).port}")
    )


async def test_when_the_broker_goes_away_every_call_that_needs_it_is_a_json_503(
    make_settings: Callable[..., Any],
    servers: ServerUrls,
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> None:
    assert {"subscribe", "unsubscribe", "notify", "sendMessage", "listDeadLetters"} <= {
        operation.operation_id for operation in BROKER_CALLS
    }
    await declare_news(amqp, mongo_db)
    await SubscriptionStore(mongo_db, "US").subscribe(NEWS, PHONE)  # for the unsubscribe
    async with (
        database_proxy(servers.amqp_url) as proxy,
        running_api(
            make_settings, amqp_url=broker_url_through(proxy, servers.amqp_url), publish_timeout=1.0
        ) as api,
    ):
        proxy.cut()  # the connection drops; reconnecting is refused
        await until(lambda: api.app[PUBLISHER].channel.is_closed)
        calls = [_sample_call(operation) for operation in BROKER_CALLS]
        started = asyncio.get_running_loop().time()
        answers = await asyncio.gather(
            *(api.call(method, path, **options) for method, path, options in calls)
        )
        assert asyncio.get_running_loop().time() - started < 5
        status, readiness = await api.call("GET", "/readyz")
        assert (status, readiness["checks"]["broker"]) == (503, False)
    for (method, path, _), (status, error) in zip(calls, answers, strict=True):
        assert status == 503, (method, path, error)
        _error(error, "broker_unavailable")
    assert await SubscriptionStore(mongo_db, "US").get_subscription(NEWS, PHONE) is not None
    assert await mongo_db[SUBSCRIPTIONS].count_documents({}) == 1


async def test_a_document_the_api_cannot_read_is_a_json_500(
    api: Api, mongo_db: AsyncDatabase[Document]
) -> None:
    await mongo_db[SUBSCRIPTIONS].insert_one(
        {"event_source": NEWS, "phone": PHONE, "created_at": "the day before yesterday"}
    )
    status, body = await api.call("GET", f"/event-sources/{NEWS}/subscriptions/{PHONE}")
    assert status == 500
    _error(body, "internal_error")


async def test_an_unknown_broadcast_is_404(api: Api) -> None:
    status, body = await api.call("GET", "/broadcasts/01JAAAAAAAAAAAAAAAAAAAAAAA")
    assert status == 404
    _error(body, "not_found", "broadcast_id")


async def test_handlers_are_listed_in_matching_order(
    api: Api, mongo_db: AsyncDatabase[Document]
) -> None:
    registry = HandlerRegistry(mongo_db)
    await registry.replace_adapter_handlers(
        "echo", [HandlerRegistration(adapter="echo", handler="echo", filter={"keyword": "ECHO"})]
    )
    await registry.replace_adapter_handlers(
        "bank",
        [HandlerRegistration(adapter="bank", handler="bal", filter={"keyword": "BAL"}, priority=5)],
    )

    status, body = await api.call("GET", "/handlers")
    assert status == 200
    assert [(h["adapter"], h["handler"]) for h in body["items"]] == [
        ("bank", "bal"),
        ("echo", "echo"),
    ]


async def _raw_request(api: Api, head: bytes) -> tuple[int, Any]:
    """Send `head` (a request line and headers, any bytes) as is; the status and JSON body."""
    parts = urlsplit(api.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head + b"Host: api\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"application/json" in headers, answer
    return int(status_line.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(b"Bearer test-\xfftoken", id="not-utf8"),
        pytest.param(b"Bearer \xed\xa0\x80", id="utf8-encoded-surrogate"),
        pytest.param(b"\xff\xfe test-token", id="not-utf8-scheme"),
    ],
)
async def test_an_authorization_header_of_any_bytes_is_refused_not_a_crash(
    api: Api, authorization: bytes
) -> None:
    status, body = await _raw_request(
        api, b"GET /handlers HTTP/1.1\r\nAuthorization: " + authorization + b"\r\n"
    )
    assert status in (401, 403)
    assert body["error"] in ("unauthorized", "forbidden")


DEEP = 30_000
"""Nesting that fits the default body limit (64 KB) and is far past any parser's depth."""


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "field"),
    [
        pytest.param(
            "/event-sources/{}/subscriptions",
            '{"phone": "+15551234567", "options": {"a\\u0000b": 1}}',
            422,
            "invalid_field",
            "options",
            id="nul-in-an-options-key",
        ),
        pytest.param(
            "/event-sources/{}/subscriptions",
            '{"phone": "+15551234567", "options": {"a": [{"b": {"c\\u0000": 1}}]}}',
            422,
            "invalid_field",
            "options",
            id="nul-in-a-nested-options-key",
        ),
        pytest.param(
            "/event-sources/{}/subscriptions",
            '{"phone": "+15551234567", "options": {"$set": 1}}',
            422,
            "invalid_field",
            "options",
            id="dollar-options-key",
        ),
        pytest.param(
            "/event-sources/{}/subscriptions",
            '{"phone": "+15551234567", "options": {"a": 123456789012345678901234567890}}',
            422,
            "invalid_field",
            "options",
            id="options-integer-beyond-64-bits",
        ),
        pytest.param(
            "/event-sources/{}/subscriptions",
            '{"phone": "+15551234567", "options": {"a": ' + "[" * 100 + "]" * 100 + "}}",
            422,
            "invalid_field",
            "options",
            id="options-nested-100-deep",
        ),
        pytest.param(
            "/event-sources/{}/subscriptions",
            '{"phone": "+15551234567", "options": {"a": ' + "[" * DEEP + "]" * DEEP + "}}",
            400,
            "invalid_json",
            None,
            id="json-nested-30000-deep",
        ),
        pytest.param(
            "/event-sources/{}/subscriptions",
            '{"phone": "+15551234567", "alias": "\\ud800"}',
            400,
            "invalid_json",
            None,
            id="lone-surrogate-value",
        ),
        pytest.param(
            "/event-sources/{}/subscriptions",
            '{"phone": "+15551234567", "options": {"\\udc80": 1}}',
            400,
            "invalid_json",
            None,
            id="lone-surrogate-key",
        ),
        pytest.param(
            "/event-sources/{}/subscriptions",
            '{"phone": "+15551234567", "gateway_id": "a b"}',
            422,
            "invalid_field",
            "gateway_id",
            id="subscribe-gateway-id-not-an-id",
        ),
        pytest.param(
            "/event-sources/{}/notifications",
            '{"text": "\\ud800"}',
            400,
            "invalid_json",
            None,
            id="notify-lone-surrogate",
        ),
        pytest.param(
            "/event-sources/{}/notifications",
            '{"text": "hi", "gateway_id": "' + "g" * 300 + '"}',
            422,
            "invalid_field",
            "gateway_id",
            id="notify-gateway-id-too-long",
        ),
        pytest.param(
            "/messages",
            '{"to": "+15551234567", "text": "\\ud800"}',
            400,
            "invalid_json",
            None,
            id="message-lone-surrogate",
        ),
        pytest.param(
            "/messages",
            '{"to": "+15551234567", "text": "hi", "gateway_id": "' + "g" * 300 + '"}',
            422,
            "invalid_field",
            "gateway_id",
            id="message-gateway-id-too-long-for-a-routing-key",
        ),
        pytest.param(
            "/messages",
            '{"to": "+15551234567", "text": "hi", "gateway_id": "a\\u0000b"}',
            422,
            "invalid_field",
            "gateway_id",
            id="message-gateway-id-with-nul",
        ),
        pytest.param(
            "/dead-letters/outbound.send.dead/replay",
            '{"message_ids": ' + "[" * DEEP + "]" * DEEP + "}",
            400,
            "invalid_json",
            None,
            id="replay-json-nested-30000-deep",
        ),
    ],
)
async def test_hostile_bodies_are_refused_with_a_json_4xx(
    api: Api, path: str, body: str, status: int, code: str, field: str | None
) -> None:
    got, error = await api.call(
        "POST",
        path.format(NEWS),
        data=body.encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": "hostile"},
    )
    assert got == status, error
    _error(error, code, field)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        pytest.param("GET", "/nothing-here", 404, "not_found", id="unknown-path"),
        pytest.param("PUT", "/event-sources", 405, "method_not_allowed", id="wrong-method"),
    ],
)
async def test_unknown_routes_answer_json_errors(
    api: Api, method: str, path: str, status: int, code: str
) -> None:
    got, body = await api.call(method, path)
    assert got == status
    _error(body, code)


WRONG_METHODS = [
    pytest.param(method, path, id=f"{method} {path}")
    for path in sorted({operation.path for operation in ALL_OPERATIONS})
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    if all((operation.method, operation.path) != (method, path) for operation in ALL_OPERATIONS)
]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
async def test_a_wrong_method_answers_405_with_the_documented_allow_header(
    api: Api, method: str, path: str
) -> None:
    """Exactly the path's own methods, also beside a path that shares its prefix
    (`.../subscriptions/count` beside `.../subscriptions/{phone}`)."""
    document = api.app[OPENAPI]["paths"][path]
    [documented] = {
        operation["responses"]["405"]["headers"]["Allow"]["schema"]["const"]
        for operation in document.values()
    }
    assert documented == ",".join(sorted(method.upper() for method in document))
    async with api.http.request(
        method, api.url + _sample_path(path), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as response:
        assert response.status == 405
        assert response.headers["Allow"] == documented
        _error(await response.json(), "method_not_allowed")


async def test_the_api_does_not_start_without_a_token(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWOWAY_API_TOKEN", raising=False)
    with pytest.raises(ValueError, match="api_token"):
        make_settings(ApiSettings)
