"""A gateway's delivery report through ingress, on a real broker and database: it is in the
message log before it is published on `sms.events` and before the gateway hears 200; without the
database it is 503 (the gateway retries) and nothing is published."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import drain, listening
from tests.support.servers import serving
from twoway.message_log import LOG_COLLECTION, MessageLog
from twoway.messages import DeliveryEvent
from twoway.storage import Document
from twoway.topology import EVENTS_EXCHANGE
from twoway_ingress.app import create_app
from twoway_ingress.settings import IngressSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

REPORT = {"ref": "01JDQ6AAAAAAAAAAAAAAAAAAAA:bank", "type": "1", "smsc_id": "ab12"}


@pytest.fixture
def ingress_settings(
    make_settings: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., IngressSettings]:
    config = tmp_path / "gateways.yaml"
    config.write_text(
        "default_gateway: kannel\ngateways:\n"
        "  - {id: kannel, type: kannel, url: 'http://127.0.0.1:1/', account: twoway,"
        " secret: TEST_KANNEL_PASSWORD, inbound: {open: true}}\n"
    )
    monkeypatch.setenv("TEST_KANNEL_PASSWORD", "pw")

    def settings(**overrides: Any) -> IngressSettings:
        built: IngressSettings = make_settings(IngressSettings, gateways_file=config, **overrides)
        return built

    return settings


@pytest.fixture
async def events(amqp: AbstractRobustConnection) -> AsyncIterator[str]:
    async with listening(amqp, EVENTS_EXCHANGE, "#") as queue:
        yield queue


async def post_report(settings: IngressSettings) -> tuple[int, Any]:
    async with (
        serving(create_app(settings)) as url,
        aiohttp.ClientSession() as http,
        http.get(f"{url}/gateways/kannel/status", params=REPORT) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, (body, response.headers.get("Retry-After"))


async def test_a_report_is_logged_then_published(
    ingress_settings: Callable[..., IngressSettings],
    events: str,
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> None:
    status, _ = await post_report(ingress_settings())
    assert status == 200
    record = await MessageLog(mongo_db[LOG_COLLECTION]).get("01JDQ6AAAAAAAAAAAAAAAAAAAA")
    assert record is not None  # written before the gateway was answered
    assert [entry["status"] for entry in record.history] == ["delivered"]
    assert (record.status, record.adapter, record.gateway_id, record.gateway_message_id) == (
        "delivered",
        "bank",
        "kannel",
        "ab12",
    )
    [published] = await _taken(amqp, events, 1)
    assert (published.status, published.outbound_id) == ("delivered", record.message_id)


async def test_without_the_database_a_report_is_503_and_not_published(
    ingress_settings: Callable[..., IngressSettings],
    events: str,
    amqp: AbstractRobustConnection,
) -> None:
    unreachable = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200"
    status, (body, retry_after) = await post_report(ingress_settings(mongo_url=unreachable))
    assert status == 503
    assert body["error"] == "database_unavailable"
    assert body["message"]
    assert int(retry_after or 0) > 0
    assert await _taken(amqp, events, 1) == []


async def _taken(amqp: AbstractRobustConnection, queue: str, expect: int) -> list[DeliveryEvent]:
    taken = await drain(amqp, queue, expect=expect, within=1.0)
    return [DeliveryEvent.model_validate_json(message.body) for message in taken]
