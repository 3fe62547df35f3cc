"""Every service, each its own process as in a deployment (so each /metrics is that service's own
registry), moves the series the dashboard draws: one SMS end to end, sent on the second attempt,
and one reply the gateway refuses for good."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client.parser import text_string_to_metric_families
from pymongo.asynchronous.database import AsyncDatabase

from tests.deploy.project import REPO, tool
from tests.support.outbound_replicas import wait_ready
from tests.support.references import REFERENCE_SECRET
from tests.support.stack import Stack, gateways_file
from twoway.storage import Document
from twoway.topology import OUTBOUND_QUEUE, ROUTER_QUEUE, adapter_queue
from twoway_devstack import ServerUrls
from twoway_devstack.processes import free_ports, start_process, stop_process, wait_for_port

pytestmark = [pytest.mark.e2e, pytest.mark.rabbit, pytest.mark.mongo]

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
Expected = list[tuple[str, dict[str, str]]]

SCRIPTS = {
    "gateway-sim": "twoway-gateway-sim",
    "ingress": "twoway-ingress",
    "outbound": "twoway-outbound",
    "adapter-echo": "twoway-echo",
    "api": "twoway-api",
    "broadcaster": "twoway-broadcaster",
    "router": "twoway-router",
}
"""Started in this order, the router last (once the echo adapter registered its handler)."""

EXPECTED: dict[str, Expected] = {
    "ingress": [
        ("twoway_inbound_received_total", {"gateway": "sim"}),
        ("twoway_inbound_refused_total", {"status": "422"}),
    ],
    "router": [
        ("twoway_router_match_seconds_count", {}),
        ("twoway_router_match_seconds_bucket", {"le": "+Inf"}),
        ("twoway_router_routed_total", {"adapter": "echo"}),
        ("twoway_consumed_total", {"queue": ROUTER_QUEUE}),
    ],
    "adapter-echo": [
        ("twoway_adapter_handled_total", {"adapter": "echo"}),
        ("twoway_consumed_total", {"queue": adapter_queue("echo")}),
    ],
    "outbound": [
        ("twoway_outbound_total", {"gateway": "sim", "result": "success"}),
        ("twoway_outbound_total", {"gateway": "sim", "result": "retry"}),
        ("twoway_outbound_total", {"gateway": "sim", "result": "permanent"}),
        ("twoway_outbound_retries_total", {"gateway": "sim"}),
        ("twoway_dead_letters_total", {"queue": OUTBOUND_QUEUE}),
        ("twoway_consumed_total", {"queue": OUTBOUND_QUEUE}),
    ],
    "api": [],
    "broadcaster": [],
}
"""Per service, the series this scenario must move on its /metrics, and on no other's."""

UP: Expected = [("python_info", {}), ("process_start_time_seconds", {})]
"""prometheus-client's own series: every service's /metrics answers with them."""


@contextmanager
def service_process(
    service: str, port: int, folder: Path, environment: Mapping[str, str]
) -> Iterator[None]:
    """`service`'s console script on `port`, until it listens; stopped (SIGTERM) on exit."""
    script, log_path = SCRIPTS[service], folder / f"{service}.log"
    env = {**os.environ, **environment, "TWOWAY_PORT": str(port)}
    process = start_process([tool(script)], env=env, log_path=log_path, cwd=REPO)
    try:
        wait_for_port(process, port, what=script, log_path=log_path, timeout=60)
        yield
    finally:
        stop_process(process, what=script)


@pytest.fixture
async def system(
    servers: ServerUrls,
    database_name: str,
    tmp_path: Path,
    amqp: AbstractRobustConnection,
    mongo_db: AsyncDatabase[Document],
) -> AsyncIterator[tuple[Stack, dict[str, str]]]:
    """Every service as a process against the test's broker and database (both emptied by
    `amqp` and `mongo_db`); the stack (to text and read what the gateway got) and the
    services' base URLs."""
    ports = dict(zip(SCRIPTS, free_ports(len(SCRIPTS)), strict=True))
    urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
    environment = {
        "TWOWAY_AMQP_URL": servers.amqp_url,
        "TWOWAY_MONGO_URL": servers.mongo_url,
        "TWOWAY_MONGO_DATABASE": database_name,
        "TWOWAY_LOG_FORMAT": "console",
        "TWOWAY_GATEWAYS_FILE": str(gateways_file(tmp_path, urls["gateway-sim"])),
        "TWOWAY_INGRESS_URL": urls["ingress"],
        "TWOWAY_RECEIVE_GATEWAY": "sim",
        "TWOWAY_API_TOKEN": "metrics-test-token",
        "TWOWAY_REFERENCE_SECRET": REFERENCE_SECRET,
        "TWOWAY_RETRY_DELAYS": "[1]",
        "TWOWAY_MAX_ATTEMPTS": "3",
    }
    with ExitStack() as running:
        for group in (list(SCRIPTS)[:-1], ["router"]):
            for service in group:
                running.enter_context(
                    service_process(service, ports[service], tmp_path, environment)
                )
            await wait_ready([ports[service] for service in group])
        async with aiohttp.ClientSession() as http:
            stack = Stack(
                ingress=urls["ingress"],
                gateway=urls["gateway-sim"],
                router=urls["router"],
                outbound=urls["outbound"],
                adapters={"echo": urls["adapter-echo"]},
                http=http,
            )
            yield stack, urls


async def scrape(http: aiohttp.ClientSession, base: str) -> Series:
    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, labels: dict[str, str]) -> float:
    return sum(
        amount
        for (sample, sample_labels), amount in series.items()
        if sample == name and set(labels.items()) <= sample_labels
    )


def missing(series: Series, expected: Expected) -> Expected:
    return [(name, labels) for name, labels in expected if value(series, name, labels) <= 0]


async def scrape_all(
    http: aiohttp.ClientSession, urls: dict[str, str], within: float = 15.0
) -> dict[str, Series]:
    """Every service's series, once each shows what it is expected to (outbound counts and acks
    just after the gateway answered; the dead letter just after that), or `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        scraped = {service: await scrape(http, urls[service]) for service in EXPECTED}
        complete = all(not missing(scraped[s], [*UP, *EXPECTED[s]]) for s in EXPECTED)
        if complete or asyncio.get_running_loop().time() > deadline:
            return scraped
        await asyncio.sleep(0.1)


async def fail_next_send(stack: Stack, status: int) -> None:
    async with stack.http.post(f"{stack.gateway}/faults", json={"status": status}) as response:
        assert response.status == 200


async def test_each_service_exposes_its_own_series(
    system: tuple[Stack, dict[str, str]],
) -> None:
    stack, urls = system
    await fail_next_send(stack, 503)  # sent again from the delay queue a second later
    await stack.send_mo("+15551234567", "ECHO metrics")
    [reply] = await stack.received(1, within=15)
    assert (reply["to"], reply["text"]) == ("+15551234567", "metrics")

    await fail_next_send(stack, 400)  # refused for good: dead-lettered
    await stack.send_mo("+15557654321", "ECHO never delivered")
    async with stack.http.post(f"{stack.ingress}/receiveSMS", data={"text": "no sender"}) as bad:
        assert bad.status == 422

    scraped = await scrape_all(stack.http, urls)
    for service, series in scraped.items():
        assert missing(series, [*UP, *EXPECTED[service]]) == [], service
        others = [expected for other, expected in EXPECTED.items() if other != service]
        moved_here = [
            (name, labels)
            for expected in others
            for name, labels in expected
            if value(series, name, labels) > 0
        ]
        assert moved_here == [], f"{service} shows another service's series"
    assert len(await stack.received(2, within=0)) == 1
