"""An adapter whose handlers fail, time out or call a back-end, on a real broker and database.

The test publishes SMS to the adapter's queue as the router does, and reads what the adapter
published to `sms.outbound` (replies) and its dead-letter and delay queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from multidict import CIMultiDict

from tests.support.broker import adapter_queues, delete_queues, drain, queue_length
from tests.support.servers import serving
from twoway.broker import Publisher, Reject
from twoway.handler_policy import DEFAULT_FAILURE_REPLY
from twoway.messages import InboundSMS, OutboundSMS
from twoway.sdk import Adapter, AdapterSettings, HandlerContext
from twoway.topology import (
    ADAPTERS_EXCHANGE,
    HEADER_HANDLER,
    OUTBOUND_EXCHANGE,
    adapter_queue,
    dead_letter_queue,
    declare_exchanges,
    retry_queue,
)

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

NAME = "flaky"
QUEUE = adapter_queue(NAME)
REPLIES = "test.adapter.replies"
SENDER = "+15551234567"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class FakeBackend:
    """A back-end that answers `/balance`, hangs on `/hang`, and fails the next `fail` calls."""

    requests: list[tuple[str, CIMultiDict[str]]] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((f"{request.method} {request.path}", CIMultiDict(request.headers)))
        if request.path == "/hang":
            await self.released.wait()
        if self.fail:
            return web.json_response({"error": "injected"}, status=self.fail.pop(0))
        return web.json_response({"balance": "42.00"})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app


@dataclass
class Calls:
    """What the test adapter's handlers saw."""

    runs: dict[str, int] = field(default_factory=dict)
    fast_done: asyncio.Event = field(default_factory=asyncio.Event)
    order: list[str] = field(default_factory=list)

    def count(self, handler: str) -> int:
        self.runs[handler] = self.runs.get(handler, 0) + 1
        return self.runs[handler]


def build_adapter(calls: Calls) -> Adapter:
    adapter = Adapter(NAME)

    @adapter.handler({"keyword": "FAIL"})
    async def fail(context: HandlerContext) -> None:
        calls.count("fail")
        raise RuntimeError("the back office is on fire")

    @adapter.handler({"keyword": "ONCE"})
    async def fail_once(context: HandlerContext) -> None:
        if calls.count("fail_once") == 1:
            raise RuntimeError("a passing fault")
        await context.reply("done at last")

    @adapter.handler({"keyword": "REJECT"})
    async def reject(context: HandlerContext) -> None:
        calls.count("reject")
        raise Reject("this can never work")

    @adapter.handler({"keyword": "SLOW"}, timeout=0.3)
    async def slow(context: HandlerContext) -> None:
        calls.count("slow")
        await asyncio.Event().wait()

    @adapter.handler({"keyword": "BAL"})
    async def balance(context: HandlerContext) -> None:
        calls.count("balance")
        response = await context.http.get("balance")
        await context.reply(f"Your balance is {response.json()['balance']}")

    @adapter.handler({"keyword": "HANG"})
    async def hang(context: HandlerContext) -> None:
        calls.count("hang")
        await context.http.get("hang")

    @adapter.handler({"keyword": "PAY"})
    async def pay(context: HandlerContext) -> None:
        calls.count("pay")
        await context.http.post("payments", json={"amount": "1.00"})
        await context.reply("paid")

    @adapter.handler({"keyword": "WAIT"})
    async def waits_for_fast(context: HandlerContext) -> None:
        await calls.fast_done.wait()
        calls.order.append("slow finished")
        await context.reply("slow done")

    @adapter.handler({"keyword": "QUICK"})
    async def quick(context: HandlerContext) -> None:
        calls.order.append("quick finished")
        calls.fast_done.set()
        await context.reply("quick done")

    return adapter


@dataclass
class Harness:
    publisher: Publisher
    calls: Calls
    backend: FakeBackend
    backend_url: str
    amqp: AbstractRobustConnection

    async def send(self, handler: str, text: str, **fields: Any) -> InboundSMS:
        message = InboundSMS(
            gateway_id="sim", sender=SENDER, recipient="12345", text=text, **fields
        )
        await self.publisher.publish(
            message, exchange=ADAPTERS_EXCHANGE, routing_key=NAME, headers={HEADER_HANDLER: handler}
        )
        return message

    async def replies(self, expect: int) -> list[OutboundSMS]:
        messages = await drain(self.amqp, REPLIES, expect=expect)
        return [OutboundSMS.model_validate_json(message.body) for message in messages]


@pytest.fixture
async def harness(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection
) -> AsyncIterator[Harness]:
    delays = [1]
    await delete_queues(amqp, adapter_queues(NAME, delays))
    calls, backend = Calls(), FakeBackend()
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    await declare_exchanges(publisher.channel)
    replies = await publisher.channel.declare_queue(REPLIES, exclusive=True)
    await replies.bind(OUTBOUND_EXCHANGE, routing_key="outbound.#")
    async with serving(backend.app()) as backend_url:
        settings = make_settings(
            AdapterSettings,
            prefetch=8,
            handler_max_attempts=3,
            handler_retry_delays=delays,
            handler_timeout=5.0,
            backend_url=backend_url,
            backend_timeout=0.3,
            backend_retries=1,
            backend_retry_backoff=0.01,
        )
        async with serving(build_adapter(calls).create_app(settings)):
            yield Harness(publisher, calls, backend, backend_url, amqp)
        backend.released.set()
    await publisher.channel.close()


async def dead_letter(harness: Harness) -> str:
    [dead] = await drain(harness.amqp, dead_letter_queue(QUEUE), expect=1, within=10)
    return str(dead.headers["twoway-reason"])


async def test_a_failing_handler_is_retried_then_dead_lettered_with_one_polite_reply(
    harness: Harness,
) -> None:
    message = await harness.send("fail", "FAIL now")

    [dead] = await drain(harness.amqp, dead_letter_queue(QUEUE), expect=1, within=10)
    assert InboundSMS.model_validate_json(dead.body) == message
    assert dead.headers["twoway-attempt"] == 3
    reason = str(dead.headers["twoway-reason"])
    assert "failed 3 time(s)" in reason
    assert "the back office is on fire" in reason
    assert harness.calls.runs["fail"] == 3
    # The reply is confirmed before the dead letter is published: every reply is in by now.
    assert await queue_length(harness.amqp, REPLIES) == 1
    [reply] = await harness.replies(1)
    assert (reply.to, reply.text, reply.in_reply_to) == (
        SENDER,
        DEFAULT_FAILURE_REPLY,
        message.message_id,
    )


async def test_a_failure_waits_in_the_adapters_delay_queue_marked_with_the_next_attempt(
    harness: Harness,
) -> None:
    message = await harness.send("fail", "FAIL")
    [waiting] = await drain(harness.amqp, retry_queue(QUEUE, 1), expect=1)
    assert waiting.headers["twoway-attempt"] == 2
    assert waiting.headers[HEADER_HANDLER] == "fail"
    assert InboundSMS.model_validate_json(waiting.body) == message
    assert await queue_length(harness.amqp, REPLIES) == 0


async def test_a_retry_that_succeeds_sends_no_failure_reply(harness: Harness) -> None:
    await harness.send("fail_once", "ONCE")
    [reply] = await harness.replies(1)
    assert reply.text == "done at last"
    assert harness.calls.runs["fail_once"] == 2
    assert await queue_length(harness.amqp, dead_letter_queue(QUEUE)) == 0


async def test_reject_dead_letters_at_once_with_one_polite_reply(harness: Harness) -> None:
    await harness.send("reject", "REJECT")
    assert await dead_letter(harness) == "this can never work"
    assert harness.calls.runs["reject"] == 1
    [reply] = await harness.replies(1)
    assert reply.text == DEFAULT_FAILURE_REPLY


async def test_an_unknown_handler_is_dead_lettered_with_one_polite_reply(
    harness: Harness,
) -> None:
    await harness.send("nobody", "WHO")
    assert "has no handler 'nobody'" in await dead_letter(harness)
    assert await queue_length(harness.amqp, REPLIES) == 1


async def test_a_handler_over_its_own_timeout_is_cancelled_retried_and_dead_lettered(
    harness: Harness,
) -> None:
    await harness.send("slow", "SLOW")
    reason = await dead_letter(harness)
    assert reason == "failed 3 time(s); last: handler timed out after 0.3 s"
    assert harness.calls.runs["slow"] == 3
    [reply] = await harness.replies(1)
    assert reply.text == DEFAULT_FAILURE_REPLY


async def test_a_backend_timeout_is_retried_and_ends_in_the_polite_reply(
    harness: Harness,
) -> None:
    await harness.send("hang", "HANG")
    reason = await dead_letter(harness)
    assert "BackendError" in reason
    assert "timed out" in reason
    # 3 handler attempts, each a GET tried twice (backend_retries=1)
    assert harness.calls.runs["hang"] == 3
    assert len(harness.backend.requests) == 6
    [reply] = await harness.replies(1)
    assert reply.text == DEFAULT_FAILURE_REPLY


async def test_a_backend_refusal_gives_up_at_once(harness: Harness) -> None:
    harness.backend.fail = [404]
    await harness.send("balance", "BAL")
    reason = await dead_letter(harness)
    assert reason == f"BackendError: GET {harness.backend_url}/balance answered 404"
    assert harness.calls.runs["balance"] == 1
    assert await queue_length(harness.amqp, REPLIES) == 1


async def test_backend_calls_carry_the_message_ids_and_trace(harness: Harness) -> None:
    message = await harness.send(
        "balance", "BAL", correlation_id="corr-1", trace={"traceparent": TRACEPARENT}
    )
    [reply] = await harness.replies(1)
    assert reply.text == "Your balance is 42.00"
    [(request, headers)] = harness.backend.requests
    assert request == "GET /balance"
    assert headers["X-Twoway-Message-Id"] == message.message_id
    assert headers["X-Correlation-Id"] == "corr-1"
    assert headers["traceparent"] == TRACEPARENT


async def test_an_idempotent_call_is_retried_on_503(harness: Harness) -> None:
    harness.backend.fail = [503]
    await harness.send("balance", "BAL")
    [reply] = await harness.replies(1)
    assert reply.text == "Your balance is 42.00"
    assert [request for request, _ in harness.backend.requests] == ["GET /balance"] * 2
    assert harness.calls.runs["balance"] == 1


async def test_a_post_is_not_retried_by_the_client(harness: Harness) -> None:
    harness.backend.fail = [503, 503, 503]
    await harness.send("pay", "PAY")
    reason = await dead_letter(harness)
    assert "answered 503" in reason
    # one POST per handler attempt, never a second within one attempt
    assert [request for request, _ in harness.backend.requests] == ["POST /payments"] * 3
    assert harness.calls.runs["pay"] == 3


async def test_a_slow_handler_does_not_hold_up_the_others(harness: Harness) -> None:
    await harness.send("waits_for_fast", "WAIT")
    await harness.send("quick", "QUICK")
    replies = await harness.replies(2)
    assert [reply.text for reply in replies] == ["quick done", "slow done"]
    assert harness.calls.order == ["quick finished", "slow finished"]


async def test_an_sms_whose_handling_keeps_killing_the_adapter_is_dead_lettered_unhandled(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection
) -> None:
    """Each run of the adapter dies holding the SMS (its handler never ends; the process stops
    without an ack); after `max_deliveries` such deliveries the next run parks it unhandled."""
    await delete_queues(amqp, adapter_queues(NAME, [1]))
    adapter = Adapter(NAME)
    held: list[asyncio.Task[Any]] = []
    entered = asyncio.Event()

    @adapter.handler({"keyword": "DIE"})
    async def die(_context: HandlerContext) -> None:
        task = asyncio.current_task()
        assert task is not None
        held.append(task)
        entered.set()
        await asyncio.Event().wait()

    settings = make_settings(
        AdapterSettings, max_deliveries=2, shutdown_grace=0.1, handler_retry_delays=[1]
    )
    publisher = await Publisher.open(amqp, confirm_timeout=5)
    try:
        await declare_exchanges(publisher.channel)
        for run in range(settings.max_deliveries + 1):
            async with serving(adapter.create_app(settings)):
                if run == 0:
                    await publisher.publish(
                        InboundSMS(gateway_id="sim", sender=SENDER, text="DIE now"),
                        exchange=ADAPTERS_EXCHANGE,
                        routing_key=NAME,
                        headers={HEADER_HANDLER: "die"},
                    )
                if run < settings.max_deliveries:
                    await asyncio.wait_for(entered.wait(), 10)
                    entered.clear()
                else:
                    [dead] = await drain(amqp, dead_letter_queue(QUEUE), expect=1)
    finally:
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        await publisher.channel.close()
    assert dead.headers["twoway-reason"] == "redelivered 2 times without an outcome"
    assert len(held) == settings.max_deliveries, "handled once per delivery, not after"
