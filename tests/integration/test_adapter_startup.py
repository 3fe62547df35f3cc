"""An adapter's start-up on a real broker and database: its queue exists before any router can
learn of its handlers, and the announcement of its handlers survives a broker that does not
confirm it at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import structlog
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase
from structlog.typing import EventDict

from tests.support.broker import (
    adapter_queues,
    delete_queues,
    drain,
    listening,
    queue_exists,
    queue_length,
)
from tests.support.servers import serving
from twoway.broker import Publisher, PublishFailed
from twoway.messages import Envelope, HandlerRegistration, HandlersChanged
from twoway.registry import HandlerRegistry
from twoway.sdk import Adapter, AdapterSettings, HandlerContext
from twoway.storage import Document
from twoway.topology import CONTROL_EXCHANGE, adapter_queue

pytestmark = [pytest.mark.rabbit, pytest.mark.mongo]

NAME = "startup"
DELAYS = [1]


def build_adapter() -> Adapter:
    adapter = Adapter(NAME)

    @adapter.handler({"keyword": "PING"})
    async def ping(context: HandlerContext) -> None:
        await context.reply("pong")

    return adapter


async def test_the_adapters_queue_exists_before_its_handlers_are_registered(
    make_settings: Callable[..., Any],
    amqp: AbstractRobustConnection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await delete_queues(amqp, adapter_queues(NAME, DELAYS))
    queue_at_registration: list[bool] = []
    replace = HandlerRegistry.replace_adapter_handlers

    async def observed(
        registry: HandlerRegistry, adapter: str, registrations: Sequence[HandlerRegistration]
    ) -> None:
        queue_at_registration.append(await queue_exists(amqp, adapter_queue(adapter)))
        await replace(registry, adapter, registrations)

    monkeypatch.setattr(HandlerRegistry, "replace_adapter_handlers", observed)
    settings = make_settings(AdapterSettings, handler_retry_delays=DELAYS)
    async with serving(build_adapter().create_app(settings)):
        assert queue_at_registration == [True]


class UnconfirmedPublisher(Publisher):
    """A publisher whose first `failures` publishes fail as unconfirmed ones do."""

    def __init__(self, publisher: Publisher, failures: int) -> None:
        super().__init__(publisher.channel, timeout=5.0)
        self.failures = failures
        self.attempts = 0

    async def publish(self, message: Envelope, **options: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise PublishFailed("the broker did not confirm (injected)")
        await super().publish(message, **options)


async def register(
    amqp: AbstractRobustConnection, db: AsyncDatabase[Document], failures: int
) -> tuple[int, list[EventDict], HandlerRegistry]:
    """Register the test adapter's handlers through a publisher failing `failures` times, with
    three attempts; the publish attempts, the log lines and the registry."""
    publisher = await Publisher.open(amqp, 5.0)
    unconfirmed = UnconfirmedPublisher(publisher, failures)
    registry = HandlerRegistry(db)
    with structlog.testing.capture_logs() as logs:
        await build_adapter().register_handlers(registry, unconfirmed, retry_delays=[0.01, 0.01])
    await publisher.channel.close()
    return unconfirmed.attempts, logs, registry


def events(logs: list[EventDict]) -> list[str]:
    return [str(line["event"]) for line in logs if str(line["event"]).startswith("handlers")]


async def test_an_unconfirmed_announcement_is_retried_until_the_routers_hear_it(
    amqp: AbstractRobustConnection, mongo_db: AsyncDatabase[Document]
) -> None:
    async with listening(amqp, CONTROL_EXCHANGE, "") as control:
        attempts, logs, _ = await register(amqp, mongo_db, failures=2)
        [announced] = await drain(amqp, control, expect=1)
    assert HandlersChanged.model_validate_json(announced.body).adapter == NAME
    assert attempts == 3
    assert events(logs) == [
        "handlers_registered",
        "handlers_changed_retry",
        "handlers_changed_retry",
    ]


async def test_an_announcement_never_confirmed_is_logged_and_the_handlers_stay_registered(
    amqp: AbstractRobustConnection, mongo_db: AsyncDatabase[Document]
) -> None:
    async with listening(amqp, CONTROL_EXCHANGE, "") as control:
        attempts, logs, registry = await register(amqp, mongo_db, failures=3)
        assert await queue_length(amqp, control) == 0
    assert attempts == 3
    assert events(logs) == [
        "handlers_registered",
        "handlers_changed_retry",
        "handlers_changed_retry",
        "handlers_changed_not_announced",
    ]
    assert [(r.adapter, r.handler) for r in await registry.load_all()] == [(NAME, "ping")]
