"""The handler registry on a real MongoDB-speaking server."""

from __future__ import annotations

import asyncio

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from twoway.messages import HandlerRegistration, InboundSMS
from twoway.registry import HandlerRegistry
from twoway.routing import FilterError, RoutingTable
from twoway.storage import Document

pytestmark = pytest.mark.mongo


def registration(
    adapter: str, handler: str, keyword: str, priority: int = 0
) -> HandlerRegistration:
    return HandlerRegistration(
        adapter=adapter, handler=handler, filter={"keyword": keyword}, priority=priority
    )


@pytest.fixture
async def registry(mongo_db: AsyncDatabase[Document]) -> HandlerRegistry:
    registry = HandlerRegistry(mongo_db)
    await registry.ensure_indexes()
    return registry


async def test_registering_the_same_set_twice_changes_nothing(registry: HandlerRegistry) -> None:
    handlers = [registration("echo", "echo", "ECHO"), registration("echo", "ping", "PING")]
    await registry.replace_adapter_handlers("echo", handlers)
    first = await registry.load_all()
    await registry.replace_adapter_handlers("echo", handlers)
    assert sorted(await registry.load_all(), key=lambda r: r.sequence) == sorted(
        first, key=lambda r: r.sequence
    )
    assert len(first) == 2


async def test_replicas_registering_at_once_do_not_duplicate(registry: HandlerRegistry) -> None:
    handlers = [registration("echo", "echo", "ECHO")]
    await asyncio.gather(*(registry.replace_adapter_handlers("echo", handlers) for _ in range(5)))
    assert [r.handler for r in await registry.load_all()] == ["echo"]


async def test_a_new_deploy_replaces_the_adapters_set_and_keeps_others(
    registry: HandlerRegistry,
) -> None:
    await registry.replace_adapter_handlers("echo", [registration("echo", "old", "OLD")])
    await registry.replace_adapter_handlers("bank", [registration("bank", "balance", "BAL")])
    await registry.replace_adapter_handlers("echo", [registration("echo", "new", "NEW")])
    assert {(r.adapter, r.handler) for r in await registry.load_all()} == {
        ("echo", "new"),
        ("bank", "balance"),
    }


async def test_registration_order_survives_a_restart(registry: HandlerRegistry) -> None:
    await registry.replace_adapter_handlers("first", [registration("first", "any", "GO")])
    await registry.replace_adapter_handlers("second", [registration("second", "any", "GO")])
    await registry.replace_adapter_handlers("first", [registration("first", "any", "GO")])
    table = RoutingTable(await registry.load_all())
    message = InboundSMS(gateway_id="sim", sender="+15551234567", text="go")
    matched = table.match(message)
    assert matched is not None
    assert matched.adapter == "first"


async def test_an_invalid_filter_is_refused_before_anything_is_written(
    registry: HandlerRegistry,
) -> None:
    bad = HandlerRegistration(adapter="echo", handler="bad", filter={"text": {"regex": "("}})
    with pytest.raises(FilterError) as raised:
        await registry.replace_adapter_handlers("echo", [registration("echo", "ok", "OK"), bad])
    assert raised.value.field == "text"
    assert await registry.load_all() == []
