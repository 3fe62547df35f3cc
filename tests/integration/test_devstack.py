"""twoway_devstack: the order in which servers are found, one real throwaway start, and a
RabbitMQ node killed and started again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pymongo
import pytest

from twoway_devstack import ServerUrls, provide_servers
from twoway_devstack import servers as servers_module
from twoway_devstack.processes import free_ports
from twoway_devstack.rabbitmq import RabbitNode, rabbitmq_node

AMQP_VARIABLE = "TWOWAY_AMQP_URL"
MONGO_VARIABLE = "TWOWAY_MONGO_URL"
ENV_AMQP = "amqp://user:secret@broker.invalid:5672/"
ENV_MONGO = "mongodb://db.invalid:27017/"
STARTERS = ("rabbitmq_container", "mongodb_container", "run_rabbitmq", "run_secantus")


@dataclass(frozen=True)
class OrderCase:
    id: str
    env_amqp: str | None
    env_mongo: str | None
    docker: bool
    amqp_url: str  # a fake starter yields "<its name>://fake"
    mongo_url: str


ORDER_CASES = (
    OrderCase("both-from-env", ENV_AMQP, ENV_MONGO, True, ENV_AMQP, ENV_MONGO),
    OrderCase("amqp-from-env", ENV_AMQP, None, False, ENV_AMQP, "run_secantus://fake"),
    OrderCase("mongo-from-env", None, ENV_MONGO, True, "rabbitmq_container://fake", ENV_MONGO),
    OrderCase("docker", None, None, True, "rabbitmq_container://fake", "mongodb_container://fake"),
    OrderCase("local", None, None, False, "run_rabbitmq://fake", "run_secantus://fake"),
)


def _fake_starter(name: str, started: list[str]) -> Callable[..., Any]:
    @contextlib.contextmanager
    def start(*args: Any, **kwargs: Any) -> Iterator[str]:
        started.append(name)
        yield f"{name}://fake"

    return start


def _set_env_urls(monkeypatch: pytest.MonkeyPatch, amqp: str | None, mongo: str | None) -> None:
    for variable, url in ((AMQP_VARIABLE, amqp), (MONGO_VARIABLE, mongo)):
        if url is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, url)


@pytest.mark.parametrize("case", ORDER_CASES, ids=lambda case: case.id)
def test_each_env_url_wins_then_docker_then_local_servers(
    case: OrderCase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _set_env_urls(monkeypatch, case.env_amqp, case.env_mongo)
    monkeypatch.setattr(servers_module, "docker_answers", lambda: case.docker)
    started: list[str] = []
    for name in STARTERS:
        monkeypatch.setattr(servers_module, name, _fake_starter(name, started))

    with provide_servers(tmp_path, persistent=False) as urls:
        assert urls == ServerUrls(amqp_url=case.amqp_url, mongo_url=case.mongo_url)

    fakes = {url.removesuffix("://fake") for url in (case.amqp_url, case.mongo_url)}
    assert set(started) == fakes & set(STARTERS)


def test_env_urls_win_without_even_asking_docker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _set_env_urls(monkeypatch, ENV_AMQP, ENV_MONGO)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing may be started when both URLs come from the environment")

    for name in ("docker_answers", *STARTERS):
        monkeypatch.setattr(servers_module, name, refuse)

    with provide_servers(tmp_path, persistent=False) as urls:
        assert urls == ServerUrls(amqp_url=ENV_AMQP, mongo_url=ENV_MONGO)
    assert list(tmp_path.iterdir()) == []


def _accepts_connections(url: str) -> bool:
    parts = urlsplit(url)
    assert parts.hostname is not None
    try:
        with socket.create_connection((parts.hostname, parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


async def _use_servers(urls: ServerUrls) -> None:
    connection = await aio_pika.connect(urls.amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"ping"), routing_key=queue.name)
        message = await queue.get(timeout=5, no_ack=True)
        assert message is not None
        assert message.body == b"ping"
    client: pymongo.AsyncMongoClient[dict[str, Any]] = pymongo.AsyncMongoClient(urls.mongo_url)
    async with client:
        collection = client.devstack_test.docs
        await collection.insert_one({"_id": 1, "text": "ping"})
        assert await collection.find_one({"_id": 1}) == {"_id": 1, "text": "ping"}


@pytest.mark.rabbit
@pytest.mark.mongo
def test_throwaway_servers_answer_and_are_stopped_afterwards(tmp_path: Path) -> None:
    with provide_servers(tmp_path, persistent=False) as urls:
        sync_client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(urls.mongo_url)
        with sync_client:
            assert sync_client.admin.command("ping")["ok"] == 1
        asyncio.run(_use_servers(urls))

    started_here = [
        url
        for variable, url in ((AMQP_VARIABLE, urls.amqp_url), (MONGO_VARIABLE, urls.mongo_url))
        if not os.environ.get(variable)
    ]
    assert [url for url in started_here if _accepts_connections(url)] == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.rabbit
def test_a_node_killed_starts_again_with_its_queues_and_reports_them(tmp_path: Path) -> None:
    """What `make chaos` does to the broker: SIGKILL, then the same node started again."""
    amqp_port, dist_port = free_ports(2)
    node = f"devstack-test-{amqp_port}@localhost"
    with rabbitmq_node(tmp_path, node=node, port=amqp_port, dist_port=dist_port) as rabbit:
        process = rabbit.start()
        try:
            rabbit.await_ready(process)
            asyncio.run(_publish_to_durable_queue(rabbit.url))
            _until_busy(rabbit, ["kept 1 0 0"])
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            process = rabbit.start()
            rabbit.await_ready(process)
            _until_busy(rabbit, ["kept 1 0 0"])
        finally:
            rabbit.stop(process)
    assert process.returncode is not None


def _until_busy(rabbit: RabbitNode, expected: list[str], within: float = 20.0) -> None:
    """Quorum queues report their counts every few seconds, not at once."""
    deadline = time.monotonic() + within
    while (busy := rabbit.busy_queues()) != expected:
        assert time.monotonic() < deadline, busy
        time.sleep(0.5)


async def _publish_to_durable_queue(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            "kept", durable=True, arguments={"x-queue-type": "quorum"}
        )
        message = aio_pika.Message(b"kept", delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await channel.default_exchange.publish(message, routing_key=queue.name)
