"""Services through a broker outage, on the real broker behind a TCP proxy: `proxy.cut()` drops
every connection and refuses new ones (RabbitMQ killed), `proxy.start()` listens again on the
same port (RabbitMQ back).

While the broker is away ingress refuses MO at once (503, Retry-After, the JSON error) and every
service's /readyz fails; once it is back, ingress accepts again and the router consumes again
within seconds, without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from tests.integration.test_api import broker_url_through
from tests.support.broker import drain
from tests.support.numbers import TEST_DESTINATIONS
from tests.support.proxy import database_proxy
from tests.support.servers import serving
from tests.support.waiting import until
from twoway.broker import Publisher, ReconnectDelay, connect
from twoway.message_log import LOG_COLLECTION, MessageLog
from twoway.messages import DeliveryEvent, OutboundSMS
from twoway.service import PUBLISHER
from twoway.storage import Document
from twoway.topology import EVENTS_EXCHANGE, OUTBOUND_EXCHANGE, UNMATCHED_QUEUE, outbound_key
from twoway_devstack import ServerUrls
from twoway_ingress.app import create_app as create_ingress
from twoway_ingress.settings import IngressSettings
from twoway_outbound.app import create_app as create_outbound
from twoway_outbound.settings import OutboundSettings
from twoway_router.app import create_app as create_router
from twoway_router.settings import RouterSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

REPO = Path(__file__).resolve().parents[2]
MO = {"from": "+15551234567", "to": "12345", "text": "NOBODY handles this"}
RECOVERY_SECONDS = 5.0
"""From the broker's return to ingress accepting MO and the router consuming again."""


def failed_attempts(caplog: pytest.LogCaptureFixture) -> int:
    """aio-pika's warnings of a connection attempt that failed, so far (read unformatted: some
    of aio-pika's records carry arguments whose repr fails)."""
    return sum(
        1
        for record in caplog.records
        if record.name == "aio_pika.robust_connection"
        and str(record.msg).startswith("Connection attempt")
    )


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: str | None
    seconds: float
    """How long ingress took to answer."""


async def post_mo(http: aiohttp.ClientSession, url: str) -> Answer:
    """Post one MO as a gateway does."""
    started = asyncio.get_running_loop().time()
    async with http.post(f"{url}/receiveSMS", data=MO) as response:
        body: dict[str, Any] = await response.json()
        retry_after = response.headers.get("Retry-After")
    took = asyncio.get_running_loop().time() - started
    return Answer(response.status, body, retry_after, took)


def reconnects(service: str) -> float:
    """`twoway_broker_reconnects_total` of `service`, so far in this process."""
    return REGISTRY.get_sample_value("twoway_broker_reconnects_total", {"service": service}) or 0


async def readiness(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/readyz") as response:
        return response.status


async def test_ingress_refuses_at_once_while_the_broker_is_away_and_all_recover_when_it_returns(
    make_settings: Callable[..., Any],
    servers: ServerUrls,
    amqp: AbstractRobustConnection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aio_pika")
    async with AsyncExitStack() as running:
        proxy = await running.enter_async_context(database_proxy(servers.amqp_url))
        # A confirm timeout far longer than any answer the test accepts: a 503 that waited
        # for it would show.
        shared = {"amqp_url": broker_url_through(proxy, servers.amqp_url), "publish_timeout": 30}
        ingress_settings: IngressSettings = make_settings(
            IngressSettings,
            gateways_file=REPO / "config" / "gateways.yaml",
            receive_gateway="sim",
            **shared,
        )
        ingress_app = create_ingress(ingress_settings)
        ingress = await running.enter_async_context(serving(ingress_app))
        router_app = create_router(make_settings(RouterSettings, **shared))
        router = await running.enter_async_context(serving(router_app))
        http = await running.enter_async_context(aiohttp.ClientSession())

        reconnects_before = {service: reconnects(service) for service in ("ingress", "router")}
        proxy.cut()
        await until(
            lambda: all(app[PUBLISHER].channel.is_closed for app in (ingress_app, router_app))
        )
        await until(lambda: failed_attempts(caplog) >= 4)  # both kept trying, and failing
        # More retries than the sender's inbound limit (10 a minute) allows: refused while the
        # broker is away, they are not counted, or the MO would be 429 once it is back.
        for _ in range(12):
            refusal = await post_mo(http, ingress)
            assert (refusal.status, refusal.body["error"]) == (503, "broker_unavailable")
            assert refusal.retry_after == str(ingress_settings.retry_after_seconds)
            assert refusal.seconds < 1.0
        assert [await readiness(http, url) for url in (ingress, router)] == [503, 503]

        await proxy.start()
        back = asyncio.get_running_loop().time()
        while (answer := await post_mo(http, ingress)).status != 202:  # the gateway retries
            assert answer.status == 503, answer
            assert asyncio.get_running_loop().time() - back < RECOVERY_SECONDS, "still 503"
            await asyncio.sleep(0.05)
        message_id = answer.body["message_id"]
        [parked] = await drain(amqp, UNMATCHED_QUEUE, expect=1, within=RECOVERY_SECONDS)
        recovered = asyncio.get_running_loop().time() - back
        assert parked.message_id == message_id  # the router consumed and published it
        assert recovered < RECOVERY_SECONDS
        assert [await readiness(http, url) for url in (ingress, router)] == [200, 200]
        assert {
            service: reconnects(service) - before for service, before in reconnects_before.items()
        } == {"ingress": 1, "router": 1}


async def test_the_first_connection_is_retried_until_the_broker_answers(
    servers: ServerUrls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aio_pika")
    async with database_proxy(servers.amqp_url) as proxy:
        proxy.cut()
        connecting = asyncio.create_task(
            connect(broker_url_through(proxy, servers.amqp_url), "tests", ReconnectDelay(0.1))
        )
        await until(lambda: failed_attempts(caplog) >= 2)
        assert not connecting.done()
        await proxy.start()
        connection = await asyncio.wait_for(connecting, RECOVERY_SECONDS)
        assert not connection.is_closed
        await connection.close()


async def test_without_a_broker_the_first_connection_gives_up_after_its_patience(
    servers: ServerUrls,
) -> None:
    async with database_proxy(servers.amqp_url) as proxy:
        proxy.cut()
        started = asyncio.get_running_loop().time()
        with pytest.raises(ConnectionError, match=r"no broker answered within 0\.5 s"):
            await connect(
                broker_url_through(proxy, servers.amqp_url),
                "tests",
                ReconnectDelay(0.1),
                patience=0.5,
            )
        assert asyncio.get_running_loop().time() - started < 2.0


async def test_a_consumer_shuts_down_at_once_while_the_broker_is_away(
    make_settings: Callable[..., Any], servers: ServerUrls, amqp: AbstractRobustConnection
) -> None:
    """Cancelling its consumer would wait for the broker's return: a SIGTERM during an outage
    must not hang (the broker dropped the consumer with the connection anyway)."""
    async with database_proxy(servers.amqp_url) as proxy:
        settings = make_settings(
            RouterSettings, amqp_url=broker_url_through(proxy, servers.amqp_url)
        )
        router_app = create_router(settings)
        async with AsyncExitStack() as running:
            await running.enter_async_context(serving(router_app))
            proxy.cut()
            await until(lambda: router_app[PUBLISHER].channel.is_closed)
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(settings.shutdown_grace):
                await running.aclose()
        assert asyncio.get_running_loop().time() - started < 2.0


class HeldGateway:
    """A gateway that takes each send and answers it only once `answer` is set."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.answer = asyncio.Event()

    async def send(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        await self.answer.wait()
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/send", self.send)
        return app


async def test_a_send_cut_off_from_the_broker_mid_request_is_logged_sent_and_never_held(
    make_settings: Callable[..., Any],
    servers: ServerUrls,
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The broker goes away while outbound's request is at the gateway: the lost channel must
    not cut the handling between its attempt note and its outcome (that would leave the message
    in doubt and held, though it was sent), so the redelivery finds it sent."""
    held = HeldGateway()
    async with AsyncExitStack() as running:
        gateway_url = await running.enter_async_context(serving(held.app()))
        config = tmp_path / "gateways.yaml"
        config.write_text(
            "default_gateway: held\n"
            "gateways:\n"
            "  - id: held\n"
            "    type: mobilefirst-http\n"
            f"    url: {gateway_url}/send\n"
            "    timeout: 30\n"
            f"    destinations: {TEST_DESTINATIONS}\n"
        )
        proxy = await running.enter_async_context(database_proxy(servers.amqp_url))
        outbound_app = create_outbound(
            make_settings(
                OutboundSettings,
                gateways_file=config,
                amqp_url=broker_url_through(proxy, servers.amqp_url),
            )
        )
        await running.enter_async_context(serving(outbound_app))
        publisher = await Publisher.open(amqp, confirm_timeout=5)
        events = await publisher.channel.declare_queue(exclusive=True)
        await events.bind(EVENTS_EXCHANGE, routing_key="#")
        message = OutboundSMS(to="+15551234567", text="cut off", gateway_id="held")
        await publisher.publish(
            message, exchange=OUTBOUND_EXCHANGE, routing_key=outbound_key("held")
        )

        await until(lambda: len(held.requests) == 1)
        proxy.cut()
        await until(lambda: outbound_app[PUBLISHER].channel.is_closed)
        held.answer.set()
        message_log = MessageLog(mongo_db[LOG_COLLECTION])
        deadline = asyncio.get_running_loop().time() + RECOVERY_SECONDS
        while (record := await message_log.get(message.message_id)) is None or (
            record.status != "sent"
        ):
            assert asyncio.get_running_loop().time() < deadline, record
            await asyncio.sleep(0.02)
        await proxy.start()  # the unacked message comes back: found sent, not sent again
        [told] = await drain(amqp, events.name, expect=1, within=RECOVERY_SECONDS * 2)
        record = await message_log.get(message.message_id)

    event = DeliveryEvent.model_validate_json(told.body)
    assert (event.status, event.detail) == ("sent", "already sent; not sent again")
    assert len(held.requests) == 1
    assert record is not None
    assert [entry["status"] for entry in record.history] == ["accepted", "sent"]
    output = capfd.readouterr().out
    assert "outbound_handling_ended_without_its_consumer" in output  # its events unpublished
    assert "never retrieved" not in output
