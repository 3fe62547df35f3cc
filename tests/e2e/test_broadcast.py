"""Subscriptions and broadcasts end to end: numbers JOIN by SMS, the api broadcasts, the gateway
simulator receives one message per subscribed number that did not opt out; and a broadcast whose
worker is killed mid-way (SIGKILL, a real process) and restarted still reaches each number once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import adapter_queues, delete_queues
from tests.support.servers import serving
from tests.support.stack import SHORT_CODE, Stack, gateways_file, running_stack
from twoway.broadcasts import Broadcast, BroadcastStore
from twoway.messages import EventSource
from twoway.sdk import Adapter, AdapterSettings
from twoway.storage import Document
from twoway.subscriptions import EventSourceRegistry, SubscriptionStore
from twoway.topology import (
    BROADCAST_EVENTS_QUEUE,
    BROADCASTS_QUEUE,
    dead_letter_queue,
    subscription_events_queue,
)
from twoway_api.app import create_app as create_api
from twoway_api.settings import ApiSettings
from twoway_broadcaster.app import create_app as create_broadcaster
from twoway_broadcaster.settings import BroadcasterSettings
from twoway_devstack import ServerUrls
from twoway_subscriptions_adapter.adapter import ADAPTER_NAME, build_adapter
from twoway_subscriptions_adapter.settings import SubscriptionsAdapterSettings

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

TOKEN = "e2e-token"
NEWS = "subscriptions.News"
ANN, BOB, CAT, DAN, EVE = (f"+1555000{n:04d}" for n in range(5))


@dataclass(frozen=True)
class System:
    stack: Stack
    api: str
    broadcaster: str

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.stack.http.request(
            method, self.api + path, headers=headers, **kwargs
        ) as response:
            return response.status, await response.json()

    async def finished(self, broadcast_id: str, sent: int, within: float = 20.0) -> Any:
        """The broadcast, once fanned out and `sent` of its messages reported sent."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            status, broadcast = await self.call("GET", f"/broadcasts/{broadcast_id}")
            assert status == 200
            if broadcast["status"] == "completed" and broadcast["sent"] >= sent:
                return broadcast
            assert asyncio.get_running_loop().time() < deadline, broadcast
            await asyncio.sleep(0.1)


async def clean_queues(amqp: AbstractRobustConnection) -> None:
    retry_delays = AdapterSettings().handler_retry_delays
    await delete_queues(
        amqp,
        [
            *adapter_queues(ADAPTER_NAME, retry_delays),
            subscription_events_queue(ADAPTER_NAME),
            *(
                q
                for queue in (BROADCASTS_QUEUE, BROADCAST_EVENTS_QUEUE)
                for q in (queue, dead_letter_queue(queue))
            ),
        ],
    )


@asynccontextmanager
async def running_system(
    make_settings: Callable[..., Any], directory: Path
) -> AsyncIterator[System]:
    """The stack with the subscriptions adapter, the api and the broadcaster."""

    def adapters(_gateway: str) -> list[tuple[Adapter, AdapterSettings]]:
        settings = make_settings(SubscriptionsAdapterSettings)
        return [(build_adapter(settings), settings)]

    async with AsyncExitStack() as running:
        stack = await running.enter_async_context(running_stack(make_settings, directory, adapters))
        gateways = gateways_file(directory, stack.gateway)
        api = await running.enter_async_context(
            serving(create_api(make_settings(ApiSettings, api_token=TOKEN)))
        )
        broadcaster = await running.enter_async_context(
            serving(create_broadcaster(make_settings(BroadcasterSettings, gateways_file=gateways)))
        )
        yield System(stack, api, broadcaster)


@pytest.fixture
async def system(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection, tmp_path: Path
) -> AsyncIterator[System]:
    await clean_queues(amqp)
    async with running_system(make_settings, tmp_path) as system:
        yield system


def texts_to(messages: list[dict[str, Any]], phone: str) -> list[str]:
    return [message["text"] for message in messages if message["to"] == phone]


async def test_numbers_join_by_sms_and_a_broadcast_reaches_each_once(system: System) -> None:
    stack = system.stack
    for phone in (ANN, BOB, CAT):
        await stack.send_mo(phone, "JOIN news")
    await stack.send_mo(EVE, "JOIN nope")
    replies = await stack.received(4)
    for phone in (ANN, BOB, CAT):
        assert texts_to(replies, phone) == ["You joined NEWS. Text LEAVE NEWS to stop."]
    [helpful] = texts_to(replies, EVE)
    assert helpful.startswith("There is no list called NOPE. Text JOIN and one of: NEWS")

    await stack.send_mo(CAT, "STOP")  # opted out of the short code: skipped by the broadcast
    status, _ = await system.call(
        "POST", f"/event-sources/{NEWS}/subscriptions", json={"phone": DAN}
    )
    assert status == 201
    await stack.received(5)
    async with stack.http.delete(f"{stack.gateway}/messages"):
        pass

    status, accepted = await system.call(
        "POST", f"/event-sources/{NEWS}/notifications", json={"text": "Big news today"}
    )
    assert status == 202
    broadcast = await system.finished(accepted["broadcast_id"], sent=3)

    assert {key: broadcast[key] for key in ("targeted", "queued", "skipped_opted_out")} == {
        "targeted": 4,
        "queued": 3,
        "skipped_opted_out": 1,
    }
    messages = await stack.received(4, within=1.0)
    assert sorted(message["to"] for message in messages) == [ANN, BOB, DAN]
    assert {message["text"] for message in messages} == {"Big news today"}
    assert {message["from"] for message in messages} == {SHORT_CODE}


async def test_leave_by_sms_stops_the_broadcasts(system: System) -> None:
    stack = system.stack
    await stack.send_mo(ANN, "JOIN NEWS")
    await stack.send_mo(BOB, "JOIN subscriptions.news")
    await stack.received(2)
    await stack.send_mo(ANN, "LEAVE news")
    await stack.send_mo(ANN, "leave NEWS")  # the same text again would be a gateway's retry
    replies = await stack.received(4)
    assert sorted(texts_to(replies, ANN)[1:]) == [  # handled concurrently: in either order
        "You left NEWS. Text JOIN NEWS to join again.",
        "You were not in NEWS.",
    ]
    async with stack.http.delete(f"{stack.gateway}/messages"):
        pass

    _, accepted = await system.call(
        "POST", f"/event-sources/{NEWS}/notifications", json={"text": "Only Bob"}
    )
    await system.finished(accepted["broadcast_id"], sent=1)
    assert [m["to"] for m in await stack.received(2, within=1.0)] == [BOB]


SUBSCRIBERS = [f"+1555100{n:04d}" for n in range(300)]


@pytest.fixture
async def delivery(
    make_settings: Callable[..., Any], amqp: AbstractRobustConnection, tmp_path: Path
) -> AsyncIterator[Stack]:
    """Outbound and the gateway simulator (with the rest of the stack, idle)."""
    await clean_queues(amqp)
    async with running_stack(make_settings, tmp_path, lambda _gateway: []) as stack:
        yield stack


async def start_broadcaster(
    servers: ServerUrls, database: str, gateways: Path
) -> asyncio.subprocess.Process:
    environment = {
        **os.environ,
        "TWOWAY_AMQP_URL": servers.amqp_url,
        "TWOWAY_MONGO_URL": servers.mongo_url,
        "TWOWAY_MONGO_DATABASE": database,
        "TWOWAY_GATEWAYS_FILE": str(gateways),
        "TWOWAY_PORT": "0",
        "TWOWAY_BATCH_SIZE": "10",
        "TWOWAY_LEASE_SECONDS": "1",
        "TWOWAY_LOG_LEVEL": "WARNING",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "twoway_broadcaster", env=environment
    )


async def broadcast_state(store: BroadcastStore, broadcast_id: str) -> Broadcast:
    broadcast = await store.get(broadcast_id)
    assert broadcast is not None
    return broadcast


async def test_a_broadcast_whose_worker_is_killed_reaches_each_number_once_after_a_restart(
    delivery: Stack,
    servers: ServerUrls,
    database_name: str,
    mongo_db: AsyncDatabase[Document],
    tmp_path: Path,
) -> None:
    await EventSourceRegistry(mongo_db).replace_adapter_sources(
        "bank", [EventSource(name="bank.News", adapter="bank")]
    )
    store = SubscriptionStore(mongo_db, "US")
    await store.ensure_indexes()
    for phone in SUBSCRIBERS:
        await store.subscribe("bank.News", phone)
    broadcasts = BroadcastStore(mongo_db)
    gateways = gateways_file(tmp_path, delivery.gateway)

    first = await start_broadcaster(servers, database_name, gateways)
    try:
        # Queued through the api's own path: the command waits for the worker.
        api_settings = ApiSettings(
            amqp_url=servers.amqp_url,
            mongo_url=servers.mongo_url,
            mongo_database=database_name,
            api_token=TOKEN,
            port=0,
        )
        async with (
            serving(create_api(api_settings)) as api,
            delivery.http.post(
                f"{api}/event-sources/bank.News/notifications",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={"text": "Interrupted, not repeated"},
            ) as response,
        ):
            assert response.status == 202
            broadcast_id = (await response.json())["broadcast_id"]

        deadline = asyncio.get_running_loop().time() + 30
        while (await broadcast_state(broadcasts, broadcast_id)).queued < 60:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    at_kill = await broadcast_state(broadcasts, broadcast_id)
    assert at_kill.status == "running"
    assert at_kill.queued < len(SUBSCRIBERS)

    second = await start_broadcaster(servers, database_name, gateways)
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while (done := await broadcast_state(broadcasts, broadcast_id)).status != "completed":
            assert asyncio.get_running_loop().time() < deadline, done
            await asyncio.sleep(0.1)
        # Every number's message first (outbound may still be sending when the broadcast is
        # complete), then a while longer for a second copy of any.
        await delivery.received(len(SUBSCRIBERS), within=30.0)
        messages = await delivery.received(len(SUBSCRIBERS) + 1, within=3.0)
    finally:
        second.terminate()
        await second.wait()

    assert (done.queued, done.targeted) == (len(SUBSCRIBERS), len(SUBSCRIBERS))
    counts = Counter(message["to"] for message in messages)
    assert sorted(counts) == SUBSCRIBERS
    assert set(counts.values()) == {1}
