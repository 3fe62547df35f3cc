"""Inbound limits against real servers: two replicas' counts shared through MongoDB, limits kept
from memory while the database is gone, and ingress answering 429 over a sender's limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.broker import drain, listening, queue_length
from tests.support.proxy import database_proxy
from tests.support.servers import serving
from tests.support.waiting import until
from twoway.gateways.limits import InboundLimits, Window
from twoway.messages import InboundSMS
from twoway.service import MONGO_CLIENT
from twoway.storage import Document
from twoway.topology import INBOUND_EXCHANGE
from twoway_devstack import ServerUrls
from twoway_ingress.app import create_app
from twoway_ingress.inbound_limits import (
    COUNTS_COLLECTION,
    CountSync,
    LimitCounts,
    LimitExceeded,
)
from twoway_ingress.settings import IngressSettings

pytestmark = pytest.mark.mongo

ANN, BOB = "+14155552671", "+14155550100"
NOW = 1_800_000_000.0
"""The replicas' clock: fixed, so that no window ends during a test."""


def mo(sender: str = ANN) -> InboundSMS:
    return InboundSMS(gateway_id="sim", sender=sender, recipient="12345", text="hi")


def replica(count: int) -> LimitCounts:
    limits = InboundLimits(per_sender=Window(count=count, seconds=60))
    return LimitCounts({"sim": limits}, max_keys=1000, clock=lambda: NOW)


def admitted(limits: LimitCounts, sender: str = ANN) -> bool:
    try:
        limits.admit([mo(sender)])
    except LimitExceeded:
        return False
    return True


def sync_errors() -> float:
    return REGISTRY.get_sample_value("twoway_inbound_limit_sync_errors_total") or 0.0


@pytest.fixture
def windows(mongo_db: AsyncDatabase[Document]) -> AsyncCollection[Document]:
    return mongo_db[COUNTS_COLLECTION]


async def stored_total(windows: AsyncCollection[Document]) -> int:
    return sum([document["count"] async for document in windows.find()])


async def test_a_replica_learns_the_others_counts_at_its_next_sync(
    windows: AsyncCollection[Document],
) -> None:
    a, b = replica(4), replica(4)
    a_sync, b_sync = CountSync(a, windows), CountSync(b, windows)
    for limits in (a, a, b, b):
        assert admitted(limits)
    await a_sync.sync()  # writes 2, reads 2
    await b_sync.sync()  # writes 2, reads 4
    assert not admitted(b)
    await a_sync.sync()  # a writes nothing, and reads its count within reach of the limit
    assert not admitted(a)
    assert await stored_total(windows) == 4


async def test_a_second_mo_on_a_replica_shares_a_count_it_kept_local(
    windows: AsyncCollection[Document],
) -> None:
    """How far two replicas can go over a limit: a replica's first MO of a sender stays local,
    and its second is admitted before it reads what the other one counted."""
    a, b = replica(4), replica(4)
    a_sync, b_sync = CountSync(a, windows), CountSync(b, windows)
    for _ in range(4):
        assert admitted(a)
    await a_sync.sync()
    assert admitted(b)
    assert admitted(b)
    await b_sync.sync()
    assert not admitted(b)
    assert await stored_total(windows) == 4 + 2


async def each_synced(syncs: list[CountSync]) -> None:
    """Once each of `syncs` has done a whole sync that started after this call (the one in
    progress, if any, does not count)."""
    started = [sync.syncs for sync in syncs]
    await until(lambda: all(s.syncs > n + 1 for s, n in zip(syncs, started, strict=True)))


async def test_a_burst_across_two_replicas_is_cut_within_one_sync_interval(
    windows: AsyncCollection[Document],
) -> None:
    """Twelve posts at once, six to each replica, against a limit of ten: each admits its six
    (neither knows of the other yet); once each has synced after the other wrote, both refuse."""
    a, b = replica(10), replica(10)
    syncs = [CountSync(a, windows), CountSync(b, windows)]
    tasks = [asyncio.create_task(sync.run(0.05)) for sync in syncs]
    try:
        assert all([admitted(limits) for _ in range(6) for limits in (a, b)])
        await each_synced(syncs)  # both wrote
        await each_synced(syncs)  # both read after both wrote
        assert (admitted(a), admitted(b)) == (False, False)
        assert admitted(a, BOB)
    finally:
        for task in tasks:
            task.cancel()
    assert await stored_total(windows) == 12


async def test_counts_are_stored_without_phone_numbers_to_expire(
    windows: AsyncCollection[Document],
) -> None:
    limits = replica(10)
    for sender in (ANN, ANN, BOB):
        limits.admit([mo(sender)])
    await CountSync(limits, windows).sync()
    [document] = await windows.find().to_list()  # BOB's single MO stays local
    assert document["count"] == 2
    window_end = datetime.fromtimestamp((NOW // 60 + 1) * 60, UTC)
    assert document["expires_at"] == window_end + timedelta(minutes=1)
    assert ANN not in repr(document)
    indexes = (await windows.index_information()).values()
    ttl = [index["expireAfterSeconds"] for index in indexes if index["key"] == [("expires_at", 1)]]
    assert ttl == [0]


async def test_without_the_database_a_replica_limits_alone_and_shares_once_it_is_back(
    servers: ServerUrls, database_name: str, windows: AsyncCollection[Document]
) -> None:
    limits = replica(3)
    async with database_proxy(servers.mongo_url) as proxy:
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            proxy.mongo_url, serverSelectionTimeoutMS=300
        )
        sync = CountSync(limits, client[database_name][COUNTS_COLLECTION])
        errors = sync_errors()
        with structlog.testing.capture_logs() as logs:
            assert admitted(limits)
            assert admitted(limits)
            proxy.cut()
            await sync.sync()
            assert admitted(limits)
            await sync.sync()
            assert not admitted(limits)  # this replica's own count
            assert sync_errors() - errors == 2
            await proxy.start()
            async with asyncio.timeout(10):
                while not any(line["event"] == "inbound_limits_shared_again" for line in logs):
                    await sync.sync()
        await client.close()
    events = [line["event"] for line in logs]
    assert events.count("inbound_limits_not_shared") == 1
    assert await stored_total(windows) == 3


# Ingress: a limit of three a day per sender (a day: no window ends during the test).
GATEWAYS = """
default_gateway: sim
gateways:
  - id: sim
    type: mobilefirst-http
    url: http://127.0.0.1:9/sendSMS
    default_sender: "12345"
    inbound: {open: true}
    inbound_limits:
      per_sender: {count: 3, seconds: 86400}
"""


@pytest.fixture
def ingress_settings(make_settings: Callable[..., Any], tmp_path: Path) -> IngressSettings:
    config = tmp_path / "gateways.yaml"
    config.write_text(GATEWAYS)
    settings: IngressSettings = make_settings(
        IngressSettings, gateways_file=config, receive_gateway="sim"
    )
    return settings


@pytest.fixture
async def published(amqp: AbstractRobustConnection) -> AsyncIterator[str]:
    async with listening(amqp, INBOUND_EXCHANGE, "inbound.#") as queue:
        yield queue


async def post(http: aiohttp.ClientSession, url: str, sender: str) -> aiohttp.ClientResponse:
    async with http.post(url, data={"from": sender, "to": "12345", "text": "hi"}) as response:
        await response.read()
        return response


@pytest.mark.rabbit
@pytest.mark.parametrize(
    "path", ["/receiveSMS", "/gateways/sim/inbound"], ids=["mobilefirst", "gateway"]
)
async def test_the_mo_over_a_senders_limit_is_429_and_not_queued(
    ingress_settings: IngressSettings, amqp: AbstractRobustConnection, published: str, path: str
) -> None:
    async with serving(create_app(ingress_settings)) as url, aiohttp.ClientSession() as http:
        accepted = [(await post(http, url + path, ANN)).status for _ in range(3)]
        async with http.post(url + path, data={"from": ANN, "text": "hi"}) as response:
            assert response.status == 429
            retry_after = int(response.headers["Retry-After"])
            body = await response.json()
        other = await post(http, url + path, BOB)
    assert all(status in (200, 202) for status in (*accepted, other.status))
    assert 0 < retry_after <= 86400
    assert body["error"] == "rate_limited"
    assert "per_sender" in body["message"]
    queued = await drain(amqp, published, expect=4)
    senders = [InboundSMS.model_validate_json(message.body).sender for message in queued]
    assert sorted(senders) == sorted([ANN, ANN, ANN, BOB])
    assert await queue_length(amqp, published) == 0


@pytest.mark.rabbit
async def test_without_the_database_mo_is_accepted_and_limited_per_replica(
    ingress_settings: IngressSettings, amqp: AbstractRobustConnection, published: str
) -> None:
    app = create_app(ingress_settings)
    async with serving(app) as url, aiohttp.ClientSession() as http:
        await app[MONGO_CLIENT].close()
        errors = sync_errors()
        statuses = [(await post(http, f"{url}/receiveSMS", ANN)).status for _ in range(3)]
        await until(lambda: sync_errors() > errors)
        assert (await post(http, f"{url}/receiveSMS", ANN)).status == 429
        assert (await post(http, f"{url}/receiveSMS", BOB)).status == 202
    assert statuses == [202, 202, 202]
    assert len(await drain(amqp, published, expect=4)) == 4
