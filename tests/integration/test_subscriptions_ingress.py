"""`GET /subscribeSMS` on ingress (MobileFirst's servlet) against real RabbitMQ and MongoDB."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from tests.integration.test_api import broker_url_through
from tests.support.proxy import database_proxy
from tests.support.servers import serving
from tests.support.stack import gateways_file
from tests.support.waiting import until
from twoway.messages import EventSource, SubscriptionChanged
from twoway.service import AMQP_CONNECTION, PUBLISHER
from twoway.storage import Document
from twoway.subscriptions import EventSourceRegistry, SubscriptionStore
from twoway.topology import SUBSCRIPTIONS_EXCHANGE
from twoway_devstack import ServerUrls
from twoway_ingress.app import create_app
from twoway_ingress.settings import IngressSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

NEWS = "bank.News"
PHONE = "+15551234567"


@dataclass(frozen=True)
class Ingress:
    url: str
    http: aiohttp.ClientSession
    store: SubscriptionStore
    app: web.Application

    async def get(self, query: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.url}/subscribeSMS?{query}") as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()


@pytest.fixture
async def ingress(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
) -> AsyncIterator[Ingress]:
    await EventSourceRegistry(mongo_db).replace_adapter_sources(
        "bank", [EventSource(name=NEWS, adapter="bank")]
    )
    settings = make_settings(
        IngressSettings, gateways_file=gateways_file(tmp_path, "http://127.0.0.1:9")
    )
    app = create_app(settings)
    async with serving(app) as url, aiohttp.ClientSession() as http:
        yield Ingress(url, http, SubscriptionStore(mongo_db, "US"), app)


SUBSCRIBE = f"eventSource={NEWS}&phoneNumber=%2B15551234567"


@pytest.mark.parametrize(
    ("query", "phone"),
    [
        pytest.param(SUBSCRIBE, PHONE, id="no-option"),
        pytest.param(f"{SUBSCRIBE}&option=", PHONE, id="blank-option"),
        pytest.param(f"{SUBSCRIBE}&option=%20%20", PHONE, id="whitespace-option"),
        pytest.param(f"eventSource={NEWS}&phoneNumber=555-123-4567", PHONE, id="national-dashes"),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=+447911123456", "+447911123456", id="raw-plus"
        ),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=%2B44%207911%20123456",
            "+447911123456",
            id="spaces",
        ),
    ],
)
async def test_subscribe_stores_the_number_in_e164(
    ingress: Ingress, query: str, phone: str
) -> None:
    status, body = await ingress.get(query)
    assert (status, body) == (
        200,
        {"status": "subscribed", "eventSource": NEWS, "phoneNumber": phone},
    )
    assert await ingress.store.get_subscription(NEWS, phone) is not None


async def test_subscribing_again_is_harmless_and_keeps_user_name_and_alias(
    ingress: Ingress,
) -> None:
    await ingress.get(f"{SUBSCRIBE}&userName=ann&alias=Ann%20S")
    status, body = await ingress.get(SUBSCRIBE)

    assert (status, body["status"]) == (200, "already_subscribed")
    subscription = await ingress.store.get_subscription(NEWS, PHONE)
    assert subscription is not None
    assert (subscription.user_id, subscription.alias) == ("ann", "Ann S")


@pytest.mark.parametrize("option", ["unsubscribe", "0", "false", "x"])
async def test_any_other_option_unsubscribes(ingress: Ingress, option: str) -> None:
    await ingress.get(SUBSCRIBE)

    assert await ingress.get(f"{SUBSCRIBE}&option={option}") == (
        200,
        {"status": "unsubscribed", "eventSource": NEWS, "phoneNumber": PHONE},
    )
    status, body = await ingress.get(f"{SUBSCRIBE}&option={option}")
    assert (status, body["status"]) == (200, "not_subscribed")
    assert await ingress.store.get_subscription(NEWS, PHONE) is None


@pytest.mark.parametrize(
    ("query", "status", "code", "field"),
    [
        pytest.param("phoneNumber=5551234567", 422, "missing_field", "eventSource", id="no-source"),
        pytest.param(
            "eventSource=%20&phoneNumber=5551234567",
            422,
            "missing_field",
            "eventSource",
            id="blank-source",
        ),
        pytest.param(f"eventSource={NEWS}", 422, "missing_field", "phoneNumber", id="no-phone"),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=", 422, "missing_field", "phoneNumber", id="blank"
        ),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=555CALLNOW",
            422,
            "invalid_field",
            "phoneNumber",
            id="letters",
        ),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=(555)%20123-4567",
            422,
            "invalid_field",
            "phoneNumber",
            id="parentheses",
        ),
        pytest.param(
            f"eventSource={NEWS}&phoneNumber=123", 422, "invalid_field", "phoneNumber", id="short"
        ),
        pytest.param(
            "eventSource=bank.Unknown&phoneNumber=5551234567",
            404,
            "unknown_event_source",
            "eventSource",
            id="undeclared-source",
        ),
        pytest.param(
            "eventSource=News&phoneNumber=5551234567",
            422,
            "invalid_field",
            "eventSource",
            id="not-adapter-dot-source",
        ),
    ],
)
async def test_bad_requests_get_a_clear_4xx_and_store_nothing(
    ingress: Ingress,
    mongo_db: AsyncDatabase[Document],
    query: str,
    status: int,
    code: str,
    field: str,
) -> None:
    got, body = await ingress.get(query)
    assert (got, body["error"], body["field"]) == (status, code, field)
    assert body["message"]
    assert await mongo_db["subscriptions"].count_documents({}) == 0


async def test_post_is_not_the_servlet(ingress: Ingress) -> None:
    async with ingress.http.post(f"{ingress.url}/subscribeSMS?{SUBSCRIBE}") as response:
        assert response.status == 405
        assert (await response.json())["error"] == "method_not_allowed"


async def test_each_change_is_announced_to_the_sources_adapter(
    ingress: Ingress, amqp: AbstractRobustConnection
) -> None:
    channel = await amqp.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(SUBSCRIPTIONS_EXCHANGE, routing_key="bank")

    await ingress.get(SUBSCRIBE)
    await ingress.get(SUBSCRIBE)  # no change: no event
    await ingress.get(f"{SUBSCRIBE}&option=stop")

    changes = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        event = SubscriptionChanged.model_validate_json(message.body)
        changes.append((event.change, event.subscription.phone))
    await channel.close()
    assert changes == [("subscribed", PHONE), ("unsubscribed", PHONE)]


async def test_without_the_broker_it_is_503_and_nothing_changes(ingress: Ingress) -> None:
    await ingress.get(SUBSCRIBE)
    subscribed = await ingress.store.get_subscription(NEWS, PHONE)
    await ingress.app[AMQP_CONNECTION].close()

    for query in (f"eventSource={NEWS}&phoneNumber=5557654321", f"{SUBSCRIBE}&option=stop"):
        status, body = await ingress.get(query)
        assert (status, body["error"]) == (503, "unavailable")
    assert await ingress.store.get_subscription(NEWS, "+15557654321") is None
    assert await ingress.store.get_subscription(NEWS, PHONE) == subscribed


async def test_when_the_broker_goes_away_it_is_503_and_nothing_changes(
    make_settings: Callable[..., Any],
    servers: ServerUrls,
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
) -> None:
    await EventSourceRegistry(mongo_db).replace_adapter_sources(
        "bank", [EventSource(name=NEWS, adapter="bank")]
    )
    store = SubscriptionStore(mongo_db, "US")
    subscribed, _ = await store.subscribe(NEWS, PHONE)
    async with database_proxy(servers.amqp_url) as proxy:
        settings = make_settings(
            IngressSettings,
            gateways_file=gateways_file(tmp_path, "http://127.0.0.1:9"),
            amqp_url=broker_url_through(proxy, servers.amqp_url),
            publish_timeout=1.0,
        )
        app = create_app(settings)
        async with serving(app) as url, aiohttp.ClientSession() as http:
            ingress = Ingress(url, http, store, app)
            proxy.cut()  # the connection drops; reconnecting is refused
            await until(lambda: app[PUBLISHER].channel.is_closed)
            for query in (f"eventSource={NEWS}&phoneNumber=5557654321", f"{SUBSCRIBE}&option=stop"):
                status, body = await ingress.get(query)
                assert (status, body["error"]) == (503, "unavailable")
                assert body["message"]
    assert await store.get_subscription(NEWS, "+15557654321") is None
    assert await store.get_subscription(NEWS, PHONE) == subscribed


async def test_receive_sms_stays_ready_without_the_database(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection, tmp_path: Path
) -> None:
    settings = make_settings(
        IngressSettings,
        gateways_file=gateways_file(tmp_path, "http://127.0.0.1:9"),
        mongo_url="mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200",
    )
    async with serving(create_app(settings)) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 200
        async with http.get(f"{url}/subscribeSMS?{SUBSCRIBE}") as response:
            assert response.status == 503
            assert (await response.json())["error"] == "unavailable"
