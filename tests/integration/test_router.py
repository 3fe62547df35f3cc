"""The router on a real broker and MongoDB-speaking server: registry updates while it runs,
dedupe of retried posts, opt-out keywords, the unmatched fallbacks and per-sender order.

Negative checks ("this reached no adapter") use a sentinel: the router handles one sender's SMS
in order, so once a later SMS from the same sender has arrived, the earlier one was handled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import drain
from tests.support.servers import serving
from tests.support.waiting import until
from twoway.broker import MAX_HEADER_CHARS, Publisher
from twoway.messages import (
    ANY_MESSAGE,
    HandlerRegistration,
    HandlersChanged,
    InboundSMS,
    OptOutChanged,
    OutboundSMS,
)
from twoway.optouts import Exemption, OptOutStore
from twoway.registry import HANDLERS, HandlerRegistry
from twoway.service import AMQP_CONNECTION
from twoway.storage import Document
from twoway.topology import (
    ADAPTERS_EXCHANGE,
    CONTROL_EXCHANGE,
    HEADER_HANDLER,
    HEADER_REASON,
    INBOUND_EXCHANGE,
    OUTBOUND_EXCHANGE,
    ROUTER_QUEUE,
    UNMATCHED_QUEUE,
    dead_letter_queue,
    declare_exchanges,
    inbound_key,
)
from twoway_router.app import ROUTER, create_app
from twoway_router.compliance import Compliance
from twoway_router.router import Router
from twoway_router.settings import RouterSettings
from twoway_router.unmatched import UNMATCHED

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

SENDER = "+14155552671"
OTHER_SENDER = "+14155550000"


def handler(adapter: str, name: str, spec: dict[str, Any], **fields: Any) -> HandlerRegistration:
    return HandlerRegistration(adapter=adapter, handler=name, filter=spec, **fields)


@dataclass
class Harness:
    app: web.Application
    amqp: AbstractRobustConnection
    channel: AbstractChannel
    publisher: Publisher
    db: AsyncDatabase[Document]
    outbound: str
    control: str

    @property
    def router(self) -> Router:
        return self.app[ROUTER]

    async def listen(self, exchange: str, key: str) -> str:
        """A private queue bound to `exchange` with `key`; returns its name."""
        queue = await self.channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key=key)
        return queue.name

    async def register(self, adapter: str, *registrations: HandlerRegistration) -> None:
        """What an adapter does at start-up: write its handler set, then tell the routers."""
        await HandlerRegistry(self.db).replace_adapter_handlers(adapter, registrations)
        await self.publisher.publish(
            HandlersChanged(adapter=adapter), exchange=CONTROL_EXCHANGE, routing_key=""
        )

    async def send(self, text: str, **fields: Any) -> InboundSMS:
        values: dict[str, Any] = {"gateway_id": "sim", "sender": SENDER, "recipient": "12345"}
        message = InboundSMS(text=text, **{**values, **fields})
        await self.publisher.publish(
            message, exchange=INBOUND_EXCHANGE, routing_key=inbound_key(message.gateway_id)
        )
        return message

    async def taken(
        self, queue: str, expect: int, within: float = 5.0
    ) -> list[AbstractIncomingMessage]:
        return await drain(self.amqp, queue, expect=expect, within=within)

    async def replies(self, expect: int) -> list[OutboundSMS]:
        taken = await self.taken(self.outbound, expect)
        return [OutboundSMS.model_validate_json(message.body) for message in taken]


StartRouter = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start_router(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> AsyncIterator[StartRouter]:
    """`await start_router(**settings)`: a running router, with listeners on its outputs."""
    async with AsyncExitStack() as running:
        publisher = await Publisher.open(amqp, confirm_timeout=5)
        await declare_exchanges(publisher.channel)
        running.push_async_callback(publisher.channel.close)
        channel = await amqp.channel()
        running.push_async_callback(channel.close)

        async def start(**overrides: Any) -> Harness:
            settings = make_settings(RouterSettings, registry_refresh_seconds=3600, **overrides)
            app = create_app(settings)
            await running.enter_async_context(serving(app))
            harness = Harness(app, amqp, channel, publisher, mongo_db, "", "")
            harness.outbound = await harness.listen(OUTBOUND_EXCHANGE, "#")
            harness.control = await harness.listen(CONTROL_EXCHANGE, "")
            return harness

        yield start


async def test_a_registry_update_reaches_the_running_router(start_router: StartRouter) -> None:
    harness = await start_router()
    bank = await harness.listen(ADAPTERS_EXCHANGE, "bank")
    await harness.register("bank", handler("bank", "balance", {"keyword": ["BAL", "BALANCE"]}))
    # the timer is an hour away: only the sms.control message can have told the router
    await until(lambda: harness.router.table.registration("bank", "balance") is not None)
    sent = await harness.send("bal please")
    [routed] = await harness.taken(bank, 1)
    assert (routed.message_id, routed.headers[HEADER_HANDLER]) == (sent.message_id, "balance")

    # a new deploy of the adapter replaces its set
    await harness.register("bank", handler("bank", "statement", {"keyword": "STMT"}))
    await until(lambda: harness.router.table.registration("bank", "balance") is None)
    await harness.send("BAL")
    [parked] = await harness.taken(UNMATCHED_QUEUE, 1)
    assert "BAL" in str(parked.headers[HEADER_REASON])
    await harness.send("stmt")
    [routed] = await harness.taken(bank, 1)
    assert routed.headers[HEADER_HANDLER] == "statement"


async def test_an_invalid_stored_filter_is_skipped_with_a_log(start_router: StartRouter) -> None:
    valid = handler("bank", "balance", {"keyword": "BAL"}, sequence=2)
    invalid = handler("bank", "broken", {}, priority=9, sequence=1).model_dump()
    invalid["filter"] = {"text": {"regex": "("}}  # written around the registry's validation
    with structlog.testing.capture_logs() as logs:
        harness = await start_router()
        await harness.db[HANDLERS].insert_many([invalid, valid.model_dump()])
        await harness.router.reload()
    assert len(harness.router.table) == 1
    [error] = [line for line in logs if line["event"] == "handler_filter_invalid"]
    assert (error["handler"], error["field"]) == ("broken", "text")
    bank = await harness.listen(ADAPTERS_EXCHANGE, "bank")
    await harness.send("BAL")
    [routed] = await harness.taken(bank, 1)
    assert routed.headers[HEADER_HANDLER] == "balance"


@pytest.mark.parametrize(
    "retried",
    [{"gateway_message_id": "kannel-42"}, {}],
    ids=["same-gateway-id", "same-content-within-the-window"],
)
async def test_a_retried_post_reaches_the_adapter_once(
    start_router: StartRouter, retried: dict[str, Any]
) -> None:
    harness = await start_router()
    bank = await harness.listen(ADAPTERS_EXCHANGE, "bank")
    await harness.register("bank", handler("bank", "any", {}))
    await until(lambda: len(harness.router.table) == 1)
    first = await harness.send("BAL", **retried)
    await harness.send("BAL", **retried)  # the gateway's retry: a new message id
    sentinel = await harness.send("sentinel")
    routed = await harness.taken(bank, 3, within=2)
    assert [m.message_id for m in routed] == [first.message_id, sentinel.message_id]


async def test_the_same_text_after_the_window_is_a_new_sms(start_router: StartRouter) -> None:
    harness = await start_router(dedupe_window_seconds=0.2)
    bank = await harness.listen(ADAPTERS_EXCHANGE, "bank")
    await harness.register("bank", handler("bank", "any", {}))
    await until(lambda: len(harness.router.table) == 1)
    first = await harness.send("YES")
    [routed] = await harness.taken(bank, 1)
    await asyncio.sleep(0.3)
    second = await harness.send("YES")
    [routed_again] = await harness.taken(bank, 1)
    assert [routed.message_id, routed_again.message_id] == [first.message_id, second.message_id]


async def test_stop_opts_out_confirms_and_reaches_no_adapter(start_router: StartRouter) -> None:
    harness = await start_router()
    bank = await harness.listen(ADAPTERS_EXCHANGE, "bank")
    await harness.register("bank", handler("bank", "any", {}))
    await until(lambda: len(harness.router.table) == 1)
    stop = await harness.send("Stop.")
    sentinel = await harness.send("sentinel")
    [routed] = await harness.taken(bank, 1)
    assert routed.message_id == sentinel.message_id

    [confirmation] = await harness.replies(1)
    assert (confirmation.to, confirmation.from_, confirmation.in_reply_to) == (
        SENDER,
        "12345",
        stop.message_id,
    )
    assert confirmation.text == RouterSettings().optout_reply
    [optout] = await OptOutStore(harness.db).of_phone(SENDER)
    assert optout.short_code == "12345"
    assert optout.exemptions == (Exemption.of(confirmation),)
    control = [ANY_MESSAGE.validate_json(m.body) for m in await harness.taken(harness.control, 2)]
    assert [m.phone for m in control if isinstance(m, OptOutChanged)] == [SENDER]


async def test_start_opts_back_in_only_an_opted_out_sender(start_router: StartRouter) -> None:
    harness = await start_router()
    bank = await harness.listen(ADAPTERS_EXCHANGE, "bank")
    await harness.register("bank", handler("bank", "any", {}))
    await until(lambda: len(harness.router.table) == 1)
    store = OptOutStore(harness.db)
    await store.opt_out(SENDER, "12345")
    await harness.send("START")
    [confirmation] = await harness.replies(1)
    assert confirmation.text == RouterSettings().optin_reply
    assert await store.of_phone(SENDER) == []

    # YES from a number that is not opted out is an answer for an adapter
    yes = await harness.send("yes", sender=OTHER_SENDER)
    [routed] = await harness.taken(bank, 1)
    assert routed.message_id == yes.message_id


async def test_help_is_answered_even_to_an_opted_out_number(start_router: StartRouter) -> None:
    harness = await start_router(help_reply="Call 555-0100. Reply STOP to stop.")
    store = OptOutStore(harness.db)
    await store.opt_out(SENDER, "12345")
    await harness.send("help")
    await harness.send("INFO", sender=OTHER_SENDER)
    answers = await harness.replies(2)
    assert {(m.to, m.text) for m in answers} == {
        (SENDER, "Call 555-0100. Reply STOP to stop."),
        (OTHER_SENDER, "Call 555-0100. Reply STOP to stop."),
    }
    [optout] = await store.of_phone(SENDER)
    [to_opted_out] = [m for m in answers if m.to == SENDER]
    assert optout.exemptions == (Exemption.of(to_opted_out),)


async def test_first_word_matching_and_an_empty_reply_text(start_router: StartRouter) -> None:
    harness = await start_router(compliance_match="first_word", optout_reply="")
    await harness.send("stop sending me these")
    await harness.send("HELP", sender=OTHER_SENDER)  # a later SMS: the STOP was handled
    [help_reply] = await harness.replies(2)
    assert help_reply.to == OTHER_SENDER
    assert [o.short_code for o in await OptOutStore(harness.db).of_phone(SENDER)] == ["12345"]


async def test_unmatched_none_parks_and_records(start_router: StartRouter) -> None:
    harness = await start_router()
    sent = await harness.send("NOBODY home")
    [parked] = await harness.taken(UNMATCHED_QUEUE, 1)
    assert parked.message_id == sent.message_id
    record = await harness.db[UNMATCHED].find_one({"_id": sent.message_id})
    assert record is not None
    assert (record["keyword"], record["fallback"]) == ("NOBODY", "none")


CONTROL_CHARACTERS = "".join(map(chr, [*range(0x01, 0x09), *range(0x0E, 0x1C)]))
"""Control characters that are not whitespace: a text of them is one long keyword, and each
is four characters in its repr (the reason quotes the keyword)."""


async def test_an_unmatched_keyword_too_big_for_a_header_parks_and_routing_goes_on(
    start_router: StartRouter,
) -> None:
    harness = await start_router()
    connection = harness.app[AMQP_CONNECTION]
    transport = connection.transport
    bank = await harness.listen(ADAPTERS_EXCHANGE, "bank")
    await harness.register("bank", handler("bank", "balance", {"keyword": "BAL"}))
    await until(lambda: len(harness.router.table) == 1)
    text = (CONTROL_CHARACTERS * (64 * 1024 // len(CONTROL_CHARACTERS) + 1))[: 64 * 1024]
    # Ingress bounds a keyword it derives; a producer that gives its own is capped by the publisher.
    hostile = await harness.send(text, keyword=text)
    ordinary = await harness.send("BAL")  # the same sender's: handled after the hostile one

    [parked] = await harness.taken(UNMATCHED_QUEUE, 1)
    assert parked.message_id == hostile.message_id
    reason = str(parked.headers[HEADER_REASON])
    assert reason.startswith("no handler matched keyword '\\x01")
    assert len(reason) == MAX_HEADER_CHARS
    [routed] = await harness.taken(bank, 1)
    assert routed.message_id == ordinary.message_id
    assert connection.transport is transport  # never closed and reconnected


async def test_unmatched_reply_per_recipient(start_router: StartRouter) -> None:
    fallbacks = [{"recipient": "67890", "action": "reply", "text": "Text BAL for your balance"}]
    harness = await start_router(unmatched_fallbacks=fallbacks)
    to_other = await harness.send("what", recipient="12345")
    to_67890 = await harness.send("what", recipient="67890", sender=OTHER_SENDER)
    [parked] = await harness.taken(UNMATCHED_QUEUE, 1)
    assert parked.message_id == to_other.message_id
    [reply] = await harness.replies(1)
    assert (reply.to, reply.from_, reply.text, reply.in_reply_to) == (
        OTHER_SENDER,
        "67890",
        "Text BAL for your balance",
        to_67890.message_id,
    )
    records = await harness.db[UNMATCHED].find({}, {"fallback": 1}).to_list()
    assert sorted(record["fallback"] for record in records) == ["none", "reply"]


async def test_unmatched_default_handler_per_gateway(start_router: StartRouter) -> None:
    fallbacks = [{"gateway_id": "sim", "action": "handler", "adapter": "desk", "handler": "inbox"}]
    harness = await start_router(unmatched_fallbacks=fallbacks)
    desk = await harness.listen(ADAPTERS_EXCHANGE, "desk")
    await harness.register("desk", handler("desk", "inbox", {"keyword": "SUPPORT"}))
    await until(lambda: len(harness.router.table) == 1)
    sent = await harness.send("my card is stuck")
    [routed] = await harness.taken(desk, 1)
    assert (routed.message_id, routed.headers[HEADER_HANDLER]) == (sent.message_id, "inbox")
    record = await harness.db[UNMATCHED].find_one({"_id": sent.message_id})
    assert record is not None
    assert record["fallback"] == "handler"


async def test_unmatched_default_handler_not_registered_parks(start_router: StartRouter) -> None:
    fallbacks = [{"action": "handler", "adapter": "desk", "handler": "inbox"}]
    harness = await start_router(unmatched_fallbacks=fallbacks)
    await harness.send("hello")
    [parked] = await harness.taken(UNMATCHED_QUEUE, 1)
    assert "fallback handler desk.inbox is not registered" in str(parked.headers[HEADER_REASON])


async def test_each_senders_sms_keep_their_order(start_router: StartRouter) -> None:
    harness = await start_router(prefetch=64)
    bank = await harness.listen(ADAPTERS_EXCHANGE, "bank")
    await harness.register("bank", handler("bank", "any", {}))
    await until(lambda: len(harness.router.table) == 1)
    sent: dict[str, list[str]] = {SENDER: [], OTHER_SENDER: []}
    for index in range(30):
        for sender in sent:
            message = await harness.send(f"number {index}", sender=sender)
            sent[sender].append(message.message_id)
    routed = [InboundSMS.model_validate_json(m.body) for m in await harness.taken(bank, 60)]
    for sender, ids in sent.items():
        assert [m.message_id for m in routed if m.sender == sender] == ids


async def test_an_sms_that_breaks_the_router_is_dead_lettered_and_the_next_is_routed(
    start_router: StartRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = Compliance.handle

    async def breaks_on_poison(self: Compliance, message: InboundSMS, *, repeat: bool) -> bool:
        if message.text == "BAL poison":
            raise RuntimeError("the opt-out store broke")
        return await handle(self, message, repeat=repeat)

    monkeypatch.setattr(Compliance, "handle", breaks_on_poison)
    harness = await start_router(max_deliveries=2)
    bank = await harness.listen(ADAPTERS_EXCHANGE, "bank")
    await harness.register("bank", handler("bank", "balance", {"keyword": "BAL"}))
    await until(lambda: harness.router.table.registration("bank", "balance") is not None)
    poison = await harness.send("BAL poison")
    [dead] = await harness.taken(dead_letter_queue(ROUTER_QUEUE), 1)
    assert dead.message_id == poison.message_id
    assert dead.headers[HEADER_REASON] == (
        "failed 2 times; last: RuntimeError: the opt-out store broke"
    )
    good = await harness.send("BAL please")
    [routed] = await harness.taken(bank, 1)
    assert routed.message_id == good.message_id
