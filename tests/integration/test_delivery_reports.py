"""A gateway's delivery report through ingress, on a real broker and database: it is in the
message log before it is published on `sms.events` and before the gateway hears 200; without the
database it is 503 (the gateway retries) and nothing is published; with a reference we did not
sign for the gateway it is 403, and neither logged nor published."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import drain, listening
from tests.support.references import signed_reference
from tests.support.servers import serving
from twoway.message_log import LOG_COLLECTION, MessageLog
from twoway.messages import DeliveryEvent
from twoway.storage import Document
from twoway.topology import EVENTS_EXCHANGE
from twoway_ingress.app import create_app
from twoway_ingress.settings import IngressSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

MESSAGE_ID = "01JDQ6AAAAAAAAAAAAAAAAAAAA"
REPORT = {"ref": signed_reference("kannel", MESSAGE_ID, "bank"), "type": "1", "smsc_id": "ab12"}


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


async def post_reports(
    settings: IngressSettings, *reports: dict[str, str]
) -> list[tuple[int, Any, str | None]]:
    """Each report in turn: its status, JSON body (None for another type) and Retry-After."""
    answers = []
    async with serving(create_app(settings)) as url, aiohttp.ClientSession() as http:
        for report in reports:
            async with http.get(f"{url}/gateways/kannel/status", params=report) as response:
                json = response.content_type == "application/json"
                body = await response.json() if json else None
                answers.append((response.status, body, response.headers.get("Retry-After")))
    return answers


async def test_a_report_is_logged_then_published(
    ingress_settings: Callable[..., IngressSettings],
    events: str,
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> None:
    [(status, _, _)] = await post_reports(ingress_settings(), REPORT)
    assert status == 200
    record = await MessageLog(mongo_db[LOG_COLLECTION]).get(MESSAGE_ID)
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
    [(status, body, retry_after)] = await post_reports(
        ingress_settings(mongo_url=unreachable), REPORT
    )
    assert status == 503
    assert body["error"] == "database_unavailable"
    assert body["message"]
    assert int(retry_after or 0) > 0
    assert await _taken(amqp, events, 1) == []


FORGED_ID = "01JDQ6FFFFFFFFFFFFFFFFFFFF"
FORGERIES = (
    ("made-up-message-id", {**REPORT, "ref": f"{FORGED_ID}:bank"}),
    (
        "signed-for-another-gateway",
        {**REPORT, "ref": signed_reference("sim", FORGED_ID, "bank")},
    ),
    (
        "signed-with-another-secret",
        {**REPORT, "ref": signed_reference("kannel", FORGED_ID, "bank", "not-this-deployment")},
    ),
)


@pytest.mark.parametrize("forged", [c[1] for c in FORGERIES], ids=[c[0] for c in FORGERIES])
async def test_a_forged_report_is_403_and_neither_logged_nor_published(
    ingress_settings: Callable[..., IngressSettings],
    events: str,
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
    forged: dict[str, str],
) -> None:
    # The genuine report after it is published behind anything the forged one published.
    with structlog.testing.capture_logs() as logs:
        forged_answer, genuine_answer = await post_reports(ingress_settings(), forged, REPORT)
    [refused] = [line for line in logs if line["event"] == "delivery_report_refused"]
    assert (refused["gateway_id"], refused["log_level"]) == ("kannel", "warning")
    assert forged["ref"] not in repr(logs)  # nothing of the post's body or query
    status, body, _ = forged_answer
    assert (status, body["error"]) == (403, "bad_reference")
    assert genuine_answer[0] == 200
    message_log = MessageLog(mongo_db[LOG_COLLECTION])
    assert await message_log.get(FORGED_ID) is None
    [first, *_] = await _taken(amqp, events, 1)
    assert first.outbound_id == MESSAGE_ID


async def _taken(amqp: AbstractRobustConnection, queue: str, expect: int) -> list[DeliveryEvent]:
    taken = await drain(amqp, queue, expect=expect, within=1.0)
    return [DeliveryEvent.model_validate_json(message.body) for message in taken]
