"""Ingress against a real broker: 202 only after the confirm, 503 when the broker is gone; MO
keeps being accepted (and ingress stays ready) while the database is gone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aio_pika.abc import AbstractRobustConnection

from tests.support.broker import drain, listening
from tests.support.servers import serving
from twoway.messages import InboundSMS
from twoway.service import AMQP_CONNECTION, MONGO_CLIENT
from twoway.topology import INBOUND_EXCHANGE, ROUTER_QUEUE, declare_exchanges, declare_work_queue
from twoway_ingress.app import create_app
from twoway_ingress.settings import IngressSettings

pytestmark = pytest.mark.rabbit

MO = {"from": "+15551234567", "to": "12345", "text": "ECHO hi"}

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(make_settings: Callable[..., Any]) -> IngressSettings:
    settings: IngressSettings = make_settings(
        IngressSettings, gateways_file=REPO / "config" / "gateways.yaml", receive_gateway="sim"
    )
    return settings


async def test_an_accepted_sms_is_queued_with_every_parameter(
    settings: IngressSettings, amqp: AbstractRobustConnection
) -> None:
    channel = await amqp.channel()
    await declare_exchanges(channel)
    await declare_work_queue(
        channel, ROUTER_QUEUE, exchange=INBOUND_EXCHANGE, binding_keys=["inbound.#"]
    )
    await channel.close()
    query = {"from": "+1 555 123 4567", "to": "12345", "text": "bal now", "smsc": "op1"}
    async with (
        serving(create_app(settings)) as url,
        aiohttp.ClientSession() as http,
        http.get(f"{url}/receiveSMS", params=query) as response,
    ):
        assert response.status == 202
        message_id = (await response.json())["message_id"]

    [queued] = await drain(amqp, ROUTER_QUEUE, expect=1)
    message = InboundSMS.model_validate_json(queued.body)
    assert message.message_id == message_id
    assert (message.sender, message.recipient, message.text) == ("+15551234567", "12345", "bal now")
    assert (message.keyword, message.gateway_id, message.params) == ("BAL", "sim", {"smsc": "op1"})


async def test_without_a_broker_ingress_answers_503_and_is_not_ready(
    settings: IngressSettings, amqp: AbstractRobustConnection
) -> None:
    app = create_app(settings)
    async with serving(app) as url, aiohttp.ClientSession() as http:
        await app[AMQP_CONNECTION].close()
        query = {"from": "+15551234567", "text": "ECHO hi"}
        async with http.get(f"{url}/receiveSMS", params=query) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == str(settings.retry_after_seconds)
            body = await response.json()
        assert body["error"] == "broker_unavailable"
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["checks"]["broker"] is False


async def test_every_log_line_of_an_accepted_sms_carries_its_ids(
    settings: IngressSettings, amqp: AbstractRobustConnection
) -> None:
    async with (
        listening(amqp, INBOUND_EXCHANGE, "inbound.#"),
        serving(create_app(settings)) as url,
        aiohttp.ClientSession() as http,
    ):
        with structlog.testing.capture_logs(
            processors=[structlog.contextvars.merge_contextvars]
        ) as logs:
            async with http.post(f"{url}/receiveSMS", data=MO) as response:
                assert response.status == 202
                message_id = (await response.json())["message_id"]
    [accepted] = [line for line in logs if line["event"] == "inbound_accepted"]
    # An inbound SMS starts its conversation: it is its own correlation id.
    assert (accepted["message_id"], accepted["correlation_id"]) == (message_id, message_id)


@pytest.mark.mongo
async def test_without_the_database_mo_is_still_accepted_and_ingress_stays_ready(
    settings: IngressSettings, amqp: AbstractRobustConnection
) -> None:
    app = create_app(settings)
    async with (
        listening(amqp, INBOUND_EXCHANGE, "inbound.#") as published,
        serving(app) as url,
        aiohttp.ClientSession() as http,
    ):
        await app[MONGO_CLIENT].close()
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 200
            assert (await response.json())["checks"] == {"broker": True}
        async with http.post(f"{url}/receiveSMS", data=MO) as response:
            assert response.status == 202
            message_id = (await response.json())["message_id"]
        [queued] = await drain(amqp, published, expect=1)
    assert queued.message_id == message_id
