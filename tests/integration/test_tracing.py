"""Trace context crosses the broker: a consumer continues the trace its publisher was in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tests.support.broker import drain
from tests.support.servers import serving
from twoway.broker import Consumer, Publisher
from twoway.consumed import Delivery
from twoway.messages import InboundSMS
from twoway.topology import INBOUND_EXCHANGE, ROUTER_QUEUE, declare_exchanges, declare_work_queue
from twoway.tracing import TRACER
from twoway_ingress.app import create_app as create_ingress
from twoway_ingress.settings import IngressSettings

pytestmark = pytest.mark.rabbit

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def recording_tracer() -> None:
    """An SDK tracer provider, so spans have real ids (the API alone records nothing)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())


async def test_the_consumer_span_continues_the_publishers_trace(
    amqp: AbstractRobustConnection,
) -> None:
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    await declare_exchanges(publisher.channel)
    channel = await amqp.channel()
    queue = await declare_work_queue(
        channel, ROUTER_QUEUE, exchange=INBOUND_EXCHANGE, binding_keys=["inbound.#"]
    )
    seen: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def handle(_message: InboundSMS, delivery: Delivery) -> None:
        context = trace.get_current_span().get_span_context()
        seen.set_result((context.trace_id, str(delivery.headers["traceparent"])))

    consumer = Consumer(queue, InboundSMS, handle, publisher, max_deliveries=5)
    await consumer.start()
    with TRACER.start_as_current_span("gateway post") as root:
        message = InboundSMS(gateway_id="sim", sender="+15551234567", text="ECHO hi")
        await publisher.publish(message, exchange=INBOUND_EXCHANGE, routing_key="inbound.sim")
    trace_id, traceparent = await asyncio.wait_for(seen, 5)
    await consumer.stop(grace=2)
    await channel.close()
    await publisher.channel.close()

    root_context = root.get_span_context()
    assert trace_id == root_context.trace_id
    assert traceparent.split("-")[1] == f"{root_context.trace_id:032x}"
    assert traceparent.split("-")[2] == f"{root_context.span_id:016x}"


async def test_a_gateways_traceparent_reaches_the_queued_message(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection
) -> None:
    channel = await amqp.channel()
    await declare_exchanges(channel)
    await declare_work_queue(
        channel, ROUTER_QUEUE, exchange=INBOUND_EXCHANGE, binding_keys=["inbound.#"]
    )
    await channel.close()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    settings = make_settings(
        IngressSettings, gateways_file=REPO / "config" / "gateways.yaml", receive_gateway="sim"
    )
    query = {"from": "+15551234567", "to": "12345", "text": "ECHO traced"}
    async with (
        serving(create_ingress(settings)) as url,
        aiohttp.ClientSession() as http,
        http.get(f"{url}/receiveSMS", params=query, headers=headers) as response,
    ):
        assert response.status == 202

    [queued] = await drain(amqp, ROUTER_QUEUE, expect=1)
    assert str(queued.headers["traceparent"]).split("-")[1] == trace_id
