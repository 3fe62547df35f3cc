"""An adapter's `on_delivery` callback on a real broker and database.

The test has the adapter send SMS (a handler's reply and `context.send`, published to
`sms.outbound` as the SDK does), then publishes their `DeliveryEvent`s to `sms.events` the way
outbound (`OutboundSMS.event`, key `<status>.<adapter>`) and ingress (a gateway's delivery report
carrying our reference) do, and watches what the callback sees and what lands in the adapter's
events queue, its delay queue and its dead-letter queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from aio_pika.abc import AbstractRobustConnection

from tests.support.broker import (
    adapter_queues,
    delete_queues,
    drain,
    listening,
    queue_exists,
    queue_length,
)
from tests.support.references import REFERENCE_SECRET
from tests.support.servers import serving
from tests.support.waiting import until
from twoway.broker import Publisher, Reject
from twoway.gateways.base import delivery_event, encode_reference
from twoway.gateways.config import GatewayConfig, GatewaySecrets
from twoway.messages import DeliveryEvent, InboundSMS, OutboundSMS
from twoway.sdk import Adapter, AdapterSettings, DeliveryContext, HandlerContext
from twoway.topology import (
    ADAPTERS_EXCHANGE,
    EVENTS_EXCHANGE,
    HEADER_ATTEMPT,
    HEADER_HANDLER,
    HEADER_REASON,
    OUTBOUND_EXCHANGE,
    adapter_queue,
    dead_letter_queue,
    declare_exchanges,
    delivery_events_queue,
    event_key,
    retry_queue,
)

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

NAME = "notifier"
BYSTANDER = "bystander"
DELAYS = [1]
EVENTS = delivery_events_queue(NAME)
SENDER = "+15551234567"
FRIEND = "+15557654321"
GATEWAY = GatewayConfig(id="sim", type="webhook", url="http://127.0.0.1:9/send")
SECRETS = GatewaySecrets(parameters={}, reference_secret=REFERENCE_SECRET)


def events_queues(adapter: str) -> list[str]:
    """An adapter's events queue, its dead-letter queue and its delay queues."""
    queue = delivery_events_queue(adapter)
    return [queue, dead_letter_queue(queue), *(retry_queue(queue, d) for d in DELAYS)]


@dataclass
class Seen:
    """What an adapter's `on_delivery` callback was called with, its log context and when."""

    events: list[DeliveryEvent] = field(default_factory=list)
    log_contexts: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def statuses(self) -> list[tuple[str, str]]:
        return [(event.outbound_id, event.status) for event in self.events]

    def runs(self, detail: str) -> int:
        return sum(1 for event in self.events if event.detail == detail)


def build_adapter(name: str, seen: Seen) -> Adapter:
    """An adapter whose `TELL` handler replies and texts a friend, and whose callback records
    every event, then acts on its `detail`: fails, fails once, rejects or sends an SMS."""
    adapter = Adapter(name)

    @adapter.handler({"keyword": "TELL"})
    async def tell(context: HandlerContext) -> None:
        await context.send(FRIEND, "You have been told.")
        await context.reply("Told.")

    @adapter.on_delivery
    async def delivered(event: DeliveryEvent, context: DeliveryContext) -> None:
        seen.events.append(event)
        seen.log_contexts.append(structlog.contextvars.get_contextvars())
        seen.times.append(asyncio.get_running_loop().time())
        if event.detail == "always fails":
            raise RuntimeError("the CRM is down")
        if event.detail == "fails once" and seen.runs("fails once") == 1:
            raise RuntimeError("a passing fault")
        if event.detail == "unknown message":
            raise Reject("no such message in the CRM")
        if event.status == "failed":
            await context.services.send(SENDER, "We could not reach your friend.")

    return adapter


@dataclass
class Harness:
    amqp: AbstractRobustConnection
    publisher: Publisher
    outbound: str
    """A queue taking everything published to `sms.outbound`."""
    seen: Seen
    make_settings: Callable[..., Any]

    def settings(self) -> AdapterSettings:
        return self.make_settings(  # type: ignore[no-any-return]
            AdapterSettings,
            prefetch=8,
            handler_max_attempts=2,
            handler_retry_delays=DELAYS,
            handler_timeout=5.0,
        )

    async def text(self, text: str) -> InboundSMS:
        """An SMS for the `tell` handler, as the router delivers it."""
        message = InboundSMS(gateway_id=GATEWAY.id, sender=SENDER, recipient="12345", text=text)
        await self.publisher.publish(
            message, exchange=ADAPTERS_EXCHANGE, routing_key=NAME, headers={HEADER_HANDLER: "tell"}
        )
        return message

    async def sent(self, expect: int) -> list[OutboundSMS]:
        messages = await drain(self.amqp, self.outbound, expect=expect)
        return [OutboundSMS.model_validate_json(message.body) for message in messages]

    async def publish_event(self, event: DeliveryEvent) -> None:
        """Publish `event` as outbound and ingress do: key `<status>.<adapter>`, not mandatory."""
        await self.publisher.publish(
            event,
            exchange=EVENTS_EXCHANGE,
            routing_key=event_key(event.status, event.adapter),
            mandatory=False,
        )

    async def event_for(self, adapter: str | None, detail: str) -> DeliveryEvent:
        """A `sent` event of an SMS that `adapter` sent, published; returns it."""
        outbound = OutboundSMS(to=FRIEND, text="hi", gateway_id=GATEWAY.id, adapter=adapter)
        event = outbound.event("sent", GATEWAY.id, detail)
        await self.publish_event(event)
        return event


@pytest.fixture
async def harness(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection
) -> AsyncIterator[Harness]:
    await delete_queues(
        amqp,
        [
            *adapter_queues(NAME, DELAYS),
            *events_queues(NAME),
            *adapter_queues(BYSTANDER, DELAYS),
            *events_queues(BYSTANDER),
        ],
    )
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    await declare_exchanges(publisher.channel)
    seen = Seen()
    async with listening(amqp, OUTBOUND_EXCHANGE, "outbound.#") as outbound:
        running = Harness(amqp, publisher, outbound, seen, make_settings)
        async with serving(build_adapter(NAME, seen).create_app(running.settings())):
            yield running
    await publisher.channel.close()


async def test_the_adapter_receives_the_events_of_the_sms_it_sent(harness: Harness) -> None:
    await harness.text("TELL")
    to_friend, reply = await harness.sent(expect=2)
    assert (to_friend.to, reply.to) == (FRIEND, SENDER)
    assert (to_friend.adapter, reply.adapter) == (NAME, NAME)

    # As outbound reports its sends, and as ingress passes a gateway's delivery reports on.
    for outbound in (reply, to_friend):
        await harness.publish_event(outbound.event("sent", GATEWAY.id))
    await harness.publish_event(
        delivery_event(GATEWAY, SECRETS, encode_reference(GATEWAY, SECRETS, reply), "delivered")
    )
    await harness.publish_event(
        delivery_event(GATEWAY, SECRETS, encode_reference(GATEWAY, SECRETS, to_friend), "failed")
    )

    await until(lambda: len(harness.seen.events) == 4)
    assert sorted(harness.seen.statuses()) == sorted(
        [
            (reply.message_id, "sent"),
            (reply.message_id, "delivered"),
            (to_friend.message_id, "sent"),
            (to_friend.message_id, "failed"),
        ]
    )
    for event, log_context in zip(harness.seen.events, harness.seen.log_contexts, strict=True):
        assert log_context["adapter"] == NAME
        assert log_context["outbound_id"] == event.outbound_id
        assert log_context["status"] == event.status
        assert log_context["message_id"] == event.message_id
    # The callback answered the failure through its context, as the adapter.
    [apology] = await harness.sent(expect=1)
    assert (apology.to, apology.text, apology.adapter) == (
        SENDER,
        "We could not reach your friend.",
        NAME,
    )
    # Every event acked, none dead-lettered.
    assert await queue_length(harness.amqp, EVENTS) == 0
    assert await queue_length(harness.amqp, dead_letter_queue(EVENTS)) == 0


async def test_the_adapter_receives_no_other_adapters_events(harness: Harness) -> None:
    others = Seen()
    async with serving(build_adapter(BYSTANDER, others).create_app(harness.settings())):
        # Published first: were they routed to the adapter's queue, they would arrive first.
        bystanders = await harness.event_for(BYSTANDER, "for the bystander")
        await harness.event_for(None, "no adapter")
        own = await harness.event_for(NAME, "for the notifier")
        await until(lambda: len(harness.seen.events) == 1 and len(others.events) == 1)
        assert harness.seen.events == [own]
        assert others.events == [bystanders]
    assert await queue_length(harness.amqp, EVENTS) == 0
    assert await queue_length(harness.amqp, delivery_events_queue(BYSTANDER)) == 0


async def test_an_adapter_without_on_delivery_declares_no_events_queue(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection
) -> None:
    quiet = "quiet"
    await delete_queues(amqp, [*adapter_queues(quiet, DELAYS), *events_queues(quiet)])
    adapter = Adapter(quiet)

    @adapter.handler({"keyword": "PING"})
    async def ping(context: HandlerContext) -> None:
        await context.reply("pong")

    settings = make_settings(AdapterSettings, handler_retry_delays=DELAYS)
    async with serving(adapter.create_app(settings)):
        assert await queue_exists(amqp, adapter_queue(quiet))
        assert not await queue_exists(amqp, delivery_events_queue(quiet))
        assert not await queue_exists(amqp, dead_letter_queue(delivery_events_queue(quiet)))


async def test_a_failing_callback_is_retried_then_dead_lettered_without_any_reply(
    harness: Harness,
) -> None:
    event = await harness.event_for(NAME, "always fails")
    [dead] = await drain(harness.amqp, dead_letter_queue(EVENTS), expect=1, within=10)
    assert DeliveryEvent.model_validate_json(dead.body) == event
    assert dead.headers[HEADER_ATTEMPT] == 2
    reason = str(dead.headers[HEADER_REASON])
    assert "failed 2 time(s)" in reason
    assert "the CRM is down" in reason
    assert harness.seen.runs("always fails") == 2
    # No texter to apologise to: the handlers' failure reply is not sent for an event.
    assert await queue_length(harness.amqp, harness.outbound) == 0
    assert await queue_length(harness.amqp, EVENTS) == 0


async def test_a_callback_that_fails_once_succeeds_on_its_retry(harness: Harness) -> None:
    await harness.event_for(NAME, "fails once")
    # The broker returns it from the 1 s delay queue by itself (not at once, as a requeue would).
    await until(lambda: harness.seen.runs("fails once") == 2, within=10)
    first, second = harness.seen.times
    assert second - first >= 0.9
    assert await queue_length(harness.amqp, dead_letter_queue(EVENTS)) == 0
    assert await queue_length(harness.amqp, retry_queue(EVENTS, 1)) == 0
    assert await queue_length(harness.amqp, EVENTS) == 0


async def test_a_rejected_event_is_dead_lettered_at_once(harness: Harness) -> None:
    event = await harness.event_for(NAME, "unknown message")
    [dead] = await drain(harness.amqp, dead_letter_queue(EVENTS), expect=1)
    assert DeliveryEvent.model_validate_json(dead.body) == event
    assert dead.headers[HEADER_REASON] == "no such message in the CRM"
    assert harness.seen.runs("unknown message") == 1
    assert await queue_length(harness.amqp, harness.outbound) == 0
