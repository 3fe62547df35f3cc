"""Outbound's in-doubt window, opened by a real crash: an outbound process is killed (SIGKILL)
while its request is at the gateway (the gateway has the message, the outcome is not logged),
and RabbitMQ redelivers the message to another outbound; real broker, database and ingress."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import drain, listening, queue_length
from tests.support.numbers import TEST_DESTINATIONS
from tests.support.outbound_replicas import start_outbound, wait_ready
from tests.support.servers import serving
from tests.support.waiting import until
from twoway.broker import Publisher
from twoway.message_log import LOG_COLLECTION, AttemptStarted, MessageLog, MessageRecord
from twoway.messages import DeliveryEvent, OutboundSMS, utc_now
from twoway.storage import Document
from twoway.topology import (
    EVENTS_EXCHANGE,
    HEADER_REASON,
    HEADER_REPEAT,
    OUTBOUND_EXCHANGE,
    OUTBOUND_QUEUE,
    dead_letter_queue,
    declare_exchanges,
    jittered_delays,
    outbound_key,
    retry_queue,
)
from twoway_devstack import ServerUrls
from twoway_devstack.processes import free_port
from twoway_ingress.app import create_app as create_ingress
from twoway_ingress.settings import IngressSettings
from twoway_outbound.app import create_app as create_outbound
from twoway_outbound.settings import OutboundSettings

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]


class HangingGateway:
    """Takes every send; leaves the first unanswered (its sender is killed meanwhile) and
    answers the others 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.release = asyncio.Event()

    async def send(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        if len(self.requests) == 1:
            await self.release.wait()
        return web.Response(text="OK")


def gateways_file(folder: Path, url: str, in_doubt_timeout: float) -> Path:
    """`held` (in_doubt: hold, the default), `resent` (in_doubt: resend) and `unreported`
    (in_doubt: resend_unreported), all sending our
    reference in the delivery-report URL (`dlr`); a request's timeout of 1 s, so that an attempt
    stops looking in flight (`in_flight_until`) 3 s after it started."""
    common = (
        f"type: mobilefirst-http, url: '{url}/send', status_param: dlr, timeout: 1,"
        f" public_url: 'http://ingress.invalid', inbound: {{open: true}},"
        f" destinations: {TEST_DESTINATIONS}"
    )
    path = folder / "gateways.yaml"
    path.write_text(
        "default_gateway: held\ngateways:\n"
        f"  - {{id: held, {common}, in_doubt_timeout: {in_doubt_timeout}}}\n"
        f"  - {{id: resent, {common}, in_doubt: resend}}\n"
        f"  - {{id: unreported, {common}, in_doubt: resend_unreported,"
        f" in_doubt_timeout: {in_doubt_timeout}}}\n"
    )
    return path


@dataclass(frozen=True)
class Crash:
    gateway: HangingGateway
    gateways: Path
    message: OutboundSMS
    events: str
    """A queue bound to every event, before the redelivery."""


@pytest.fixture
def crash(
    servers: ServerUrls,
    database_name: str,
    amqp: AbstractRobustConnection,
    tmp_path: Path,
) -> Callable[[str, float], Any]:
    """`async with crash(gateway_id, in_doubt_timeout) as crashed`: an outbound process took a
    message for that gateway, its request reached the gateway, and it was killed before the
    answer; the message waits to be redelivered."""

    @asynccontextmanager
    async def crashed(gateway_id: str, in_doubt_timeout: float) -> AsyncIterator[Crash]:
        gateway = HangingGateway()
        app = web.Application()
        app.router.add_get("/send", gateway.send)
        async with serving(app) as url, listening(amqp, EVENTS_EXCHANGE, "#") as events:
            gateways = gateways_file(tmp_path, url, in_doubt_timeout)
            environment = {
                "TWOWAY_AMQP_URL": servers.amqp_url,
                "TWOWAY_MONGO_URL": servers.mongo_url,
                "TWOWAY_MONGO_DATABASE": database_name,
            }
            port = free_port()
            process = start_outbound(tmp_path, environment, gateways, port)
            try:
                await wait_ready([port])
                message = OutboundSMS(
                    to="+15551234567", text="Your code is 482910", gateway_id=gateway_id
                )
                publisher = await Publisher.open(amqp, confirm_timeout=5)
                await declare_exchanges(publisher.channel)
                await publisher.publish(
                    message, exchange=OUTBOUND_EXCHANGE, routing_key=outbound_key(gateway_id)
                )
                await publisher.channel.close()
                await until(lambda: len(gateway.requests) == 1, within=10)
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
            try:
                yield Crash(gateway, gateways, message, events)
            finally:
                gateway.release.set()

    return crashed


def outbound_settings(make_settings: Callable[..., Any], gateways: Path) -> OutboundSettings:
    """Delay queues of up to 2.4 s: a held message comes back to be checked within 2.4 s of its
    timeout (the default steps would make it wait for the 24 s queue)."""
    settings: OutboundSettings = make_settings(
        OutboundSettings, gateways_file=gateways, retry_delays=[1, 2]
    )
    return settings


async def logged(mongo_db: AsyncDatabase[Document], message_id: str) -> MessageRecord:
    record = await MessageLog(mongo_db[LOG_COLLECTION]).get(message_id)
    assert record is not None
    return record


async def next_events(
    amqp: AbstractRobustConnection, queue: str, expect: int
) -> list[DeliveryEvent]:
    taken = await drain(amqp, queue, expect=expect, within=15)
    assert len(taken) == expect
    return [DeliveryEvent.model_validate_json(message.body) for message in taken]


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_hold_sends_once_shows_unknown_then_a_delivery_report_settles_it(
    crash: Callable[[str, float], Any],
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> None:
    in_doubt = counted("twoway_outbound_in_doubt_total", gateway="held", policy="hold")
    settled = counted("twoway_outbound_in_doubt_settled_total", gateway="held", outcome="reported")
    async with crash("held", 8.0) as crashed:
        message_id = crashed.message.message_id
        outbound = outbound_settings(make_settings, crashed.gateways)
        ingress = make_settings(IngressSettings, gateways_file=crashed.gateways)
        async with serving(create_outbound(outbound)), serving(create_ingress(ingress)) as url:
            [unknown] = await next_events(amqp, crashed.events, 1)
            assert (unknown.status, unknown.outbound_id) == ("unknown", message_id)
            assert unknown.detail.startswith("in doubt: attempt 1 to held at ")
            record = await logged(mongo_db, message_id)
            assert [entry["status"] for entry in record.history] == ["accepted", "unknown"]
            assert record.status == "unknown"
            assert record.attempt is not None
            assert (record.attempt.attempt, record.attempt.gateway_id) == (1, "held")
            assert (
                counted("twoway_outbound_in_doubt_total", gateway="held", policy="hold")
                == in_doubt + 1
            )
            # the gateway reports the message it took to the URL it was given (our ingress)
            report = urlsplit(crashed.gateway.requests[0]["dlr"])
            async with aiohttp.ClientSession() as http:
                status_url = f"{url}{report.path}?{report.query}"
                async with http.post(status_url, data={"status": "delivered"}) as response:
                    assert response.status == 200
            [delivered] = await next_events(amqp, crashed.events, 1)
            assert delivered.status == "delivered"
            # the held copy comes back at the timeout, finds the report, and tells those who
            # count outbound's outcomes (the broadcaster) that it was sent
            [sent] = await next_events(amqp, crashed.events, 1)
            assert (sent.status, sent.detail) == (
                "sent",
                "in doubt until the gateway reported it delivered; not sent again",
            )
            reported = counted(
                "twoway_outbound_in_doubt_settled_total", gateway="held", outcome="reported"
            )
            assert reported == settled + 1
        assert len(crashed.gateway.requests) == 1
        record = await logged(mongo_db, message_id)
        assert (record.status, record.attempt) == ("delivered", None)
        assert [entry["status"] for entry in record.history] == [
            "accepted",
            "unknown",
            "delivered",
        ]


async def test_hold_without_a_delivery_report_fails_at_the_timeout(
    crash: Callable[[str, float], Any],
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> None:
    async with crash("held", 6.0) as crashed:
        outbound = outbound_settings(make_settings, crashed.gateways)
        async with serving(create_outbound(outbound)):
            unknown, failed = await next_events(amqp, crashed.events, 2)
            [dead] = await drain(amqp, dead_letter_queue(OUTBOUND_QUEUE), expect=1, within=10)
        assert (unknown.status, failed.status) == ("unknown", "failed")
        assert failed.detail.startswith("unknown outcome: attempt 1 to held at ")
        assert failed.detail.endswith(
            "had no delivery report within 6 s; not sent again (in_doubt: hold)"
        )
        assert dead.headers[HEADER_REASON] == failed.detail
        assert len(crashed.gateway.requests) == 1
        record = await logged(mongo_db, crashed.message.message_id)
        assert record.status == "failed"


async def test_resend_sends_it_again_with_the_same_reference(
    crash: Callable[[str, float], Any],
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> None:
    in_doubt = counted("twoway_outbound_in_doubt_total", gateway="resent", policy="resend")
    async with crash("resent", 8.0) as crashed:
        outbound = outbound_settings(make_settings, crashed.gateways)
        async with serving(create_outbound(outbound)):
            [sent] = await next_events(amqp, crashed.events, 1)
        assert (sent.status, sent.gateway_id) == ("sent", "resent")
        first, second = crashed.gateway.requests
        assert first == second  # the same text, and the same reference in the report URL
        assert "ref=" in first["dlr"]
        assert (
            counted("twoway_outbound_in_doubt_total", gateway="resent", policy="resend")
            == in_doubt + 1
        )
        record = await logged(mongo_db, crashed.message.message_id)
        assert (record.status, record.attempt) == ("sent", None)
        assert [entry["status"] for entry in record.history] == ["accepted", "sent"]


async def test_resend_unreported_sends_it_again_when_no_report_came(
    crash: Callable[[str, float], Any],
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> None:
    """No delivery report within the timeout: the gateway never took it, so it is sent again
    (here the gateway did take it: what a gateway that reports late costs)."""
    resent = counted(
        "twoway_outbound_in_doubt_settled_total", gateway="unreported", outcome="resent"
    )
    async with crash("unreported", 6.0) as crashed:
        outbound = outbound_settings(make_settings, crashed.gateways)
        async with serving(create_outbound(outbound)):
            unknown, sent = await next_events(amqp, crashed.events, 2)
        assert (unknown.status, sent.status) == ("unknown", "sent")
        assert "sent again without one (in_doubt: resend_unreported)" in unknown.detail
        first, second = crashed.gateway.requests
        assert first == second
        assert (
            counted(
                "twoway_outbound_in_doubt_settled_total", gateway="unreported", outcome="resent"
            )
            == resent + 1
        )
        record = await logged(mongo_db, crashed.message.message_id)
        assert (record.status, record.attempt) == ("sent", None)
        assert [entry["status"] for entry in record.history] == ["accepted", "unknown", "sent"]


async def test_a_message_held_before_is_not_announced_unknown_again(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
) -> None:
    """Outbound died again after logging `unknown` and before parking the message: the next
    copy waits on without a second `unknown` (nor a second count), then times out."""
    message = OutboundSMS(to="+15551234567", text="Your code is 482910", gateway_id="held")
    started = AttemptStarted(1, "held", utc_now())
    message_log = MessageLog(mongo_db[LOG_COLLECTION])
    await message_log.start_attempt(message.message_id, started, message.event("accepted", "held"))
    await message_log.add(message.event("unknown", "held", "in doubt: ..."))
    in_doubt = counted("twoway_outbound_in_doubt_total", gateway="held", policy="hold")
    gateways = gateways_file(tmp_path, "http://127.0.0.1:1", in_doubt_timeout=2)
    async with (
        listening(amqp, EVENTS_EXCHANGE, "#") as events,
        serving(create_outbound(outbound_settings(make_settings, gateways))),
    ):
        publisher = await Publisher.open(amqp, confirm_timeout=5)
        await publisher.publish(
            message,
            exchange=OUTBOUND_EXCHANGE,
            routing_key=outbound_key("held"),
            headers={HEADER_REPEAT: True},  # looked up in the log, as a redelivery is
        )
        await publisher.channel.close()
        [failed] = await next_events(amqp, events, 1)
    assert (failed.status, failed.outbound_id) == ("failed", message.message_id)
    assert failed.detail.startswith("unknown outcome: attempt 1 to held at ")
    assert counted("twoway_outbound_in_doubt_total", gateway="held", policy="hold") == in_doubt


async def test_a_copy_meeting_an_attempt_in_flight_waits_for_its_outcome(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
) -> None:
    """Two copies of one reply (the adapter answered its SMS twice) reach two outbound replicas:
    the repeat finds the other replica's attempt noted a moment ago, with no outcome yet. It is
    not in doubt (no `unknown`, not sent): it waits, and once the other replica logs `sent` it
    is not sent again."""
    message = OutboundSMS(to="+15551234567", text="Your code is 482910", gateway_id="held")
    started = AttemptStarted(1, "held", utc_now())
    message_log = MessageLog(mongo_db[LOG_COLLECTION])  # the other replica's attempt
    await message_log.start_attempt(message.message_id, started, message.event("accepted", "held"))
    gateway = HangingGateway()
    app = web.Application()
    app.router.add_get("/send", gateway.send)
    in_doubt = counted("twoway_outbound_in_doubt_total", gateway="held", policy="hold")
    async with serving(app) as url, listening(amqp, EVENTS_EXCHANGE, "#") as events:
        gateways = gateways_file(tmp_path, url, in_doubt_timeout=60)
        settings = outbound_settings(make_settings, gateways)
        parked = [retry_queue(OUTBOUND_QUEUE, delay) for delay in jittered_delays([1, 2])]
        async with serving(create_outbound(settings)):
            publisher = await Publisher.open(amqp, confirm_timeout=5)
            await publisher.publish(
                message,
                exchange=OUTBOUND_EXCHANGE,
                routing_key=outbound_key("held"),
                headers={HEADER_REPEAT: True},
            )
            await publisher.channel.close()
            deadline = asyncio.get_running_loop().time() + 5
            while sum([await queue_length(amqp, name) for name in parked]) == 0:
                assert asyncio.get_running_loop().time() < deadline, "the copy was not parked"
            assert (await logged(mongo_db, message.message_id)).status == "accepted"
            # the other replica's request succeeds
            await message_log.add(message.event("sent", "held", "attempt 1: OK", "gw-1"))
            [sent] = await next_events(amqp, events, 1)
    assert (sent.status, sent.detail) == ("sent", "already sent; not sent again")
    assert gateway.requests == []
    record = await logged(mongo_db, message.message_id)
    assert [entry["status"] for entry in record.history] == ["accepted", "sent"]
    assert counted("twoway_outbound_in_doubt_total", gateway="held", policy="hold") == in_doubt
